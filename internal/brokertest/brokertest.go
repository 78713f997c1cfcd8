// Package brokertest runs a whole broker over a fake Azure AD, for the tests
// of every package that talks to one: the broker's own end-to-end tests and
// the Go client's.
//
// Start runs the whole fixture. Tests that need several brokers over one
// IdP, or a broker configured otherwise, build it from its parts: StartIdP,
// Config and StartBroker.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// The fixture: a user of the default profile, the public client it signs in
// with, and a confidential client that is the broker's named credential App.
const (
	User         = "alice@contoso.example"
	Password     = "s3cret-Passw0rd!"
	PublicClient = "11111111-2222-3333-4444-555555555555"
	App          = "app"
	AppSecret    = "app-client-secret-value"
	Resource     = "https://resource.example"
)

// Options adjust the fixture.
type Options struct {
	Lifetime  time.Duration                         // of the IdP's access tokens; default 1h
	Threshold time.Duration                         // every credential's refresh threshold; default 10m
	IdP       []fakeidp.Option                      // more options for the fake IdP
	Adjust    func(*config.Config, *fakeidp.Server) // last changes to the broker's config
	Logs      *testkit.LogBuffer                    // where the broker logs, at debug; nil: a fresh buffer
}

// Env is a running fixture.
type Env struct {
	IdP    *fakeidp.Server
	Broker *broker.Broker
	Logs   *testkit.LogBuffer
}

// Start runs the fake IdP and a broker with an embedded NATS server on a
// random loopback port, serving the default profile (password grant, Azure
// AD v1) and App (client credentials, v2, kept warm). Both stop when tb ends.
func Start(tb testing.TB, o Options) *Env {
	tb.Helper()
	if o.Lifetime == 0 {
		o.Lifetime = time.Hour
	}
	if o.Threshold == 0 {
		o.Threshold = 10 * time.Minute
	}
	if o.Logs == nil {
		o.Logs = &testkit.LogBuffer{}
	}
	idp := StartIdP(tb, o.Lifetime, o.IdP...)
	cfg := Config(idp, o.Threshold)
	if o.Adjust != nil {
		o.Adjust(cfg, idp)
	}
	b := StartBroker(tb, cfg, broker.Options{Logger: o.Logs.Logger()})
	return &Env{IdP: idp, Broker: b, Logs: o.Logs}
}

// StartIdP runs the fake IdP with the fixture's user and clients, issuing
// access tokens valid for lifetime, and closes it when tb ends. opts come
// after the fixture's, so they may override them.
func StartIdP(tb testing.TB, lifetime time.Duration, opts ...fakeidp.Option) *fakeidp.Server {
	tb.Helper()
	idp, err := fakeidp.Start(append([]fakeidp.Option{fakeidp.WithLifetime(lifetime), fakeidp.WithUser(User, Password),
		fakeidp.WithClient(PublicClient, ""), fakeidp.WithClient(App, AppSecret)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(idp.Close)
	return idp
}

// Config is the fixture's broker configuration against idp: an embedded
// NATS server on a random loopback port, no HTTP gateway, the default
// profile and App, each refreshed threshold before its token expires.
func Config(idp *fakeidp.Server, threshold time.Duration) *config.Config {
	cfg := config.Defaults()
	cfg.NATSListen = "127.0.0.1:0"
	cfg.HTTPAddr = ""
	cfg.Default = config.Credential{Name: config.DefaultName, Grant: config.GrantPassword,
		TokenEndpoint: idp.V1TokenURL(), ClientID: PublicClient, Resource: Resource, RefreshThreshold: threshold}
	cfg.Credentials = []config.Credential{{Name: App, Grant: config.GrantClientCredentials,
		TokenEndpoint: idp.V2TokenURL(), ClientID: App, ClientSecret: AppSecret, Scope: Resource + "/.default",
		RefreshThreshold: threshold, KeepWarm: true}}
	return cfg
}

// StartBroker validates cfg, since broker.Start expects a valid Config,
// starts a broker on it and stops the broker when tb ends.
func StartBroker(tb testing.TB, cfg *config.Config, o broker.Options) *broker.Broker {
	tb.Helper()
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	b, err := broker.Start(cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = Stop(b) })
	return b
}

// Stop shuts b down, giving requests in flight at most 10 seconds. A test may
// stop a broker of StartBroker's early: the cleanup's second Stop is ignored.
func Stop(b *broker.Broker) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.Shutdown(ctx)
}
