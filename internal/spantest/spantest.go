// Package spantest turns the broker's tracing on for a test, with
// OpenTelemetry's in-memory exporter behind a synchronous processor, so
// that a span is in Spans the moment it ends; and it makes the traceparent
// a caller would send.
//
// Tracing is process-wide, so a test that uses it must not run in parallel
// with another broker test: it would record that test's spans too.
package spantest

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// Recorder holds the spans ended since Start.
type Recorder struct {
	exp *tracetest.InMemoryExporter
	// Provider is the SDK provider the broker's spans come from, for a
	// test that makes a caller's span of its own with it.
	Provider *sdktrace.TracerProvider
}

// Start turns tracing on until tb ends, every span sampled, and returns
// what records the spans.
func Start(tb testing.TB) *Recorder {
	tb.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	restore := tracing.Enable(tp)
	tb.Cleanup(func() {
		restore()
		_ = tp.Shutdown(context.Background())
	})
	return &Recorder{exp: exp, Provider: tp}
}

// Spans returns the spans ended so far, oldest first.
func (r *Recorder) Spans() tracetest.SpanStubs { return r.exp.GetSpans() }

// Reset forgets the spans ended so far.
func (r *Recorder) Reset() { r.exp.Reset() }

// Named returns the spans ended so far that are called name.
func (r *Recorder) Named(name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range r.Spans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// InTrace returns the spans ended so far that belong to the trace id.
func (r *Recorder) InTrace(id trace.TraceID) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range r.Spans() {
		if s.SpanContext.TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// WaitFor waits until match holds for n spans called name, and returns
// them; it fails tb after timeout.
func (r *Recorder) WaitFor(tb testing.TB, timeout time.Duration, n int, name string, match func(tracetest.SpanStub) bool) tracetest.SpanStubs {
	tb.Helper()
	var got tracetest.SpanStubs
	testkit.Eventually(tb, timeout, func() error {
		got = got[:0]
		for _, s := range r.Named(name) {
			if match == nil || match(s) {
				got = append(got, s)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d matching %s spans of %d wanted; all spans: %s", len(got), name, n, Describe(r.Spans()))
		}
		return nil
	})
	return got
}

// Attr returns the value of the attribute key of s, and whether it has it.
func Attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// AttrString is Attr's value as a string, "" when s does not have it.
func AttrString(s tracetest.SpanStub, key attribute.Key) string {
	v, ok := Attr(s, key)
	if !ok {
		return ""
	}
	return v.Emit()
}

// Describe lists spans by name, trace and attributes, for failure messages.
func Describe(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s trace=%s span=%s parent=%s", s.Name, s.SpanContext.TraceID(), s.SpanContext.SpanID(), s.Parent.SpanID())
		for _, kv := range s.Attributes {
			fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.Emit())
		}
	}
	return b.String()
}

// Everything returns every name, attribute value, event attribute value,
// status description and link attribute of spans, joined: what a test
// searches for secrets.
func Everything(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.Name + "\n" + s.Status.Description + "\n")
		for _, kv := range s.Attributes {
			b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + "\n")
		}
		for _, e := range s.Events {
			b.WriteString(e.Name + "\n")
			for _, kv := range e.Attributes {
				b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + "\n")
			}
		}
		for _, l := range s.Links {
			for _, kv := range l.Attributes {
				b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + "\n")
			}
		}
	}
	return b.String()
}

// Caller is the span context of a caller's span, as a remote caller's
// traceparent names it: fresh random ids, sampled.
type Caller struct {
	trace.SpanContext
}

// NewCaller returns a caller's span context with fresh ids.
func NewCaller(tb testing.TB) Caller {
	tb.Helper()
	var cfg trace.SpanContextConfig
	if _, err := rand.Read(cfg.TraceID[:]); err != nil {
		tb.Fatal(err)
	}
	if _, err := rand.Read(cfg.SpanID[:]); err != nil {
		tb.Fatal(err)
	}
	cfg.TraceFlags = trace.FlagsSampled
	cfg.Remote = true
	return Caller{trace.NewSpanContext(cfg)}
}

// Traceparent is the caller's W3C traceparent header value.
func (c Caller) Traceparent() string {
	return fmt.Sprintf("00-%s-%s-01", c.TraceID(), c.SpanID())
}
