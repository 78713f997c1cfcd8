package tracing_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/spantest"
	"github.com/tokenbroker/tokenbroker/tracing"
	"github.com/tokenbroker/tokenbroker/wire"
)

const reply = `{"accesstoken":"eyJ0eXAi","expires_on":"1","action":"returned existing token","token_type":"Bearer","expires_in":3599,"credential_id":"u-abc_DEF-123"}`

// replier is a Traced tokenbroker.Replier, as the transports' are.
type replier struct{ tr *tracing.Request }

func (r replier) Trace() *tracing.Request { return r.tr }

func TestRequestSpanIsTheCallersChild(t *testing.T) {
	rec := spantest.Start(t)
	caller := spantest.NewCaller(t)
	r := tracing.StartRequest(wire.HeaderCarrier{"traceparent": {caller.Traceparent()}}, tokenbroker.TransportNATS)
	if got := tracing.Of(replier{r}); got != r {
		t.Fatal("Of does not find the trace of a Traced replier")
	}
	r.Respond(tokenbroker.ActionExisting, []byte(reply))
	r.Respond(tokenbroker.ActionExisting, []byte(reply)) // ends once

	spans := rec.Spans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1:%s", len(spans), spantest.Describe(spans))
	}
	s := spans[0]
	if s.Name != tracing.SpanRequest || s.SpanKind != trace.SpanKindServer {
		t.Errorf("span %s of kind %s", s.Name, s.SpanKind)
	}
	if s.SpanContext.TraceID() != caller.TraceID() || s.Parent.SpanID() != caller.SpanID() || !s.Parent.IsRemote() {
		t.Errorf("trace %s parent %s, want the caller's %s %s", s.SpanContext.TraceID(), s.Parent.SpanID(), caller.TraceID(), caller.SpanID())
	}
	for key, want := range map[string]string{
		"tokenbroker.cache": "hit", "tokenbroker.source": "cache", "tokenbroker.outcome": "ok",
		"tokenbroker.credential": "u-abc_DEF-123", "tokenbroker.transport": "nats",
		"tokenbroker.action": tokenbroker.ActionExisting,
	} {
		if got := spantest.AttrString(s, attribute.Key(key)); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

// A traceparent that is not one starts a new trace rather than failing.
func TestRequestWithoutOrWithBadTraceparentIsARoot(t *testing.T) {
	rec := spantest.Start(t)
	for _, h := range []wire.HeaderCarrier{nil, {"traceparent": {"00-garbage-01"}}} {
		tracing.StartRequest(h, tokenbroker.TransportHTTP).Respond(tokenbroker.ActionNew, []byte(reply))
	}
	for _, s := range rec.Spans() {
		if s.Parent.IsValid() {
			t.Errorf("span with parent %s", s.Parent.SpanID())
		}
		if got := spantest.AttrString(s, tracing.Cache); got != "miss" {
			t.Errorf("cache %q for a new token, want miss", got)
		}
	}
}

// The actor's note wins over what the answer's action suggests.
func TestNoteAndFail(t *testing.T) {
	rec := spantest.Start(t)
	stale := tracing.StartRequest(nil, tokenbroker.TransportNATS)
	stale.Note(tracing.CacheStale, tokenbroker.SourceCache, "app")
	stale.Respond(tokenbroker.ActionExisting, []byte(reply))

	rejected := tracing.StartRequest(nil, tokenbroker.TransportNATS)
	rejected.Note(tracing.CacheMiss, "", "app")
	rejected.Fail(tokenbroker.Errorf(tokenbroker.CodeRejected, tokenbroker.OAuthInvalidGrant, "AADSTS50126: bad password for alice"))

	down := tracing.StartRequest(nil, tokenbroker.TransportNATS)
	down.Fail(tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "the IdP is down"))

	gone := tracing.StartRequest(nil, tokenbroker.TransportHTTP)
	gone.Abandon()
	gone.Respond(tokenbroker.ActionNew, []byte(reply)) // after the end: nothing

	spans := rec.Spans()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4:%s", len(spans), spantest.Describe(spans))
	}
	if got := spantest.AttrString(spans[0], tracing.Cache); got != "stale" {
		t.Errorf("cache %q, want stale", got)
	}
	if spantest.AttrString(spans[1], tracing.Outcome) != "401" || spantest.AttrString(spans[1], tracing.Error) != "invalid_grant" ||
		spans[1].Status.Code != codes.Unset {
		t.Errorf("a refusal: %s, status %v", spantest.Describe(spans[1:2]), spans[1].Status)
	}
	if spans[2].Status.Code != codes.Error || spans[2].Status.Description != "temporarily_unavailable" {
		t.Errorf("a 503's status %v, want Error with the OAuth code", spans[2].Status)
	}
	if got := spantest.AttrString(spans[3], tracing.Outcome); got != "abandoned" {
		t.Errorf("outcome %q, want abandoned", got)
	}
	all := spantest.Everything(spans)
	for _, secret := range []string{"AADSTS50126", "alice", "eyJ0eXAi"} {
		if strings.Contains(all, secret) {
			t.Errorf("%q in the spans:\n%s", secret, all)
		}
	}
}

// Off, nothing is made and a nil Request does nothing.
func TestOff(t *testing.T) {
	if tracing.Enabled() {
		t.Fatal("tracing on in a test that did not turn it on")
	}
	r := tracing.StartRequest(wire.HeaderCarrier{"traceparent": {spantest.NewCaller(t).Traceparent()}}, tokenbroker.TransportNATS)
	if r != nil {
		t.Fatal("a span with tracing off")
	}
	r.SetCredential("app")
	r.Note(tracing.CacheHit, tokenbroker.SourceCache, "app")
	r.Respond(tokenbroker.ActionExisting, []byte(reply))
	r.Fail(tokenbroker.Errorf(500, "server_error", "x"))
	r.Abandon()
	if r.Span() != nil || r.SpanContext().IsValid() {
		t.Fatal("a nil Request has a span")
	}
	if tracing.Of(replier{}) != nil {
		t.Fatal("Of found a trace with tracing off")
	}
}
