package wire_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker/wire"
)

// The carrier writes traceparent as W3C Trace Context spells it, and reads
// it back in any case, as TraceContext extracts it.
func TestHeaderCarrierRoundTrip(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:     trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
		TraceFlags: trace.FlagsSampled,
	})
	h := nats.Header{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), wire.HeaderCarrier(h))
	const want = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if got := h.Get(wire.TraceParentHeader); got != want {
		t.Fatalf("traceparent %q, want %q (headers %v)", got, want, h)
	}
	for _, name := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		got := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
			wire.HeaderCarrier(nats.Header{name: {want}})))
		if !got.Equal(sc.WithRemote(true)) {
			t.Errorf("header %s: extracted %v, want %v", name, got, sc)
		}
	}
	if keys := wire.HeaderCarrier(h).Keys(); len(keys) != 1 || keys[0] != "traceparent" {
		t.Errorf("keys %v", keys)
	}
	if got := wire.HeaderCarrier(nil).Get("traceparent"); got != "" {
		t.Errorf("nil headers: %q", got)
	}
}
