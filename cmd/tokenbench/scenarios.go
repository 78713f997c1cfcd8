package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
)

// Progress lines go to stderr: runs take a while.
func progress(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "tokenbench: "+format+"\n", args...)
}

// runThroughput compares echo and broker cache hits at each concurrency, on
// each topology asked for, interleaving echo and broker runs so that the
// machine's noise hits both alike.
func runThroughput(ctx context.Context, o *options, res *Results, out, stderr io.Writer) error {
	printMachine(out, res.Machine)
	topologies := []string{o.topology}
	if o.topology == "all" {
		topologies = []string{"inproc", "procs"}
	}
	for _, name := range topologies {
		var (
			e   *env
			err error
		)
		gateway := o.sseStreams > 0
		if name == "inproc" {
			e, err = startInproc(o.conns, backendOptions{audit: o.audit, http: gateway})
		} else {
			e, err = startProcs(o.conns, o.audit, gateway, stderr)
		}
		if err != nil {
			return fmt.Errorf("topology %s: %w", name, err)
		}
		tr := TopologyResult{Topology: name, ReplyBytes: e.replyBytes, Conns: len(e.conns)}
		// The streams are opened by this process, the load generator's,
		// and held for every row: echo and broker rows alike run beside
		// them, so the ratio shows what they cost the broker.
		var streams *sseStreams
		if gateway {
			progress(stderr, "%s: opening %d /events streams", name, o.sseStreams)
			if streams, err = openSSEStreams(ctx, e.httpAddr, o.sseStreams); err != nil {
				e.close()
				return fmt.Errorf("topology %s: %w", name, err)
			}
			tr.SSEStreams = o.sseStreams
		}
		echo := Target{Name: "echo", Subject: echoSubject, Body: namedBody}
		brk := Target{Name: "broker", Subject: requestSubject, Body: namedBody}
		for _, c := range o.concurrency {
			if ctx.Err() != nil {
				break
			}
			progress(stderr, "%s: concurrency %d", name, c)
			// Alternate in rounds, so that noise lasting a second or two
			// hits both targets; the first round of each warms up longer.
			var er, br Result
			slice := o.duration / time.Duration(o.rounds)
			for i := range o.rounds {
				w := o.warmup
				if i > 0 {
					w = min(o.warmup, 100*time.Millisecond)
				}
				er = er.merge(runLoad(ctx, e.conns, echo, c, w, slice))
				br = br.merge(runLoad(ctx, e.conns, brk, c, w, slice))
			}
			tr.Rows = append(tr.Rows, newRow(er, br))
		}
		if streams != nil {
			// Read before closing: those the broker dropped during the
			// run, which should be none.
			tr.SSEEnded = int(streams.ended.Load())
			streams.close()
		}
		e.close()
		printTopology(out, tr, o)
		res.Throughput = append(res.Throughput, tr)
	}
	return ctx.Err()
}

// checkReply fails on an error reply or a body that is not a token.
func checkReply(msg *nats.Msg) (tokenbroker.Reply, error) {
	var r tokenbroker.Reply
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return r, fmt.Errorf("error %s: %.200s", code, msg.Data)
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil || r.AccessToken == "" {
		return r, fmt.Errorf("not a token reply: %.200s", msg.Data)
	}
	return r, nil
}

// HerdResult is the cold herd: many first requests for one credential at once.
type HerdResult struct {
	Callers  int           `json:"callers"`
	IdPDelay time.Duration `json:"idp_delay_ns"`
	IdPCalls int64         `json:"idp_calls"` // must be 1
	Answered int           `json:"answered"`  // with the one token
	Failed   int           `json:"failed"`
	HerdTime time.Duration `json:"herd_time_ns"` // release to last answer
	IdPRTT   time.Duration `json:"idp_rtt_ns"`   // one direct POST to the token endpoint (median of 5)
	EchoTime time.Duration `json:"echo_time_ns"` // the same burst against the echo (median of 3)
	Ratio    float64       `json:"ratio"`        // herd / (idp_rtt + echo)
	Met      bool          `json:"met"`
}

const herdCallers = 1000

func runHerd(ctx context.Context, o *options, out io.Writer) (*HerdResult, error) {
	printMachine(out, machine())
	e, err := startInproc(o.conns, backendOptions{users: 1, audit: o.audit})
	if err != nil {
		return nil, err
	}
	defer e.close()
	idp := e.backend.idp
	idp.delay.Store(int64(o.idpDelay))
	r := &HerdResult{Callers: herdCallers, IdPDelay: o.idpDelay}

	// One IdP round trip, measured directly, with a warm connection as the
	// broker's HTTP client has.
	hc := &http.Client{Timeout: 10 * time.Second}
	form := url.Values{"grant_type": {"password"}, "client_id": {publicClient}, "username": {"user0"},
		"password": {userPassword}, "resource": {benchResource}}.Encode()
	var rtts []time.Duration
	for i := range 6 {
		start := time.Now()
		resp, err := hc.Post(idp.v1URL(), "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			return nil, fmt.Errorf("direct IdP call: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("direct IdP call: %s", resp.Status)
		}
		if i > 0 { // the first one also dials
			rtts = append(rtts, time.Since(start))
		}
	}
	r.IdPRTT = median(rtts)

	echo := Target{Name: "echo", Subject: echoSubject, Body: namedBody}
	var echoes []time.Duration
	for range 4 {
		d, failed, err := burst(e.conns, echo, herdCallers, nil)
		if failed > 0 {
			return nil, fmt.Errorf("echo burst: %d failed: %w", failed, err)
		}
		echoes = append(echoes, d)
	}
	r.EchoTime = median(echoes[1:]) // the first one warms up

	before := idp.fake.Calls()
	var (
		mu    sync.Mutex
		token string
	)
	check := func(msg *nats.Msg) error {
		rep, err := checkReply(msg)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if token == "" {
			token = rep.AccessToken
		} else if rep.AccessToken != token {
			return errors.New("callers got different tokens")
		}
		return nil
	}
	d, failed, ferr := burst(e.conns, Target{Name: "broker", Subject: requestSubject, Body: userBody(0)}, herdCallers, check)
	r.HerdTime, r.Failed, r.Answered = d, failed, herdCallers-failed
	r.IdPCalls = idp.fake.Calls() - before
	r.Ratio = ratio(float64(r.HerdTime), float64(r.IdPRTT+r.EchoTime))
	r.Met = r.IdPCalls == 1 && r.Failed == 0 && r.Ratio <= targetHerd

	fmt.Fprintf(out, "\n== cold herd: %d simultaneous first requests for one username/password credential, IdP delay %s\n", herdCallers, o.idpDelay)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "IdP calls\t%d\t(must be 1: %s)\n", r.IdPCalls, verdict(r.IdPCalls == 1))
	fmt.Fprintf(tw, "answered\t%d of %d\t(%s)\n", r.Answered, herdCallers, verdict(r.Failed == 0))
	if ferr != nil {
		fmt.Fprintf(tw, "first failure\t%v\t\n", ferr)
	}
	fmt.Fprintf(tw, "herd time\t%s\t(release to last answer)\n", ms(r.HerdTime))
	fmt.Fprintf(tw, "IdP round trip\t%s\t(direct POST, median of 5)\n", ms(r.IdPRTT))
	fmt.Fprintf(tw, "echo burst\t%s\t(%d simultaneous echo requests, median of 3)\n", ms(r.EchoTime), herdCallers)
	fmt.Fprintf(tw, "ratio\t%.2f\t(herd / (IdP round trip + echo burst), target <= %.1f: %s)\n", r.Ratio, targetHerd, verdict(r.Ratio <= targetHerd))
	tw.Flush()
	return r, ctx.Err()
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// ScaleResult is many warm credentials held at once.
type ScaleResult struct {
	Credentials       int           `json:"credentials"`
	TokenBytes        int           `json:"token_bytes"` // length of each access token
	IdPCalls          int64         `json:"idp_calls"`   // while warming: one per credential
	Failed            int           `json:"failed"`
	InMemory          int           `json:"in_memory"` // the broker's own count after warming
	WarmTime          time.Duration `json:"warm_time_ns"`
	WarmRate          float64       `json:"warm_rate"` // credentials per second, each one (in-memory) IdP call
	RSSBefore         uint64        `json:"rss_before"`
	RSSAfter          uint64        `json:"rss_after"`
	RSSPeak           uint64        `json:"rss_peak"` // VmHWM: the high-water mark, garbage included
	HeapBefore        uint64        `json:"heap_inuse_before"`
	HeapAfter         uint64        `json:"heap_inuse_after"`
	RSSPerCredential  float64       `json:"rss_bytes_per_credential"`
	HeapPerCredential float64       `json:"heap_bytes_per_credential"`
	OneRPS            float64       `json:"one_rps"`  // cache hits at c=64 on one credential
	ManyRPS           float64       `json:"many_rps"` // at c=64 on random credentials among all
	OneP50            time.Duration `json:"one_p50_ns"`
	ManyP50           time.Duration `json:"many_p50_ns"`
	Ratio             float64       `json:"ratio"` // many / one
}

const (
	warmInFlight = 256 // requests in flight while warming credentials
	scaleConc    = 64  // concurrency of the scale comparison
	scaleRounds  = 3   // one and many alternate this many times; the ratio is of the means
)

func runScale(ctx context.Context, o *options, out io.Writer) (*ScaleResult, error) {
	printMachine(out, machine())
	n := o.credentials
	if n == 0 {
		n = 100000
	}
	idp := newMemoryIdP(time.Hour, o.tokenBytes)
	e, err := startInproc(o.conns, backendOptions{memory: idp, audit: o.audit})
	if err != nil {
		return nil, err
	}
	defer e.close()
	r := &ScaleResult{Credentials: n, TokenBytes: o.tokenBytes}
	r.RSSBefore, r.HeapBefore = memory()

	progress(os.Stderr, "scale: warming %d credentials, %d requests in flight", n, warmInFlight)
	var ferr error
	if err := profiled(o.cpuProfile, ".warm", func() { r.WarmTime, r.Failed, ferr = warm(ctx, e.conns, n) }); err != nil {
		return nil, err
	}
	r.WarmRate = float64(n) / r.WarmTime.Seconds()
	r.IdPCalls = idp.calls.Load()
	r.InMemory = e.backend.broker.Router().Credentials()
	r.RSSAfter, r.HeapAfter = memory()
	r.RSSPeak = procStatus("self", "VmHWM:")
	r.RSSPerCredential = float64(int64(r.RSSAfter)-int64(r.RSSBefore)) / float64(n)
	r.HeapPerCredential = float64(int64(r.HeapAfter)-int64(r.HeapBefore)) / float64(n)

	one := Target{Name: "one", Subject: requestSubject, Body: userBody(0)}
	many := Target{Name: "many", Subject: requestSubject, Users: n}
	var oneRes, manyRes []Result
	for round := range scaleRounds {
		progress(os.Stderr, "scale: cache hits at concurrency %d, one credential then %d", scaleConc, n)
		profile := o.cpuProfile
		if round > 0 {
			profile = "" // the first round's profiles are enough to compare
		}
		for _, run := range []struct {
			t   Target
			res *[]Result
		}{{one, &oneRes}, {many, &manyRes}} {
			if err := profiled(profile, "."+run.t.Name, func() {
				*run.res = append(*run.res, runLoad(ctx, e.conns, run.t, scaleConc, o.warmup, o.duration))
			}); err != nil {
				return nil, err
			}
		}
	}
	for i := range oneRes {
		r.OneRPS += oneRes[i].RPS / float64(len(oneRes))
		r.ManyRPS += manyRes[i].RPS / float64(len(manyRes))
	}
	r.OneP50, r.ManyP50 = oneRes[len(oneRes)-1].P50, manyRes[len(manyRes)-1].P50
	r.Ratio = ratio(r.ManyRPS, r.OneRPS)

	fmt.Fprintf(out, "\n== scale: %d username/password credentials, %d-byte tokens from an in-memory IdP, in-process (RSS includes NATS server and load generator)\n", n, r.TokenBytes)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "warmed\t%d of %d, %d in the broker's memory, %d IdP calls\t\n", n-r.Failed, n, r.InMemory, r.IdPCalls)
	if ferr != nil {
		fmt.Fprintf(tw, "first failure\t%v\t\n", ferr)
	}
	fmt.Fprintf(tw, "warm time\t%s\t(%d in flight)\n", ms(r.WarmTime), warmInFlight)
	fmt.Fprintf(tw, "warm rate\t%.0f credentials/s\t(first request each: spawn, in-memory IdP call, event, reply; spawning alone: go test -bench Spawn ./actors)\n", r.WarmRate)
	fmt.Fprintf(tw, "RSS\t%s -> %s\t(%.0f bytes/credential; target <= 1 GiB: %s)\n", mib(r.RSSBefore), mib(r.RSSAfter), r.RSSPerCredential, verdict(r.RSSAfter <= targetRSS))
	fmt.Fprintf(tw, "peak RSS\t%s\t(VmHWM, garbage of the warm-up included)\n", mib(r.RSSPeak))
	fmt.Fprintf(tw, "Go heap in use\t%s -> %s\t(%.0f bytes/credential)\n", mib(r.HeapBefore), mib(r.HeapAfter), r.HeapPerCredential)
	fmt.Fprintf(tw, "cache hits, one credential\t%.0f req/s\tp50 %s\n", r.OneRPS, us(r.OneP50))
	fmt.Fprintf(tw, "cache hits, %d credentials\t%.0f req/s\tp50 %s\n", n, r.ManyRPS, us(r.ManyP50))
	fmt.Fprintf(tw, "ratio\t%.2f\t(target >= %.1f: %s)\n", r.Ratio, targetScale, verdict(r.Ratio >= targetScale))
	tw.Flush()
	return r, ctx.Err()
}

// profiled runs fn under a CPU profile written to path+suffix; with an
// empty path it just runs fn.
func profiled(path, suffix string, fn func()) error {
	if path == "" {
		fn()
		return nil
	}
	stop, err := startProfile(path + suffix)
	if err != nil {
		return err
	}
	fn()
	return stop()
}

// startProfile starts a CPU profile into path; stop ends it and closes the file.
func startProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// warm sends the first request of users user0..user{users-1}, warmInFlight
// at a time.
func warm(ctx context.Context, conns []*nats.Conn, users int) (time.Duration, int, error) {
	var (
		next   atomic.Int64
		failed atomic.Int64
		mu     sync.Mutex
		first  error
		wg     sync.WaitGroup
	)
	start := time.Now()
	for w := range warmInFlight {
		nc := conns[w%len(conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= users {
					return
				}
				buf = appendUserBody(buf[:0], i)
				msg, err := nc.Request(requestSubject, buf, 30*time.Second)
				if err == nil {
					_, err = checkReply(msg)
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), int(failed.Load()), first
}

// memory returns this process's resident set and Go heap in use, after a
// garbage collection that returns what it can to the OS.
func memory() (rss, heap uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return procStatus("self", "VmRSS:"), ms.HeapInuse
}

// procStatus reads a size field (VmRSS:, VmHWM:) of a process ("self" or a
// pid) from /proc, in bytes; 0 if unknown.
func procStatus(pid, field string) uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// StormResult is many credentials whose tokens expire together.
type StormResult struct {
	Credentials     int           `json:"credentials"`
	Lifetime        time.Duration `json:"lifetime_ns"`
	Threshold       time.Duration `json:"threshold_ns"`
	IdPDelay        time.Duration `json:"idp_delay_ns"`
	WarmTime        time.Duration `json:"warm_time_ns"` // the tokens were issued within this
	RefreshCalls    int64         `json:"refresh_calls"`
	PeakPerSecond   int64         `json:"peak_idp_calls_per_second"`
	PeakConcurrency int64         `json:"peak_idp_concurrency"`
	CallsPerSecond  []int64       `json:"idp_calls_per_second"` // from the end of warming
	StormStart      int           `json:"storm_start_s"`        // first and last second with refresh calls, from the end of warming
	StormEnd        int           `json:"storm_end_s"`
	Refreshed       int           `json:"refreshed"`      // new token before the old one expired
	RefreshedLate   int           `json:"refreshed_late"` // new token only after the old one expired
	NotRefreshed    int           `json:"not_refreshed"`  // no new token by lifetime + 10s
	MinMargin       time.Duration `json:"min_margin_ns"`  // least time left on a token when it was replaced
	P50Before       time.Duration `json:"p50_before_ns"`
	P50During       time.Duration `json:"p50_during_ns"`
	WorstSecondP50  time.Duration `json:"worst_second_p50_ns"` // the highest per-second p50 in the storm
	ProbesBefore    uint64        `json:"probes_before"`
	ProbesDuring    uint64        `json:"probes_during"`
	Ratio           float64       `json:"ratio"` // p50 during / before
	Met             bool          `json:"met"`
}

// stormProbes paced goroutines measure cache-hit latency through the storm,
// each sending a request, then pausing stormPause.
const (
	stormProbes = 4
	stormPause  = time.Millisecond
)

// credState follows one credential's tokens through the storm.
type credState struct {
	expiry    time.Time // of the first token
	refreshed time.Time // when its next token came, zero if none
}

func runStorm(ctx context.Context, o *options, out io.Writer) (*StormResult, error) {
	printMachine(out, machine())
	n := o.credentials
	if n == 0 {
		n = 10000
	}
	e, err := startInproc(o.conns, backendOptions{users: n, lifetime: o.lifetime, threshold: o.threshold, audit: o.audit})
	if err != nil {
		return nil, err
	}
	defer e.close()
	idp := e.backend.idp
	r := &StormResult{Credentials: n, Lifetime: o.lifetime, Threshold: o.threshold, IdPDelay: o.idpDelay}

	// Every token, new or refreshed, is announced on token.refreshed.<id>.
	var (
		mu    sync.Mutex
		creds = map[string]*credState{}
	)
	sub, err := e.conns[0].Subscribe("token.refreshed.>", func(m *nats.Msg) {
		var ev tokenbroker.RefreshedEvent
		if json.Unmarshal(m.Data, &ev) != nil || !strings.HasPrefix(ev.CredentialID, "u-") {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		c := creds[ev.CredentialID]
		switch {
		case c == nil:
			sec, _ := strconv.ParseInt(ev.ExpiresOn, 10, 64)
			creds[ev.CredentialID] = &credState{expiry: time.Unix(sec, 0)}
		case c.refreshed.IsZero():
			c.refreshed = ev.RefreshedAt
		}
	})
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}

	progress(os.Stderr, "storm: warming %d credentials (lifetime %s, threshold %s)", n, o.lifetime, o.threshold)
	var ferr error
	var failed int
	r.WarmTime, failed, ferr = warm(ctx, e.conns, n)
	if failed > 0 {
		return nil, fmt.Errorf("warming: %d failed: %w", failed, ferr)
	}

	// From here on the IdP is as slow as --idp-delay; count its calls per
	// second from the end of warming.
	t0 := time.Now()
	horizon := int((o.lifetime+15*time.Second)/time.Second) + 1
	perSecond := make([]atomic.Int64, horizon)
	idp.fake.OnCall(func(string) {
		if s := int(time.Since(t0) / time.Second); s < horizon {
			perSecond[s].Add(1)
		}
	})
	idp.delay.Store(int64(o.idpDelay))
	idp.peak.Store(0)

	// Paced cache hits on the named credential, recorded per second.
	slots := make([]Histogram, horizon)
	var (
		slotMu sync.Mutex
		stop   atomic.Bool
		wg     sync.WaitGroup
	)
	for p := range stormProbes {
		nc := e.conns[p%len(e.conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				start := time.Now()
				msg, err := nc.Request(requestSubject, namedBody, requestTimeout)
				d := time.Since(start)
				if err == nil && msg.Header.Get(micro.ErrorCodeHeader) == "" {
					if s := int(start.Sub(t0) / time.Second); s < horizon {
						slotMu.Lock()
						slots[s].Record(d)
						slotMu.Unlock()
					}
				}
				time.Sleep(stormPause)
			}
		}()
	}

	// Wait until every credential has a new token, or until every first
	// token has surely expired.
	progress(os.Stderr, "storm: waiting for the refreshes (up to %s)", o.lifetime+10*time.Second)
	deadline := t0.Add(o.lifetime + 10*time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		mu.Lock()
		done := 0
		for _, c := range creds {
			if !c.refreshed.IsZero() {
				done++
			}
		}
		mu.Unlock()
		if done == n {
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	sleep(ctx, time.Second) // let the probes fill the last second
	stop.Store(true)
	wg.Wait()
	idp.fake.OnCall(nil)

	r.PeakConcurrency = idp.peak.Load()
	last := int(time.Since(t0)/time.Second) + 1
	r.StormStart, r.StormEnd = -1, -1
	for s := 0; s < min(last, horizon); s++ {
		c := perSecond[s].Load()
		r.CallsPerSecond = append(r.CallsPerSecond, c)
		r.RefreshCalls += c
		r.PeakPerSecond = max(r.PeakPerSecond, c)
		// One call a second is the named credential's own refresh.
		if c > 1 {
			if r.StormStart < 0 {
				r.StormStart = s
			}
			r.StormEnd = s
		}
	}
	mu.Lock()
	r.MinMargin = -1
	for _, c := range creds {
		// The action says whether the token had expired when the refresh
		// was decided on, not when it completed (it may wait for a slot at
		// the IdP): compare times. expires_on is whole seconds, so this
		// errs on the side of calling a refresh late.
		switch {
		case c.refreshed.IsZero():
			r.NotRefreshed++
		case c.refreshed.Before(c.expiry):
			r.Refreshed++
		default:
			r.RefreshedLate++
		}
		if !c.refreshed.IsZero() {
			if m := c.expiry.Sub(c.refreshed); r.MinMargin < 0 || m < r.MinMargin {
				r.MinMargin = m
			}
		}
	}
	r.NotRefreshed += n - len(creds) // never seen at all
	mu.Unlock()

	var before, during Histogram
	if r.StormStart > 0 {
		for s := 1; s < r.StormStart; s++ { // second 0 still settles after warming
			before.Merge(&slots[s])
		}
		for s := r.StormStart; s <= r.StormEnd; s++ {
			during.Merge(&slots[s])
			r.WorstSecondP50 = max(r.WorstSecondP50, slots[s].Percentile(50))
		}
	}
	r.P50Before, r.P50During = before.Percentile(50), during.Percentile(50)
	r.ProbesBefore, r.ProbesDuring = before.Count(), during.Count()
	r.Ratio = ratio(float64(r.P50During), float64(r.P50Before))
	r.Met = r.Refreshed == n && r.Ratio > 0 && r.Ratio <= targetStorm

	fmt.Fprintf(out, "\n== refresh storm: %d credentials warmed together (in %s), lifetime %s, threshold %s, IdP delay %s\n",
		n, ms(r.WarmTime), o.lifetime, o.threshold, o.idpDelay)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "second\tIdP calls\tcache-hit p50\tprobes\t")
	for s, c := range r.CallsPerSecond {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t\n", s, c, us(slots[s].Percentile(50)), slots[s].Count())
	}
	tw.Flush()
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "refresh calls\t%d\t(seconds %d-%d after warming)\n", r.RefreshCalls, r.StormStart, r.StormEnd)
	fmt.Fprintf(tw, "peak IdP calls/s\t%d\t\n", r.PeakPerSecond)
	fmt.Fprintf(tw, "peak IdP concurrency\t%d\t\n", r.PeakConcurrency)
	fmt.Fprintf(tw, "refreshed before expiry\t%d of %d\t(%s)\n", r.Refreshed, n, verdict(r.Refreshed == n))
	fmt.Fprintf(tw, "refreshed after expiry\t%d\t\n", r.RefreshedLate)
	fmt.Fprintf(tw, "not refreshed in time\t%d\t\n", r.NotRefreshed)
	fmt.Fprintf(tw, "least time left at refresh\t%s\t(from whole-second expires_on)\n", ms(r.MinMargin))
	fmt.Fprintf(tw, "cache-hit p50 before\t%s\t(%d requests)\n", us(r.P50Before), r.ProbesBefore)
	fmt.Fprintf(tw, "cache-hit p50 during\t%s\t(%d requests; worst second %s)\n", us(r.P50During), r.ProbesDuring, us(r.WorstSecondP50))
	fmt.Fprintf(tw, "ratio\t%.2f\t(target <= %.1f: %s)\n", r.Ratio, targetStorm, verdict(r.Ratio > 0 && r.Ratio <= targetStorm))
	tw.Flush()
	return r, ctx.Err()
}
