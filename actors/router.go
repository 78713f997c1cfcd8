package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anthdm/hollywood/actor"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/store"
)

// kind is the hollywood kind of credential actors.
const kind = "credential"

// inboxSize is each actor's initial inbox. hollywood preallocates it (the
// default 1024 slots cost about 28 KB an actor) and doubles it on demand, so
// a tiny one keeps 100,000 idle credentials cheap without limiting bursts.
const inboxSize = 2

// TokenClient calls token endpoints: *oauth.Client, or a wrapper that adds
// retries and limits. Implementations must be safe for concurrent use; the
// actors call them from goroutines of their own, never from Receive.
type TokenClient interface {
	Password(ctx context.Context, ep oauth.Endpoint, username string, password tokenbroker.Secret) (*oauth.Token, error)
	ClientCredentials(ctx context.Context, ep oauth.Endpoint) (*oauth.Token, error)
	Refresh(ctx context.Context, ep oauth.Endpoint, refreshToken tokenbroker.Secret) (*oauth.Token, error)
	ClientAssertion(ctx context.Context, ep oauth.Endpoint, s *oauth.AssertionSigner) (*oauth.Token, error)
	// FederatedAssertion authenticates with the JWT in assertionFile,
	// read for this call (workload identity federation).
	FederatedAssertion(ctx context.Context, ep oauth.Endpoint, assertionFile string) (*oauth.Token, error)
}

var _ TokenClient = (*oauth.Client)(nil)

// Options configures a Router.
type Options struct {
	Engine    *actor.Engine
	Client    TokenClient
	Publisher tokenbroker.Publisher // nil: events are dropped
	Keyring   *Keyring
	// Default is the profile of username/password requests; nil refuses them.
	Default *Spec
	// Named are the credentials callers ask for by name.
	Named []Spec
	// IdleTimeout is how long an unused credential without KeepWarm stays in
	// memory. Default 30 minutes.
	IdleTimeout time.Duration
	// RequestTimeout bounds how long a request waits on its credential's
	// actor; past it the caller gets a 504. Default 30 seconds.
	RequestTimeout time.Duration
	// Device runs the device authorization grant of GrantDeviceCode
	// credentials (Login); nil uses Client when it is a DeviceClient.
	Device DeviceClient
	// Store keeps token state across restarts and shares it, with a lease
	// per credential, among brokers; nil keeps it in memory only.
	Store *store.Store
	// Owner names this broker in leases.
	Owner string
	// Auditor gets a record of every answer the Router gives, cache hits
	// included, timed on Now; nil records nothing, and costs nothing.
	Auditor tokenbroker.Auditor
	// MaxRefusals is how many sign-ins of one username the IdP may refuse
	// within RefusalWindow before further ones that need the IdP get a 429
	// without asking it. Defaults DefaultMaxRefusals and
	// DefaultRefusalWindow.
	MaxRefusals   int
	RefusalWindow time.Duration
	// Metrics counts refreshes; nil counts nothing. (IdP calls are counted
	// where they are made, by the TokenClient.)
	Metrics *metrics.Metrics
	// Logger receives the actors' logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Router finds the actor of each request's credential, spawning it on first
// use, and answers cache hits itself from the actor's published snapshot. It
// implements tokenbroker.Service and is safe for concurrent use.
type Router struct {
	opts Options
	deps deps // what its actors share; also the Router's logger and clock

	named     atomic.Pointer[namedSet]
	namedMu   sync.Mutex // serializes changes to named
	nextNamed int        // the index of the next new name's cell key
	logins    logins     // device code enrolments; see device.go

	cells cellTable
	count atomic.Int64
	seq   atomic.Uint64

	events  *actor.PID         // receives the engine's dead letters
	cancel  context.CancelFunc // ends deps.ctx, at Stop
	stopped atomic.Bool
	pending pending
}

var (
	_ tokenbroker.AppendService = (*Router)(nil)
	_ host                      = (*Router)(nil)
)

// namedCredential is a configured credential with its cell key, built once
// so that a cache hit does not build it per request.
type namedCredential struct {
	spec *Spec
	key  cellKey
}

// NewRouter returns a Router over opts. Start nothing: actors are spawned on
// first use.
func NewRouter(opts Options) (*Router, error) {
	if opts.Engine == nil || opts.Client == nil || opts.Keyring == nil {
		return nil, errors.New("actors: Engine, Client and Keyring are required")
	}
	if opts.Publisher == nil {
		opts.Publisher = tokenbroker.NopPublisher{}
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.Device == nil {
		opts.Device, _ = opts.Client.(DeviceClient)
	}
	r := &Router{opts: opts}
	r.deps = deps{
		host: r, client: opts.Client, store: opts.Store, publisher: opts.Publisher, metrics: opts.Metrics,
		owner: opts.Owner, log: opts.Logger, idle: opts.IdleTimeout, now: opts.Now,
		refusals: newRefusals(opts.MaxRefusals, opts.RefusalWindow), audit: opts.Auditor,
	}
	if r.deps.log == nil {
		r.deps.log = slog.New(slog.DiscardHandler)
	}
	if r.deps.now == nil {
		r.deps.now = time.Now
	}
	set := &namedSet{byName: map[string]*namedCredential{}}
	for i := range opts.Named {
		s := &opts.Named[i]
		if _, dup := set.byName[s.Name]; dup {
			return nil, fmt.Errorf("actors: duplicate credential %q", s.Name)
		}
		set.byName[s.Name] = &namedCredential{spec: s, key: namedKey(i)}
		set.order = append(set.order, s.Name)
	}
	r.named.Store(set)
	r.nextNamed = len(opts.Named)
	r.deps.ctx, r.cancel = context.WithCancel(context.Background())
	// Watch the engine for requests sent to an actor that is gone (it
	// crashed past its restarts, or was stopped behind the Router's back):
	// without this, their callers would wait for nothing until they time
	// out.
	r.events = opts.Engine.SpawnFunc(r.onEngineEvent, "credential-supervisor")
	opts.Engine.Subscribe(r.events)
	return r, nil
}

// onEngineEvent takes a dead credential's cell out of the Router and gives
// the requests that reached it to a new incarnation.
func (r *Router) onEngineEvent(ctx *actor.Context) {
	switch e := ctx.Message().(type) {
	case actor.DeadLetterEvent:
		if g, ok := e.Message.(*getToken); ok {
			r.retireDead(e.Target)
			r.redispatch(g)
		}
	case actor.ActorMaxRestartsExceededEvent:
		r.retireDead(e.PID)
	}
}

// retireDead retires the cell whose actor is pid, if it still is.
func (r *Router) retireDead(pid *actor.PID) {
	if pid == nil {
		return
	}
	for _, c := range r.cells.all() {
		if c.pid.Equals(pid) {
			r.deps.log.Warn("credential actor is gone; a new one takes over", "credential_id", c.id)
			r.retire(c)
			return
		}
	}
}

// target is what a request resolves to: its credential's cell key and
// spec, and for a username the verifier of the password it brings.
type target struct {
	key  cellKey
	spec *Spec
	v    Verifier
}

// id returns the credential_id. A user's is built here, off the cache-hit
// path, which needs only the key.
func (t *target) id() string {
	if t.key.named {
		return t.spec.Name
	}
	return t.key.sum.id()
}

// resolve finds a request's credential, or the error for a caller.
func (r *Router) resolve(req *tokenbroker.Request, t *target) *tokenbroker.Error {
	if req.IsPassword() {
		if t.spec = r.opts.Default; t.spec == nil {
			return tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
				"username/password requests need the default profile, which is not configured (TOKEN_ENDPOINT, CLIENTID)")
		}
		t.key = cellKey{sum: r.opts.Keyring.userKey(t.spec.Name, req.Username)}
		t.v = r.opts.Keyring.userVerifier(t.key.sum, req.Password)
		return nil
	}
	n := r.lookup(req.Credential)
	if n == nil {
		return tokenbroker.Errorf(tokenbroker.CodeNotFound, tokenbroker.OAuthUnknownCredential, "no credential named %s", quote(req.Credential))
	}
	t.spec, t.key = n.spec, n.key
	return nil
}

// ServeAppend implements tokenbroker.AppendService: it resolves req once,
// answers a cache hit into dst, and hands anything else, resolved, to the
// credential's actor.
func (r *Router) ServeAppend(dst []byte, req *tokenbroker.Request, rep tokenbroker.Replier) ([]byte, bool) {
	if s, now := r.serve(req, rep); s != nil {
		return s.reply.AppendTo(dst, tokenbroker.ActionExisting, now), true
	}
	return dst, false
}

// Serve implements tokenbroker.Service. A cache hit is answered before
// Serve returns; anything else is handed to the credential's actor.
func (r *Router) Serve(req tokenbroker.Request, rep tokenbroker.Replier) {
	if s, now := r.serve(&req, rep); s != nil {
		rep.Respond(tokenbroker.ActionExisting, s.reply.Body(tokenbroker.ActionExisting, now))
	}
}

// serve resolves req and returns the snapshot that answers it from cache,
// as seen at now. Otherwise it returns nil, having answered an invalid
// request through rep or handed req to its credential's actor, which
// answers through rep by the request timeout.
func (r *Router) serve(req *tokenbroker.Request, rep tokenbroker.Replier) (*snapshot, time.Time) {
	if r.stopped.Load() {
		r.refuse(req, "", rep, shuttingDown())
		return nil, time.Time{}
	}
	var t target
	if err := r.resolve(req, &t); err != nil {
		r.refuse(req, "", rep, err)
		return nil, time.Time{}
	}
	if req.Claims != "" {
		if err := oauth.ValidClaims(req.Claims); err != nil {
			r.refuse(req, t.id(), rep, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest, "%s", err))
			return nil, time.Time{}
		}
	}
	now := r.deps.now()
	s := r.cells.snapshot(t.key)
	if s != nil && s.serves(req, &t.v, now) {
		stamp(&s.lastHit, now)
		if a := r.deps.audit; a != nil { // nil when off: a hit then costs no record
			a.Audit(tokenbroker.AuditRecord{Time: now, CredentialID: s.id, Caller: req.Caller,
				Transport: req.Transport, Outcome: "ok", Source: tokenbroker.SourceCache, Action: tokenbroker.ActionExisting})
		}
		return s, now
	}
	if !t.key.named && (s == nil || !s.owns(&t.v)) {
		// A password that would need the IdP, for a username it refused
		// too often: answered here, so that a flood of guesses neither
		// reaches the IdP nor brings the username's actor back.
		if err := r.deps.refusals.check(t.key.sum, now); err != nil {
			r.refuse(req, t.id(), rep, err)
			return nil, now
		}
	}
	r.pending.add()
	// The deadline is on the real clock even when tests move Now: it
	// bounds a caller's wait, not a token's life.
	r.redispatch(&getToken{req: *req, verifier: t.v, rep: rep, pending: &r.pending, audit: r.deps.audit,
		key: t.key, id: t.id(), spec: t.spec, deadline: time.Now().Add(r.opts.RequestTimeout)})
	return nil, now
}

// refuse answers req, whose credential is id ("" when it resolved to none),
// with err, and records it.
func (r *Router) refuse(req *tokenbroker.Request, id string, rep tokenbroker.Replier, err *tokenbroker.Error) {
	if a := r.deps.audit; a != nil {
		a.Audit(tokenbroker.AuditRecord{Time: time.Now(), CredentialID: id, Caller: req.Caller,
			Transport: req.Transport, Outcome: strconv.Itoa(err.Code)})
	}
	rep.Fail(err)
}

// redispatch delivers g to its credential's actor, spawning the actor when
// there is none or the one found is leaving memory.
func (r *Router) redispatch(g *getToken) {
	for {
		if g.key.named {
			// The credential may have changed or gone since the request
			// was resolved: a new actor gets the current spec, and a
			// removed credential's callers a 404.
			n := r.lookup(g.id)
			if n == nil || n.key != g.key {
				g.fail(removedCredential(g.id))
				return
			}
			g.spec = n.spec
		}
		c := r.cellFor(g.key, g.id, g.spec)
		c.mu.RLock()
		if !c.retired {
			r.opts.Engine.Send(c.pid, g)
			c.mu.RUnlock()
			return
		}
		c.mu.RUnlock()
	}
}

// publish implements host.
func (r *Router) publish(c *cell, s *snapshot) { r.cells.publish(c, s) }

// cellFor returns the cell of key, spawning its actor when there is none.
// The table's lock makes sure a credential gets one actor.
func (r *Router) cellFor(key cellKey, id string, spec *Spec) *cell {
	if c, ok := r.cells.load(key); ok {
		return c
	}
	c, stored := r.cells.loadOrStore(key, func() *cell {
		c := &cell{key: key, id: id}
		c.lastSeen.Store(r.deps.now().UnixNano())
		// A retiring actor of the same credential may still be registered;
		// a fresh incarnation number keeps the new PID distinct from it.
		c.pid = r.opts.Engine.Spawn(newCredential(&r.deps, c, spec), kind,
			actor.WithID(id+"."+strconv.FormatUint(r.seq.Add(1), 10)),
			actor.WithInboxSize(inboxSize))
		return c
	})
	if stored {
		r.count.Add(1)
	}
	return c
}

// Restore brings the kept-warm named credentials that have a stored token
// back into memory at start-up, so their refresh timers resume without
// waiting for a request. Username credentials come back on their next use.
func (r *Router) Restore(ctx context.Context) error {
	if r.opts.Store == nil {
		return nil
	}
	ids, err := r.opts.Store.Records(ctx)
	if err != nil {
		return fmt.Errorf("actors: list stored tokens: %w", err)
	}
	for _, id := range ids {
		if n := r.lookup(id); n != nil && n.spec.KeepWarm {
			r.cellFor(n.key, id, n.spec)
		}
	}
	return nil
}

// retire implements host: it removes c from the Router, so that no message
// reaches its actor any more. The actor calls it before it stops.
func (r *Router) retire(c *cell) {
	c.mu.Lock()
	if !c.retired {
		c.retired = true
		if r.cells.compareAndDelete(c.key, c) {
			r.count.Add(-1)
		}
	}
	c.mu.Unlock()
}

// Credentials returns how many credentials are in memory.
func (r *Router) Credentials() int { return int(r.count.Load()) }

// Status is what a broker tells `tokenbroker status` and `nats micro stats`.
type Status struct {
	Credentials int                `json:"credentials"` // in memory, named and users
	Users       int                `json:"users"`       // username/password credentials in memory
	Named       []CredentialStatus `json:"named"`       // every configured named credential
}

// CredentialStatus describes one named credential. It never holds a token.
type CredentialStatus struct {
	CredentialID string     `json:"credential_id"`
	Warm         bool       `json:"warm"` // holds a token that has not expired
	ExpiresOn    *time.Time `json:"expires_on,omitempty"`
	NextRefresh  *time.Time `json:"next_refresh,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
}

// Status reports the credentials in memory and the state of every named
// credential, in the order they were added (the configuration's, then
// later puts).
func (r *Router) Status() Status {
	now := r.deps.now()
	st := Status{Credentials: r.Credentials(), Users: r.Credentials(), Named: []CredentialStatus{}}
	set := r.named.Load()
	for _, name := range set.order {
		cs := CredentialStatus{CredentialID: name}
		if c, ok := r.cells.load(set.byName[name].key); ok {
			st.Users--
			if s := c.snap.Load(); s != nil {
				exp := s.tok.Expiry
				cs.ExpiresOn, cs.Warm = &exp, now.Before(exp)
			}
			if n := c.nextRefresh.Load(); n != 0 {
				t := time.Unix(0, n)
				cs.NextRefresh = &t
			}
			if f := c.lastErr.Load(); f != nil {
				at := f.at
				cs.LastError, cs.LastErrorAt = f.err, &at
			}
		}
		st.Named = append(st.Named, cs)
	}
	return st
}

// Stop refuses new requests, waits until every request in flight is
// answered or ctx is done, then stops every actor and waits for them.
func (r *Router) Stop(ctx context.Context) error {
	r.stopped.Store(true)
	waitErr := r.pending.wait(ctx)
	r.cancel()
	var pids []*actor.PID
	for _, c := range r.cells.all() {
		r.retire(c)
		pids = append(pids, c.pid)
	}
	for _, pid := range pids {
		select {
		case <-r.opts.Engine.Poison(pid).Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.opts.Engine.Unsubscribe(r.events)
	r.opts.Engine.Poison(r.events)
	return waitErr
}

// pending counts requests handed to actors and not yet answered, so that
// Stop can wait for them.
type pending struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0 while someone waits
}

func (p *pending) add() {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
}

func (p *pending) done() {
	p.mu.Lock()
	p.n--
	if p.n == 0 && p.zero != nil {
		close(p.zero)
		p.zero = nil
	}
	p.mu.Unlock()
}

func (p *pending) wait(ctx context.Context) error {
	p.mu.Lock()
	if p.n == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.zero == nil {
		p.zero = make(chan struct{})
	}
	zero := p.zero
	p.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("actors: requests still in flight: %w", ctx.Err())
	}
}

// quote quotes s for an error message, cut short so a huge name does not
// make a huge error.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}
