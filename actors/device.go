package actors

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// GrantDeviceCode is a delegated user credential enrolled once by a person
// with the device authorization grant (RFC 8628): Login starts it, and the
// refresh token it yields keeps the credential's tokens coming. Without a
// refresh token it has no way to a token, and its callers get a 401 that
// says a login is needed.
const GrantDeviceCode Grant = "device_code"

// DeviceClient runs the device authorization grant: *oauth.Client.
// PollDevice has its own pacing (interval, slow_down, backoff), so it is
// the plain client, not the guarded one whose retries would fight it.
type DeviceClient interface {
	DeviceAuthorization(ctx context.Context, deviceEndpoint string, ep oauth.Endpoint) (*oauth.DeviceAuthorization, error)
	PollDevice(ctx context.Context, ep oauth.Endpoint, da *oauth.DeviceAuthorization, sleep func(ctx context.Context, d time.Duration) error) (*oauth.Token, error)
}

var _ DeviceClient = (*oauth.Client)(nil)

// The states of a login, as LoginWait reports them.
const (
	LoginPending = "pending" // the user has not signed in yet
	LoginDone    = "done"    // signed in: the credential holds a token
	LoginDenied  = "denied"  // the user declined
	LoginExpired = "expired" // the code expired before the user signed in
	LoginFailed  = "failed"  // the IdP refused, or the token could not be taken
)

// LoginStatus is where a login stands. Err says why it did not succeed.
type LoginStatus struct {
	State string
	Err   *tokenbroker.Error
}

// login is one device code enrolment in progress or ended on this broker.
type login struct {
	done   chan struct{} // closed when status is final
	once   sync.Once     // the poll and a replacing login may both finish it
	status LoginStatus
	cancel context.CancelFunc
}

func (l *login) finish(st LoginStatus) {
	l.once.Do(func() {
		l.status = st
		close(l.done)
	})
}

// logins are the enrolments this broker runs, by credential name: the
// newest per credential, as a second login replaces the first.
type logins struct {
	mu     sync.Mutex
	byName map[string]*login
}

// loggedIn hands the tokens of a finished sign-in to the credential's
// actor, which stores and serves them; done is told how that went. retry
// delivers the message again when it reached an actor leaving memory.
type loggedIn struct {
	tok   *oauth.Token
	spec  *Spec
	done  func(error)
	retry func()
}

// loginNeeded is the answer of a device code credential without a refresh
// token: nobody has signed in, or the refresh token died.
func loginNeeded(name string) *tokenbroker.Error {
	return tokenbroker.Errorf(tokenbroker.CodeRejected, tokenbroker.OAuthInteractionRequired,
		"credential %q needs a user to sign in: run `tokenbroker login %s`", name, name)
}

// errLoginReplaced ends a login overtaken by a newer one.
var errLoginReplaced = errors.New("a newer login of the credential replaced this one")

// Login starts the device authorization grant for the device code
// credential name and returns what to show the user: where to sign in and
// the code to type. Polling the token endpoint goes on in the background
// until the user signs in, declines, or the code expires; LoginWait tells
// which. A login started while another of the same credential runs
// replaces it.
func (r *Router) Login(ctx context.Context, name string) (*oauth.DeviceAuthorization, *tokenbroker.Error) {
	n := r.lookup(name)
	if n == nil {
		return nil, removedCredential(name)
	}
	spec := n.spec
	if spec.Grant != GrantDeviceCode {
		return nil, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"credential %q has grant %s: only a device_code credential is enrolled with login", name, spec.Grant)
	}
	dc := r.opts.Device
	if dc == nil {
		return nil, tokenbroker.Errorf(tokenbroker.CodeInternal, tokenbroker.OAuthServerError, "this broker has no device authorization client")
	}
	ep := spec.endpointNow()
	da, err := dc.DeviceAuthorization(ctx, spec.DeviceURL, ep)
	if err != nil {
		e := oauth.Classify(err)
		r.deps.log.Warn("device authorization refused", "credential_id", name, "code", e.Code, "error", e.OAuth)
		return nil, e
	}
	// The poll outlives the admin request that started it, not the broker.
	pctx, cancel := context.WithTimeout(r.deps.ctx, da.ExpiresIn+time.Minute)
	l := &login{done: make(chan struct{}), status: LoginStatus{State: LoginPending}, cancel: cancel}
	r.logins.mu.Lock()
	if r.logins.byName == nil {
		r.logins.byName = map[string]*login{}
	}
	if old := r.logins.byName[name]; old != nil {
		old.cancel()
		old.finish(LoginStatus{State: LoginFailed, Err: tokenbroker.Errorf(tokenbroker.CodeRejected, tokenbroker.OAuthAccessDenied, "%s", errLoginReplaced)})
	}
	r.logins.byName[name] = l
	r.logins.mu.Unlock()
	r.deps.log.Info("device login started; waiting for the user to sign in", "credential_id", name, "expires_in", da.ExpiresIn)
	go r.poll(pctx, l, name, spec, ep, da)
	return da, nil
}

// poll waits for the user's sign-in and hands the tokens to the actor.
func (r *Router) poll(ctx context.Context, l *login, name string, spec *Spec, ep oauth.Endpoint, da *oauth.DeviceAuthorization) {
	defer l.cancel()
	tok, err := r.opts.Device.PollDevice(ctx, ep, da, nil)
	if err != nil {
		st := LoginStatus{State: LoginFailed, Err: oauth.Classify(err)}
		switch {
		case errors.Is(err, oauth.ErrAccessDenied):
			st.State = LoginDenied
		case errors.Is(err, oauth.ErrExpiredToken):
			st.State = LoginExpired
		}
		r.deps.log.Warn("device login ended without a sign-in", "credential_id", name, "state", st.State, "error", st.Err.OAuth)
		l.finish(st)
		return
	}
	result := make(chan error, 1)
	var deliver func()
	deliver = func() {
		n := r.lookup(name)
		if n == nil || n.spec != spec {
			result <- errors.New("the credential was changed or removed during the login")
			return
		}
		c := r.cellFor(n.key, name, n.spec)
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.retired {
			go deliver() // a new incarnation takes it
			return
		}
		r.opts.Engine.Send(c.pid, loggedIn{tok: tok, spec: spec, done: func(err error) { result <- err }, retry: deliver})
	}
	deliver()
	select {
	case err = <-result:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		e := tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthServerError, "the user signed in, but the credential could not take the token: %s", err)
		r.deps.log.Warn("device login: token not taken", "credential_id", name, "err", err)
		l.finish(LoginStatus{State: LoginFailed, Err: e})
		return
	}
	r.deps.log.Info("device login done: the credential holds a token", "credential_id", name)
	l.finish(LoginStatus{State: LoginDone})
}

// LoginWait waits, until ctx ends, for the login of name on this broker to
// end, and reports where it stands: pending when ctx ended first. A
// credential with no login on this broker is a 404.
func (r *Router) LoginWait(ctx context.Context, name string) (LoginStatus, *tokenbroker.Error) {
	r.logins.mu.Lock()
	l := r.logins.byName[name]
	r.logins.mu.Unlock()
	if l == nil {
		return LoginStatus{}, tokenbroker.Errorf(tokenbroker.CodeNotFound, tokenbroker.OAuthUnknownCredential,
			"no login of credential %q on this broker", name)
	}
	select {
	case <-l.done:
		return l.status, nil
	case <-ctx.Done():
		return LoginStatus{State: LoginPending}, nil
	}
}

// endpointNow is the credential's endpoint with its client secret as it is
// now (a rotated file's first secret).
func (s *Spec) endpointNow() oauth.Endpoint {
	ep := s.Endpoint
	if s.Secrets != nil {
		if l := s.Secrets.clients(); l != nil && len(*l) > 0 {
			ep.ClientSecret = (*l)[0]
		}
	}
	return ep
}

// loggedIn takes the tokens of a sign-in: a job stores them (so that every
// broker has the refresh token before anyone uses it) and installs them, as
// it would tokens from the IdP. A job in flight, a refresh with a dead
// refresh token or a probe for one, gives way.
func (a *credential) loggedIn(m loggedIn) {
	if a.retired {
		m.retry()
		return
	}
	if m.spec != a.spec {
		m.done(errors.New("the credential was changed during the login"))
		return
	}
	now := a.d.now()
	if j := a.inflight; j != nil {
		if j.onDone != nil {
			j.onDone(errLoginReplaced)
		}
		a.cancelJob()
		a.cancelJob, a.inflight = nil, nil
	}
	j := a.jobFor(Verifier{}, "", false, now)
	j.grant, j.action, j.given, j.onDone = GrantDeviceCode, tokenbroker.ActionNew, m.tok, m.done
	a.start(j, "")
}
