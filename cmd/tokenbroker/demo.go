package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// The demo's identities. They exist only in the built-in IdP.
const (
	demoUser     = "demo@tokenbroker.example"
	demoPassword = "demo-password"
	demoClientID = "00000000-0000-0000-0000-00000000d3e0"
	demoApp      = "demo-app"
	demoResource = "https://demo.tokenbroker.example"
)

const demoHelp = `Usage: tokenbroker demo [flags]

Runs the broker with an embedded NATS server and a built-in identity provider
that speaks the Azure AD token endpoint dialect, so you can get tokens without
any tenant. Prints the demo user, its password and commands to try. All the
broker's flags apply; the demo sets the default profile and one named
client-credentials credential, "demo-app", itself.

`

func demo(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker demo", flag.ContinueOnError)
	cf := config.Register(fs)
	lifetime := fs.Duration("lifetime", 2*time.Minute, "lifetime of the demo IdP's access tokens")
	if ok, code := parse(fs, args, e, demoHelp, func(w io.Writer) {
		fmt.Fprintln(w, "  --lifetime duration\n    \tlifetime of the demo IdP's access tokens (default 2m0s)")
		cf.PrintDefaults(w)
	}); !ok {
		return code
	}
	cfg, err := cf.Resolve(e.lookup)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return exitUsage
	}
	if *lifetime < 2*time.Second {
		fmt.Fprintln(e.stderr, "tokenbroker demo: --lifetime must be at least 2s")
		return exitUsage
	}

	secret := randomSecret()
	idp, err := fakeidp.Start(
		fakeidp.WithLifetime(*lifetime),
		fakeidp.WithUser(demoUser, demoPassword),
		fakeidp.WithClient(demoClientID, ""),
		fakeidp.WithClient(demoApp, secret),
	)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker demo: identity provider: %v\n", err)
		return exitError
	}
	defer idp.Close()

	// The refresh threshold is a tenth of the lifetime, so the demo shows a
	// refresh within minutes instead of the hour a real token lives.
	threshold := *lifetime / 10
	cfg.Default = config.Credential{
		Name: config.DefaultName, Grant: config.GrantPassword,
		TokenEndpoint: idp.V1TokenURL(), ClientID: demoClientID, Resource: demoResource,
		RefreshThreshold: threshold,
	}
	cfg.Credentials = append(cfg.Credentials, config.Credential{
		Name: demoApp, Grant: config.GrantClientCredentials,
		TokenEndpoint: idp.V2TokenURL(), ClientID: demoApp, ClientSecret: tokenbrokerSecret(secret),
		Scope: demoResource + "/.default", RefreshThreshold: threshold, KeepWarm: true,
	})
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return exitUsage
	}
	return runBroker(ctx, cfg, e, func(b *broker.Broker) {
		url := b.ClientURL()
		flagURL := ""
		if url != "nats://127.0.0.1:4222" {
			flagURL = " --nats-url " + url
		}
		fmt.Fprintf(e.stdout, `tokenbroker demo is running.

  NATS server:        %s
  identity provider:  %s (Azure AD v1 and v2 token endpoints)
  demo user:          %s
  demo password:      %s
  named credential:   %s (client credentials)

Get a token for the demo user (in another terminal):

  go run ./cmd/tokenbroker token%s --username %s --password %s

or for the named credential, or with the nats CLI:

  go run ./cmd/tokenbroker token%s --credential %s
  nats --server %s req %s.request '{"username":"%s","password":"%s"}'

Watch tokens being refreshed (about every %s here), and the brokers' state:

  go run ./cmd/tokenbroker watch%s
  go run ./cmd/tokenbroker status%s
`, url, idp.URL(), demoUser, demoPassword, demoApp,
			flagURL, demoUser, demoPassword,
			flagURL, demoApp,
			url, cfg.SubjectPrefix, demoUser, demoPassword,
			(*lifetime - threshold).Round(time.Second), flagURL, flagURL)
		if addr := b.HTTPAddr(); addr != "" {
			// The gateway answers only JSON, and only a Host of its own:
			// behind a wildcard address ([::]:5000) that is a loopback
			// address, not the wildcard.
			if host, port, err := net.SplitHostPort(addr); err == nil {
				if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
					addr = net.JoinHostPort("127.0.0.1", port)
				}
			}
			fmt.Fprintf(e.stdout, `
The original helper's HTTP interface, health and metrics:

  curl -s http://%s/requesttoken -H 'Content-Type: application/json' -d '{"username":"%s","password":"%s"}'
  curl -s http://%s/metrics | grep tokenbroker_
`, addr, demoUser, demoPassword, addr)
		}
		fmt.Fprintln(e.stdout, "\nPress Ctrl-C to stop.")
	})
}
