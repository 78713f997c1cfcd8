package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/client"
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
	// fn hands each event to this goroutine, which alone writes, counts and
	// decides when to stop; once it has stopped, fn drops what comes.
	events, stopped := make(chan client.Event), make(chan struct{})
	defer close(stopped)
	only := ""
	if id != "*" {
		only = id
	}
	w, err := cf.newClient(nc).Watch(ctx, only, func(ev client.Event) {
		select {
		case events <- ev:
		case <-stopped:
		}
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker watch: %v\n", err)
		return exitError
	}
	defer w.Close()
	fmt.Fprintf(e.stderr, "watching %s.{refreshed,failed}.%s on %s\n", *cf.prefix, id, *cf.url)
	for n := 0; *count == 0 || n < *count; n++ {
		select {
		case <-ctx.Done():
			return exitOK
		case ev := <-events:
			if *asJSON {
				fmt.Fprintln(e.stdout, string(ev.Data))
				continue
			}
			fmt.Fprintln(e.stdout, summarize(ev))
		}
	}
	return exitOK
}

// summarize is one line of an event, without its access token.
func summarize(ev client.Event) string {
	now := time.Now().UTC().Format(time.RFC3339)
	switch {
	case ev.Failed != nil:
		f := ev.Failed
		return fmt.Sprintf("%s failed    %s error=%s description=%q", now, f.CredentialID, f.Error, f.Description)
	case ev.Refreshed != nil:
		r := ev.Refreshed
		return fmt.Sprintf("%s refreshed %s action=%q expires_in=%d expires_on=%s", now, r.CredentialID, r.Action, r.ExpiresIn, r.ExpiresOn)
	default:
		return fmt.Sprintf("%s %s: unreadable event", now, ev.Subject)
	}
}
