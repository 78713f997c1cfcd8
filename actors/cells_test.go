package actors

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/clock"
)

// testKey is a user cell key as the Router makes them: a keyed hash.
func testKey(t testing.TB, keys *Keyring, i int) cellKey {
	t.Helper()
	return cellKey{sum: keys.userKey("default", "user"+strconv.Itoa(i))}
}

func newTestKeyring(t testing.TB) *Keyring {
	t.Helper()
	keys, err := NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestCellTableStoresFindsAndDeletes(t *testing.T) {
	keys := newTestKeyring(t)
	var tab cellTable
	const n = 5000 // several rehashes
	cells := make([]*cell, n)
	for i := range n {
		k := testKey(t, keys, i)
		c, stored := tab.loadOrStore(k, func() *cell { return &cell{key: k} })
		if !stored {
			t.Fatalf("key %d: found before it was stored", i)
		}
		cells[i] = c
	}
	for i := range n {
		if c, ok := tab.load(cells[i].key); !ok || c != cells[i] {
			t.Fatalf("key %d: got %p %v, want %p", i, c, ok, cells[i])
		}
	}
	// A second store of a key returns the first cell and builds nothing.
	if c, stored := tab.loadOrStore(cells[7].key, func() *cell { t.Fatal("built a second cell"); return nil }); stored || c != cells[7] {
		t.Fatalf("second store: %p %v", c, stored)
	}
	// Delete the even ones: the odd ones, probed past the tombstones, stay.
	for i := 0; i < n; i += 2 {
		if !tab.compareAndDelete(cells[i].key, cells[i]) {
			t.Fatalf("key %d: not deleted", i)
		}
		if tab.compareAndDelete(cells[i].key, cells[i]) {
			t.Fatalf("key %d: deleted twice", i)
		}
	}
	// Only the cell itself is deleted, not another one of the same key.
	if tab.compareAndDelete(cells[1].key, &cell{key: cells[1].key}) {
		t.Fatal("deleted a cell that is not in the table")
	}
	for i := range n {
		c, ok := tab.load(cells[i].key)
		if want := i%2 == 1; ok != want || (ok && c != cells[i]) {
			t.Fatalf("key %d after deletes: found %v, want %v", i, ok, want)
		}
	}
	if got := len(tab.all()); got != n/2 {
		t.Fatalf("all: %d cells, want %d", got, n/2)
	}
	// Stored again, the even keys reuse tombstones or come after a rehash
	// that drops them.
	for i := 0; i < n; i += 2 {
		k := cells[i].key
		if _, stored := tab.loadOrStore(k, func() *cell { return &cell{key: k} }); !stored {
			t.Fatalf("key %d: not stored again", i)
		}
	}
	if tab.live != n || len(tab.all()) != n {
		t.Fatalf("live %d, all %d, want %d", tab.live, len(tab.all()), n)
	}
	if tab.used > len(tab.tab.Load().s)/2 {
		t.Fatalf("%d of %d slots used: more than half", tab.used, len(tab.tab.Load().s))
	}
}

func TestCellTableEmpty(t *testing.T) {
	var tab cellTable
	k := cellKey{named: true}
	if _, ok := tab.load(k); ok {
		t.Fatal("found a key in an empty table")
	}
	if tab.compareAndDelete(k, &cell{}) {
		t.Fatal("deleted from an empty table")
	}
	if len(tab.all()) != 0 {
		t.Fatal("cells in an empty table")
	}
}

// TestCellTableReadersDuringChanges reads keys that stay in the table while
// another goroutine stores and deletes others, through rehashes and
// tombstones: a reader must find each staying key every time. Run it with
// -race.
func TestCellTableReadersDuringChanges(t *testing.T) {
	keys := newTestKeyring(t)
	var tab cellTable
	const staying, churn = 100, 3000
	stay := make([]*cell, staying)
	for i := range stay {
		k := testKey(t, keys, i)
		stay[i], _ = tab.loadOrStore(k, func() *cell { return &cell{key: k} })
	}
	var (
		done   atomic.Bool
		missed atomic.Int64
		wg     sync.WaitGroup
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				for _, c := range stay {
					if got, ok := tab.load(c.key); !ok || got != c {
						missed.Add(1)
					}
				}
			}
		}()
	}
	for round := range 3 {
		added := make([]*cell, churn)
		for i := range added {
			k := testKey(t, keys, staying+round*churn+i)
			added[i], _ = tab.loadOrStore(k, func() *cell { return &cell{key: k} })
		}
		for _, c := range added {
			tab.compareAndDelete(c.key, c)
		}
	}
	done.Store(true)
	wg.Wait()
	if n := missed.Load(); n > 0 {
		t.Fatalf("readers missed a staying key %d times", n)
	}
	if tab.live != staying {
		t.Fatalf("live %d, want %d", tab.live, staying)
	}
}

func TestNamedKeysAreDistinct(t *testing.T) {
	seen := map[cellKey]int{}
	for i := range 100000 {
		k := namedKey(i)
		if j, dup := seen[k]; dup {
			t.Fatalf("named keys %d and %d are equal", j, i)
		}
		seen[k] = i
		if !k.named {
			t.Fatalf("named key %d is not marked named", i)
		}
	}
}

// The cache-hit path builds a user's id and verifier without strings; they
// must equal the exported ones, which records in the store were made with.
func TestUserKeyMatchesCredentialIDAndVerifier(t *testing.T) {
	keys := newTestKeyring(t)
	for _, name := range []string{"alice@example.com", "", "bob\x00"} {
		u := keys.userKey("default", name)
		id := keys.UserCredentialID("default", name)
		if u.id() != id || len(id) != userIDLen || id[:2] != "u-" {
			t.Fatalf("%q: id %q, want %q", name, u.id(), id)
		}
		pw := tokenbroker.Secret("pw-" + name)
		if keys.userVerifier(u, pw) != keys.Verifier(id, pw) {
			t.Fatalf("%q: verifiers differ", name)
		}
		if keys.userVerifier(u, pw) == keys.userVerifier(u, pw+"x") {
			t.Fatalf("%q: two passwords, one verifier", name)
		}
	}
	if raceEnabled {
		return
	}
	if allocs := testing.AllocsPerRun(100, func() {
		u := keys.userKey("default", "alice@example.com")
		_ = keys.userVerifier(u, "pw")
	}); allocs != 0 {
		t.Fatalf("%v allocations for a user's key and verifier", allocs)
	}
}

func TestPublishedSnapshotsAreFoundByKey(t *testing.T) {
	keys := newTestKeyring(t)
	var tab cellTable
	a, b := testKey(t, keys, 1), testKey(t, keys, 2)
	ca, _ := tab.loadOrStore(a, func() *cell { return &cell{key: a} })
	cb, _ := tab.loadOrStore(b, func() *cell { return &cell{key: b} })
	if tab.snapshot(a) != nil {
		t.Fatal("a snapshot before any was published")
	}
	s1 := &snapshot{key: a}
	tab.publish(ca, s1)
	tab.publish(cb, &snapshot{key: b})
	if got := tab.snapshot(a); got != s1 || ca.snap.Load() != s1 {
		t.Fatalf("snapshot of a: %p, want %p", got, s1)
	}
	// A hit's stamp on the old snapshot survives its replacement.
	s1.lastHit.Store(12345)
	s2 := &snapshot{key: a}
	tab.publish(ca, s2)
	if got := tab.snapshot(a); got != s2 {
		t.Fatalf("after a second publish: %p, want %p", got, s2)
	}
	if got := ca.lastUse().UnixNano(); got != 12345 {
		t.Fatalf("last use %d, want the old snapshot's 12345", got)
	}
	// Snapshots move with their cells through rehashes.
	for i := 3; i < 400; i++ {
		k := testKey(t, keys, i)
		tab.loadOrStore(k, func() *cell { return &cell{key: k} })
	}
	if tab.snapshot(a) != s2 || tab.snapshot(b) == nil {
		t.Fatal("snapshots lost in a rehash")
	}
	tab.publish(ca, nil)
	if tab.snapshot(a) != nil {
		t.Fatal("a withdrawn snapshot is still found")
	}
	// A retired cell's slot forgets its snapshot, and a late publish by
	// its actor changes nothing.
	tab.compareAndDelete(b, cb)
	if tab.snapshot(b) != nil {
		t.Fatal("a deleted cell's snapshot is still found")
	}
	tab.publish(cb, &snapshot{key: b})
	if tab.snapshot(b) != nil {
		t.Fatal("a publish after the cell left the table is found")
	}
}

func TestCacheHitsCountAsUse(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOpts{clock: clk})
	req := user(testPassword)
	h.mustToken(req, tokenbroker.ActionNew)
	var tg target
	if err := h.router.resolve(&req, &tg); err != nil {
		t.Fatal(err)
	}
	c, ok := h.router.cells.load(tg.key)
	if !ok {
		t.Fatal("no cell after the first request")
	}
	clk.Advance(20 * time.Minute)
	if _, ok := h.router.ServeAppend(nil, &req, newReplier()); !ok {
		t.Fatal("not a cache hit")
	}
	if got := c.lastUse(); !got.Equal(clk.Now()) {
		t.Fatalf("last use %v, want the hit's %v", got, clk.Now())
	}
}
