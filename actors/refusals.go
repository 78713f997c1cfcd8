package actors

import (
	"math"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Defaults of the refused-login limit.
const (
	// DefaultMaxRefusals is how many sign-ins of one username the IdP may
	// refuse within RefusalWindow before the broker stops asking it. Azure
	// AD locks an account after 10 failed sign-ins (smart lockout), so the
	// broker must never be the one that gets there.
	DefaultMaxRefusals = 5
	// DefaultRefusalWindow is the window the refusals are counted over.
	DefaultRefusalWindow = time.Minute
	// maxRefusalEntries bounds the usernames remembered, so that a flood
	// of made-up usernames costs a bounded amount of memory.
	maxRefusalEntries = 1 << 16
)

// refusals counts, per username, the sign-ins the IdP refused, so that a
// guessed or stale password cannot make the broker lock the account out at
// the IdP, nor keep a username's actor busy with IdP calls. It outlives the
// username's actor, which leaves memory at once when its login failed.
type refusals struct {
	max    int
	window time.Duration

	mu sync.Mutex
	m  map[userKey]*refusalWindow
}

type refusalWindow struct {
	n     int
	until time.Time // when the window ends and the count starts again
}

func newRefusals(max int, window time.Duration) *refusals {
	if max <= 0 {
		max = DefaultMaxRefusals
	}
	if window <= 0 {
		window = DefaultRefusalWindow
	}
	return &refusals{max: max, window: window, m: map[userKey]*refusalWindow{}}
}

// record counts one refused sign-in of u at now.
func (r *refusals) record(u userKey, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.m[u]
	if w == nil || !now.Before(w.until) {
		if w == nil && len(r.m) >= maxRefusalEntries {
			r.evict(now)
		}
		w = &refusalWindow{until: now.Add(r.window)}
		r.m[u] = w
	}
	w.n++
}

// blocked returns how long u's sign-ins are refused without asking the IdP,
// or 0 when they are not. It reads a map under a mutex, and only for a
// username request that the cache could not answer.
func (r *refusals) blocked(u userKey, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.m[u]
	switch {
	case w == nil:
		return 0
	case !now.Before(w.until):
		delete(r.m, u)
		return 0
	case w.n < r.max:
		return 0
	default:
		return w.until.Sub(now)
	}
}

// evict makes room: every ended window goes, and if none had ended, an
// arbitrary entry (the map's order is random), so the table stays bounded.
// Called with mu held.
func (r *refusals) evict(now time.Time) {
	for u, w := range r.m {
		if !now.Before(w.until) {
			delete(r.m, u)
		}
	}
	for u := range r.m {
		if len(r.m) < maxRefusalEntries {
			return
		}
		delete(r.m, u)
	}
}

// check returns the 429 for a sign-in of u at now that the IdP must not be
// asked for, or nil.
func (r *refusals) check(u userKey, now time.Time) *tokenbroker.Error {
	wait := r.blocked(u, now)
	if wait <= 0 {
		return nil
	}
	e := tokenbroker.Errorf(tokenbroker.CodeTooMany, tokenbroker.OAuthTemporarilyUnavailable,
		"the identity provider refused %d sign-ins of this username within %s; not asking it again yet", r.max, r.window)
	e.RetryAfter = int(math.Ceil(wait.Seconds()))
	return e
}
