package actors

import (
	"strconv"
	"testing"

	"github.com/tokenbroker/tokenbroker"
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
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = keys.UserCredentialID(spec.Name, strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, id := range ids {
		h.router.cellFor(id, id, spec)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "credentials/s")
	if got := h.router.Credentials(); got != b.N {
		b.Fatalf("%d credentials in memory, want %d", got, b.N)
	}
}
