package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/tracing"
)

func TestBadTracingSettingStopsStartUpWithOneLine(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318") // no scheme
	code, _, errs := runCmd(t, map[string]string{"HTTP_ADDR": ""}, "serve", "--nats-listen", "127.0.0.1:0")
	if code != exitUsage || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, the broker exports its spans to
// the collector there, the last of them when it stops; and they hold no
// username, password or token.
func TestServeExportsSpansToTheCollector(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	stderr := &testkit.LogBuffer{}
	e := env{lookup: lookupIn(map[string]string{"HTTP_ADDR": ""}), stdout: io.Discard, stderr: stderr, ready: func(u string) { ready <- u }}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo", "--nats-listen", "127.0.0.1:0"}, e) }()
	var url string
	select {
	case url = <-ready:
	case code := <-done:
		t.Fatalf("demo exited %d: %s", code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not start")
	}
	if !tracing.Enabled() {
		t.Fatal("tracing off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	code, out, errs := runCmd(t, nil, "token", "--nats-url", url, "--username", demoUser, "--password", demoPassword, "--access-token")
	if code != exitOK {
		t.Fatalf("token exited %d: %s", code, errs)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("demo exited %d: %s", code, stderr.String())
	}
	if tracing.Enabled() {
		t.Error("tracing still on after the broker stopped")
	}

	mu.Lock()
	defer mu.Unlock()
	names := map[string]bool{}
	for _, body := range bodies {
		for _, secret := range []string{demoUser, demoPassword, strings.TrimSpace(out)} {
			if bytes.Contains(body, []byte(secret)) {
				t.Fatalf("an export holds a secret (%.6s...)", secret)
			}
		}
		req := &coltrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Fatal(err)
		}
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names[s.GetName()] = true
				}
			}
		}
	}
	for _, want := range []string{tracing.SpanRequest, tracing.SpanIdP, tracing.SpanPublish} {
		if !names[want] {
			t.Errorf("no %s span exported; got %v", want, names)
		}
	}
}
