package guard

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// Defaults for the zero fields of Options.
const (
	DefaultMaxAttempts      = 3
	DefaultBaseBackoff      = 200 * time.Millisecond
	DefaultMaxBackoff       = 5 * time.Second
	DefaultMaxConcurrent    = 8
	DefaultFailureThreshold = 5
	DefaultMinOpenFor       = time.Second
	DefaultOpenFor          = 30 * time.Second
)

// Options configures a Client. Every zero field takes its default, so the
// zero Options is a sensible configuration.
type Options struct {
	// MaxAttempts is the number of IdP calls one method call may make,
	// including the first. Default DefaultMaxAttempts (3); 1 disables
	// retries.
	MaxAttempts int
	// BaseBackoff is the cap of the wait before the first retry; the cap
	// doubles for each further retry, up to MaxBackoff. The wait itself is
	// drawn uniformly from [0, cap] ("full jitter"), which spreads the
	// retries of callers that failed together. Default DefaultBaseBackoff
	// (200ms).
	BaseBackoff time.Duration
	// MaxBackoff bounds the backoff cap. Default DefaultMaxBackoff (5s). It
	// does not bound a wait the IdP asked for with Retry-After.
	MaxBackoff time.Duration
	// MaxConcurrent is how many calls may be in flight to one token endpoint
	// at once; further callers wait for a slot, but no longer than their
	// call's deadline (see Client.Password).
	// It keeps a refresh storm from becoming a storm at the IdP. Default
	// DefaultMaxConcurrent (8).
	MaxConcurrent int
	// FailureThreshold is how many consecutive temporary failures of one
	// endpoint, counted over all its callers and attempts, open its
	// breaker. Any answer that is not a temporary failure (a token, a
	// rejection, garbage) resets the count: the IdP is up. Default
	// DefaultFailureThreshold (5).
	FailureThreshold int
	// MinOpenFor is how long a breaker that has just opened fails calls
	// fast before it lets one probe call through (half-open). Each failed
	// probe re-opens it for twice as long as the last time, up to OpenFor;
	// a good answer closes it and starts the next outage at MinOpenFor
	// again. Short first open times find an IdP that is back within
	// seconds, while the doubling keeps a long outage to a probe every
	// OpenFor. Default DefaultMinOpenFor (1s); at most OpenFor, so setting
	// it to OpenFor gives a fixed open time.
	MinOpenFor time.Duration
	// OpenFor is the longest an open breaker fails calls fast before it
	// lets a probe through. When the failure that (re-)opened it carried a
	// longer Retry-After, the breaker stays open that long instead. Default
	// DefaultOpenFor (30s).
	OpenFor time.Duration
	// OnAttempt, when set, is called after every IdP call (not for calls
	// failed fast by the breaker or refused before reaching the IdP) with
	// the grant type ("password", "client_credentials", "client_assertion"
	// (for ClientAssertion and FederatedAssertion alike), "refresh_token"),
	// the call's oauth.OutcomeOf and how long the call took on the
	// monotonic clock. It is for metrics: it runs on the caller's
	// goroutine, must be safe for concurrent use and should return quickly.
	OnAttempt func(grant string, outcome oauth.Outcome, d time.Duration)
	// Now is the clock of the breakers (when one opened, when it may be
	// probed). Default time.Now. Deadlines of contexts are always compared
	// with the real clock, as that is the clock they are set on.
	Now func() time.Time
	// Sleep waits d or until ctx ends, returning ctx.Err() in that case.
	// Default a timer. Tests replace it to record the waits and return at
	// once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = DefaultBaseBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.BaseBackoff {
		o.MaxBackoff = o.BaseBackoff
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.OpenFor <= 0 {
		o.OpenFor = DefaultOpenFor
	}
	if o.MinOpenFor <= 0 {
		o.MinOpenFor = DefaultMinOpenFor
	}
	// OpenFor is the ceiling: an explicit short OpenFor must not be
	// overridden by the default MinOpenFor.
	o.MinOpenFor = min(o.MinOpenFor, o.OpenFor)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return o
}

// sleep waits d on a timer, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Client wraps an *oauth.Client with retries, a concurrency limit and a
// circuit breaker per token endpoint. It has the grant methods of
// oauth.Client with the same signatures, and is safe for concurrent use.
type Client struct {
	oc   *oauth.Client
	opts Options

	mu  sync.Mutex           // guards eps
	eps map[string]*endpoint // by endpointKey of the token URL
}

// New returns a Client calling the IdP through c with o's settings.
func New(c *oauth.Client, o Options) *Client {
	return &Client{oc: c, opts: o.withDefaults(), eps: map[string]*endpoint{}}
}

// Password runs the password grant through the guard. The whole of it,
// every attempt, backoff and wait for a slot, ends by the sooner of ctx's
// deadline and the oauth.Client's Timeout from now. Errors are those of
// oauth.Client.Password (after up to MaxAttempts calls, the last one's); a
// *CircuitOpenError when the endpoint's breaker is open before the first
// call; or, when ctx ended or that deadline passed while waiting for a free
// slot before any call, an error wrapping the context's error. Once a call
// has failed, retries that cannot be made (breaker opened, deadline too
// near, ctx ended) end with that call's error, as the IdP's own answer (and
// its Retry-After) says the most.
func (c *Client) Password(ctx context.Context, ep oauth.Endpoint, username string, password tokenbroker.Secret) (*oauth.Token, error) {
	if username == "" { // refused before any call: nothing to guard
		return c.oc.Password(ctx, ep, username, password)
	}
	return c.do(ctx, ep, "password", func(ctx context.Context) (*oauth.Token, error) {
		return c.oc.Password(ctx, ep, username, password)
	})
}

// ClientCredentials runs the client credentials grant through the guard.
// Errors are as for Password.
func (c *Client) ClientCredentials(ctx context.Context, ep oauth.Endpoint) (*oauth.Token, error) {
	return c.do(ctx, ep, "client_credentials", func(ctx context.Context) (*oauth.Token, error) {
		return c.oc.ClientCredentials(ctx, ep)
	})
}

// Refresh runs the refresh_token grant through the guard. Errors are as for
// Password. It is retried like the other grants; see the package doc for
// why a retry may meet invalid_grant under strict rotation, and why that is
// acceptable.
func (c *Client) Refresh(ctx context.Context, ep oauth.Endpoint, refreshToken tokenbroker.Secret) (*oauth.Token, error) {
	if refreshToken.IsZero() { // refused before any call: nothing to guard
		return c.oc.Refresh(ctx, ep, refreshToken)
	}
	return c.do(ctx, ep, "refresh_token", func(ctx context.Context) (*oauth.Token, error) {
		return c.oc.Refresh(ctx, ep, refreshToken)
	})
}

// ClientAssertion runs the client credentials grant authenticated by a
// certificate's signed assertion through the guard. Each attempt signs a
// fresh assertion (a new jti), so a retry is never a replay. Errors are as
// for Password.
func (c *Client) ClientAssertion(ctx context.Context, ep oauth.Endpoint, s *oauth.AssertionSigner) (*oauth.Token, error) {
	if s == nil { // refused before any call: nothing to guard
		return c.oc.ClientAssertion(ctx, ep, s)
	}
	return c.do(ctx, ep, "client_assertion", func(ctx context.Context) (*oauth.Token, error) {
		return c.oc.ClientAssertion(ctx, ep, s)
	})
}

// FederatedAssertion runs the client credentials grant authenticated by the
// JWT in assertionFile (workload identity federation) through the guard.
// Each attempt reads the file again, so a retry sends whatever the issuer
// wrote since. A file that cannot be used is refused before any call (an
// *oauth.AssertionFileError, which wraps oauth.ErrInvalidArgument): it is
// not retried, not reported to OnAttempt, and neither counts against the
// endpoint's breaker nor resets its count, as the IdP was not asked.
// Otherwise errors are as for Password.
func (c *Client) FederatedAssertion(ctx context.Context, ep oauth.Endpoint, assertionFile string) (*oauth.Token, error) {
	return c.do(ctx, ep, "client_assertion", func(ctx context.Context) (*oauth.Token, error) {
		return c.oc.FederatedAssertion(ctx, ep, assertionFile)
	})
}

// State returns the breaker state of the token endpoint tokenURL, for status
// pages and metrics. An endpoint never called is closed. An open breaker
// whose open time has passed reports half-open: the next call probes it.
func (c *Client) State(tokenURL string) BreakerState {
	key, ok := endpointKey(tokenURL)
	if !ok {
		return StateClosed
	}
	c.mu.Lock()
	e := c.eps[key]
	c.mu.Unlock()
	if e == nil {
		return StateClosed
	}
	return e.state(c.opts.Now())
}

// endpoint returns the entry of key, creating it on first use.
func (c *Client) endpoint(key string) *endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.eps[key]
	if e == nil {
		e = &endpoint{url: key, slots: make(chan struct{}, c.opts.MaxConcurrent)}
		c.eps[key] = e
	}
	return e
}

// do runs call, one IdP call per attempt, under ep's breaker and
// concurrency limit, retrying temporary failures. With tracing on, the
// whole of it is one span (tracing.SpanIdP) under ctx's.
func (c *Client) do(ctx context.Context, ep oauth.Endpoint, grant string, call func(context.Context) (*oauth.Token, error)) (_ *oauth.Token, err error) {
	key, ok := endpointKey(ep.TokenURL)
	if !ok {
		// A token URL that does not parse is refused by oauth.Client
		// before any call; it must not get an entry or a breaker.
		return call(ctx)
	}
	// One deadline for the whole call, retries, backoffs and the wait for a
	// slot included: a hung IdP must cost a caller one IDP_TIMEOUT, not one
	// per attempt. A caller's sooner deadline wins. oauth.Client bounds
	// each attempt by the sooner of this and its own timeout, so an
	// attempt gets what is left, never a timeout of its own on top.
	ctx, cancel := context.WithTimeout(ctx, c.oc.Timeout())
	defer cancel()
	e := c.endpoint(key)
	var t *idpTrace // nil: not traced, and its methods do nothing
	if tracing.Enabled() {
		ctx, t = startIdPTrace(ctx, grant, key, e.state(c.opts.Now()))
		defer func() { t.end(err, e.state(c.opts.Now())) }()
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		// Fail fast before queueing for a slot: a caller must not wait
		// behind others only to be told the breaker is open.
		if err := e.check(c.opts.Now()); err != nil {
			return nil, lastErrOr(lastErr, err)
		}
		if err := e.acquire(ctx); err != nil {
			return nil, lastErrOr(lastErr, fmt.Errorf("guard: token endpoint %s: waiting for a free slot: %w", key, err))
		}
		// Admit under the slot: the breaker may have opened while this
		// caller waited, and only one waiter may become the probe.
		probe, err := e.admit(c.opts.Now())
		if err != nil {
			e.release()
			return nil, lastErrOr(lastErr, err)
		}
		start := time.Now()
		tok, err := call(ctx)
		d := time.Since(start)
		e.release()

		if err != nil && errors.Is(err, oauth.ErrInvalidArgument) {
			// Refused before reaching the IdP: no attempt, no verdict.
			e.record(verdictNone, 0, probe, c.opts.Now(), &c.opts)
			return nil, err
		}
		// Only the failures that say the IdP is failing count against
		// its breaker: a rejection or garbage is an answer.
		outcome := oauth.OutcomeOf(err)
		v := verdictHealthy
		if outcome == oauth.OutcomeUnavailable {
			v = verdictFailed
			if errors.Is(ctx.Err(), context.Canceled) {
				// The caller gave up, which says nothing about the
				// IdP. An expired deadline does count: an IdP slower
				// than its callers' patience is unavailable to them.
				v = verdictNone
			}
		}
		ra := retryAfterOf(err)
		e.record(v, ra, probe, c.opts.Now(), &c.opts)
		// Reported after the verdict is recorded, so that a hook that
		// panics cannot leave a half-open breaker's probe claimed.
		if c.opts.OnAttempt != nil {
			c.opts.OnAttempt(grant, outcome, d)
		}
		t.attempted(outcome, err, d)
		if err == nil {
			return tok, nil
		}
		lastErr = err
		if outcome != oauth.OutcomeUnavailable || attempt+1 >= c.opts.MaxAttempts || ctx.Err() != nil {
			return nil, err
		}
		// A retry needs a closed breaker: if this attempt (or others)
		// opened it, the retry would only be failed fast, so the
		// IdP's own error is the better answer, given right away.
		if e.state(c.opts.Now()) != StateClosed {
			return nil, err
		}
		wait := c.backoff(attempt)
		if ra > 0 {
			// The IdP said when; a little jitter on top keeps the
			// callers it told the same thing from coming back in step.
			wait = ra + jitter(c.opts.BaseBackoff)
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
			// The retry could not finish in time; the caller is better
			// served by the error now (it may have a cached token to
			// fall back on) than by it at its deadline.
			return nil, err
		}
		t.retrying(wait)
		if c.opts.Sleep(ctx, wait) != nil {
			return nil, err
		}
	}
}

// backoff returns the wait before retry n (0-based): uniform in
// [0, min(MaxBackoff, BaseBackoff*2^n)].
func (c *Client) backoff(n int) time.Duration {
	limit := c.opts.MaxBackoff
	if n < 62 {
		if d := c.opts.BaseBackoff << n; d > 0 && d>>n == c.opts.BaseBackoff && d < limit {
			limit = d
		}
	}
	return jitter(limit)
}

// jitter returns a duration uniform in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// lastErrOr returns last when an attempt already failed: the IdP's own
// error says more than why no further attempt was made.
func lastErrOr(last, err error) error {
	if last != nil {
		return last
	}
	return err
}

// retryAfterOf returns the Retry-After of a temporary RetrieveError, 0 for
// anything else. Any temporary status is honoured, not only 429 and 503: an
// IdP asking for a pause is worth listening to whatever the status.
func retryAfterOf(err error) time.Duration {
	var re *oauth.RetrieveError
	if errors.As(err, &re) && re.Temporary() && re.RetryAfter > 0 {
		return re.RetryAfter
	}
	return 0
}

// endpointKey returns tokenURL without user info, query or fragment: the
// identity of a token endpoint, and safe to put in an error. ok is false
// when tokenURL is not an absolute URL.
func endpointKey(tokenURL string) (key string, ok bool) {
	u, err := url.Parse(tokenURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", false
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(), true
}
