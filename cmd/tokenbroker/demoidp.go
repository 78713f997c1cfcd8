package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

const demoIdPHelp = `Usage: tokenbroker demo-idp [flags]

Serves only the demo's built-in identity provider (Azure AD v1 and v2 token
endpoints), for brokers that run elsewhere — docker-compose.yml uses it. It
knows the demo user and password, the public client the default profile
uses, and the confidential client "demo-app" whose secret is
DEMO_APP_SECRET. Never expose it beyond a test network.

`

func demoIdP(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker demo-idp", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "`address` to serve the identity provider on")
	lifetime := fs.Duration("lifetime", 2*time.Minute, "lifetime of its access tokens")
	if ok, code := parse(fs, args, e, demoIdPHelp, nil); !ok {
		return code
	}
	secret := e.getenv("DEMO_APP_SECRET")
	if secret == "" {
		fmt.Fprintln(e.stderr, "tokenbroker demo-idp: set DEMO_APP_SECRET, the secret of the demo-app client")
		return exitUsage
	}
	idp := fakeidp.New(fakeidp.WithLifetime(*lifetime), fakeidp.WithUser(demoUser, demoPassword),
		fakeidp.WithClient(demoClientID, ""), fakeidp.WithClient(demoApp, secret))
	defer idp.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker demo-idp: %v\n", err)
		return exitError
	}
	srv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String() + "/" + idp.Tenant()
	fmt.Fprintf(e.stdout, "demo identity provider on %s\n  v1: %s/oauth2/token\n  v2: %s/oauth2/v2.0/token\n  user %s, password %s; public client %s; confidential client %s\n",
		ln.Addr(), base, base, demoUser, demoPassword, demoClientID, demoApp)
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return exitOK
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return exitOK
		}
		fmt.Fprintf(e.stderr, "tokenbroker demo-idp: %v\n", err)
		return exitError
	}
}
