package fakeidp

import (
	"fmt"
	"testing"
	"time"
)

// TestFederationRememberIsBounded checks the replay set never holds more
// than maxFederatedSeen entries, drops expired ones first, and otherwise the
// one due to be forgotten soonest, so that a load test cannot grow it.
func TestFederationRememberIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var f federation
	for i := range maxFederatedSeen {
		// "k0" goes soonest; every other entry lasts longer.
		if !f.remember(fmt.Sprintf("k%d", i), now.Add(time.Hour+time.Duration(i)*time.Second), now) {
			t.Fatalf("k%d taken for a replay", i)
		}
	}
	if f.remember("k1", now.Add(2*time.Hour), now) {
		t.Fatal("a remembered key was not taken for a replay")
	}
	if !f.remember("new", now.Add(time.Hour), now) {
		t.Fatal("a new key was taken for a replay")
	}
	if len(f.seen) != maxFederatedSeen {
		t.Fatalf("%d entries, want at most %d", len(f.seen), maxFederatedSeen)
	}
	if _, kept := f.seen["k0"]; kept {
		t.Error("the entry due soonest was kept over a new one")
	}
	if f.remember("k1", now.Add(time.Hour), now) {
		t.Error("k1 was forgotten before its time")
	}

	// Once entries have expired they go first, all at once, and a key
	// past its time may be used again.
	later := now.Add(time.Hour + 100*time.Second) // k1..k99 and "new" have expired
	if !f.remember("k50", later.Add(time.Hour), later) {
		t.Error("an expired key was still taken for a replay")
	}
	if !f.remember("fresh", later.Add(time.Hour), later) {
		t.Fatal("a new key was taken for a replay")
	}
	// 100 expired entries dropped, then k50 and fresh added.
	if n, want := len(f.seen), maxFederatedSeen-100+2; n != want {
		t.Errorf("%d entries after expiry, want %d", n, want)
	}
}
