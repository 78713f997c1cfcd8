package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
)

// headersSeen answers every token request with a reply and hands the
// request's headers to the test.
func headersSeen(t *testing.T) (*client.Client, <-chan nats.Header) {
	t.Helper()
	s := natstest.StartServer(t)
	responder := natstest.Connect(t, s)
	seen := make(chan nats.Header, 1)
	if _, err := responder.Subscribe("token.request.>", func(m *nats.Msg) {
		seen <- m.Header
		_ = m.Respond([]byte(`{"accesstoken":"t","expires_on":"4102444800","action":"returned existing token","token_type":"Bearer","expires_in":3599,"credential_id":"app"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	return client.New(natstest.Connect(t, s)), seen
}

// useTraceContext installs the W3C propagator as OpenTelemetry's global, as
// an application that traces does, until t ends; then one that writes
// nothing, as OpenTelemetry's default does. (The default itself cannot be
// put back once replaced.)
func useTraceContext(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
}

// A caller inside a span sends its traceparent; the broker's request span
// then is that span's child.
func TestTokenPropagatesTheCallersSpan(t *testing.T) {
	useTraceContext(t)
	c, seen := headersSeen(t)
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("caller").Start(context.Background(), "handle order")
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	if _, err := c.Token(ctx, tokenbroker.Request{Credential: "app"}); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	if got := (<-seen).Get("traceparent"); got != want {
		t.Fatalf("traceparent %q, want %q", got, want)
	}
}

// Without a span in the context, or without a propagator installed, the
// request carries no header at all.
func TestTokenSendsNoTraceparentWithoutASpan(t *testing.T) {
	c, seen := headersSeen(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// A span, but no propagator that writes anything, as by default.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	traced := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))
	if _, err := c.Token(traced, tokenbroker.Request{Credential: "app"}); err != nil {
		t.Fatal(err)
	}
	if h := <-seen; len(h) != 0 {
		t.Errorf("headers %v without a propagator", h)
	}

	useTraceContext(t)
	if _, err := c.Token(ctx, tokenbroker.Request{Credential: "app"}); err != nil {
		t.Fatal(err)
	}
	if h := <-seen; len(h) != 0 {
		t.Errorf("headers %v without a span", h)
	}
}
