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

// TestSoak runs mixed traffic from many callers against short-lived tokens
// while the IdP misbehaves now and then, for TOKENBROKER_SOAK (default 8s;
// -short: 2s). Every request must get an answer that is right for what it
// asked, and the broker must leave no goroutine and no heap behind.
func TestSoak(t *testing.T) {
	duration := 8 * time.Second
	if testing.Short() {
		duration = 2 * time.Second
	}
	if v := os.Getenv("TOKENBROKER_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TOKENBROKER_SOAK: %v", err)
		}
		duration = d
	}
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	var baseHeap runtime.MemStats
	runtime.ReadMemStats(&baseHeap)

	const users = 20
	e := start(t, 3*time.Second, time.Second, func(c *config.Config, idp *fakeidp.Server) {
		for i := 0; i < users; i++ {
			idp.AddUser(fmt.Sprintf("user%d@contoso.example", i), fmt.Sprintf("pw-%d", i))
		}
	})

	// The IdP fails now and then: throttling, outages, garbage, a hang.
	faults := []fakeidp.Failure{
		fakeidp.FailStatus(503, "", ""), fakeidp.FailRetryAfter(429, 1), fakeidp.FailHTML(200),
		fakeidp.FailTruncated(), fakeidp.FailStatus(500, "", ""), fakeidp.FailMissingAccessToken(),
	}
	stop := make(chan struct{})
	var faulted sync.WaitGroup
	faulted.Add(1)
	go func() {
		defer faulted.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				e.idp.Fail(faults[i%len(faults)], 2)
			}
		}
	}()

	type kind int
	const (
		goodUser kind = iota
		wrongPassword
		named
		malformed
		unknown
		kinds
	)
	var answered, tokens, refusals atomic.Int64
	var wrong sync.Map // what went wrong, by description
	deadline := time.Now().Add(duration)
	var callers sync.WaitGroup
	for c := 0; c < 48; c++ {
		callers.Add(1)
		go func(c int) {
			defer callers.Done()
			nc, err := nats.Connect(e.broker.ClientURL())
			if err != nil {
				wrong.Store("connect: "+err.Error(), true)
				return
			}
			defer nc.Close()
			for i := 0; time.Now().Before(deadline); i++ {
				k := kind((c + i) % int(kinds))
				u := (c*7 + i) % users
				var body string
				switch k {
				case goodUser:
					body = fmt.Sprintf(`{"username":"user%d@contoso.example","password":"pw-%d"}`, u, u)
				case wrongPassword:
					body = fmt.Sprintf(`{"username":"user%d@contoso.example","password":"nope"}`, u)
				case named:
					body = `{"credential":"app"}`
				case malformed:
					body = `{"credential":["app"]}`
				case unknown:
					body = `{"credential":"nope"}`
				}
				msg, err := nc.Request("token.request", []byte(body), 20*time.Second)
				if err != nil {
					wrong.Store(fmt.Sprintf("kind %d: no answer: %v", k, err), true)
					continue
				}
				answered.Add(1)
				code := msg.Header.Get(micro.ErrorCodeHeader)
				if code == "" {
					var r tokenbroker.Reply
					if json.Unmarshal(msg.Data, &r) != nil || e.idp.Claims(r.AccessToken) == nil || (k != goodUser && k != named) {
						wrong.Store(fmt.Sprintf("kind %d: bad token reply %.80s", k, msg.Data), true)
					}
					tokens.Add(1)
					continue
				}
				refusals.Add(1)
				ok := map[kind]map[string]bool{
					goodUser:      {"502": true, "503": true},
					named:         {"502": true, "503": true},
					wrongPassword: {"401": true, "502": true, "503": true},
					malformed:     {"400": true},
					unknown:       {"404": true},
				}[k][code]
				if !ok {
					wrong.Store(fmt.Sprintf("kind %d: code %s: %.120s", k, code, msg.Data), true)
				}
			}
		}(c)
	}
	callers.Wait()
	close(stop)
	faulted.Wait()
	wrong.Range(func(k, _ any) bool { t.Error(k); return true })
	t.Logf("%d answers in %s: %d tokens, %d refusals, %d IdP calls", answered.Load(), duration, tokens.Load(), refusals.Load(), e.idp.Calls())
	if tokens.Load() == 0 || answered.Load() < 100 {
		t.Fatalf("too little traffic to mean anything: %d answers, %d tokens", answered.Load(), tokens.Load())
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
	if grown := int64(after.HeapAlloc) - int64(baseHeap.HeapAlloc); grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB over the soak", grown>>20)
	}
}
