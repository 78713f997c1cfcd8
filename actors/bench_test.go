package actors

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/store"
)

// nopReplier drops the answer: the benchmarks measure the Router alone.
type nopReplier struct{}

func (nopReplier) Respond(string, []byte)  {}
func (nopReplier) Fail(*tokenbroker.Error) {}

// benchmarkCacheHit warms req's credential once, then serves it from
// b.RunParallel goroutines: the Router's fast path, snapshot and reply
// encoding, without NATS.
func benchmarkCacheHit(b *testing.B, req tokenbroker.Request) {
	h := newHarness(b, harnessOpts{})
	h.mustToken(req, tokenbroker.ActionNew)
	if res := h.ask(req); res.action != tokenbroker.ActionExisting {
		b.Fatalf("second request: %q, want a cache hit", res.action)
	}
	calls := h.idp.Calls()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var rep nopReplier
		for pb.Next() {
			h.router.Serve(req, rep)
		}
	})
	b.StopTimer()
	if got := h.idp.Calls(); got != calls {
		b.Fatalf("%d IdP calls during the benchmark: not all cache hits", got-calls)
	}
}

func BenchmarkServeCacheHitNamed(b *testing.B) { benchmarkCacheHit(b, named(testApp)) }

func BenchmarkServeCacheHitUser(b *testing.B) { benchmarkCacheHit(b, user(testPassword)) }

// BenchmarkSpawnCredential measures how fast the Router brings credentials
// into memory: a cell, an actor with its inbox and context, started. The
// IdP call that usually follows is left out, so this is the rate at which
// stored or restored credentials can be spawned.
func BenchmarkSpawnCredential(b *testing.B) {
	h := newHarness(b, harnessOpts{})
	spec := h.router.opts.Default
	keys := h.router.opts.Keyring
	ids := make([]userKey, b.N)
	for i := range ids {
		ids[i] = keys.userKey(spec.Name, strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, id := range ids {
		h.router.cellFor(cellKey{sum: id}, id.id(), spec)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "credentials/s")
	if got := h.router.Credentials(); got != b.N {
		b.Fatalf("%d credentials in memory, want %d", got, b.N)
	}
}

// BenchmarkCacheHitUsers serves cache hits from the Router's fast path
// (ServeAppend into a reused buffer, as the NATS handler does) over one
// warm username credential and over 100,000, picked at random: what a hit
// costs when its credential's state is cold in the CPU's caches. Tokens are
// installed through the actor's restore path, without IdP calls.
func BenchmarkCacheHitUsers(b *testing.B) {
	for _, n := range []int{1, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := newHarness(b, harnessOpts{})
			reqs := warmUsers(b, h, n)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 0, 4096)
				rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
				for pb.Next() {
					var ok bool
					if buf, ok = h.router.ServeAppend(buf[:0], &reqs[rng.IntN(n)], nopReplier{}); !ok {
						b.Error("cache miss")
						return
					}
				}
			})
		})
	}
}

// warmUsers brings n username credentials into memory, each with a token of
// a JWT's size, as if restored from the store, and returns their requests.
func warmUsers(b *testing.B, h *harness, n int) []tokenbroker.Request {
	b.Helper()
	r := h.router
	reqs := make([]tokenbroker.Request, n)
	cells := make([]*cell, n)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	pad := strings.Repeat("x", 1200)
	for i := range reqs {
		reqs[i] = tokenbroker.Request{Username: "user" + strconv.Itoa(i) + "@example.com", Password: tokenbroker.Secret("pw" + strconv.Itoa(i))}
		var t target
		if err := r.resolve(&reqs[i], &t); err != nil {
			b.Fatal(err)
		}
		cells[i] = r.cellFor(t.key, t.id(), t.spec)
		r.opts.Engine.Send(cells[i].pid, loaded{rec: &store.Record{
			CredentialID: t.id(),
			Token:        tokenbroker.Token{AccessToken: "eyJ0eXAiOiJKV1QifQ." + pad + "." + strconv.Itoa(i), TokenType: "Bearer", Expiry: exp, Lifetime: time.Hour},
			Verifier:     t.v[:], ObtainedAt: exp.Add(-time.Hour),
		}})
	}
	// Wait on the table, where hits read: an actor publishes to its cell
	// a moment before its slot.
	testkit.Eventually(b, waitFor, func() error {
		for _, c := range cells {
			if r.cells.snapshot(c.key) == nil {
				return errors.New("not every credential has its token yet")
			}
		}
		return nil
	})
	return reqs
}
