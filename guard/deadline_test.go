package guard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// startKey marks a caller's ctx with when its call began, so that the
// transport can check each attempt's deadline against that call's bound.
type startKey struct{}

// slack is how much later than start+timeout a request's deadline may be:
// the call's bound is set a moment after the test notes its start. It is
// far less than the timeout an attempt with a bound of its own would add.
const slack = 50 * time.Millisecond

// boundCheck is an http.RoundTripper that checks that every request's
// deadline falls within timeout of the start of the guarded call that made
// it, then sends it on. The deadlines are set by code, not measured, so the
// check hardly depends on how fast the machine is.
type boundCheck struct {
	timeout time.Duration
	next    http.RoundTripper

	mu         sync.Mutex
	violations []string
}

func (b *boundCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	start, _ := req.Context().Value(startKey{}).(time.Time)
	dl, ok := req.Context().Deadline()
	switch {
	case start.IsZero():
		b.fail("a request from a call with no start")
	case !ok:
		b.fail("a request without a deadline")
	case dl.After(start.Add(b.timeout + slack)):
		b.fail(fmt.Sprintf("a request with a deadline %s after its call began, past the timeout %s", dl.Sub(start), b.timeout))
	}
	return b.next.RoundTrip(req)
}

func (b *boundCheck) fail(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.violations = append(b.violations, msg)
}

func (b *boundCheck) Violations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.violations...)
}

// newBounded returns a harness whose oauth.Client has the given timeout and
// sends through a boundCheck.
func newBounded(t *testing.T, timeout time.Duration, o guard.Options) (*harness, *boundCheck) {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	bc := &boundCheck{timeout: timeout, next: tr}
	return newClientOver(t, oauth.NewClient(&http.Client{Transport: bc}, timeout), o), bc
}

// started returns ctx marked with the time now, for boundCheck.
func started(ctx context.Context) (context.Context, time.Time) {
	now := time.Now()
	return context.WithValue(ctx, startKey{}, now), now
}

// TestWholeCallDeadline checks that the client's timeout (IDP_TIMEOUT)
// bounds a whole guarded call, retries, backoffs and the wait for a slot
// included, rather than each attempt: a hung IdP must cost a caller one
// timeout, not MaxAttempts of them.
func TestWholeCallDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	// Retries must be possible: the breaker must not stop them.
	opts := guard.Options{MaxAttempts: 3, FailureThreshold: 100}

	for _, tc := range []struct {
		name   string
		caller time.Duration // the caller's own timeout; 0 for none
	}{
		{"caller without a deadline", 0},
		{"caller with a later deadline", time.Hour},
	} {
		t.Run("hung IdP, "+tc.name, func(t *testing.T) {
			s := startIdP(t)
			s.Fail(fakeidp.FailHang(), -1)
			h, bc := newBounded(t, timeout, opts)
			ctx := context.Background()
			if tc.caller > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.caller)
				defer cancel()
			}
			ctx, start := started(ctx)
			_, err := h.c.ClientCredentials(ctx, appEP(s))
			took := time.Since(start)

			var te *oauth.TransportError
			if !errors.As(err, &te) || !te.Timeout() {
				t.Fatalf("err = %v, want a timeout TransportError", err)
			}
			if e := oauth.Classify(err); e.Code != tokenbroker.CodeUnavailable {
				t.Errorf("classified %+v, want a 503", e)
			}
			// The first attempt had the whole timeout and used it: no
			// time was left for another.
			if n := s.Calls(); n != 1 {
				t.Errorf("IdP calls = %d, want 1", n)
			}
			if v := bc.Violations(); len(v) > 0 {
				t.Errorf("attempts beyond the call's bound: %q", v)
			}
			// Real time, so only a generous bound: MaxAttempts timeouts
			// would take 3 times as long.
			if took >= 2*timeout {
				t.Errorf("the call took %s, want about the timeout %s", took, timeout)
			}
		})
	}

	t.Run("a caller's sooner deadline ends the call sooner", func(t *testing.T) {
		s := startIdP(t)
		s.Fail(fakeidp.FailHang(), -1)
		h, bc := newBounded(t, time.Hour, opts)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ctx, start := started(ctx)
		_, err := h.c.ClientCredentials(ctx, appEP(s))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the caller's deadline", err)
		}
		if n := s.Calls(); n != 1 {
			t.Errorf("IdP calls = %d, want 1", n)
		}
		if v := bc.Violations(); len(v) > 0 {
			t.Errorf("violations of the hour-long bound: %q", v)
		}
		if took := time.Since(start); took >= 2*timeout {
			t.Errorf("the call took %s, want about the caller's %s", took, timeout)
		}
	})

	t.Run("a backoff past the deadline is not started", func(t *testing.T) {
		s := startIdP(t)
		// The IdP asks for 2s; a call bounded by 1s cannot wait that.
		s.Fail(fakeidp.FailRetryAfter(503, 2), 1)
		h, _ := newBounded(t, time.Second, opts)
		ctx, _ := started(context.Background())
		_, err := h.c.ClientCredentials(ctx, appEP(s))
		var re *oauth.RetrieveError
		if !errors.As(err, &re) || re.StatusCode != 503 {
			t.Fatalf("err = %v, want the IdP's 503 at once", err)
		}
		if n := s.Calls(); n != 1 {
			t.Errorf("IdP calls = %d, want 1", n)
		}
		if w := h.sleeps.Waits(); len(w) != 0 {
			t.Errorf("waits = %v, want none", w)
		}
	})

	t.Run("the wait for a slot counts", func(t *testing.T) {
		s := startIdP(t)
		s.Fail(fakeidp.FailHang(), -1)
		arrived := make(chan struct{}, 8)
		s.OnCall(func(string) { arrived <- struct{}{} })
		o := opts
		o.MaxConcurrent = 1
		h, bc := newBounded(t, timeout, o)

		// The first caller holds the only slot in a hung call...
		first := make(chan error, 1)
		go func() {
			ctx, _ := started(context.Background())
			_, err := h.c.ClientCredentials(ctx, appEP(s))
			first <- err
		}()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the first call never reached the IdP")
		}
		// ...so the second waits for it, and that wait is part of its
		// bound: whatever attempt it makes gets only what is left.
		ctx, start := started(context.Background())
		_, err := h.c.ClientCredentials(ctx, appEP(s))
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second caller: err = %v, want its deadline", err)
		}
		if e := oauth.Classify(err); e.Code != tokenbroker.CodeUnavailable {
			t.Errorf("second caller: classified %+v, want a 503", e)
		}
		if err := <-first; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("first caller: err = %v, want its deadline", err)
		}
		if v := bc.Violations(); len(v) > 0 {
			t.Errorf("attempts beyond their call's bound: %q", v)
		}
		if took >= 2*timeout {
			t.Errorf("the second call took %s, want about the timeout %s", took, timeout)
		}
	})
}
