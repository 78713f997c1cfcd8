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
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/catalog"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/discovery"
	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/registry"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/wire"
)

// InboxPrefix is the prefix of the broker's own reply subjects: see
// wire.BrokerInboxPrefix.
const InboxPrefix = wire.BrokerInboxPrefix

// Options are what a Broker needs beyond its configuration.
type Options struct {
	Logger *slog.Logger // nil discards logs
	// IdPHTTPClient is the HTTP client for token endpoints; nil uses a
	// default with sane timeouts.
	IdPHTTPClient *http.Client
	// LeaseTTL overrides LEASE_TTL, for tests that watch a lease expire.
	LeaseTTL time.Duration
}

// Broker is a running token broker.
type Broker struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *metrics.Metrics
	server   *server.Server // the embedded NATS server; nil with NATS_URL
	nc       *nats.Conn
	router   *actors.Router
	catalog  *catalog.Catalog
	registry *registry.Registry // nil without TOKENBROKER_KEY
	audit    *audit.Sink        // nil with AUDIT=off
	svc      *messaging.Service
	http     *httpapi.Server // nil when HTTP_ADDR is empty
	httpAddr string
}

// Start starts a broker: it is serving token.request when Start returns.
func Start(cfg *config.Config, o Options) (_ *Broker, err error) {
	b := &Broker{cfg: cfg, log: o.Logger, metrics: metrics.New()}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	// A failed start stops whatever it had started, in close's order.
	defer func() {
		if err != nil {
			b.close()
		}
	}()

	if err := b.connect(); err != nil {
		return nil, err
	}
	subjects := wire.Subjects{Prefix: cfg.SubjectPrefix}
	b.startAudit(subjects)
	if err := b.startRouter(subjects, o); err != nil {
		return nil, err
	}
	if b.svc, err = messaging.NewService(b.nc, subjects, b.router, messaging.ServiceOptions{
		Logger: b.log, Metrics: b.metrics, Status: func() any { return b.router.Status() },
		ReplyPrefixes: b.cfg.ReplyPrefixes, NamedOnOwnSubjectOnly: !b.cfg.NamedOnSharedSubject,
		Auditor: b.auditor(), Admin: b.catalog,
	}); err != nil {
		return nil, fmt.Errorf("broker: token.request service: %w", err)
	}
	if cfg.HTTPAddr != "" {
		if err := b.startHTTP(); err != nil {
			return nil, err
		}
	}
	b.log.Info("serving", "subject", subjects.Request(), "queue_group", wire.QueueGroup,
		"default_profile", cfg.HasDefault(), "named_credentials", len(cfg.Credentials), "audit", b.auditMode())
	return b, nil
}

// connect connects to NATS_URL, or starts the embedded server and connects
// to that.
func (b *Broker) connect() error {
	cfg := b.cfg
	url := cfg.NATSURL
	co := messaging.ConnectOptions{
		Logger: b.log, InboxPrefix: InboxPrefix,
		CredsFile: cfg.NATSCreds, NKeyFile: cfg.NATSNKey,
		User: cfg.NATSUser, Password: cfg.NATSPassword.Reveal(), Token: cfg.NATSToken.Reveal(),
		CAFile: cfg.NATSCA, CertFile: cfg.NATSCert, KeyFile: cfg.NATSKey,
	}
	if url == "" {
		var err error
		if b.server, err = messaging.StartEmbedded(messaging.EmbeddedOptions{
			Listen: cfg.NATSListen, ConfigFile: cfg.NATSConfig, AllowNoAuth: cfg.NATSAllowNoAuth,
			JetStream: cfg.Key != nil, StoreDir: cfg.DataDir, Logger: b.log,
			SyncAlways: cfg.StateSyncAlways, SyncInterval: cfg.StateSyncInterval,
		}); err != nil {
			return err
		}
		url = b.server.ClientURL()
		// In memory, skipping TCP; but a server with its own configuration
		// may demand credentials, and a refused login over the in-memory
		// pipe hangs and then reports only a closed pipe: use TCP there.
		if cfg.NATSConfig == "" {
			co.InProcess = b.server
		}
		b.log.Info("embedded NATS server started", "url", url)
	}
	var err error
	b.nc, err = messaging.Connect(url, co)
	return err
}

// auditMode is AUDIT, with a Config built by hand that left it empty taking
// the documented default.
func (b *Broker) auditMode() string {
	if b.cfg.Audit == "" {
		return config.AuditLog
	}
	return b.cfg.Audit
}

// startAudit starts the audit trail's sink as AUDIT says: the lines go to
// the broker's own logger, so LOG_FORMAT applies to them, and with
// AUDIT=nats the records also go out on the broker's connection.
func (b *Broker) startAudit(subjects wire.Subjects) {
	o := audit.Options{Logger: b.log, Subjects: subjects, Metrics: b.metrics}
	switch b.auditMode() {
	case config.AuditOff:
		return
	case config.AuditNATS:
		o.Conn = b.nc
	}
	b.audit = audit.New(o)
}

// auditor is what the Router and the transports record answers with: nil
// with AUDIT=off, so that a cache hit builds no record at all. A nil
// *audit.Sink must not become a non-nil Auditor that panics on use.
func (b *Broker) auditor() tokenbroker.Auditor {
	if b.audit == nil {
		return nil
	}
	return b.audit
}

// stopAudit writes the records still queued, until ctx is done.
func (b *Broker) stopAudit(ctx context.Context) error {
	if b.audit == nil {
		return nil
	}
	return b.audit.Stop(ctx)
}

// startRouter starts the actor engine and the Router over it, with the
// token state restored from JetStream when there is a store.
func (b *Broker) startRouter(subjects wire.Subjects, o Options) error {
	ro, err := b.routerOptions(subjects, o.IdPHTTPClient)
	if err != nil {
		return err
	}
	if err := b.useStore(&ro, o.LeaseTTL); err != nil {
		return err
	}
	if err := b.newCatalog(&ro, o.IdPHTTPClient); err != nil {
		return err
	}
	if b.router, err = actors.NewRouter(ro); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The registry's credentials are served, and restored below, before
	// the broker says it is up.
	if err := b.catalog.Start(rctx, b.router); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	// A store that cannot be read now is no reason not to serve: the
	// credentials are fetched again as they are asked for.
	if err := b.router.Restore(rctx); err != nil {
		b.log.Warn("could not restore stored credentials; they come back on first use", "err", err)
	}
	b.metrics.SetCredentials(b.router.Credentials)
	b.watchBreakers(ro)
	return nil
}

// breakerStates is the guard's view of its circuit breakers.
type breakerStates interface {
	BreakerStates(known ...string) map[string]guard.BreakerState
}

// watchBreakers has tokenbroker_idp_breaker_state read the IdP client's
// breakers at each scrape: those of the endpoints configured at start-up,
// closed until their first call, so that the gauge and its alert exist
// before any outage, and of every endpoint called since (a credential added
// later, or changed to another endpoint).
func (b *Broker) watchBreakers(ro actors.Options) {
	bs, ok := ro.Client.(breakerStates)
	if !ok {
		return
	}
	var known []string
	if ro.Default != nil {
		known = append(known, ro.Default.Endpoint.TokenURL)
	}
	for _, s := range ro.Named {
		known = append(known, s.Endpoint.TokenURL)
	}
	b.metrics.SetBreakerStates(func() map[string]guard.BreakerState { return bs.BreakerStates(known...) })
}

// routerOptions are the Router's options but for the store and the
// credentials: its engine, the guarded IdP client and the event publisher.
func (b *Broker) routerOptions(subjects wire.Subjects, idpHTTP *http.Client) (actors.Options, error) {
	cfg := b.cfg
	keys, err := actors.NewKeyring(cfg.Key)
	if err != nil {
		return actors.Options{}, err
	}
	engine, err := actor.NewEngine(actor.NewEngineConfig())
	if err != nil {
		return actors.Options{}, fmt.Errorf("broker: actor engine: %w", err)
	}
	idp := oauth.NewClient(idpHTTP, cfg.IdPTimeout)
	return actors.Options{
		Engine: engine,
		// Retries with backoff, Retry-After, a concurrency limit and a
		// circuit breaker per token endpoint; every attempt is counted.
		Client: guard.New(idp, guard.Options{
			OnAttempt:     b.metrics.IdPCall,
			MaxConcurrent: cfg.IdPMaxConcurrent,
		}),
		// The device flow paces itself (interval, slow_down): no retries
		// on top.
		Device:         idp,
		Publisher:      messaging.NewPublisher(b.nc, subjects, b.log, b.metrics),
		Metrics:        b.metrics,
		Keyring:        keys,
		IdleTimeout:    cfg.IdleTimeout,
		RequestTimeout: cfg.RequestTimeout,
		Logger:         b.log,
		Auditor:        b.auditor(),
	}, nil
}

// useStore keeps the token state in JetStream when TOKENBROKER_KEY is set;
// without a key there is nothing to encrypt it with, so it stays in memory.
// leaseTTL, when positive, overrides LEASE_TTL.
func (b *Broker) useStore(ro *actors.Options, leaseTTL time.Duration) error {
	cfg := b.cfg
	if cfg.Key == nil {
		b.log.Info("TOKENBROKER_KEY is not set: token state is kept in memory only, and lost on restart")
		return nil
	}
	if leaseTTL <= 0 {
		leaseTTL = cfg.LeaseTTL
	}
	var err error
	if ro.Store, err = openStore(b.nc, cfg, leaseTTL, b.log); err != nil {
		return err
	}
	ro.Owner = uuid.NewString()
	b.log.Info("token state is kept in JetStream", "bucket", ro.Store.Bucket(), "replicas", cfg.StateReplicas)
	if cfg.PreviousKey != nil {
		b.finishRotation(ro.Store)
	}
	if b.registry, err = openRegistry(b.nc, cfg, b.log); err != nil {
		return err
	}
	if cfg.PreviousKey != nil {
		ctx, cancel := context.WithTimeout(context.Background(), rotationTimeout)
		n, err := b.registry.Rekey(ctx)
		cancel()
		if err != nil {
			b.log.Warn("key rotation of the credential registry unfinished; keep TOKENBROKER_PREVIOUS_KEY set, the next start goes on", "rewritten", n, "err", err)
		}
	}
	return nil
}

// openRegistry opens the credential registry, which shares the token
// state's key and its rotation.
func openRegistry(nc *nats.Conn, cfg *config.Config, log *slog.Logger) (*registry.Registry, error) {
	var previous [][]byte
	if cfg.PreviousKey != nil {
		previous = append(previous, cfg.PreviousKey)
	}
	keys, err := store.NewKeys(cfg.Key, previous...)
	if err != nil {
		return nil, fmt.Errorf("broker: TOKENBROKER_KEY: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("broker: JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	reg, err := registry.Open(ctx, js, registry.Options{Replicas: cfg.StateReplicas, Keys: keys, Logger: log})
	switch {
	case errors.Is(err, store.ErrNotPermitted):
		return nil, fmt.Errorf("broker: TOKENBROKER_KEY is set, so named credentials can also live in the credential registry, but the NATS server refuses the broker's user a subject it needs (README, \"NATS permissions for durable state\", lists them): %w", err)
	case err != nil:
		return nil, fmt.Errorf("broker: the credential registry cannot be opened: %w", err)
	}
	log.Info("credential registry opened", "bucket", reg.Bucket())
	return reg, nil
}

// finishRotation rewrites under TOKENBROKER_KEY the records that only
// TOKENBROKER_PREVIOUS_KEY opens, so that the previous key can be removed:
// otherwise they would stay under it until each token is refreshed, which
// for a credential nobody uses is never. Username records are deleted
// instead: their credential ids derive from the key, so under the new one
// nobody asks for them again. A rotation that cannot finish now is no
// reason not to serve; it goes on at the next start.
func (b *Broker) finishRotation(st *store.Store) {
	named := make(map[string]bool, len(b.cfg.Credentials))
	for _, c := range b.cfg.Credentials {
		named[c.Name] = true
	}
	// A name could look like a user id; a configured one is kept.
	user := func(id string) bool { return strings.HasPrefix(id, "u-") && !named[id] }
	ctx, cancel := context.WithTimeout(context.Background(), rotationTimeout)
	defer cancel()
	done, err := st.Rekey(ctx, user)
	attrs := []any{"rewritten", done.Rewritten, "dropped_user_records", done.Dropped, "changed_meanwhile", done.Changed}
	if err != nil {
		b.log.Warn("key rotation unfinished: some records are still under TOKENBROKER_PREVIOUS_KEY; keep it set, the next start goes on",
			append(attrs, "failed", done.Failed, "err", err)...)
		return
	}
	b.log.Info("key rotation finished: every record the previous key opened is now under TOKENBROKER_KEY, and TOKENBROKER_PREVIOUS_KEY can be removed once every broker has started with both keys",
		attrs...)
}

// rotationTimeout bounds finishRotation at start-up.
const rotationTimeout = 30 * time.Second

// newCatalog builds the catalog of named credentials from the file (and,
// once started, the registry), and the Router's specs from it. A named
// credential's certificate is parsed now, so that an unusable one stops
// start-up rather than its first request.
func (b *Broker) newCatalog(ro *actors.Options, idpHTTP *http.Client) error {
	cfg := b.cfg
	if cfg.HasDefault() {
		s := catalog.SpecOf(cfg.Default, false)
		ro.Default = &s
	}
	host, _ := os.Hostname()
	cat, err := catalog.New(catalog.Options{
		ConfigFile: cfg.ConfigFile, Defaults: config.Credential{RefreshThreshold: cfg.Default.RefreshThreshold},
		File: cfg.Credentials, Default: ro.Default, DefaultSecretFile: cfg.Default.ClientSecretFile,
		Registry: b.registry, Broker: host, ID: b.id(ro), Metrics: b.metrics, Logger: b.log,
		Discovery: discovery.NewCache(idpHTTP, discovery.Options{OnStale: func(issuer string, err error) {
			b.log.Warn("OIDC discovery failed; the document read before stays in use", "issuer", issuer, "err", err)
		}}),
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.catalog = cat
	ro.Named = cat.Specs()
	return nil
}

// id is this broker's unique id: its name in leases when it keeps a store,
// in the admin subjects only it answers (a login's wait) in any case.
func (b *Broker) id(ro *actors.Options) string {
	if ro.Owner == "" {
		ro.Owner = uuid.NewString()
	}
	return ro.Owner
}

// Reload reads TOKENBROKER_CONFIG and every secret file again (SIGHUP): added,
// changed and removed credentials take effect at once. A file that does not
// validate changes nothing; the error says why, in one line.
func (b *Broker) Reload(ctx context.Context) error {
	if err := b.catalog.Reload(ctx); err != nil {
		b.log.Error("reload refused; the running configuration stays", "err", err)
		return err
	}
	b.log.Info("configuration reloaded", "config", b.cfg.ConfigFile)
	return nil
}

// Catalog is the broker's set of named credentials.
func (b *Broker) Catalog() *catalog.Catalog { return b.catalog }

// openStore opens the encrypted token state in JetStream. A key that fits
// none of the stored records stops start-up, leaving them untouched, and so
// does a JetStream subject the broker's NATS user may not use: at once, and
// naming it, rather than stalling every request later.
func openStore(nc *nats.Conn, cfg *config.Config, leaseTTL time.Duration, log *slog.Logger) (*store.Store, error) {
	var previous [][]byte
	if cfg.PreviousKey != nil {
		previous = append(previous, cfg.PreviousKey)
	}
	keys, err := store.NewKeys(cfg.Key, previous...)
	if err != nil {
		return nil, fmt.Errorf("broker: TOKENBROKER_KEY: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("broker: JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := store.Open(ctx, js, store.Options{Replicas: cfg.StateReplicas, Keys: keys, LeaseTTL: leaseTTL, Logger: log})
	switch {
	case errors.Is(err, store.ErrWrongKey):
		return nil, fmt.Errorf("broker: %w", err)
	case errors.Is(err, store.ErrNotPermitted):
		return nil, fmt.Errorf("broker: TOKENBROKER_KEY is set, so token state is kept in JetStream, but the NATS server refuses the broker's user a subject it needs (README, \"NATS permissions for durable state\", lists them): %w", err)
	case err != nil:
		return nil, fmt.Errorf("broker: TOKENBROKER_KEY is set, so token state is kept in JetStream, but it cannot be opened (does the NATS server run JetStream?): %w", err)
	}
	return st, nil
}

// startHTTP starts the HTTP gateway on HTTP_ADDR.
func (b *Broker) startHTTP() error {
	// No request timeout here: the Router answers every request by
	// REQUEST_TIMEOUT, a 504 at worst, on HTTP as on NATS.
	h := httpapi.NewHandler(httpapi.Options{
		Service: b.router, Metrics: b.metrics, Ready: b.Ready, Logger: b.log, Auditor: b.auditor(),
		// HTTP_ADDR's host is one of the gateway's own names when it is
		// a name; httpapi ignores a wildcard address.
		AllowedHosts: append([]string{b.cfg.HTTPAddr}, b.cfg.HTTPAllowedHosts...),
		// /events: the events this broker and its peers publish, from
		// the broker's own connection, and the current tokens from the
		// Router's cache.
		Events: &httpapi.EventsOptions{Conn: b.nc, Subjects: wire.Subjects{Prefix: b.cfg.SubjectPrefix}, Tokens: b.router},
	})
	b.http = httpapi.NewServer(b.cfg.HTTPAddr, h, b.cfg.RequestTimeout)
	addr, err := b.http.Start(b.cfg.HTTPTLSCert, b.cfg.HTTPTLSKey)
	if err != nil {
		b.http = nil
		return fmt.Errorf("broker: HTTP gateway on HTTP_ADDR %s: %w", b.cfg.HTTPAddr, err)
	}
	b.httpAddr = addr
	tls := b.cfg.HTTPTLSCert != ""
	b.log.Info("HTTP gateway listening", "addr", addr, "tls", tls)
	if !tls && !loopback(b.cfg.HTTPAddr) {
		b.log.Warn("the HTTP gateway listens beyond loopback without TLS: passwords of username/password callers cross the network in clear; set HTTP_TLS_CERT and HTTP_TLS_KEY", "addr", addr)
	}
	return nil
}

// loopback reports whether addr (host:port) only listens on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Ready reports whether the broker serves: NATS connected and the
// token.request endpoint subscribed. /readyz answers with it.
func (b *Broker) Ready() error {
	switch {
	case b.nc == nil || !b.nc.IsConnected():
		return errors.New("not connected to NATS")
	case b.svc == nil || b.svc.Stopped():
		return errors.New("token.request is not served")
	}
	return nil
}

// HTTPAddr is the address the HTTP gateway listens on; "" when disabled.
func (b *Broker) HTTPAddr() string { return b.httpAddr }

// Metrics is the broker's Prometheus metrics.
func (b *Broker) Metrics() *metrics.Metrics { return b.metrics }

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
	// The HTTP server waits for its handlers, which wait for the Router to
	// answer them, so both shut down together.
	httpDone := make(chan error, 1)
	if b.http != nil {
		go func() { httpDone <- b.http.Shutdown(ctx) }()
	} else {
		httpDone <- nil
	}
	if b.router != nil {
		errs = append(errs, b.router.Stop(ctx))
	}
	errs = append(errs, <-httpDone)
	if b.catalog != nil {
		b.catalog.Stop()
	}
	// Last of all that answers: the answers given while the others
	// stopped are in the trail too.
	errs = append(errs, b.stopAudit(ctx))
	b.close()
	return errors.Join(errs...)
}

func (b *Broker) close() {
	if b.http != nil && b.svc == nil {
		_ = b.http.Shutdown(context.Background()) // start-up failed after it
	}
	if b.audit != nil {
		// Start-up failed after it (Shutdown stopped it already): write
		// what it has while the connection is still open.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.audit.Stop(ctx)
		cancel()
	}
	if b.nc != nil {
		// Push out replies and events already handed to the connection,
		// unless it is down: then there is nowhere to push them.
		if b.nc.IsConnected() {
			_ = b.nc.FlushTimeout(5 * time.Second)
		}
		b.nc.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
	}
}
