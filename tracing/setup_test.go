package tracing

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tokenbroker/tokenbroker/wire"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// With no endpoint set, Setup installs nothing: the hot paths keep
// checking a nil pointer, and shutdown is a no-op.
func TestSetupWithoutEndpointInstallsNothing(t *testing.T) {
	shutdown, err := setup(context.Background(), env(map[string]string{"OTEL_SERVICE_NAME": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if Enabled() {
		t.Fatal("tracing on without an endpoint")
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := StartRequest(wire.HeaderCarrier{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}, "nats"); r != nil {
		t.Fatal("StartRequest made a span with tracing off")
	}
}

func TestWantedBy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wanted  bool
		errWith string // "" for no error
	}{
		{"nothing", nil, false, ""},
		{"endpoint", map[string]string{envEndpoint: "http://collector:4318"}, true, ""},
		{"traces endpoint", map[string]string{envTracesEndpoint: "https://collector/v1/traces"}, true, ""},
		{"blank endpoint", map[string]string{envEndpoint: "  "}, false, ""},
		{"sdk disabled", map[string]string{envEndpoint: "http://collector:4318", envDisabled: "true"}, false, ""},
		{"exporter none", map[string]string{envEndpoint: "http://collector:4318", envExporter: "none"}, false, ""},
		{"exporter otlp", map[string]string{envEndpoint: "http://collector:4318", envExporter: "otlp"}, true, ""},
		{"http/protobuf", map[string]string{envEndpoint: "http://collector:4318", envProtocol: "http/protobuf"}, true, ""},
		{"grpc", map[string]string{envEndpoint: "http://collector:4317", envProtocol: "grpc"}, false, envProtocol},
		{"traces grpc", map[string]string{envEndpoint: "http://collector:4317", envTracesProtocol: "grpc"}, false, envTracesProtocol},
		{"no scheme", map[string]string{envEndpoint: "collector:4318"}, false, envEndpoint},
		{"bad traces endpoint", map[string]string{envTracesEndpoint: "ftp://collector"}, false, envTracesEndpoint},
		{"console exporter", map[string]string{envEndpoint: "http://collector:4318", envExporter: "console"}, false, envExporter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wanted, err := wantedBy(env(tc.env))
			switch {
			case tc.errWith == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.errWith != "" && (err == nil || !strings.Contains(err.Error(), tc.errWith)):
				t.Fatalf("error %v, want one naming %s", err, tc.errWith)
			case wanted != tc.wanted:
				t.Fatalf("wanted %v, want %v", wanted, tc.wanted)
			}
		})
	}
}

// An endpoint the broker cannot use is named, not quoted: a URL may hold
// credentials.
func TestBadEndpointIsNotQuoted(t *testing.T) {
	_, err := wantedBy(env(map[string]string{envEndpoint: "user:hunter2@collector"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v", err)
	}
}

// Setup with OTEL_EXPORTER_OTLP_ENDPOINT exports over OTLP/HTTP to it, as
// protobuf, under OTEL_SERVICE_NAME, and the request span is the child of
// the caller's traceparent.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	var mu sync.Mutex
	var got []*coltrace.ExportTraceServiceRequest
	var paths []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		req := &coltrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("collector: %v (Content-Type %s)", err, r.Header.Get("Content-Type"))
		}
		mu.Lock()
		got, paths = append(got, req), append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv(envEndpoint, collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "tokenbroker-test")

	shutdown, err := Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !Enabled() {
		t.Fatal("tracing off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	r := StartRequest(wire.HeaderCarrier{"traceparent": {"00-" + traceID + "-" + parentID + "-01"}}, "nats")
	r.Respond("returned existing token", []byte(`{"accesstoken":"x","credential_id":"app"}`))
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if Enabled() {
		t.Fatal("tracing still on after shutdown")
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Fatal("the collector got nothing")
	}
	if paths[0] != "/v1/traces" {
		t.Errorf("exported to %s, want /v1/traces", paths[0])
	}
	rs := got[0].GetResourceSpans()[0]
	var service string
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	if service != "tokenbroker-test" {
		t.Errorf("service.name %q, want OTEL_SERVICE_NAME's", service)
	}
	span := rs.GetScopeSpans()[0].GetSpans()[0]
	if span.GetName() != SpanRequest {
		t.Errorf("span %q, want %s", span.GetName(), SpanRequest)
	}
	if tid := span.GetTraceId(); hex.EncodeToString(tid) != traceID {
		t.Errorf("trace id %x, want the caller's %s", tid, traceID)
	}
	if pid := span.GetParentSpanId(); hex.EncodeToString(pid) != parentID {
		t.Errorf("parent %x, want the caller's span %s", pid, parentID)
	}
}
