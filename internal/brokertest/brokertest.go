// Package brokertest runs a whole broker over a fake Azure AD, for the tests
// of every package that talks to one: the broker's own end-to-end tests and
// the Go client's.
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
	idp, err := fakeidp.Start(append([]fakeidp.Option{fakeidp.WithLifetime(o.Lifetime), fakeidp.WithUser(User, Password),
		fakeidp.WithClient(PublicClient, ""), fakeidp.WithClient(App, AppSecret)}, o.IdP...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(idp.Close)
	cfg := config.Defaults()
	cfg.NATSListen = "127.0.0.1:0"
	cfg.HTTPAddr = ""
	cfg.Default = config.Credential{Name: config.DefaultName, Grant: config.GrantPassword,
		TokenEndpoint: idp.V1TokenURL(), ClientID: PublicClient, Resource: Resource, RefreshThreshold: o.Threshold}
	cfg.Credentials = []config.Credential{{Name: App, Grant: config.GrantClientCredentials,
		TokenEndpoint: idp.V2TokenURL(), ClientID: App, ClientSecret: AppSecret, Scope: Resource + "/.default",
		RefreshThreshold: o.Threshold, KeepWarm: true}}
	if o.Adjust != nil {
		o.Adjust(cfg, idp)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	b, err := broker.Start(cfg, broker.Options{Logger: o.Logs.Logger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
	})
	return &Env{IdP: idp, Broker: b, Logs: o.Logs}
}
