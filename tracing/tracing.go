// Package tracing is the broker's OpenTelemetry tracing: a span for each
// token request, cache hit or not, and for what a request or a timer's
// refresh sets off (the IdP call with its retries and breaker, the store
// write, the event publish), linked to the caller's trace by the W3C
// traceparent header of its NATS message or HTTP request.
//
// It is off unless Setup finds OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set. Off, every instrumented place
// costs one atomic load and a branch: no header is read, nothing is
// allocated and OpenTelemetry is not called, so the cache-hit path, which
// runs at about the speed of a bare NATS echo, stays as fast as it was.
// Code that traces asks Enabled (or Start, which is nil-safe) first.
//
// No span carries a secret: no password, client secret, token, username or
// URL query. A username/password caller's credential appears as its
// credential_id, the opaque keyed hash its events are published under.
package tracing

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
)

// ScopeName is the instrumentation scope of the broker's spans.
const ScopeName = "github.com/tokenbroker/tokenbroker"

// Span names.
const (
	// SpanRequest is one token request, over NATS or HTTP, from its arrival
	// to its answer (kind server). Its parent is the caller's span when
	// the request carries a traceparent.
	SpanRequest = "tokenbroker.request"
	// SpanIdP is one call to a token endpoint through the guard, retries
	// and backoffs included (kind client).
	SpanIdP = "tokenbroker.idp"
	// SpanRefresh is a refresh the credential's own timer started, which
	// no caller waits for: the root of its IdP, store and publish spans.
	SpanRefresh = "tokenbroker.refresh"
	// SpanStorePut is the write of a new token to the JetStream store
	// (kind client).
	SpanStorePut = "tokenbroker.store.put"
	// SpanPublish is the publish of a token.refreshed event (kind
	// producer); the event carries its traceparent.
	SpanPublish = "tokenbroker.publish"
)

// Attribute keys of the broker's own; the others are OpenTelemetry's
// semantic conventions (messaging.*, server.address, http.*, url.path).
const (
	// Credential is the credential_id: a named credential's name, or the
	// keyed hash of a username, never the username itself.
	Credential = attribute.Key("tokenbroker.credential")
	// Cache is how the cache served a request: hit (a held token, fresh),
	// miss (the IdP or the store was needed), or stale (a held token past
	// its refresh threshold, served because the IdP failed).
	Cache = attribute.Key("tokenbroker.cache")
	// Outcome is "ok" or the contract's error code ("401", "503", ...), as
	// in the audit trail and the metrics.
	Outcome = attribute.Key("tokenbroker.outcome")
	// Error is the OAuth error code of a failure (invalid_grant,
	// temporarily_unavailable, ...).
	Error = attribute.Key("tokenbroker.error")
	// Action is the reply's action phrase.
	Action = attribute.Key("tokenbroker.action")
	// Source is where the answer's token came from: cache, idp or store.
	Source = attribute.Key("tokenbroker.source")
	// Transport is nats or http.
	Transport = attribute.Key("tokenbroker.transport")
	// Grant is the OAuth2 grant type of an IdP call or refresh.
	Grant = attribute.Key("tokenbroker.grant")
	// Attempts is how many calls an IdP span made to the IdP.
	Attempts = attribute.Key("tokenbroker.idp.attempts")
	// Breaker is the endpoint's circuit breaker state when the IdP call
	// began (closed, open, half-open); BreakerAfter is its state when the
	// call ended.
	Breaker      = attribute.Key("tokenbroker.breaker.state")
	BreakerAfter = attribute.Key("tokenbroker.breaker.state_after")
)

// Cache values.
const (
	CacheHit   = "hit"
	CacheMiss  = "miss"
	CacheStale = "stale"
)

// on is the tracer and propagator in use; nil while tracing is off, which
// is what every hot path checks.
type on struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

var state atomic.Pointer[on]

// Enabled reports whether spans are being made. It is one atomic load.
func Enabled() bool { return state.Load() != nil }

// Enable makes spans with tp from now on, reading and writing W3C Trace
// Context headers, and returns what puts the previous state back. Setup
// calls it; tests call it with an SDK provider over an in-memory exporter
// or span recorder.
func Enable(tp trace.TracerProvider) (restore func()) {
	prev := state.Swap(&on{tracer: tp.Tracer(ScopeName), prop: propagation.TraceContext{}})
	return func() { state.Store(prev) }
}

// Start starts a span named name under ctx's span with opts. When tracing
// is off it returns ctx and nil, having done nothing; the nil span must
// not be used (End is called as `if span != nil`).
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	st := state.Load()
	if st == nil {
		return ctx, nil
	}
	return st.tracer.Start(ctx, name, opts...)
}

// StartChild is Start, but only under a span ctx already carries: a store
// write or a publish outside any traced request or refresh (the credential
// registry's writes, say) makes no root span of its own.
func StartChild(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	st := state.Load()
	if st == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	return st.tracer.Start(ctx, name, opts...)
}

// Extract returns ctx with the remote span context carrier's traceparent
// (and tracestate) names, if it names a valid one. With tracing off it
// returns ctx without reading carrier.
func Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	st := state.Load()
	if st == nil {
		return ctx
	}
	return st.prop.Extract(ctx, carrier)
}

// Inject writes ctx's span context into carrier as traceparent (and
// tracestate). With tracing off, or no valid span in ctx, it writes
// nothing.
func Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	st := state.Load()
	if st == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	st.prop.Inject(ctx, carrier)
}

// Publisher is a tokenbroker.Publisher that traces what it publishes
// (messaging's). A credential's actor publishes an event through it when
// the job that got the token was traced; tokenbroker.Publisher itself, and
// the events, stay free of tracing.
type Publisher interface {
	// PublishRefreshedUnder publishes e as PublishRefreshed does, in a
	// span under parent, the span the job's spans hung under, and with
	// that span's traceparent in the event's headers.
	PublishRefreshedUnder(parent trace.SpanContext, e tokenbroker.RefreshedEvent)
}
