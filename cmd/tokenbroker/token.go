package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
)

const tokenHelp = `Usage: tokenbroker token (--credential NAME | --username USER [--password-file FILE]) [flags]

Asks a running broker for a token over NATS and prints its JSON reply. The
password is read from --password-file, else the TOKENBROKER_PASSWORD variable,
else --password (visible to other users through ps: for demos only).
Exits 1 with the error on stderr when the broker refuses.

`

var jsonUnmarshal = json.Unmarshal

func token(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker token", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	credential := fs.String("credential", "", "`name` of a named credential")
	username := fs.String("username", "", "`user` of a username/password request")
	password := fs.String("password", "", "the user's `password` (prefer --password-file or TOKENBROKER_PASSWORD)")
	passwordFile := fs.String("password-file", "", "`file` holding the user's password")
	force := fs.Bool("force-refresh", false, "skip the cache: for a token the resource server refused")
	minTTL := fs.Int64("min-ttl", 0, "the token must stay valid at least this many `seconds`")
	only := fs.Bool("access-token", false, "print only the access token (for scripts)")
	if ok, code := parse(fs, args, e, tokenHelp, nil); !ok {
		return code
	}
	req := map[string]any{}
	switch {
	case *credential != "" && *username != "":
		fmt.Fprintln(e.stderr, "tokenbroker token: give --credential or --username, not both")
		return exitUsage
	case *credential != "":
		req["credential"] = *credential
	case *username != "":
		pw := *password
		if *passwordFile != "" {
			b, err := os.ReadFile(*passwordFile)
			if err != nil {
				fmt.Fprintf(e.stderr, "tokenbroker token: --password-file: %v\n", err)
				return exitUsage
			}
			pw = strings.TrimRight(string(b), "\r\n")
		} else if v := e.getenv("TOKENBROKER_PASSWORD"); v != "" {
			pw = v
		}
		req["username"], req["password"] = *username, pw
	default:
		fmt.Fprintln(e.stderr, "tokenbroker token: give --credential NAME or --username USER")
		return exitUsage
	}
	if *force {
		req["force_refresh"] = true
	}
	if *minTTL != 0 {
		req["min_ttl"] = *minTTL
	}
	data, _ := json.Marshal(req)

	nc, err := cf.connect(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker token: %v\n", err)
		return exitError
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, *cf.prefix+".request", data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		fmt.Fprintf(e.stderr, "tokenbroker token: no broker answers on %s.request at %s\n", *cf.prefix, *cf.url)
		return exitError
	case err != nil:
		fmt.Fprintf(e.stderr, "tokenbroker token: %v\n", err)
		return exitError
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		fmt.Fprintf(e.stderr, "tokenbroker token: %s\n", describe(code, msg.Data))
		return exitError
	}
	if *only {
		var r tokenbroker.Reply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			fmt.Fprintf(e.stderr, "tokenbroker token: unreadable reply: %v\n", err)
			return exitError
		}
		fmt.Fprintln(e.stdout, r.AccessToken)
		return exitOK
	}
	fmt.Fprintln(e.stdout, string(msg.Data))
	return exitOK
}
