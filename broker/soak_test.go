package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// soakUsers is how many users the soak's callers sign in as.
const soakUsers = 20

// TestSoak runs mixed traffic from many callers against short-lived tokens
// while the IdP misbehaves now and then, for TOKENBROKER_SOAK (default 8s;
// -short: 2s). Every request must get an answer that is right for what it
// asked, and the broker must leave no goroutine and no heap behind.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	var baseHeap runtime.MemStats
	runtime.ReadMemStats(&baseHeap)

	e := start(t, 3*time.Second, time.Second, func(c *config.Config, idp *fakeidp.Server) {
		for i := 0; i < soakUsers; i++ {
			idp.AddUser(fmt.Sprintf("user%d@contoso.example", i), fmt.Sprintf("pw-%d", i))
		}
	})
	stopFaults := injectFaults(e.idp)
	var tally soakTally
	deadline := time.Now().Add(duration)
	var callers sync.WaitGroup
	for c := 0; c < 48; c++ {
		callers.Add(1)
		go func(c int) {
			defer callers.Done()
			soakCaller(e, c, deadline, &tally)
		}(c)
	}
	callers.Wait()
	stopFaults()
	tally.wrong.Range(func(k, _ any) bool { t.Error(k); return true })
	t.Logf("%d answers in %s: %d tokens, %d refusals, %d IdP calls", tally.answered.Load(), duration, tally.tokens.Load(), tally.refusals.Load(), e.idp.Calls())
	if tally.tokens.Load() == 0 || tally.answered.Load() < 100 {
		t.Fatalf("too little traffic to mean anything: %d answers, %d tokens", tally.answered.Load(), tally.tokens.Load())
	}

	// Shut everything down and check nothing stays behind.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.broker.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	e.nc.Close()
	e.idp.Close()
	testkit.Until(t, 10*time.Second, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseGoroutines+5 })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// The log is kept for the suite's scan for secrets, and the audit trail
	// writes a line per answer: it is the test's, not the broker's.
	if grown := int64(after.HeapAlloc) - int64(baseHeap.HeapAlloc) - int64(e.logs.Held()); grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB over the soak", grown>>20)
	}
}

// soakDuration is TOKENBROKER_SOAK, or 8s (2s with -short).
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	if v := os.Getenv("TOKENBROKER_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TOKENBROKER_SOAK: %v", err)
		}
		return d
	}
	if testing.Short() {
		return 2 * time.Second
	}
	return 8 * time.Second
}

// injectFaults makes the IdP fail now and then: throttling, outages,
// garbage, a hang. stop ends the faults and returns once they have ended.
func injectFaults(idp *fakeidp.Server) (stop func()) {
	faults := []fakeidp.Failure{
		fakeidp.FailStatus(503, "", ""), fakeidp.FailRetryAfter(429, 1), fakeidp.FailHTML(200),
		fakeidp.FailTruncated(), fakeidp.FailStatus(500, "", ""), fakeidp.FailMissingAccessToken(),
	}
	done := make(chan struct{})
	var faulted sync.WaitGroup
	faulted.Add(1)
	go func() {
		defer faulted.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
				idp.Fail(faults[i%len(faults)], 2)
			}
		}
	}()
	return func() {
		close(done)
		faulted.Wait()
	}
}

// soakKind is what a soak request asks for, and so which answers are right.
type soakKind int

const (
	goodUser soakKind = iota
	wrongPassword
	named
	malformed
	unknown
	soakKinds
)

// refusalsAllowed are the error codes each kind may get: the IdP's faults
// may refuse any request that needs it, never one the broker answers alone.
// Wrong passwords lock a username's sign-ins for a while (429), which a
// good password meets too when its user holds no token at that moment.
var refusalsAllowed = map[soakKind]map[string]bool{
	goodUser:      {"429": true, "502": true, "503": true},
	named:         {"502": true, "503": true},
	wrongPassword: {"401": true, "429": true, "502": true, "503": true},
	malformed:     {"400": true},
	unknown:       {"404": true},
}

// soakBody is the request body of kind k for user u.
func soakBody(k soakKind, u int) string {
	switch k {
	case goodUser:
		return fmt.Sprintf(`{"username":"user%d@contoso.example","password":"pw-%d"}`, u, u)
	case wrongPassword:
		return fmt.Sprintf(`{"username":"user%d@contoso.example","password":"nope"}`, u)
	case named:
		return `{"credential":"app"}`
	case malformed:
		return `{"credential":["app"]}`
	}
	return `{"credential":"nope"}`
}

// soakTally counts the soak's answers from every caller, and keeps what
// went wrong by description, once each.
type soakTally struct {
	answered, tokens, refusals atomic.Int64
	wrong                      sync.Map
}

// soakCaller sends requests of every kind in turn on its own connection
// until deadline, and checks each answer.
func soakCaller(e *env, c int, deadline time.Time, tally *soakTally) {
	nc, err := nats.Connect(e.broker.ClientURL())
	if err != nil {
		tally.wrong.Store("connect: "+err.Error(), true)
		return
	}
	defer nc.Close()
	for i := 0; time.Now().Before(deadline); i++ {
		k := soakKind((c + i) % int(soakKinds))
		msg, err := nc.Request("token.request", []byte(soakBody(k, (c*7+i)%soakUsers)), 20*time.Second)
		if err != nil {
			tally.wrong.Store(fmt.Sprintf("kind %d: no answer: %v", k, err), true)
			continue
		}
		tally.answered.Add(1)
		code := msg.Header.Get(micro.ErrorCodeHeader)
		if code == "" {
			var r tokenbroker.Reply
			if json.Unmarshal(msg.Data, &r) != nil || e.idp.Claims(r.AccessToken) == nil || (k != goodUser && k != named) {
				tally.wrong.Store(fmt.Sprintf("kind %d: bad token reply %.80s", k, msg.Data), true)
			}
			tally.tokens.Add(1)
			continue
		}
		tally.refusals.Add(1)
		if !refusalsAllowed[k][code] {
			tally.wrong.Store(fmt.Sprintf("kind %d: code %s: %.120s", k, code, msg.Data), true)
		}
	}
}
