// Package clock is a settable clock for tests: time that moves only when
// the test moves it, shared by the broker, the OAuth client and the fake IdP
// so that all three agree on what "expired" means.
package clock

import (
	"sync"
	"time"
)

// Fake is a clock that starts at a fixed time and moves by Advance.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a Fake reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the clock's time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}
