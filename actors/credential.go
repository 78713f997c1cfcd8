package actors

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/google/uuid"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/store"
)

// Backoff bounds for background refreshes that fail for a passing reason.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
)

// credential is the actor of one credential. Only its Receive touches its
// fields, so it needs no lock; what others may read it publishes as a
// snapshot in its cell.
type credential struct {
	r    *Router
	c    *cell
	spec *Spec
	user bool // a username of the default profile, not a named credential

	engine *actor.Engine
	pid    *actor.PID

	tok       *oauth.Token       // the current token; nil before the first
	rt        tokenbroker.Secret // the newest refresh token; "" when none
	verifier  Verifier           // user credentials: the password that got tok
	refreshAt time.Time          // when the timer next refreshes tok
	rev       uint64             // the store revision of tok; 0 when not stored
	loading   bool               // reading the stored record; requests wait

	fetching *fetch      // the IdP call in flight, if any
	waiters  []*getToken // callers waiting for it
	failures int         // background refreshes failed in a row

	timer     *time.Timer
	wakeGen   uint64
	waitTimer *time.Timer // armed while callers wait: fires at the earliest deadline
	retired   bool
}

func newCredential(r *Router, c *cell, spec *Spec) actor.Producer {
	return func() actor.Receiver {
		return &credential{
			r:    r,
			c:    c,
			spec: spec,
			user: !c.key.named,
		}
	}
}

// Receive implements actor.Receiver.
func (a *credential) Receive(ctx *actor.Context) {
	switch m := ctx.Message().(type) {
	case actor.Started:
		a.engine, a.pid = ctx.Engine(), ctx.PID()
		if a.r.opts.Store != nil {
			a.load()
		}
	case loaded:
		a.loadedRecord(m)
	case actor.Stopped:
		a.stopTimer()
		if a.waitTimer != nil {
			a.waitTimer.Stop()
		}
		for _, g := range a.waiters {
			g.fail(&tokenbroker.Error{Code: tokenbroker.CodeUnavailable, OAuth: "temporarily_unavailable", Description: "the broker is shutting down"})
		}
		a.waiters = nil
	case *getToken:
		if a.retired {
			// Sent before this actor retired: a new incarnation serves it.
			a.r.dispatch(m)
			return
		}
		now := a.r.now()
		touch(&a.c.lastUsed, now)
		a.serve(m, now)
	case fetchDone:
		a.fetched(m)
	case wake:
		a.woke(m)
	case overdue:
		a.waitTimer = nil
		a.expireWaiters()
	}
}

// logger returns the logger with this credential's id. It is built per use
// rather than kept: logging is rare, and a logger with preformatted
// attributes costs every one of 100,000 idle credentials memory.
func (a *credential) logger() *slog.Logger { return a.r.log.With("credential_id", a.c.id) }

// matches reports whether g may be given this credential's token: always for
// a named credential, for a user only with the password that obtained it.
func (a *credential) matches(g *getToken) bool {
	return !a.user || (a.tok != nil && a.verifier.Equal(g.verifier))
}

// serve answers g from the token if it can, else queues it behind the IdP
// call in flight, starting one if there is none.
func (a *credential) serve(g *getToken, now time.Time) {
	if a.tok != nil && a.matches(g) {
		if !g.req.ForceRefresh && a.fresh(g, now) {
			a.reply(g, nil, tokenbroker.ActionExisting, now)
			return
		}
		if minTTL := time.Duration(g.req.MinTTL) * time.Second; minTTL >= a.tok.Lifetime {
			g.fail(tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, "invalid_request",
				"min_ttl %d is not less than the %d s lifetime the identity provider grants", g.req.MinTTL, int64(a.tok.Lifetime/time.Second)))
			return
		}
	}
	a.waiters = append(a.waiters, g)
	a.armWaitTimer()
	if a.fetching == nil && !a.loading {
		a.start(a.plan(g, now), g)
	}
}

// armWaitTimer makes sure someone answers the waiters by their deadlines,
// even if the IdP call they wait on outlives them (a caller queued behind
// several calls for other passwords, say).
func (a *credential) armWaitTimer() {
	if a.waitTimer != nil || len(a.waiters) == 0 {
		return
	}
	earliest := a.waiters[0].deadline
	for _, g := range a.waiters[1:] {
		if g.deadline.Before(earliest) {
			earliest = g.deadline
		}
	}
	engine, pid := a.engine, a.pid
	a.waitTimer = time.AfterFunc(time.Until(earliest), func() { engine.Send(pid, overdue{}) })
}

// idleWaitTimer stops the waiters' timer once nobody waits, so an idle
// credential holds no timer and gets no pointless message.
func (a *credential) idleWaitTimer() {
	if len(a.waiters) == 0 && a.waitTimer != nil {
		a.waitTimer.Stop()
		a.waitTimer = nil
	}
}

// expireWaiters answers 504 to every caller past its deadline.
func (a *credential) expireWaiters() {
	now := time.Now()
	kept := a.waiters[:0]
	for _, g := range a.waiters {
		if now.Before(g.deadline) {
			kept = append(kept, g)
			continue
		}
		g.fail(&tokenbroker.Error{Code: tokenbroker.CodeTimeout, OAuth: "temporarily_unavailable",
			Description: "the broker could not get a token in time"})
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
	a.armWaitTimer()
}

// fresh reports whether the token may answer g without a refresh: more than
// the refresh threshold, and more than g's min_ttl, is left.
func (a *credential) fresh(g *getToken, now time.Time) bool {
	left := a.tok.Expiry.Sub(now)
	return left > a.spec.threshold(a.tok.Lifetime) && left > time.Duration(g.req.MinTTL)*time.Second
}

// plan decides how to get a token for g, and what g will be told.
func (a *credential) plan(g *getToken, now time.Time) *fetch {
	f := &fetch{grant: a.spec.Grant, verifier: g.verifier, action: tokenbroker.ActionNew}
	if a.tok != nil && a.matches(g) {
		f.action = tokenbroker.ActionRefreshed
		if !now.Before(a.tok.Expiry) {
			f.action = tokenbroker.ActionReplacedExpired
		}
		if a.rt != "" {
			f.grant = grantRefresh
		}
	}
	return f
}

// start runs f's IdP call in a goroutine that reports back as a fetchDone.
// For a user credential's password grant the username and password are
// those of g, the caller that needs it; the password lives in that
// goroutine only for the call. g is nil for a background refresh.
func (a *credential) start(f *fetch, g *getToken) {
	a.fetching = f
	j := &fetchJob{
		f: f, id: a.c.id, user: a.user, spec: a.spec, client: a.r.opts.Client, ctx: a.r.ctx,
		username: a.spec.Username, password: a.spec.Password, rt: a.rt, verifier: a.verifier, rev: a.rev,
		store: a.r.opts.Store, owner: a.r.opts.Owner, log: a.logger(), now: a.r.now,
	}
	if a.tok != nil {
		j.expiry = a.tok.Expiry
	}
	if a.user && g != nil {
		j.username, j.password = g.req.Username, g.req.Password
	}
	a.logger().Debug("getting a token", "grant", string(f.grant), "background", f.background)
	engine, pid := a.engine, a.pid
	go func() { engine.Send(pid, j.run()) }()
}

// fetched takes the result of the IdP call and answers everyone waiting on it.
func (a *credential) fetched(d fetchDone) {
	if a.fetching != d.f {
		return
	}
	a.fetching = nil
	f := d.f
	now := a.r.now()
	waiters := a.waiters
	a.waiters = nil

	if d.rec != nil {
		// Another broker got it; it published the event.
		a.adopt(d.rec, now)
		a.logger().Info("token taken from the store", "action", f.action, "expires_in", int64(d.rec.Expiry.Sub(now)/time.Second), "took", d.after)
	}
	if d.err == nil && d.rec == nil {
		a.c.lastErr.Store(nil)
		if f.action != tokenbroker.ActionNew {
			a.r.opts.Metrics.Refresh(metrics.OutcomeOK)
		}
		a.rev = d.rev
		a.store(d.tok, f, now)
		a.logger().Info("token acquired", "grant", string(f.grant), "action", f.action, "expires_in", int64(d.tok.Expiry.Sub(now)/time.Second), "took", d.after)
	}
	if d.err == nil {
		var again []*getToken
		cr := tokenbroker.NewCachedReply(a.c.id, a.tok.AccessToken, a.tok.TokenType, a.tok.Expiry, f.action)
		for _, g := range waiters {
			if !a.matches(g) {
				again = append(again, g)
				continue
			}
			if minTTL := time.Duration(g.req.MinTTL) * time.Second; minTTL > 0 && a.tok.Expiry.Sub(now) <= minTTL {
				g.fail(tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, "invalid_request",
					"min_ttl %d is not less than the %d s lifetime the identity provider grants", g.req.MinTTL, int64(a.tok.Lifetime/time.Second)))
				continue
			}
			a.reply(g, cr, f.action, now)
		}
		a.requeue(again, now)
		a.idleWaitTimer()
		a.schedule(now)
		return
	}

	e := classify(d.err)
	permanent := e.Code == tokenbroker.CodeRejected
	a.c.lastErr.Store(&failure{err: e.OAuth + ": " + firstLine(e.Description), at: now})
	if f.action != tokenbroker.ActionNew {
		a.r.opts.Metrics.Refresh(metrics.OutcomeFailed)
	}
	if f.grant == grantRefresh && permanent {
		// The refresh token is revoked, expired or the password changed: drop
		// it and let the credential's own grant take over, now if anyone waits.
		a.rt = ""
		a.failed(e, now)
		a.logger().Warn("refresh token rejected; falling back to the credential's grant", "error", e.OAuth)
		a.requeue(waiters, now)
		if a.fetching == nil && !a.user && f.background {
			a.start(&fetch{grant: a.spec.Grant, action: tokenbroker.ActionRefreshed, background: true}, nil)
		}
		a.schedule(now)
		return
	}
	a.logger().Warn("identity provider call failed", "grant", string(f.grant), "code", e.Code, "error", e.OAuth, "took", d.after)
	if permanent && !a.user {
		a.failed(e, now)
	}
	if permanent && a.user && a.tok != nil && f.verifier.Equal(a.verifier) {
		// The password that got the token is no longer accepted: stop
		// handing out what it obtained.
		a.tok, a.rt = nil, ""
		a.r.cells.publish(a.c, nil)
		if st := a.r.opts.Store; st != nil {
			go func(ctx context.Context, id string) { _ = st.Delete(ctx, id) }(a.r.ctx, a.c.id)
		}
	}
	var again []*getToken
	for _, g := range waiters {
		switch {
		case a.tok != nil && a.matches(g) && !permanent && !g.req.ForceRefresh && a.valid(g, now):
			// The IdP is down or throttling: the token still works, serve it.
			a.reply(g, nil, tokenbroker.ActionExisting, now)
		case !a.user || g.verifier.Equal(f.verifier):
			g.fail(e)
		default:
			again = append(again, g)
		}
	}
	if f.background && !permanent {
		a.failures++
		a.refreshAt = now.Add(backoff(a.failures))
	}
	a.requeue(again, now)
	a.idleWaitTimer()
	a.schedule(now)
}

// valid reports whether the token outlives g's min_ttl, threshold or not.
func (a *credential) valid(g *getToken, now time.Time) bool {
	left := a.tok.Expiry.Sub(now)
	return left > 0 && left > time.Duration(g.req.MinTTL)*time.Second
}

// requeue serves callers that the last IdP call could not answer (another
// password than the one it used); the first of them starts the next call.
func (a *credential) requeue(gs []*getToken, now time.Time) {
	for _, g := range gs {
		a.serve(g, now)
	}
}

// store makes tok, just obtained by f, the credential's token and tells
// everyone: the snapshot for cache hits, the refreshed event for consumers,
// the timer for the next refresh.
func (a *credential) store(tok *oauth.Token, f *fetch, now time.Time) {
	switch {
	case tok.RefreshToken != "":
		a.rt = tokenbroker.Secret(tok.RefreshToken) // rotation: keep the newest
	case f.grant != grantRefresh:
		a.rt = "" // a new grant without one: the old one belongs to an older session
	}
	tok.RefreshToken = ""
	if a.user && f.grant != grantRefresh {
		a.verifier = f.verifier
	}
	a.install(tok, now)
	a.r.opts.Publisher.PublishRefreshed(tokenbroker.RefreshedEvent{
		EventID:      uuid.NewString(),
		CredentialID: a.c.id,
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		ExpiresOn:    unixString(tok.Expiry),
		ExpiresIn:    int64(tok.Expiry.Sub(now) / time.Second),
		Action:       f.action,
		RefreshedAt:  now.UTC(),
	})
}

// adopt makes a stored record the credential's token: one this broker kept
// before a restart, or one another broker obtained (and published).
func (a *credential) adopt(rec *store.Record, now time.Time) {
	tok := tokenOf(rec)
	a.rt = tokenbroker.Secret(tok.RefreshToken)
	tok.RefreshToken = ""
	if a.user {
		copy(a.verifier[:], rec.Verifier)
	}
	a.rev = rec.Revision
	a.install(tok, now)
}

// install sets the token, its refresh time and the snapshot.
func (a *credential) install(tok *oauth.Token, now time.Time) {
	thr := a.spec.threshold(tok.Lifetime)
	s := &snapshot{
		key:        a.c.key,
		expiry:     tok.Expiry,
		freshUntil: tok.Expiry.Add(-thr),
		verifier:   a.verifier,
		user:       a.user,
	}
	s.reply.Init(a.c.id, tok.AccessToken, tok.TokenType, tok.Expiry, tokenbroker.ActionExisting)
	tok.AccessToken = s.reply.AccessToken(tok.AccessToken) // one copy of the token per credential, not two
	a.tok = tok
	a.failures = 0
	a.refreshAt = refreshTime(tok.Expiry, now, thr)
	a.r.cells.publish(a.c, s)
}

// load reads the credential's stored record when the actor starts, so a
// token kept before a restart, or obtained by another broker, is served
// without an IdP call. Requests wait for it.
func (a *credential) load() {
	a.loading = true
	st, id, ctx, engine, pid := a.r.opts.Store, a.c.id, a.r.ctx, a.engine, a.pid
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		rec, err := st.Get(lctx, id)
		engine.Send(pid, loaded{rec: rec, err: err})
	}()
}

func (a *credential) loadedRecord(m loaded) {
	a.loading = false
	now := a.r.now()
	switch {
	case m.err == nil && m.rec.AccessToken != "" && now.Before(m.rec.Expiry):
		a.adopt(m.rec, now)
		a.logger().Info("token restored from the store", "expires_in", int64(m.rec.Expiry.Sub(now)/time.Second))
	case m.err != nil && !errors.Is(m.err, store.ErrNotFound):
		a.logger().Warn("could not read the stored token", "err", m.err)
	}
	waiters := a.waiters
	a.waiters = nil
	a.requeue(waiters, now)
	a.schedule(now)
}

// refreshTime picks when the timer refreshes a token that expires at expiry
// and stops being served from cache thr before that: at random within a
// spread that ends just before the threshold and is as long as the
// threshold itself, or half the time left before it if that is shorter.
// Early enough that callers never wait on the IdP; spread so that tokens
// issued together (a restart, a deployment) reach the IdP over a whole
// threshold's time, not in one burst.
func refreshTime(expiry, now time.Time, thr time.Duration) time.Time {
	spread := min(thr, (expiry.Sub(now)-thr)/2)
	if spread <= 0 {
		return expiry.Add(-thr)
	}
	lead := spread/10 + time.Duration(rand.Int64N(int64(spread-spread/10)+1))
	return expiry.Add(-thr - lead)
}

// failed publishes token.failed for a refresh that failed for good.
func (a *credential) failed(e *tokenbroker.Error, now time.Time) {
	a.r.opts.Publisher.PublishFailed(tokenbroker.FailedEvent{
		EventID:      uuid.NewString(),
		CredentialID: a.c.id,
		Error:        e.OAuth,
		Description:  e.Description,
		At:           now.UTC(),
	})
}

// reply answers g with the current token: from cr, encoded once per token
// and action rather than once per caller, so a cold herd of a thousand
// callers shares one encoding; nil cr is the snapshot's existing-token reply.
func (a *credential) reply(g *getToken, cr *tokenbroker.CachedReply, action string, now time.Time) {
	if cr == nil {
		cr = &a.c.snap.Load().reply
	}
	g.respond(action, cr.Body(now))
}

// warm reports whether the timer should keep the token refreshed: always
// for a KeepWarm credential, while it is used for the others.
func (a *credential) warm(now time.Time) bool {
	if !a.user && a.spec.KeepWarm {
		return true
	}
	return !a.idle(now)
}

func (a *credential) idle(now time.Time) bool {
	return now.Sub(a.c.lastUse()) >= a.r.opts.IdleTimeout
}

// canRefresh reports whether the credential can get a new token with no
// caller: with a refresh token, or with its own secret or password. A user
// credential without a refresh token needs its caller's password.
func (a *credential) canRefresh() bool { return a.rt != "" || !a.user }

// schedule sets the one timer to the next thing to do: the proactive
// refresh, or leaving memory when idle.
func (a *credential) schedule(now time.Time) {
	var next time.Time
	if a.tok != nil && a.fetching == nil && a.canRefresh() && a.warm(now) {
		next = a.refreshAt
		a.c.nextRefresh.Store(next.UnixNano())
	} else {
		a.c.nextRefresh.Store(0)
	}
	if a.user || !a.spec.KeepWarm {
		idleAt := a.c.lastUse().Add(a.r.opts.IdleTimeout)
		if next.IsZero() || idleAt.Before(next) {
			next = idleAt
		}
	}
	a.stopTimer()
	if next.IsZero() {
		return
	}
	a.wakeGen++
	gen, engine, pid := a.wakeGen, a.engine, a.pid
	a.timer = time.AfterFunc(max(next.Sub(now), 0), func() { engine.Send(pid, wake{gen: gen}) })
}

func (a *credential) stopTimer() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

// woke runs the timer's errand: leave memory when idle, else refresh the
// token ahead of its threshold.
func (a *credential) woke(w wake) {
	if w.gen != a.wakeGen || a.retired {
		return
	}
	now := a.r.now()
	if (a.user || !a.spec.KeepWarm) && a.idle(now) && a.fetching == nil && !a.loading && len(a.waiters) == 0 {
		a.retire()
		return
	}
	if a.tok != nil && a.fetching == nil && a.canRefresh() && a.warm(now) && !now.Before(a.refreshAt) {
		f := &fetch{grant: a.spec.Grant, verifier: a.verifier, action: tokenbroker.ActionRefreshed, background: true}
		if a.rt != "" {
			f.grant = grantRefresh
		}
		if !now.Before(a.tok.Expiry) {
			f.action = tokenbroker.ActionReplacedExpired
		}
		a.start(f, nil)
	}
	a.schedule(now)
}

// retire takes the credential out of memory: out of the Router first, so no
// new request reaches it, then the actor stops.
func (a *credential) retire() {
	a.retired = true
	a.stopTimer()
	a.r.retire(a.c)
	a.logger().Debug("credential idle, leaving memory")
	a.engine.Poison(a.pid)
}

// backoff returns the wait before background retry n (1-based): exponential
// with full jitter in its upper half, so that many failing credentials do
// not retry in step.
func backoff(n int) time.Duration {
	d := minBackoff << min(n-1, 16)
	if d > maxBackoff || d <= 0 {
		d = maxBackoff
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// classify maps an IdP call's error to what a caller is told.
func classify(err error) *tokenbroker.Error {
	var re *oauth.RetrieveError
	var rs *oauth.ResponseError
	var te *oauth.TransportError
	var open interface{ RetryAfterSeconds() int }
	switch {
	case errors.As(err, &open):
		// A circuit breaker in the TokenClient fails fast while the IdP is
		// known to be down.
		return &tokenbroker.Error{Code: tokenbroker.CodeUnavailable, OAuth: "temporarily_unavailable",
			Description: "the identity provider is failing; not asking it again yet", RetryAfter: open.RetryAfterSeconds()}
	case errors.As(err, &re) && re.StatusCode >= 200 && re.StatusCode < 300:
		// A success status with an error body: the IdP, or a gateway in
		// front of it, contradicts itself. Nothing is cached from it.
		return tokenbroker.Errorf(tokenbroker.CodeBadGateway, "server_error",
			"the identity provider answered %d with an error body: %s: %s", re.StatusCode, re.ErrorCode, re.Description)
	case errors.As(err, &re):
		e := &tokenbroker.Error{Code: tokenbroker.CodeRejected, OAuth: re.ErrorCode, Description: re.Description, RetryAfter: int(re.RetryAfter / time.Second)}
		if re.Temporary() {
			e.Code = tokenbroker.CodeUnavailable
			if e.OAuth == "" {
				e.OAuth = "temporarily_unavailable"
			}
			if e.Description == "" {
				e.Description = "the identity provider is unavailable or throttling"
			}
		}
		if e.OAuth == "" {
			e.OAuth = "invalid_request"
		}
		return e
	case errors.As(err, &rs):
		return tokenbroker.Errorf(tokenbroker.CodeBadGateway, "server_error", "the identity provider answered with something unusable: %s", rs.Reason)
	case errors.As(err, &te):
		if te.Timeout() {
			return tokenbroker.Errorf(tokenbroker.CodeUnavailable, "temporarily_unavailable", "the identity provider did not answer in time")
		}
		return tokenbroker.Errorf(tokenbroker.CodeUnavailable, "temporarily_unavailable", "the identity provider is unreachable")
	default:
		return tokenbroker.Errorf(tokenbroker.CodeUnavailable, "temporarily_unavailable", "the identity provider could not be asked")
	}
}

func unixString(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// firstLine cuts an IdP description at its first line: Azure AD appends
// trace and correlation ids that status output does not need.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
