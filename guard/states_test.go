package guard_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// TestBreakerStates follows one endpoint's breaker through closed, open,
// half-open and closed again as BreakerStates reports it, beside a second,
// configured endpoint that is never called.
func TestBreakerStates(t *testing.T) {
	const threshold, openFor = 2, 10 * time.Second
	s, other := startIdP(t), startIdP(t)
	h := newClient(t, guard.Options{MaxAttempts: 1, FailureThreshold: threshold, MinOpenFor: openFor, OpenFor: openFor})

	// The configured URLs as an operator may write them: with user info
	// and a query, which the key leaves out; and one that is not a URL.
	withQuery := strings.Replace(s.V2TokenURL(), "://", "://ops:pw@", 1) + "?api-version=s3cret"
	known := []string{withQuery, other.V2TokenURL(), "not a url"}
	check := func(step string, want map[string]guard.BreakerState) {
		t.Helper()
		if got := h.c.BreakerStates(known...); !maps.Equal(got, want) {
			t.Errorf("%s: BreakerStates = %v, want %v", step, got, want)
		}
	}
	states := func(st guard.BreakerState) map[string]guard.BreakerState {
		return map[string]guard.BreakerState{s.V2TokenURL(): st, other.V2TokenURL(): guard.StateClosed}
	}

	if got := h.c.BreakerStates(); len(got) != 0 {
		t.Errorf("before any call, nothing known: BreakerStates() = %v, want empty", got)
	}
	check("before any call", states(guard.StateClosed))

	s.Fail(fakeidp.FailHTML(503), threshold)
	for i := 0; i < threshold; i++ {
		if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err == nil {
			t.Fatal("want the 503")
		}
	}
	check("after the failures", states(guard.StateOpen))
	// An endpoint called is reported without being named in known.
	if got, want := h.c.BreakerStates(), map[string]guard.BreakerState{s.V2TokenURL(): guard.StateOpen}; !maps.Equal(got, want) {
		t.Errorf("BreakerStates() = %v, want %v", got, want)
	}

	h.clock.Advance(openFor - time.Nanosecond)
	check("just before the open time ends", states(guard.StateOpen))
	h.clock.Advance(time.Nanosecond)
	check("once the open time ended", states(guard.StateHalfOpen))
	// Reading the states claimed no probe: the next call is the probe.
	if _, err := h.c.ClientCredentials(context.Background(), appEP(s)); err != nil {
		t.Fatalf("probe: %v", err)
	}
	check("after a good probe", states(guard.StateClosed))
	if n := other.Calls(); n != 0 {
		t.Errorf("the configured endpoint got %d calls, want 0", n)
	}
}
