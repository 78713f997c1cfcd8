package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

const watchHelp = `Usage: tokenbroker watch [flags] [CREDENTIAL_ID]

Prints token.refreshed and token.failed events as they arrive, for one
credential or (without CREDENTIAL_ID) all of them. Access tokens are not
printed unless --json is given.

`

func watch(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker watch", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	asJSON := fs.Bool("json", false, "print each event's JSON as received, access token included")
	count := fs.Int("count", 0, "exit after this many events (0: run until interrupted)")
	if ok, code := parse(fs, args, e, watchHelp, nil); !ok {
		return code
	}
	id := "*"
	switch fs.NArg() {
	case 0:
	case 1:
		id = fs.Arg(0)
		if strings.ContainsAny(id, ".*> \t") || id == "" {
			fmt.Fprintf(e.stderr, "tokenbroker watch: %q is not a credential id\n", id)
			return exitUsage
		}
	default:
		fmt.Fprintln(e.stderr, "tokenbroker watch: at most one CREDENTIAL_ID")
		return exitUsage
	}
	nc, err := cf.connect(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker watch: %v\n", err)
		return exitError
	}
	defer nc.Close()
	ch := make(chan *nats.Msg, 256)
	for _, kind := range []string{"refreshed", "failed"} {
		sub, err := nc.ChanSubscribe(*cf.prefix+"."+kind+"."+id, ch)
		if err != nil {
			fmt.Fprintf(e.stderr, "tokenbroker watch: %v\n", err)
			return exitError
		}
		defer sub.Unsubscribe()
	}
	if err := nc.Flush(); err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker watch: %v\n", err)
		return exitError
	}
	fmt.Fprintf(e.stderr, "watching %s.{refreshed,failed}.%s on %s\n", *cf.prefix, id, *cf.url)
	for n := 0; *count == 0 || n < *count; n++ {
		select {
		case <-ctx.Done():
			return exitOK
		case m := <-ch:
			if *asJSON {
				fmt.Fprintln(e.stdout, string(m.Data))
				continue
			}
			fmt.Fprintln(e.stdout, summarize(m))
		}
	}
	return exitOK
}

// summarize is one line of an event, without its access token.
func summarize(m *nats.Msg) string {
	var ev struct {
		CredentialID string `json:"credential_id"`
		Action       string `json:"action"`
		ExpiresIn    int64  `json:"expires_in"`
		ExpiresOn    string `json:"expires_on"`
		Error        string `json:"error"`
		Description  string `json:"error_description"`
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return fmt.Sprintf("%s %s: unreadable event", time.Now().UTC().Format(time.RFC3339), m.Subject)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	if ev.Error != "" {
		return fmt.Sprintf("%s failed    %s error=%s description=%q", now, ev.CredentialID, ev.Error, ev.Description)
	}
	return fmt.Sprintf("%s refreshed %s action=%q expires_in=%d expires_on=%s", now, ev.CredentialID, ev.Action, ev.ExpiresIn, ev.ExpiresOn)
}
