package guard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/oauth"
)

// BreakerState is the state of one token endpoint's circuit breaker.
type BreakerState int

const (
	// StateClosed lets every call through (up to MaxConcurrent at once).
	StateClosed BreakerState = iota
	// StateOpen fails every call fast with a *CircuitOpenError.
	StateOpen
	// StateHalfOpen lets exactly one probe call through; its success
	// closes the breaker, its temporary failure re-opens it. Others are
	// failed fast meanwhile.
	StateHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateOpen:
		return "open"
	case StateHalfOpen:
		return "half-open"
	default:
		return fmt.Sprintf("BreakerState(%d)", int(s))
	}
}

// ErrCircuitOpen is matched by errors.Is for every *CircuitOpenError.
var ErrCircuitOpen = errors.New("guard: circuit open")

// CircuitOpenError is returned, without calling the IdP, while a token
// endpoint's breaker is open, or half-open with its probe in flight. It
// unwraps to an *oauth.FailFastError with the same TokenURL and RetryAfter,
// so that oauth.Classify and oauth.OutcomeOf, and any caller that knows only
// oauth, recognise a call held back while the IdP is failing.
type CircuitOpenError struct {
	// TokenURL is the token endpoint without user info, query or fragment.
	TokenURL string
	// RetryAfter is how long until the breaker lets a probe through,
	// measured on Options.Now; 0 when a probe is in flight already and the
	// breaker's next state is unknown.
	RetryAfter time.Duration
}

// Error returns "guard: token endpoint URL: circuit open, retry after D".
func (e *CircuitOpenError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("guard: token endpoint %s: circuit open, retry after %s", e.TokenURL, e.RetryAfter)
	}
	return fmt.Sprintf("guard: token endpoint %s: circuit open, probe in flight", e.TokenURL)
}

// Is reports whether target is ErrCircuitOpen.
func (e *CircuitOpenError) Is(target error) bool { return target == ErrCircuitOpen }

// Unwrap returns the error as oauth sees it: an *oauth.FailFastError.
func (e *CircuitOpenError) Unwrap() error { return e.failFast() }

func (e *CircuitOpenError) failFast() *oauth.FailFastError {
	return &oauth.FailFastError{TokenURL: e.TokenURL, RetryAfter: e.RetryAfter}
}

// Temporary reports true: the breaker closes again once the IdP recovers,
// so a caller may serve a cached token meanwhile and ask again later.
func (e *CircuitOpenError) Temporary() bool { return true }

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, for a
// Retry-After a caller can be given; 0 when unknown.
func (e *CircuitOpenError) RetryAfterSeconds() int { return e.failFast().RetryAfterSeconds() }

// verdict is what one IdP call says about its endpoint's health.
type verdict int

const (
	verdictNone    verdict = iota // nothing: refused locally, or the caller gave up
	verdictHealthy                // the IdP answered: a token, a rejection, even garbage
	verdictFailed                 // a temporary failure
)

// endpoint is one token endpoint's concurrency limit and breaker.
type endpoint struct {
	url   string        // endpointKey of the token URL
	slots chan struct{} // a buffered send holds one of MaxConcurrent slots

	mu        sync.Mutex // guards the fields below
	failures  int        // consecutive temporary failures while closed
	open      bool
	openUntil time.Time     // when an open breaker turns half-open
	openFor   time.Duration // its last open time, Retry-After aside; 0 once closed
	probing   bool          // half-open and the probe is in flight
}

// acquire takes a slot, waiting for one until ctx ends.
func (e *endpoint) acquire(ctx context.Context) error {
	// Without this check a done ctx and a free slot would be chosen at
	// random by select.
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case e.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives back a slot taken by acquire.
func (e *endpoint) release() { <-e.slots }

// state returns the breaker state at now.
func (e *endpoint) state(now time.Time) BreakerState {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.open:
		return StateClosed
	case now.Before(e.openUntil):
		return StateOpen
	default:
		return StateHalfOpen
	}
}

// check returns a *CircuitOpenError when a call at now would be failed
// fast, without claiming the probe.
func (e *endpoint) check(now time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.refusal(now)
}

// refusal is check's answer; the caller holds e.mu.
func (e *endpoint) refusal(now time.Time) error {
	switch {
	case !e.open:
		return nil
	case now.Before(e.openUntil):
		return &CircuitOpenError{TokenURL: e.url, RetryAfter: e.openUntil.Sub(now)}
	case e.probing:
		return &CircuitOpenError{TokenURL: e.url}
	default:
		return nil
	}
}

// admit decides whether a call at now may go to the IdP. probe is true when
// the call is the one probe of a half-open breaker; its verdict must then be
// passed to record, which frees the probe.
func (e *endpoint) admit(now time.Time) (probe bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.refusal(now); err != nil {
		return false, err
	}
	if e.open {
		e.probing = true
		return true, nil
	}
	return false, nil
}

// record applies the verdict of a call that ended at now; retryAfter is the
// IdP's Retry-After of a failure (0 when none).
func (e *endpoint) record(v verdict, retryAfter time.Duration, probe bool, now time.Time, o *Options) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if probe {
		e.probing = false
	}
	switch v {
	case verdictHealthy:
		// Any answer from the IdP, even a straggler that was admitted
		// before the breaker opened, shows it is back.
		e.open, e.failures, e.openFor = false, 0, 0
	case verdictFailed:
		switch {
		case probe && e.open:
			// The probe failed: the IdP is still down, and the longer
			// it has been down the less likely it is back within
			// seconds, so it is probed half as often each time.
			e.openFor = max(doubled(e.openFor, o.OpenFor), o.MinOpenFor)
			e.openUntil = now.Add(max(e.openFor, retryAfter))
		case e.open:
			// A straggler admitted before the breaker opened: it
			// only extends the pause when the IdP asked for longer.
			if until := now.Add(retryAfter); until.After(e.openUntil) {
				e.openUntil = until
			}
		default:
			if e.failures++; e.failures >= o.FailureThreshold {
				// A young outage is often a blip: probe soon.
				e.open, e.openFor = true, o.MinOpenFor
				e.openUntil = now.Add(max(e.openFor, retryAfter))
			}
		}
	}
}

// doubled returns twice d, at most limit (and without overflowing).
func doubled(d, limit time.Duration) time.Duration {
	if d > limit/2 {
		return limit
	}
	return 2 * d
}
