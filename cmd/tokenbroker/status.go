package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/wire"
)

const statusHelp = `Usage: tokenbroker status [flags]

Asks every running broker on the NATS server for its micro service stats
($SRV.STATS.tokenbroker) and prints them as a table: requests and errors per
broker, then each named credential with its expiry, next refresh and last
error. It waits --wait for brokers to answer.

`

func status(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker status", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	wait := fs.Duration("wait", time.Second, "how long to collect answers from brokers")
	if ok, code := parse(fs, args, e, statusHelp, nil); !ok {
		return code
	}
	nc, err := cf.connect(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker status: %v\n", err)
		return exitError
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker status: %v\n", err)
		return exitError
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.STATS."+wire.ServiceName, inbox, nil); err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker status: %v\n", err)
		return exitError
	}
	type broker struct {
		stats micro.Stats
		// The request endpoint's data: the broker's own counts (which,
		// unlike micro's, include errors answered after the handler
		// returned) and its credentials.
		data struct {
			messaging.Counts
			actors.Status
		}
	}
	var brokers []broker
	timer := time.NewTimer(*wait)
	defer timer.Stop()
collect:
	for {
		select {
		case m := <-ch:
			var b broker
			if err := json.Unmarshal(m.Data, &b.stats); err != nil {
				continue
			}
			for _, ep := range b.stats.Endpoints {
				_ = json.Unmarshal(ep.Data, &b.data)
			}
			brokers = append(brokers, b)
		case <-timer.C:
			break collect
		case <-ctx.Done():
			return exitError
		}
	}
	if len(brokers) == 0 {
		fmt.Fprintf(e.stderr, "tokenbroker status: no broker answered at %s within %s\n", *cf.url, *wait)
		return exitError
	}
	sort.Slice(brokers, func(i, j int) bool { return brokers[i].stats.ID < brokers[j].stats.ID })

	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "BROKER\tVERSION\tUP\tREQUESTS\tERRORS\tCREDENTIALS\tUSERS")
	for _, b := range brokers {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", b.stats.ID, b.stats.Version,
			time.Since(b.stats.Started).Round(time.Second), b.data.Requests, b.data.Errors, b.data.Credentials, b.data.Users)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "BROKER\tCREDENTIAL\tWARM\tEXPIRES IN\tNEXT REFRESH IN\tLAST ERROR")
	for _, b := range brokers {
		for _, c := range b.data.Named {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", b.stats.ID, c.CredentialID, yesNo(c.Warm),
				until(c.ExpiresOn), until(c.NextRefresh), lastError(c))
		}
	}
	_ = w.Flush()
	return exitOK
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func until(t *time.Time) string {
	if t == nil {
		return "-"
	}
	d := time.Until(*t).Round(time.Second)
	if d < 0 {
		return "expired"
	}
	return d.String()
}

func lastError(c actors.CredentialStatus) string {
	if c.LastError == "" {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", c.LastError, time.Since(*c.LastErrorAt).Round(time.Second))
}
