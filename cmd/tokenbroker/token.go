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

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
)

const tokenHelp = `Usage: tokenbroker token (--credential NAME | --username USER [--password-file FILE]) [flags]

Asks a running broker for a token over NATS and prints its JSON reply. The
password is read from --password-file, else the TOKENBROKER_PASSWORD variable,
else --password (visible to other users through ps: for demos only).
Exits 1 with the error on stderr when the broker refuses.

`

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
	var req tokenbroker.Request
	switch {
	case *credential != "" && *username != "":
		fmt.Fprintln(e.stderr, "tokenbroker token: give --credential or --username, not both")
		return exitUsage
	case *credential != "":
		req.Credential = *credential
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
		req.Username, req.Password = *username, tokenbroker.Secret(pw)
	default:
		fmt.Fprintln(e.stderr, "tokenbroker token: give --credential NAME or --username USER")
		return exitUsage
	}
	req.ForceRefresh, req.MinTTL = *force, *minTTL

	nc, err := cf.connect(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker token: %v\n", err)
		return exitError
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	rep, err := cf.newClient(nc).Token(rctx, req)
	var nr *client.NoReplyError
	var refused *tokenbroker.Error
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		fmt.Fprintf(e.stderr, "tokenbroker token: no broker answers on %s.request at %s\n", *cf.prefix, *cf.url)
		return exitError
	case errors.As(err, &nr):
		fmt.Fprintf(e.stderr, "tokenbroker token: %v\n", err)
		return exitError
	case errors.As(err, &refused):
		fmt.Fprintf(e.stderr, "tokenbroker token: %s\n", describe(refused))
		return exitError
	case err != nil:
		fmt.Fprintf(e.stderr, "tokenbroker token: %v\n", err)
		return exitError
	}
	if *only {
		fmt.Fprintln(e.stdout, rep.AccessToken)
		return exitOK
	}
	// The reply as the broker encodes it: same fields, same order, same
	// escaping (tokenbroker.Reply is the broker's reply type too).
	out, err := json.Marshal(rep)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker token: %v\n", err)
		return exitError
	}
	fmt.Fprintln(e.stdout, string(out))
	return exitOK
}
