package actors

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/google/uuid"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/policy"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// host is the Router as a credential actor sees it: the three things an
// actor asks of whoever runs it.
type host interface {
	// publish makes s what cache hits on c read; nil withdraws the token.
	publish(c *cell, s *snapshot)
	// retire takes c out of the directory, so that no new request reaches
	// its actor.
	retire(c *cell)
	// redispatch hands g, which reached an actor after it retired, to the
	// credential's current actor.
	redispatch(g *getToken)
}

// deps are what every credential actor of a Router uses and none owns.
type deps struct {
	host      host
	client    TokenClient
	store     *store.Store // nil: memory only
	publisher tokenbroker.Publisher
	metrics   *metrics.Metrics
	owner     string // this broker, in leases
	log       *slog.Logger
	audit     tokenbroker.Auditor
	idle      time.Duration   // how long an unused credential stays in memory
	refusals  *refusals       // refused sign-ins per username
	ctx       context.Context // ended by the Router's Stop: aborts IdP calls in flight
	now       func() time.Time
}

// credential is the actor of one credential. Only its Receive touches its
// fields, so it needs no lock; what others may read it publishes as a
// snapshot in its cell.
type credential struct {
	d      *deps
	c      *cell
	spec   *Spec
	policy policy.Policy
	user   bool // a username of the default profile, not a named credential

	engine *actor.Engine
	pid    *actor.PID

	cur       *snapshot          // the current token, as published; nil before the first
	rt        tokenbroker.Secret // the newest refresh token; "" when none
	refreshAt time.Time          // when the timer next refreshes the token
	rev       uint64             // the store revision of the token; 0 when not stored
	loading   bool               // reading the stored record; requests wait

	inflight  *job               // the IdP call in flight, if any
	cancelJob context.CancelFunc // ends inflight's context
	jobs      uint64             // jobs started: the seq of the newest
	// gen counts the declarations whose token was dropped (respec with
	// reset): a job started under an older one got a token for a
	// question no longer asked.
	gen      uint64
	waiters  []*getToken // callers waiting for it
	failures int         // background refreshes failed in a row

	timer     *time.Timer
	wakeGen   uint64
	waitTimer *time.Timer // armed while callers wait: fires at the earliest deadline
	retired   bool
}

func newCredential(d *deps, c *cell, spec *Spec) actor.Producer {
	return func() actor.Receiver {
		return &credential{d: d, c: c, spec: spec, policy: spec.Policy(), user: !c.key.named}
	}
}

// Receive implements actor.Receiver.
func (a *credential) Receive(ctx *actor.Context) {
	switch m := ctx.Message().(type) {
	case actor.Started:
		a.engine, a.pid = ctx.Engine(), ctx.PID()
		if a.d.store != nil {
			a.load()
		}
	case actor.Stopped:
		a.stopped()
	case loaded:
		a.restored(m)
	case *getToken:
		if a.retired {
			// Sent before this actor retired: a new incarnation serves it.
			a.d.host.redispatch(m)
			return
		}
		now := a.d.now()
		stamp(&a.c.lastSeen, now)
		a.serve(m, now)
	case jobDone:
		a.finished(m)
	case wake:
		a.woke(m)
	case overdue:
		a.waitTimer = nil
		a.expireWaiters()
	case respec:
		a.respec(m)
	case removed:
		a.removed()
	case loggedIn:
		a.loggedIn(m)
	}
}

// respec takes a named credential's new declaration. The token is kept
// when it still answers the same question, and is then judged by the new
// declaration's policy; otherwise it is dropped, and a job in flight for
// the old declaration will not be taken.
func (a *credential) respec(m respec) {
	if a.retired {
		return
	}
	now := a.d.now()
	a.spec, a.policy = m.spec, m.spec.Policy()
	switch {
	case m.reset:
		a.gen++
		if a.cur != nil || a.rt != "" {
			a.withdraw()
		}
		a.logger().Info("credential changed: the token held is dropped")
	case a.cur != nil:
		a.install(a.cur.tok, a.cur.verifier, now)
		a.logger().Info("credential changed: the token held is kept")
	}
	a.schedule(now)
}

// removed answers everyone waiting with a 404 and leaves memory: the
// credential is no longer served. A job in flight is abandoned, so it
// stores nothing.
func (a *credential) removed() {
	if a.retired {
		return
	}
	for _, g := range a.waiters {
		g.fail(removedCredential(a.c.id))
	}
	a.waiters = nil
	a.idleWaitTimer()
	if a.cancelJob != nil {
		a.cancelJob()
	}
	if a.inflight != nil && a.inflight.onDone != nil {
		a.inflight.onDone(removedCredential(a.c.id))
	}
	a.inflight = nil
	if a.cur != nil {
		a.cur, a.rt = nil, ""
		a.d.host.publish(a.c, nil)
	}
	a.retire("removed")
}

// logger returns the logger with this credential's id. It is built per use
// rather than kept: logging is rare, and a logger with preformatted
// attributes costs every one of 100,000 idle credentials memory.
func (a *credential) logger() *slog.Logger { return a.d.log.With("credential_id", a.c.id) }

// heldFor returns the token that a caller whose password has verifier v
// may be given, or nil: none is held, or it belongs to another password.
func (a *credential) heldFor(v *Verifier) *tokenbroker.Token {
	if a.cur == nil || !a.cur.owns(v) {
		return nil
	}
	return &a.cur.tok
}

// serve answers g from the token if the policy lets it, else queues it
// behind the IdP call in flight, starting one if there is none.
func (a *credential) serve(g *getToken, now time.Time) {
	tok := a.heldFor(&g.verifier)
	if tok != nil {
		if a.policy.Serves(tok, &g.req, now) {
			a.reply(g, tokenbroker.ActionExisting, tokenbroker.SourceCache, now)
			return
		}
		if err := policy.Unmeetable(tok, &g.req); err != nil {
			g.fail(err)
			return
		}
	}
	if tok == nil && a.user {
		// A password the IdP must be asked about: not once the username
		// was refused too often, even for callers queued before that.
		if err := a.d.refusals.check(a.c.key.sum, now); err != nil {
			g.fail(err)
			return
		}
	}
	a.waiters = append(a.waiters, g)
	a.armWaitTimer()
	if a.inflight == nil && !a.loading {
		j := a.jobFor(g.verifier, g.req.Username, false, now)
		j.claims = g.req.Claims
		j.parent = tracing.Of(g.rep)
		a.start(j, g.req.Password)
	}
}

// reply answers g with the current token, which came from source.
func (a *credential) reply(g *getToken, action, source string, now time.Time) {
	g.respond(action, source, a.cur.reply.Body(action, now))
}

// jobFor plans the job that gets a token for a caller whose password has
// verifier v (and, for a user without a refresh token, is username's), or
// for the refresh timer.
func (a *credential) jobFor(v Verifier, username string, background bool, now time.Time) *job {
	plan := a.policy.Plan(a.heldFor(&v), a.rt != "", now)
	j := &job{
		grant: a.spec.Grant, action: plan.Action, verifier: v, background: background,
		id: a.c.id, user: a.user, spec: a.spec, username: a.spec.Username, rt: a.rt, rev: a.rev,
		d: a.d, log: a.logger(),
	}
	if plan.Refresh {
		j.grant = grantRefresh
	}
	if a.user {
		j.username = username
	}
	if a.cur != nil {
		j.held, j.expiry = a.cur.verifier, a.cur.tok.Expiry
	}
	return j
}

// start runs j in a goroutine that reports back as a jobDone. password is
// the caller's for a user's password grant; a named credential uses its
// own.
func (a *credential) start(j *job, password tokenbroker.Secret) {
	a.jobs++
	j.seq, j.gen = a.jobs, a.gen
	j.ctx, a.cancelJob = context.WithCancel(a.d.ctx)
	a.inflight = j
	if !a.user {
		password = a.spec.Password
	}
	a.logger().Debug("getting a token", "grant", string(j.grant), "background", j.background)
	engine, pid := a.engine, a.pid
	go func() { engine.Send(pid, j.run(password)) }()
}

// finished takes the result of the job in flight and answers everyone
// waiting on it.
func (a *credential) finished(d jobDone) {
	// The message may outlive this call in the actor's inbox, which does
	// not clear the slots it has delivered: drop what it holds of the
	// token (kilobytes, and the refresh token in clear) once taken.
	defer d.release()
	j := a.inflight
	if j == nil || j.seq != d.seq {
		return // a job the actor no longer waits for
	}
	a.inflight = nil
	a.cancelJob()
	a.cancelJob = nil
	now := a.d.now()
	waiters := a.waiters
	a.waiters = nil
	traceAnswers(waiters, &d)
	if j.onDone != nil {
		switch {
		case j.gen != a.gen:
			j.onDone(errors.New("the credential was changed during the login"))
		default:
			j.onDone(d.err)
		}
	}
	if j.gen != a.gen {
		// Got under a declaration since changed: ask again.
		a.requeue(waiters, now)
		a.idleWaitTimer()
		a.schedule(now)
		return
	}
	switch {
	case d.err != nil:
		a.jobFailed(j, d, waiters, now)
	case d.rec != nil:
		// Another broker got it; it published the event.
		a.adopt(d.rec, now)
		a.logger().Info("token taken from the store", "action", j.action, "expires_in", d.rec.ExpiresIn(now), "took", d.took)
		a.answer(waiters, j.action, tokenbroker.SourceStore, "", now)
	default:
		a.accept(j, d, now)
		a.logger().Info("token acquired", "grant", string(j.grant), "action", j.action, "expires_in", d.tok.ExpiresIn(now), "took", d.took)
		a.answer(waiters, j.action, tokenbroker.SourceIdP, j.claims, now)
	}
	a.idleWaitTimer()
	if a.empty() {
		// A username whose sign-in failed holds nothing worth keeping:
		// it leaves memory now, not after IDLE_TIMEOUT, so that refused
		// logins leave nothing behind. Its refusals are counted apart.
		a.retire("sign-in failed and no token held")
		return
	}
	a.schedule(now)
}

// empty reports whether this is a user credential with no token and
// nothing to do.
func (a *credential) empty() bool {
	return a.user && a.cur == nil && a.inflight == nil && !a.loading && len(a.waiters) == 0
}

// answer gives the token just obtained (with the claims challenge claims,
// "" for none) to the waiters it is for, and queues the others (another
// password's callers, another challenge's) for the next job.
func (a *credential) answer(waiters []*getToken, action, source, claims string, now time.Time) {
	var again []*getToken
	for _, g := range waiters {
		tok := a.heldFor(&g.verifier)
		switch {
		case tok == nil:
			again = append(again, g)
		case g.req.Claims != "" && g.req.Claims != claims:
			// A claims challenge is met only by a token asked for with it.
			again = append(again, g)
		case !policy.Outlives(tok, &g.req, now):
			g.fail(policy.Unmet(tok, &g.req, now))
		default:
			a.reply(g, action, source, now)
		}
	}
	a.requeue(again, now)
}

// accept makes the token a job got from the IdP the credential's token,
// and tells the consumers.
func (a *credential) accept(j *job, d jobDone, now time.Time) {
	tok := d.tok
	a.c.lastErr.Store(nil)
	if j.action != tokenbroker.ActionNew {
		a.d.metrics.Refresh(metrics.OutcomeOK)
	}
	switch {
	case tok.RefreshToken != "":
		a.rt = tokenbroker.Secret(tok.RefreshToken) // rotation: keep the newest
	case j.grant != grantRefresh:
		a.rt = "" // a new grant without one: the old one belongs to an older session
	}
	v := j.held
	if j.grant != grantRefresh {
		v = j.verifier
	}
	a.rev = d.rev
	a.install(tok.Token, v, now)
	publishRefreshed(a.d.publisher, d.span, tokenbroker.RefreshedEvent{
		EventID:      uuid.NewString(),
		CredentialID: a.c.id,
		AccessToken:  a.cur.tok.AccessToken,
		TokenType:    tok.TokenType,
		ExpiresOn:    strconv.FormatInt(tok.Expiry.Unix(), 10),
		ExpiresIn:    tok.ExpiresIn(now),
		Action:       j.action,
		RefreshedAt:  now.UTC(),
	})
}

// adopt makes a stored record the credential's token: one this broker kept
// before a restart, or one another broker obtained (and published).
func (a *credential) adopt(rec *store.Record, now time.Time) {
	a.rt = tokenbroker.Secret(rec.RefreshToken)
	var v Verifier
	if a.user {
		copy(v[:], rec.Verifier)
	}
	a.rev = rec.Revision
	a.install(rec.Token, v, now)
}

// install makes tok, obtained with the password whose verifier is v, the
// current token: published for cache hits, and due for a refresh.
func (a *credential) install(tok tokenbroker.Token, v Verifier, now time.Time) {
	a.cur = newSnapshot(a.c.key, a.c.id, tok, a.policy, v)
	a.failures = 0
	a.refreshAt = a.policy.NextRefresh(&tok, now, nil)
	a.d.host.publish(a.c, a.cur)
}

// withdraw drops the token: its password is no longer accepted.
func (a *credential) withdraw() {
	a.cur, a.rt = nil, ""
	a.d.host.publish(a.c, nil)
	if st := a.d.store; st != nil {
		go func(ctx context.Context, id string) { _ = st.Delete(ctx, id) }(a.d.ctx, a.c.id)
	}
}

// jobFailed answers the waiters of a job whose IdP call failed, and decides
// what the credential does next.
func (a *credential) jobFailed(j *job, d jobDone, waiters []*getToken, now time.Time) {
	e := oauth.Classify(d.err)
	rejected := e.Code == tokenbroker.CodeRejected
	a.c.lastErr.Store(&failure{err: e.OAuth + ": " + firstLine(e.Description), at: now})
	if j.action != tokenbroker.ActionNew {
		a.d.metrics.Refresh(metrics.OutcomeFailed)
	}
	if j.grant == grantRefresh && rejected {
		a.refreshTokenRejected(e, j, waiters, now)
		return
	}
	attrs := []any{"grant", string(j.grant), "code", e.Code, "error", e.OAuth, "took", d.took}
	var af *oauth.AssertionFileError
	if errors.As(d.err, &af) {
		// The broker's own file is at fault, not the IdP: say which.
		attrs = append(attrs, "assertion_file", af.File, "reason", af.Reason)
	}
	a.logger().Warn("identity provider call failed", attrs...)
	switch {
	case rejected && !a.user && j.grant != GrantDeviceCode:
		// (A device code credential's probe for a login fails until
		// someone signs in: its consumers were told when its refresh token
		// died.)
		a.publishFailed(e, now)
	case rejected && a.cur != nil && j.verifier.Equal(a.cur.verifier):
		// The password that got the token is no longer accepted: stop
		// handing out what it obtained.
		a.withdraw()
	}
	if rejected && a.user && j.grant == GrantPassword {
		a.d.refusals.record(a.c.key.sum, now)
	}
	var again []*getToken
	for _, g := range waiters {
		tok := a.heldFor(&g.verifier)
		switch {
		case tok != nil && !rejected && a.policy.ServesStale(tok, &g.req, now):
			// The IdP is down or throttling: the token still works, serve it.
			a.reply(g, tokenbroker.ActionExisting, tokenbroker.SourceCache, now)
		case !a.user || g.verifier.Equal(j.verifier):
			g.fail(e)
		default:
			again = append(again, g) // another password's caller: its own call
		}
	}
	if j.background && !rejected {
		a.failures++
		a.refreshAt = policy.Retry(a.failures, now, nil)
	}
	a.requeue(again, now)
}

// refreshTokenRejected handles a refresh token the IdP no longer takes
// (revoked, expired, the password changed): drop it, tell the consumers,
// and let the credential's own grant take over, now if anyone waits.
func (a *credential) refreshTokenRejected(e *tokenbroker.Error, j *job, waiters []*getToken, now time.Time) {
	a.rt = ""
	if a.spec.Grant == GrantDeviceCode {
		// Only a person can get a new one: say so, and answer 401 until then.
		dead := *e
		dead.Description = firstLine(e.Description) + "; " + loginNeeded(a.c.id).Description
		a.publishFailed(&dead, now)
		a.logger().Warn("refresh token rejected; the credential needs a new login", "error", e.OAuth)
		a.requeue(waiters, now)
		return
	}
	a.publishFailed(e, now)
	a.logger().Warn("refresh token rejected; falling back to the credential's grant", "error", e.OAuth)
	a.requeue(waiters, now)
	if a.inflight == nil && !a.user && j.background {
		a.start(a.jobFor(Verifier{}, "", true, now), "")
	}
}

// requeue serves callers that the last job could not answer (another
// password than the one it used, or a fallback); the first of them starts
// the next job.
func (a *credential) requeue(gs []*getToken, now time.Time) {
	for _, g := range gs {
		a.serve(g, now)
	}
}

// publishFailed publishes token.failed for a refresh that failed for good.
func (a *credential) publishFailed(e *tokenbroker.Error, now time.Time) {
	a.d.publisher.PublishFailed(tokenbroker.FailedEvent{
		EventID:      uuid.NewString(),
		CredentialID: a.c.id,
		Error:        e.OAuth,
		Description:  e.Description,
		At:           now.UTC(),
	})
}

// armWaitTimer makes sure someone answers the waiters by their deadlines,
// even if the IdP call they wait on outlives them (a caller queued behind
// several calls for other passwords, say). This is where every 504 is
// decided.
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
		g.fail(tokenbroker.Errorf(tokenbroker.CodeTimeout, tokenbroker.OAuthTemporarilyUnavailable,
			"the broker could not get a token in time"))
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
	a.armWaitTimer()
}

// load reads the credential's stored record when the actor starts, so a
// token kept before a restart, or obtained by another broker, is served
// without an IdP call. Requests wait for it.
func (a *credential) load() {
	a.loading = true
	st, id, ctx, engine, pid := a.d.store, a.c.id, a.d.ctx, a.engine, a.pid
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		rec, err := st.Get(lctx, id)
		engine.Send(pid, loaded{rec: rec, err: err})
	}()
}

// restored takes the stored record read at start, and lets the requests
// that waited for it go on.
func (a *credential) restored(m loaded) {
	defer m.release()
	a.loading = false
	now := a.d.now()
	switch {
	case m.err == nil && m.rec.AccessToken != "" && now.Before(m.rec.Expiry):
		a.adopt(m.rec, now)
		a.logger().Info("token restored from the store", "expires_in", m.rec.ExpiresIn(now))
	case m.err == nil && m.rec.RefreshToken != "" && !a.user:
		// The access token expired while no broker ran, but the refresh
		// token may still work: for a device code credential it is the
		// only way to a token short of a new login.
		a.rt, a.rev = tokenbroker.Secret(m.rec.RefreshToken), m.rec.Revision
		a.logger().Info("refresh token restored from the store; its access token had expired")
	case m.err != nil && !errors.Is(m.err, store.ErrNotFound):
		a.logger().Warn("could not read the stored token", "err", m.err)
	}
	waiters := a.waiters
	a.waiters = nil
	a.requeue(waiters, now)
	if a.cur == nil && a.rt != "" && a.keptWarm() && a.inflight == nil {
		// Only a refresh token came back: get its access token now, as
		// the timer would have.
		a.start(a.jobFor(Verifier{}, "", true, now), "")
	}
	a.schedule(now)
}

// stopped answers whoever still waits: the broker is shutting down.
func (a *credential) stopped() {
	a.stopTimer()
	if a.waitTimer != nil {
		a.waitTimer.Stop()
	}
	for _, g := range a.waiters {
		g.fail(shuttingDown())
	}
	a.waiters = nil
}

// keptWarm reports whether the credential stays in memory with its token
// refreshed for as long as the broker runs, used or not.
func (a *credential) keptWarm() bool { return !a.user && a.spec.KeepWarm }

// warm reports whether the timer should keep the token refreshed: always
// for a kept-warm credential, while it is used for the others.
func (a *credential) warm(now time.Time) bool { return a.keptWarm() || !a.idle(now) }

func (a *credential) idle(now time.Time) bool { return now.Sub(a.c.lastUse()) >= a.d.idle }

// canRefresh reports whether the credential can get a new token with no
// caller: with a refresh token, or with its own secret or password. A user
// credential without a refresh token needs its caller's password, a device
// code credential a person's sign-in.
func (a *credential) canRefresh() bool {
	return a.rt != "" || (!a.user && a.spec.Grant != GrantDeviceCode)
}

// refreshable reports whether the timer keeps the token refreshed: there is
// a token, no job in flight, a way to refresh without a caller, and a
// reason to (kept warm, or in use).
func (a *credential) refreshable(now time.Time) bool {
	return a.cur != nil && a.inflight == nil && a.canRefresh() && a.warm(now)
}

// schedule sets the one timer to the next thing to do: the proactive
// refresh, or leaving memory when idle.
func (a *credential) schedule(now time.Time) {
	var next time.Time
	if a.refreshable(now) {
		next = a.refreshAt
		a.c.nextRefresh.Store(next.UnixNano())
	} else {
		a.c.nextRefresh.Store(0)
	}
	if !a.keptWarm() {
		idleAt := a.c.lastUse().Add(a.d.idle)
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
	now := a.d.now()
	if !a.keptWarm() && a.idle(now) && a.inflight == nil && !a.loading && len(a.waiters) == 0 {
		a.retire("idle")
		return
	}
	if a.refreshable(now) && !now.Before(a.refreshAt) {
		a.start(a.jobFor(a.cur.verifier, "", true, now), "")
	}
	a.schedule(now)
}

// retire takes the credential out of memory: out of the Router first, so no
// new request reaches it, then the actor stops.
func (a *credential) retire(why string) {
	a.retired = true
	a.stopTimer()
	a.d.host.retire(a.c)
	a.logger().Debug("credential leaving memory", "reason", why)
	a.engine.Poison(a.pid)
}

// shuttingDown is the answer to requests the broker will no longer serve.
func shuttingDown() *tokenbroker.Error {
	return tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "the broker is shutting down")
}

// firstLine cuts an IdP description at its first line: Azure AD appends
// trace and correlation ids that status output does not need.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
