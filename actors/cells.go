package actors

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anthdm/hollywood/actor"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/policy"
)

// cellKey identifies a credential's cell: a user's keyed hash, or a named
// credential's place in the configuration. It is fixed-size and its first
// bytes are already a good hash, so a lookup hashes nothing.
type cellKey struct {
	sum   userKey
	named bool
}

// namedKey is the cell key of the i-th configured named credential. Its
// bytes are a bijective mix of i, spread over the table like a user's hash.
func namedKey(i int) cellKey {
	k := cellKey{named: true}
	z := uint64(i) + 0x9e3779b97f4a7c15 // splitmix64
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	binary.LittleEndian.PutUint64(k.sum[:8], z^z>>31)
	return k
}

func (k *cellKey) hash() uint64 { return binary.LittleEndian.Uint64(k.sum[:8]) }

// cell is a credential's entry in the Router: its actor and what the actor
// publishes. retired is set, under mu, by an actor leaving memory; senders
// hold mu's read lock, so once retired is set no message can reach the
// leaving actor.
type cell struct {
	snap atomic.Pointer[snapshot] // also in the cell's table slot, where hits read it
	// lastSeen is the Unix nanoseconds of the last request the actor saw,
	// or of the last hit on a snapshot since replaced; hits on the current
	// snapshot stamp it instead (see lastUse).
	lastSeen atomic.Int64

	key cellKey
	id  string // credential_id
	pid *actor.PID
	// For status only: when the timer next refreshes (Unix nanoseconds, 0
	// for never) and the last failure.
	nextRefresh atomic.Int64
	lastErr     atomic.Pointer[failure]

	mu      sync.RWMutex
	retired bool
}

// failure is a credential's last failed IdP call, for status.
type failure struct {
	err string
	at  time.Time
}

// see records a use at n (Unix nanoseconds) unless a later one is known.
func (c *cell) see(n int64) {
	for {
		old := c.lastSeen.Load()
		if n <= old || c.lastSeen.CompareAndSwap(old, n) {
			return
		}
	}
}

// lastUse is when the credential was last asked for: by a request its
// actor saw, or by a cache hit on its snapshot.
func (c *cell) lastUse() time.Time {
	n := c.lastSeen.Load()
	if s := c.snap.Load(); s != nil {
		n = max(n, s.lastHit.Load())
	}
	return time.Unix(0, n)
}

// snapshot is a credential's token as its actor holds it, published for
// cache hits: the token, the policy that decides whether it may answer, and
// its reply, encoded once. It is replaced, never modified (but for the hit
// stamp and the reply's record of the current second). The reply is held in
// it rather than pointed to, so that a hit on a cold credential reads one
// object.
type snapshot struct {
	key      cellKey
	id       string       // credential_id, for the audit trail
	lastHit  atomic.Int64 // Unix nanoseconds of the last hit it served, stamped at most every 50 ms
	tok      tokenbroker.Token
	policy   policy.Policy
	verifier Verifier // user credentials: the password that got the token
	user     bool
	reply    tokenbroker.CachedReply
}

// newSnapshot encodes tok's reply and builds its snapshot. The token's
// access token is taken from the encoded reply, so that a credential holds
// one copy of a token of a kilobyte or two, not two.
func newSnapshot(key cellKey, id string, tok tokenbroker.Token, p policy.Policy, v Verifier) *snapshot {
	s := &snapshot{key: key, id: id, tok: tok, policy: p, verifier: v, user: !key.named}
	s.reply.Init(id, &tok)
	s.tok.AccessToken = s.reply.AccessToken(tok.AccessToken)
	return s
}

// owns reports whether v may be given this snapshot's token: always for a
// named credential, for a user only with the password that obtained it.
func (s *snapshot) owns(v *Verifier) bool { return !s.user || s.verifier.Equal(*v) }

// serves reports whether the snapshot may answer req, whose password has
// verifier v, from cache at now.
func (s *snapshot) serves(req *tokenbroker.Request, v *Verifier, now time.Time) bool {
	return s.policy.Serves(&s.tok, req, now) && s.owns(v)
}

// stamp records a use at now in a, writing only when the clock moved on
// noticeably, so that concurrent cache hits do not all write the same
// cache line.
func stamp(a *atomic.Int64, now time.Time) {
	n := now.UnixNano()
	if n-a.Load() > int64(50*time.Millisecond) {
		a.Store(n)
	}
}

// cellTable is the Router's directory of credentials in memory.
//
// What it guarantees:
//   - Readers (load, snapshot) take no lock, write nothing and allocate
//     nothing; they see the table as of some moment during their call.
//   - A key has at most one cell: loadOrStore builds a missing cell under
//     the table's mutex.
//   - snapshot(k) returns the snapshot last published for k's cell, or nil;
//     never another credential's (a snapshot carries its key), and never
//     one of a cell deleted before the call began.
//
// It is an open-addressing hash table whose slots hold a cell and the
// snapshot its actor published, so that a hit on any of 100,000
// credentials goes from the slot straight to the snapshot: the cache-hit
// figures in BENCHMARKS.md depend on it, and a sync.Map of cells measured
// short of them at that scale. Changes take a mutex: spawning, retiring and
// publishing are rare next to hits.
type cellTable struct {
	mu   sync.Mutex // serialises changes; readers never take it
	tab  atomic.Pointer[slots]
	live int // cells in the table
	used int // slots not nil: cells and tombstones
}

// slots is one generation of the table. A change that does not fit builds
// a new generation and publishes it whole; readers holding the old one see
// the table as it was, which is all a concurrent read may expect.
type slots struct {
	mask uint64
	s    []slot
}

// slot is a cell and, once its actor published one, its snapshot. A slot
// whose cell is deleted has its snapshot cleared first, so a reader that
// finds a snapshot in a slot finds it with the cell it belongs to.
type slot struct {
	c atomic.Pointer[cell]
	s atomic.Pointer[snapshot]
}

// tombstone marks a deleted slot, so that probes for keys placed after it
// go on.
var tombstone = new(cell)

const minSlots = 64

func (t *cellTable) load(k cellKey) (*cell, bool) {
	tab := t.tab.Load()
	if tab == nil {
		return nil, false
	}
	// At most half the slots are used, so a probe meets a nil soon.
	for i := k.hash() & tab.mask; ; i = (i + 1) & tab.mask {
		c := tab.s[i].c.Load()
		if c == nil {
			return nil, false
		}
		if c != tombstone && c.key == k {
			return c, true
		}
	}
}

// snapshot returns the snapshot published for k, if any, without reading
// k's cell: the snapshot carries its key.
func (t *cellTable) snapshot(k cellKey) *snapshot {
	tab := t.tab.Load()
	if tab == nil {
		return nil
	}
	for i := k.hash() & tab.mask; ; i = (i + 1) & tab.mask {
		sl := &tab.s[i]
		c := sl.c.Load()
		switch {
		case c == nil:
			return nil
		case c == tombstone:
			continue
		}
		if s := sl.s.Load(); s != nil {
			if s.key == k {
				return s
			}
			continue
		}
		if c.key == k {
			return nil // in memory, nothing published yet
		}
	}
}

// publish makes s the snapshot of c, in c and in c's slot; nil withdraws
// it. Only c's actor calls it.
func (t *cellTable) publish(c *cell, s *snapshot) {
	if old := c.snap.Load(); old != nil {
		// Hits stamp the snapshot they read; keep the stamp.
		c.see(old.lastHit.Load())
	}
	c.snap.Store(s)
	t.mu.Lock()
	defer t.mu.Unlock()
	tab := t.tab.Load()
	if tab == nil {
		return
	}
	for i := c.key.hash() & tab.mask; ; i = (i + 1) & tab.mask {
		switch tab.s[i].c.Load() {
		case nil:
			return // retired: out of the table
		case c:
			tab.s[i].s.Store(s)
			return
		}
	}
}

// loadOrStore returns the cell of k, or stores and returns the one that
// build builds when there is none. build runs under the table's mutex, so a
// credential gets one cell and one actor.
func (t *cellTable) loadOrStore(k cellKey, build func() *cell) (c *cell, stored bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.load(k); ok {
		return c, false
	}
	tab := t.tab.Load()
	if tab == nil || 2*(t.used+1) > len(tab.s) {
		tab = t.rehash(t.live + 1)
	}
	c = build()
	i := k.hash() & tab.mask
	for {
		if old := tab.s[i].c.Load(); old == nil || old == tombstone {
			if old == nil {
				t.used++
			}
			break
		}
		i = (i + 1) & tab.mask
	}
	tab.s[i].s.Store(c.snap.Load())
	tab.s[i].c.Store(c)
	t.live++
	return c, true
}

// rehash publishes a new generation sized for live cells at a quarter of
// its slots or less, without tombstones, and returns it. Called with mu held.
func (t *cellTable) rehash(live int) *slots {
	n := minSlots
	for n < 4*live {
		n *= 2
	}
	next := &slots{mask: uint64(n - 1), s: make([]slot, n)}
	if old := t.tab.Load(); old != nil {
		for i := range old.s {
			c := old.s[i].c.Load()
			if c == nil || c == tombstone {
				continue
			}
			j := c.key.hash() & next.mask
			for next.s[j].c.Load() != nil {
				j = (j + 1) & next.mask
			}
			next.s[j].s.Store(old.s[i].s.Load())
			next.s[j].c.Store(c)
		}
	}
	t.used = t.live
	t.tab.Store(next)
	return next
}

// compareAndDelete deletes k's cell if it is c.
func (t *cellTable) compareAndDelete(k cellKey, c *cell) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tab := t.tab.Load()
	if tab == nil {
		return false
	}
	for i := k.hash() & tab.mask; ; i = (i + 1) & tab.mask {
		switch old := tab.s[i].c.Load(); {
		case old == nil:
			return false
		case old == c:
			tab.s[i].s.Store(nil)
			tab.s[i].c.Store(tombstone)
			t.live--
			return true
		}
	}
}

// all returns every cell, copied out so that the caller may retire them.
func (t *cellTable) all() []*cell {
	tab := t.tab.Load()
	if tab == nil {
		return nil
	}
	var cells []*cell
	for i := range tab.s {
		if c := tab.s[i].c.Load(); c != nil && c != tombstone {
			cells = append(cells, c)
		}
	}
	return cells
}
