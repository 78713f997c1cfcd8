package guard_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// The guard is a drop-in for the plain client wherever the actors call the IdP.
var _ actors.TokenClient = (*guard.Client)(nil)

const (
	user       = "alice@contoso.com"
	password   = "correct horse"
	publicApp  = "public-app"
	confApp    = "conf-app"
	confSecret = "conf-s3cret"
	scopeUser  = "https://graph.microsoft.com/User.Read offline_access"
	scopeApp   = "https://graph.microsoft.com/.default"
	base       = 200 * time.Millisecond
)

// startIdP returns a started fake IdP with a user, a public and a
// confidential client.
func startIdP(t testing.TB) *fakeidp.Server {
	t.Helper()
	s, err := fakeidp.Start(
		fakeidp.WithUser(user, password),
		fakeidp.WithClient(publicApp, ""),
		fakeidp.WithClient(confApp, confSecret),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func appEP(s *fakeidp.Server) oauth.Endpoint {
	return oauth.Endpoint{TokenURL: s.V2TokenURL(), ClientID: confApp, ClientSecret: confSecret, Scope: scopeApp}
}

func userEP(s *fakeidp.Server) oauth.Endpoint {
	return oauth.Endpoint{TokenURL: s.V2TokenURL(), ClientID: publicApp, Scope: scopeUser}
}

// sleeper is an Options.Sleep that records the waits asked for and returns
// at once, so tests see the backoff without spending it.
type sleeper struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// attempts records Options.OnAttempt calls as "grant outcome".
type attempts struct {
	mu  sync.Mutex
	got []string
}

func (a *attempts) OnAttempt(grant string, outcome oauth.Outcome, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	got := grant + " " + string(outcome)
	if d < 0 {
		got += " (negative duration)"
	}
	a.got = append(a.got, got)
}

func (a *attempts) Got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// harness is a guard.Client with its injected clock, sleeps and attempts.
type harness struct {
	c      *guard.Client
	clock  *clock.Fake
	sleeps *sleeper
	att    *attempts
}

// newClient returns a guard over a plain oauth.Client with o's settings and
// the harness's Now, Sleep and OnAttempt.
func newClient(t testing.TB, o guard.Options) *harness {
	t.Helper()
	return newClientOver(t, oauth.NewClient(nil, 5*time.Second), o)
}

// newClientOver is newClient over oc.
func newClientOver(t testing.TB, oc *oauth.Client, o guard.Options) *harness {
	t.Helper()
	h := &harness{clock: clock.NewFake(time.Unix(1_700_000_000, 0)), sleeps: &sleeper{}, att: &attempts{}}
	o.Now, o.Sleep, o.OnAttempt = h.clock.Now, h.sleeps.Sleep, h.att.OnAttempt
	h.c = guard.New(oc, o)
	return h
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRetriesTemporaryFailureOnce(t *testing.T) {
	tests := []struct {
		name string
		f    fakeidp.Failure
	}{
		{"500 server_error", fakeidp.FailAADSTS(500, "server_error", 90033, "A transient error has occurred.")},
		{"503 HTML", fakeidp.FailHTML(503)},
		{"502 gateway page", fakeidp.FailHTML(502)},
		{"429 without Retry-After", fakeidp.FailStatus(429, "", "")},
		{"503 temporarily_unavailable", fakeidp.FailAADSTS(503, "temporarily_unavailable", 90033, "Try again.")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startIdP(t)
			h := newClient(t, guard.Options{BaseBackoff: base})
			s.Fail(tc.f, 1)
			tok, err := h.c.ClientCredentials(context.Background(), appEP(s))
			if err != nil {
				t.Fatalf("ClientCredentials: %v", err)
			}
			if !s.Valid(tok.AccessToken) {
				t.Error("token not issued by the IdP")
			}
			if n := s.Calls(); n != 2 {
				t.Errorf("IdP calls = %d, want 2 (one retry)", n)
			}
			w := h.sleeps.Waits()
			if len(w) != 1 || w[0] < 0 || w[0] > base {
				t.Errorf("backoffs = %v, want one within [0, %s]", w, base)
			}
			want := []string{"client_credentials unavailable", "client_credentials ok"}
			if got := h.att.Got(); !equalStrings(got, want) {
				t.Errorf("attempts = %q, want %q", got, want)
			}
		})
	}
}

func TestNoRetryOnRejection(t *testing.T) {
	tests := []struct {
		name     string
		call     func(c *guard.Client, s *fakeidp.Server) error
		errCode  string
		outcomes []string
	}{
		{
			name: "wrong password",
			call: func(c *guard.Client, s *fakeidp.Server) error {
				_, err := c.Password(context.Background(), userEP(s), user, "wrong")
				return err
			},
			errCode: "invalid_grant", outcomes: []string{"password rejected"},
		},
		{
			name: "unknown refresh token",
			call: func(c *guard.Client, s *fakeidp.Server) error {
				_, err := c.Refresh(context.Background(), userEP(s), "0.Anot-a-refresh-token")
				return err
			},
			errCode: "invalid_grant", outcomes: []string{"refresh_token rejected"},
		},
		{
			name: "wrong client secret",
			call: func(c *guard.Client, s *fakeidp.Server) error {
				ep := appEP(s)
				ep.ClientSecret = "not-the-secret"
				_, err := c.ClientCredentials(context.Background(), ep)
				return err
			},
			errCode: "invalid_client", outcomes: []string{"client_credentials rejected"},
		},
		{
			name: "200 with an error body",
			call: func(c *guard.Client, s *fakeidp.Server) error {
				s.Fail(fakeidp.Fail200WithError(), 1)
				_, err := c.ClientCredentials(context.Background(), appEP(s))
				return err
			},
			errCode: "invalid_grant", outcomes: []string{"client_credentials rejected"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startIdP(t)
			h := newClient(t, guard.Options{})
			err := tc.call(h.c, s)
			var re *oauth.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != tc.errCode || re.Temporary() {
				t.Fatalf("err = %v, want a non-temporary RetrieveError %s", err, tc.errCode)
			}
			if n := s.Calls(); n != 1 {
				t.Errorf("IdP calls = %d, want 1", n)
			}
			if w := h.sleeps.Waits(); len(w) != 0 {
				t.Errorf("backoffs = %v, want none", w)
			}
			if got := h.att.Got(); !equalStrings(got, tc.outcomes) {
				t.Errorf("attempts = %q, want %q", got, tc.outcomes)
			}
		})
	}
}

func TestNoRetryOnGarbage(t *testing.T) {
	tests := []struct {
		name string
		f    fakeidp.Failure
	}{
		{"HTML 200", fakeidp.FailHTML(200)},
		{"truncated JSON", fakeidp.FailTruncated()},
		{"missing access_token", fakeidp.FailMissingAccessToken()},
		{"zero lifetime", fakeidp.FailLifetime("0")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startIdP(t)
			h := newClient(t, guard.Options{})
			s.Fail(tc.f, 1)
			_, err := h.c.ClientCredentials(context.Background(), appEP(s))
			var rs *oauth.ResponseError
			if !errors.As(err, &rs) {
				t.Fatalf("err = %v, want a ResponseError", err)
			}
			if n := s.Calls(); n != 1 {
				t.Errorf("IdP calls = %d, want 1", n)
			}
			if w := h.sleeps.Waits(); len(w) != 0 {
				t.Errorf("backoffs = %v, want none", w)
			}
			if got, want := h.att.Got(), []string{"client_credentials unusable"}; !equalStrings(got, want) {
				t.Errorf("attempts = %q, want %q", got, want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	for _, status := range []int{429, 503} {
		t.Run(fmt.Sprintf("%d waits at least Retry-After", status), func(t *testing.T) {
			s := startIdP(t)
			h := newClient(t, guard.Options{BaseBackoff: base})
			s.Fail(fakeidp.FailRetryAfter(status, 2), 1)
			if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err != nil {
				t.Fatalf("ClientCredentials: %v", err)
			}
			if n := s.Calls(); n != 2 {
				t.Errorf("IdP calls = %d, want 2", n)
			}
			// The IdP's wait replaces the jittered backoff; the jitter
			// on top of it is at most BaseBackoff.
			if w := h.sleeps.Waits(); len(w) != 1 || w[0] < 2*time.Second || w[0] > 2*time.Second+base {
				t.Errorf("waits = %v, want one within [2s, 2s+%s]", w, base)
			}
		})
	}

	t.Run("deadline shorter than Retry-After", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, guard.Options{})
		s.Fail(fakeidp.FailRetryAfter(429, 2), -1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := h.c.ClientCredentials(ctx, appEP(s))
		var re *oauth.RetrieveError
		if !errors.As(err, &re) || re.StatusCode != 429 || re.RetryAfter != 2*time.Second {
			t.Fatalf("err = %v, want the 429 with Retry-After 2s", err)
		}
		if ctx.Err() != nil {
			t.Error("returned at the deadline, want at once")
		}
		if n := s.Calls(); n != 1 {
			t.Errorf("IdP calls = %d, want 1", n)
		}
		if w := h.sleeps.Waits(); len(w) != 0 {
			t.Errorf("waits = %v, want none", w)
		}
	})

	t.Run("keeps the breaker open longer than OpenFor", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, guard.Options{FailureThreshold: 1, OpenFor: 10 * time.Second})
		s.Fail(fakeidp.FailRetryAfter(503, 60), 1)
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil {
			t.Fatal("want the 503")
		}
		h.clock.Advance(30 * time.Second)
		_, err := h.c.ClientCredentials(context.Background(), appEP(s))
		var co *guard.CircuitOpenError
		if !errors.As(err, &co) || co.RetryAfter != 30*time.Second {
			t.Fatalf("err = %v, want circuit open for 30s more", err)
		}
		h.clock.Advance(30 * time.Second)
		if st := h.c.State(s.V2TokenURL()); st != guard.StateHalfOpen {
			t.Fatalf("state after Retry-After = %s, want half-open", st)
		}
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err != nil {
			t.Fatalf("probe: %v", err)
		}
		if n := s.Calls(); n != 2 {
			t.Errorf("IdP calls = %d, want 2", n)
		}
	})
}

func TestMaxAttemptsExhausted(t *testing.T) {
	t.Run("503 every time", func(t *testing.T) {
		s := startIdP(t)
		const maxBackoff = 500 * time.Millisecond
		h := newClient(t, guard.Options{MaxAttempts: 5, BaseBackoff: base, MaxBackoff: maxBackoff, FailureThreshold: 100})
		s.Fail(fakeidp.FailHTML(503), 4)
		s.Fail(fakeidp.FailHTML(502), 1) // the last error is the one returned
		_, err := h.c.ClientCredentials(context.Background(), appEP(s))
		var re *oauth.RetrieveError
		if !errors.As(err, &re) || re.StatusCode != 502 {
			t.Fatalf("err = %v, want the last attempt's 502", err)
		}
		if n := s.Calls(); n != 5 {
			t.Errorf("IdP calls = %d, want 5", n)
		}
		w := h.sleeps.Waits()
		if len(w) != 4 {
			t.Fatalf("backoffs = %v, want 4", w)
		}
		for i, d := range w {
			limit := min(maxBackoff, base<<i)
			if d < 0 || d > limit {
				t.Errorf("backoff %d = %s, want within [0, %s]", i, d, limit)
			}
		}
	})

	t.Run("unreachable IdP", func(t *testing.T) {
		// A port that refuses connections: closed right after it was free.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tokenURL := "http://" + ln.Addr().String() + "/t/oauth2/v2.0/token"
		ln.Close()
		h := newClient(t, guard.Options{MaxAttempts: 3})
		_, err = h.c.ClientCredentials(context.Background(), oauth.Endpoint{TokenURL: tokenURL, ClientID: confApp, Scope: scopeApp})
		var te *oauth.TransportError
		if !errors.As(err, &te) {
			t.Fatalf("err = %v, want a TransportError", err)
		}
		want := []string{"client_credentials unavailable", "client_credentials unavailable", "client_credentials unavailable"}
		if got := h.att.Got(); !equalStrings(got, want) {
			t.Errorf("attempts = %q, want %q", got, want)
		}
	})

	t.Run("ctx ends during the backoff", func(t *testing.T) {
		s := startIdP(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := guard.New(oauth.NewClient(nil, 5*time.Second), guard.Options{
			Sleep: func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() },
		})
		s.Fail(fakeidp.FailHTML(503), -1)
		_, err := c.ClientCredentials(ctx, appEP(s))
		var re *oauth.RetrieveError
		if !errors.As(err, &re) || re.StatusCode != 503 {
			t.Fatalf("err = %v, want the IdP's 503", err)
		}
		if n := s.Calls(); n != 1 {
			t.Errorf("IdP calls = %d, want 1", n)
		}
	})
}

func TestBreaker(t *testing.T) {
	const threshold, openFor = 3, 30 * time.Second
	// A fixed open time: these subtests are about the breaker's states;
	// TestBreakerOpenTime is about how long it stays open.
	opts := guard.Options{MaxAttempts: 1, FailureThreshold: threshold, MinOpenFor: openFor, OpenFor: openFor}

	// openBreaker fails threshold calls and checks the breaker opened.
	openBreaker := func(t *testing.T, h *harness, s *fakeidp.Server) {
		t.Helper()
		s.Fail(fakeidp.FailHTML(503), threshold)
		for i := 0; i < threshold; i++ {
			if st := h.c.State(s.V2TokenURL()); st != guard.StateClosed {
				t.Fatalf("state after %d failures = %s, want closed", i, st)
			}
			if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil {
				t.Fatal("want the 503")
			}
		}
		if st := h.c.State(s.V2TokenURL()); st != guard.StateOpen {
			t.Fatalf("state after %d failures = %s, want open", threshold, st)
		}
	}

	t.Run("opens, fails fast, probes, closes", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, opts)
		openBreaker(t, h, s)

		// A token URL with a query is the same endpoint; the error names
		// it without the query.
		ep := appEP(s)
		ep.TokenURL += "?api-version=s3cret"
		_, err := h.c.ClientCredentials(context.Background(), ep)
		var co *guard.CircuitOpenError
		if !errors.Is(err, guard.ErrCircuitOpen) || !errors.As(err, &co) {
			t.Fatalf("err = %v, want ErrCircuitOpen", err)
		}
		if co.TokenURL != s.V2TokenURL() || co.RetryAfter != openFor || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("CircuitOpenError = %+v (%q), want TokenURL %s, RetryAfter %s", co, err, s.V2TokenURL(), openFor)
		}
		// oauth recognises it by its own type, and tells callers to come
		// back when the breaker lets a probe through.
		var ff *oauth.FailFastError
		if !errors.As(err, &ff) || ff.TokenURL != co.TokenURL || ff.RetryAfter != openFor {
			t.Errorf("as *oauth.FailFastError: %+v, want TokenURL %s, RetryAfter %s", ff, co.TokenURL, openFor)
		}
		if e := oauth.Classify(err); e.Code != tokenbroker.CodeUnavailable || e.RetryAfter != int(openFor/time.Second) {
			t.Errorf("oauth.Classify = %+v, want 503 with RetryAfter %d", e, int(openFor/time.Second))
		}
		if n := s.Calls(); n != threshold {
			t.Errorf("IdP calls = %d, want %d: an open breaker must not call", n, threshold)
		}

		h.clock.Advance(openFor - time.Second)
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); !errors.Is(err, guard.ErrCircuitOpen) {
			t.Fatalf("1s before OpenFor: err = %v, want ErrCircuitOpen", err)
		}
		h.clock.Advance(time.Second)
		if st := h.c.State(s.V2TokenURL()); st != guard.StateHalfOpen {
			t.Fatalf("state after OpenFor = %s, want half-open", st)
		}
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err != nil {
			t.Fatalf("probe: %v", err)
		}
		if n := s.Calls(); n != threshold+1 {
			t.Errorf("IdP calls = %d, want %d", n, threshold+1)
		}
		if st := h.c.State(s.V2TokenURL()); st != guard.StateClosed {
			t.Errorf("state after a good probe = %s, want closed", st)
		}
		// The failed-fast calls were no attempts.
		if n := len(h.att.Got()); n != threshold+1 {
			t.Errorf("OnAttempt calls = %d, want %d", n, threshold+1)
		}
	})

	t.Run("a failed probe re-opens", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, opts)
		openBreaker(t, h, s)
		h.clock.Advance(openFor)
		s.Fail(fakeidp.FailHTML(503), 1)
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil || errors.Is(err, guard.ErrCircuitOpen) {
			t.Fatalf("probe: err = %v, want the IdP's 503", err)
		}
		if st := h.c.State(s.V2TokenURL()); st != guard.StateOpen {
			t.Fatalf("state after a failed probe = %s, want open", st)
		}
		_, err := h.c.ClientCredentials(context.Background(), appEP(s))
		var co *guard.CircuitOpenError
		if !errors.As(err, &co) || co.RetryAfter != openFor {
			t.Fatalf("err = %v, want circuit open for %s", err, openFor)
		}
		if n := s.Calls(); n != threshold+1 {
			t.Errorf("IdP calls = %d, want %d", n, threshold+1)
		}
	})

	t.Run("half-open lets exactly one call through", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, opts)
		openBreaker(t, h, s)
		h.clock.Advance(openFor)

		arrived := make(chan struct{}, 1)
		s.OnCall(func(string) { arrived <- struct{}{} })
		release := s.Hold()
		defer release()
		probeErr := make(chan error, 1)
		go func() {
			_, err := h.c.ClientCredentials(context.Background(), appEP(s))
			probeErr <- err
		}()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the probe never reached the IdP")
		}
		_, err := h.c.ClientCredentials(context.Background(), appEP(s))
		var co *guard.CircuitOpenError
		if !errors.As(err, &co) || co.RetryAfter != 0 {
			t.Fatalf("second call while probing: err = %v, want circuit open, probe in flight", err)
		}
		release()
		if err := <-probeErr; err != nil {
			t.Fatalf("probe: %v", err)
		}
		if n := s.Calls(); n != threshold+1 {
			t.Errorf("IdP calls = %d, want %d", n, threshold+1)
		}
		if st := h.c.State(s.V2TokenURL()); st != guard.StateClosed {
			t.Errorf("state = %s, want closed", st)
		}
	})

	t.Run("a rejection means the IdP is up", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, opts)
		for round := 0; round < 2; round++ {
			s.Fail(fakeidp.FailHTML(503), threshold-1)
			for i := 0; i < threshold-1; i++ {
				h.c.ClientCredentials(context.Background(), appEP(s))
			}
			if _, err := h.c.Password(context.Background(), userEP(s), user, "wrong"); errors.Is(err, guard.ErrCircuitOpen) || err == nil {
				t.Fatalf("wrong password: err = %v, want invalid_grant", err)
			}
		}
		if st := h.c.State(s.V2TokenURL()); st != guard.StateClosed {
			t.Errorf("state = %s, want closed: no %d failures were consecutive", st, threshold)
		}
	})

	t.Run("retries stop once the breaker opens", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, guard.Options{MaxAttempts: 5, FailureThreshold: 2, OpenFor: openFor})
		s.Fail(fakeidp.FailHTML(503), -1)
		_, err := h.c.ClientCredentials(context.Background(), appEP(s))
		var re *oauth.RetrieveError
		if !errors.As(err, &re) || re.StatusCode != 503 {
			t.Fatalf("err = %v, want the IdP's 503", err)
		}
		if n := s.Calls(); n != 2 {
			t.Errorf("IdP calls = %d, want 2: the breaker opened on the second", n)
		}
		if w := h.sleeps.Waits(); len(w) != 1 {
			t.Errorf("backoffs = %v, want 1", w)
		}
	})
}

func TestMaxConcurrent(t *testing.T) {
	const limit, callers = 3, 3 + 5
	s := startIdP(t)
	h := newClient(t, guard.Options{MaxConcurrent: limit})

	arrived := make(chan struct{}, callers)
	s.OnCall(func(string) { arrived <- struct{}{} })
	release := s.Hold()
	defer release()

	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		go func() {
			_, err := h.c.ClientCredentials(context.Background(), appEP(s))
			errs <- err
		}()
	}
	for i := 0; i < limit; i++ {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d calls reached the IdP, want %d", i, limit)
		}
	}
	// Proving that no further call arrives needs a bounded wait: there is
	// no event for "a call did not happen". 100ms is ample for a caller
	// that got past the limit to reach a server on 127.0.0.1, and it is the
	// only wait of the suite.
	select {
	case <-arrived:
		t.Fatalf("more than %d calls in flight at once", limit)
	case <-time.After(100 * time.Millisecond):
	}
	if n := s.Calls(); n != limit {
		t.Fatalf("IdP calls while held = %d, want %d", n, limit)
	}

	// A caller over the limit waits only as long as its ctx allows.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.c.ClientCredentials(ctx, appEP(s)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: err = %v, want context.Canceled", err)
	}

	release()
	for i := 0; i < callers; i++ {
		if err := <-errs; err != nil {
			t.Errorf("caller: %v", err)
		}
	}
	if n := s.Calls(); n != callers {
		t.Errorf("IdP calls = %d, want %d", n, callers)
	}
}

func TestOnAttemptOutcomes(t *testing.T) {
	s := startIdP(t)
	h := newClient(t, guard.Options{})
	ctx := context.Background()

	tok, err := h.c.Password(ctx, userEP(s), user, password)
	if err != nil {
		t.Fatalf("Password: %v", err)
	}
	h.c.Password(ctx, userEP(s), user, "wrong")
	s.Fail(fakeidp.FailTruncated(), 1)
	h.c.ClientCredentials(ctx, appEP(s))
	// The 503 comes before the IdP redeems the refresh token, so the retry
	// may still use it.
	s.Fail(fakeidp.FailHTML(503), 1)
	if _, err := h.c.Refresh(ctx, userEP(s), tokenbroker.Secret(tok.RefreshToken)); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	// Refused before any IdP call: no attempt.
	if _, err := h.c.Password(ctx, userEP(s), "", password); !errors.Is(err, oauth.ErrInvalidArgument) {
		t.Errorf("empty username: err = %v, want ErrInvalidArgument", err)
	}
	if _, err := h.c.ClientCredentials(ctx, oauth.Endpoint{TokenURL: "not a url"}); !errors.Is(err, oauth.ErrInvalidArgument) {
		t.Errorf("bad token URL: err = %v, want ErrInvalidArgument", err)
	}

	want := []string{
		"password ok",
		"password rejected",
		"client_credentials unusable",
		"refresh_token unavailable",
		"refresh_token ok",
	}
	if got := h.att.Got(); !equalStrings(got, want) {
		t.Errorf("attempts\n got %q\nwant %q", got, want)
	}
}

func TestEndpointIsolation(t *testing.T) {
	down, up := startIdP(t), startIdP(t)
	h := newClient(t, guard.Options{MaxAttempts: 1, FailureThreshold: 1, MaxConcurrent: 1})
	down.Fail(fakeidp.FailHTML(503), -1)

	if _, err := h.c.ClientCredentials(context.Background(), appEP(down)); err == nil {
		t.Fatal("want the 503")
	}
	if _, err := h.c.ClientCredentials(context.Background(), appEP(down)); !errors.Is(err, guard.ErrCircuitOpen) {
		t.Fatalf("failing endpoint: err = %v, want ErrCircuitOpen", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := h.c.ClientCredentials(context.Background(), appEP(up)); err != nil {
			t.Fatalf("healthy endpoint: %v", err)
		}
	}
	if st := h.c.State(down.V2TokenURL()); st != guard.StateOpen {
		t.Errorf("failing endpoint state = %s, want open", st)
	}
	if st := h.c.State(up.V2TokenURL()); st != guard.StateClosed {
		t.Errorf("healthy endpoint state = %s, want closed", st)
	}
	if down.Calls() != 1 || up.Calls() != 3 {
		t.Errorf("IdP calls: failing %d, healthy %d; want 1 and 3", down.Calls(), up.Calls())
	}
}

func TestBreakerStateString(t *testing.T) {
	for st, want := range map[guard.BreakerState]string{
		guard.StateClosed: "closed", guard.StateOpen: "open", guard.StateHalfOpen: "half-open",
	} {
		if got := st.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(st), got, want)
		}
	}
}

// outage runs an outage of the IdP behind h for d while callers without a
// token ask every 100 ms, each getting a 503, and returns how long after the
// IdP came back the first token was served and how many calls reached the
// IdP during the outage. It gives up 40 s after the IdP came back.
func outage(t *testing.T, h *harness, s *fakeidp.Server, d time.Duration) (recovery time.Duration, calls int64) {
	t.Helper()
	const every = 100 * time.Millisecond
	start, before := h.clock.Now(), s.Calls()
	s.Fail(fakeidp.FailHTML(503), -1)
	down := true
	for {
		elapsed := h.clock.Now().Sub(start)
		if down && elapsed >= d {
			s.ClearFailures()
			down, calls = false, s.Calls()-before
		}
		if elapsed > d+40*time.Second {
			t.Fatalf("%s outage: no token 40s after the IdP came back (breaker %s)", d, h.c.State(s.V2TokenURL()))
		}
		_, err := h.c.ClientCredentials(context.Background(), appEP(s))
		if err == nil {
			if down {
				t.Fatalf("%s outage: a token at %s, during the outage", d, elapsed)
			}
			return elapsed - d, calls
		}
		if e := oauth.Classify(err); e.Code != tokenbroker.CodeUnavailable {
			t.Fatalf("%s outage, at %s: err = %v, classified %+v, want a 503", d, elapsed, err, e)
		}
		h.clock.Advance(every)
	}
}

// TestRecoveryAfterOutage is the outage the breaker's open times are chosen
// for: once the IdP is back, a token must be served within seconds, not
// after the rest of a 30 s open breaker; and meanwhile the IdP must still be
// left alone.
func TestRecoveryAfterOutage(t *testing.T) {
	t.Run("15s outage: a token within 5s", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, guard.Options{}) // the defaults, as the broker runs
		recovery, calls := outage(t, h, s, 15*time.Second)
		if recovery > 5*time.Second {
			t.Errorf("first token %s after the IdP came back, want within 5s", recovery)
		}
		// Five failures open the breaker; then one probe each at 1, 3
		// and 7 s. An open time that stayed short would probe every
		// second.
		if calls > 8 {
			t.Errorf("IdP calls during the outage = %d, want at most 8", calls)
		}
	})

	// Whatever its length, an outage is followed by 503s for at most the
	// open time in force when it ends: about as long as the outage had
	// lasted (plus the first open time), and never more than OpenFor; plus
	// the 100 ms until the next caller comes.
	t.Run("any outage: at most its own length, at most OpenFor", func(t *testing.T) {
		s := startIdP(t)
		for d := 500 * time.Millisecond; d <= 45*time.Second; d += 500 * time.Millisecond {
			h := newClient(t, guard.Options{})
			recovery, _ := outage(t, h, s, d)
			if limit := min(d+guard.DefaultMinOpenFor, guard.DefaultOpenFor) + 100*time.Millisecond; recovery > limit {
				t.Errorf("%s outage: first token %s after the IdP came back, want within %s", d, recovery, limit)
			}
		}
	})
}

// openTime makes a call that an open breaker must fail fast, and returns how
// long it says the breaker stays open.
func openTime(t *testing.T, h *harness, s *fakeidp.Server) time.Duration {
	t.Helper()
	_, err := h.c.ClientCredentials(context.Background(), appEP(s))
	var co *guard.CircuitOpenError
	if !errors.As(err, &co) || co.RetryAfter <= 0 {
		t.Fatalf("err = %v, want circuit open with a RetryAfter", err)
	}
	return co.RetryAfter
}

// failProbe advances h's clock by d, when the breaker must let a probe
// through, and checks that the probe reached the IdP and failed.
func failProbe(t *testing.T, h *harness, s *fakeidp.Server, d time.Duration) {
	t.Helper()
	h.clock.Advance(d)
	calls := s.Calls()
	if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil || errors.Is(err, guard.ErrCircuitOpen) {
		t.Fatalf("probe: err = %v, want the IdP's failure", err)
	}
	if s.Calls() != calls+1 {
		t.Fatal("the probe did not reach the IdP")
	}
}

func TestBreakerOpenTime(t *testing.T) {
	t.Run("doubles with each failed probe up to OpenFor, and resets", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, guard.Options{MaxAttempts: 1, FailureThreshold: 1, OpenFor: 10 * time.Second})
		s.Fail(fakeidp.FailHTML(503), -1)
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil {
			t.Fatal("want the 503")
		}
		for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
			if got := openTime(t, h, s); got != want {
				t.Fatalf("open time %d = %s, want %s", i+1, got, want)
			}
			failProbe(t, h, s, want)
		}
		// A good probe closes the breaker; the next outage starts again
		// from the shortest open time.
		s.ClearFailures()
		h.clock.Advance(10 * time.Second)
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err != nil {
			t.Fatalf("probe: %v", err)
		}
		s.Fail(fakeidp.FailHTML(503), -1)
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil {
			t.Fatal("want the 503")
		}
		if got := openTime(t, h, s); got != time.Second {
			t.Errorf("open time after a recovery = %s, want 1s", got)
		}
	})

	t.Run("MinOpenFor is the first open time, OpenFor the ceiling", func(t *testing.T) {
		for _, tc := range []struct {
			name            string
			min, max        time.Duration
			want1st, want2d time.Duration
		}{
			{"3s up to 5s", 3 * time.Second, 5 * time.Second, 3 * time.Second, 5 * time.Second},
			{"MinOpenFor over OpenFor", time.Minute, 10 * time.Second, 10 * time.Second, 10 * time.Second},
			{"OpenFor under the default MinOpenFor", 0, 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond},
		} {
			s := startIdP(t)
			h := newClient(t, guard.Options{MaxAttempts: 1, FailureThreshold: 1, MinOpenFor: tc.min, OpenFor: tc.max})
			s.Fail(fakeidp.FailHTML(503), -1)
			if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil {
				t.Fatal("want the 503")
			}
			if got := openTime(t, h, s); got != tc.want1st {
				t.Errorf("%s: first open time = %s, want %s", tc.name, got, tc.want1st)
			}
			failProbe(t, h, s, tc.want1st)
			if got := openTime(t, h, s); got != tc.want2d {
				t.Errorf("%s: second open time = %s, want %s", tc.name, got, tc.want2d)
			}
		}
	})

	t.Run("a longer Retry-After is honoured, a shorter one does not shorten it", func(t *testing.T) {
		s := startIdP(t)
		h := newClient(t, guard.Options{MaxAttempts: 1, FailureThreshold: 1})
		s.Fail(fakeidp.FailRetryAfter(503, 5), 1)
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil {
			t.Fatal("want the 503")
		}
		if got := openTime(t, h, s); got != 5*time.Second {
			t.Fatalf("open time with Retry-After 5 = %s, want 5s", got)
		}
		h.clock.Advance(5*time.Second - time.Millisecond)
		if st := h.c.State(s.V2TokenURL()); st != guard.StateOpen {
			t.Fatalf("state just before the Retry-After = %s, want open", st)
		}
		// The IdP's wait is a floor for one opening; the doubling counts
		// openings.
		s.Fail(fakeidp.FailHTML(503), 1)
		failProbe(t, h, s, time.Millisecond)
		if got := openTime(t, h, s); got != 2*time.Second {
			t.Fatalf("open time after a failed probe = %s, want 2s", got)
		}
		s.Fail(fakeidp.FailRetryAfter(503, 1), 1)
		failProbe(t, h, s, 2*time.Second)
		if got := openTime(t, h, s); got != 4*time.Second {
			t.Fatalf("open time after a probe with Retry-After 1 = %s, want 4s", got)
		}
	})
}
