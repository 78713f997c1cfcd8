// Package broker wires a whole token broker from a config.Config: the NATS
// connection (or an embedded server), the actor engine and Router, the
// token.request service and the event publisher. The tokenbroker command
// runs one; end-to-end tests run several.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/anthdm/hollywood/actor"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// Options are what a Broker needs beyond its configuration.
type Options struct {
	Logger *slog.Logger // nil discards logs
	// IdPHTTPClient is the HTTP client for token endpoints; nil uses a
	// default with sane timeouts.
	IdPHTTPClient *http.Client
}

// Broker is a running token broker.
type Broker struct {
	cfg    *config.Config
	log    *slog.Logger
	server *server.Server // the embedded NATS server; nil with NATS_URL
	nc     *nats.Conn
	router *actors.Router
	svc    *messaging.Service
}

// Start starts a broker: it is serving token.request when Start returns.
func Start(cfg *config.Config, o Options) (_ *Broker, err error) {
	b := &Broker{cfg: cfg, log: o.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()

	url := cfg.NATSURL
	co := messaging.ConnectOptions{
		CredsFile: cfg.NATSCreds, NKeyFile: cfg.NATSNKey,
		User: cfg.NATSUser, Password: cfg.NATSPassword.Reveal(), Token: cfg.NATSToken.Reveal(),
		CAFile: cfg.NATSCA, CertFile: cfg.NATSCert, KeyFile: cfg.NATSKey,
	}
	if url == "" {
		if b.server, err = messaging.StartEmbedded(messaging.EmbeddedOptions{Listen: cfg.NATSListen, ConfigFile: cfg.NATSConfig}); err != nil {
			return nil, err
		}
		url = b.server.ClientURL()
		co.InProcess = b.server
		b.log.Info("embedded NATS server started", "url", url)
	}
	if b.nc, err = messaging.Connect(url, co); err != nil {
		return nil, err
	}

	keys, err := actors.NewKeyring(cfg.Key)
	if err != nil {
		return nil, err
	}
	engine, err := actor.NewEngine(actor.NewEngineConfig())
	if err != nil {
		return nil, fmt.Errorf("broker: actor engine: %w", err)
	}
	subjects := messaging.Subjects{Prefix: cfg.SubjectPrefix}
	ro := actors.Options{
		Engine:         engine,
		Client:         oauth.NewClient(o.IdPHTTPClient, cfg.IdPTimeout),
		Publisher:      messaging.NewPublisher(b.nc, subjects, b.log),
		Keyring:        keys,
		IdleTimeout:    cfg.IdleTimeout,
		RequestTimeout: cfg.RequestTimeout,
		Logger:         b.log,
	}
	if cfg.HasDefault() {
		s := spec(cfg.Default, false)
		ro.Default = &s
	}
	for _, c := range cfg.Credentials {
		ro.Named = append(ro.Named, spec(c, true))
	}
	if b.router, err = actors.NewRouter(ro); err != nil {
		return nil, err
	}
	if b.svc, err = messaging.NewService(b.nc, subjects, b.router, b.log); err != nil {
		return nil, fmt.Errorf("broker: token.request service: %w", err)
	}
	b.log.Info("serving", "subject", subjects.Request(), "queue_group", messaging.QueueGroup,
		"default_profile", cfg.HasDefault(), "named_credentials", len(cfg.Credentials))
	return b, nil
}

// spec turns a configured credential into the actors' Spec.
func spec(c config.Credential, named bool) actors.Spec {
	return actors.Spec{
		Name: c.Name,
		Endpoint: oauth.Endpoint{
			TokenURL: c.TokenEndpoint, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
			Resource: c.Resource, Scope: c.Scope,
		},
		Grant:            actors.Grant(c.Grant),
		Username:         c.Username,
		Password:         c.Password,
		RefreshThreshold: c.RefreshThreshold,
		KeepWarm:         named && c.KeepWarm,
	}
}

// ClientURL is the URL callers reach the broker's NATS at.
func (b *Broker) ClientURL() string {
	if b.server != nil {
		return b.server.ClientURL()
	}
	return b.cfg.NATSURL
}

// Conn is the broker's NATS connection.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// Router is the broker's Router, the tokenbroker.Service behind every
// transport.
func (b *Broker) Router() *actors.Router { return b.router }

// Service is the token.request micro service.
func (b *Broker) Service() *messaging.Service { return b.svc }

// Shutdown stops taking requests, answers the ones in flight (until ctx is
// done), then closes NATS and the embedded server.
func (b *Broker) Shutdown(ctx context.Context) error {
	var errs []error
	if b.svc != nil {
		errs = append(errs, b.svc.Stop())
	}
	if b.router != nil {
		errs = append(errs, b.router.Stop(ctx))
	}
	b.close()
	return errors.Join(errs...)
}

func (b *Broker) close() {
	if b.nc != nil {
		_ = b.nc.Flush() // replies and events already handed to the connection
		b.nc.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
	}
}
