package main

import (
	"context"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Histogram records durations with HDR-style precision: values below 128 ns
// are exact, larger ones fall in one of 64 buckets per power of two, so a
// recorded value is off by less than 1/64 (1.6%). Its size is fixed: it
// never grows, whatever it records. The zero value is ready to use; it is
// not safe for concurrent use (give each goroutine its own and Merge).
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      uint64
	min, max uint64
}

const (
	subBits     = 6                                      // 64 sub-buckets per power of two
	subCount    = 1 << subBits                           // 64
	maxValueLen = 40                                     // values are clamped below 2^40 ns (about 18 minutes)
	histBuckets = (maxValueLen - subBits + 1) << subBits // highest index + 1
)

// bucketOf returns the bucket index of v (v < 2^maxValueLen).
func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return shift<<subBits + int(v>>uint(shift))
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	shift := uint(i>>subBits - 1)
	top := uint64(i&(subCount-1) + subCount)
	return top << shift, (top+1)<<shift - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	if v >= 1<<maxValueLen {
		v = 1<<maxValueLen - 1
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds o's records to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Mean is the average recorded value; 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Max is the largest recorded value; 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Percentile returns the value below which p percent (0 < p <= 100) of the
// records fall: the midpoint of the bucket holding the record of rank
// ceil(p/100 * n), kept within the recorded min and max. 0 when empty.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// Target is what a load run sends requests to.
type Target struct {
	Name    string // "echo" or "broker"
	Subject string
	Body    []byte
	// Users, when set, sends the request of one of users user0..user{n-1},
	// at random, instead of Body.
	Users int
}

// body returns the body of the next request, built in buf when it varies.
// Built rather than picked from 100,000 prepared ones: a real caller's
// request is hot in its own cache, and the load generator's misses on cold
// bodies would count against the broker in the scale comparison.
func (t *Target) body(buf []byte) []byte {
	if t.Users > 0 {
		return appendUserBody(buf[:0], rand.IntN(t.Users))
	}
	return t.Body
}

// Result is one load run: a target at one concurrency.
type Result struct {
	Target      string        `json:"target"`
	Concurrency int           `json:"concurrency"`
	Requests    uint64        `json:"requests"` // answered in the measured window
	Errors      uint64        `json:"errors"`   // timeouts and error replies in the window
	Elapsed     time.Duration `json:"elapsed_ns"`
	RPS         float64       `json:"rps"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	Mean        time.Duration `json:"mean_ns"`
	Rounds      int           `json:"rounds"`

	hist *Histogram // the measured latencies, for merging rounds
}

// merge adds round o to r (both of one target and concurrency).
func (r Result) merge(o Result) Result {
	if r.hist == nil {
		return o
	}
	h := *r.hist
	h.Merge(o.hist)
	r.hist = &h
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.Elapsed += o.Elapsed
	r.Rounds += o.Rounds
	r.RPS = float64(r.Requests) / r.Elapsed.Seconds()
	r.P50, r.P99, r.Mean = h.Percentile(50), h.Percentile(99), h.Mean()
	return r
}

// requestTimeout bounds one request of a load run.
const requestTimeout = 5 * time.Second

// runLoad runs concurrency goroutines, spread over conns, each sending
// requests to t one after the other: for warmup, unmeasured, then for
// duration, measured. Only requests started in the measured window count.
func runLoad(ctx context.Context, conns []*nats.Conn, t Target, concurrency int, warmup, duration time.Duration) Result {
	var (
		measuring atomic.Bool
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	hists := make([]Histogram, concurrency)
	errs := make([]uint64, concurrency)
	for g := range concurrency {
		nc := conns[g%len(conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hists[g]
			buf := make([]byte, 0, 128)
			for !stop.Load() {
				counted := measuring.Load()
				start := time.Now()
				msg, err := nc.Request(t.Subject, t.body(buf), requestTimeout)
				d := time.Since(start)
				if !counted {
					continue
				}
				if err != nil || msg.Header.Get(micro.ErrorCodeHeader) != "" {
					errs[g]++
					continue
				}
				h.Record(d)
			}
		}()
	}
	sleep(ctx, warmup)
	measuring.Store(true)
	start := time.Now()
	sleep(ctx, duration)
	stop.Store(true)
	elapsed := time.Since(start)
	wg.Wait()

	all := &Histogram{}
	r := Result{Target: t.Name, Concurrency: concurrency, Elapsed: elapsed, Rounds: 1, hist: all}
	for i := range hists {
		all.Merge(&hists[i])
		r.Errors += errs[i]
	}
	r.Requests = all.Count()
	r.RPS = float64(r.Requests) / elapsed.Seconds()
	r.P50, r.P99, r.Mean = all.Percentile(50), all.Percentile(99), all.Mean()
	return r
}

// burst sends n requests at once, one goroutine each, released together,
// and returns how long it took until the last was answered, and how many
// failed. check, when set, judges each reply (nil error: a good one).
func burst(conns []*nats.Conn, t Target, n int, check func(*nats.Msg) error) (time.Duration, int, error) {
	var (
		wg       sync.WaitGroup
		ready    sync.WaitGroup
		failed   atomic.Int64
		mu       sync.Mutex
		firstErr error
	)
	release := make(chan struct{})
	ready.Add(n)
	for i := range n {
		nc := conns[i%len(conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-release
			msg, err := nc.Request(t.Subject, t.Body, 30*time.Second)
			if err == nil && check != nil {
				err = check(msg)
			}
			if err != nil {
				failed.Add(1)
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	ready.Wait()
	start := time.Now()
	close(release)
	wg.Wait()
	elapsed := time.Since(start)
	return elapsed, int(failed.Load()), firstErr
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
