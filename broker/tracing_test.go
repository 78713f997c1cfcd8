package broker_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/spantest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// The tests here turn tracing on for the whole process: none runs in
// parallel, and each looks only at the traces it started, or at its own
// credential's refreshes.

// askTraced sends body on subject with the caller's traceparent, and
// returns the answer.
func askTraced(t *testing.T, nc *nats.Conn, subject, body string, caller spantest.Caller) *nats.Msg {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = []byte(body)
	msg.Header.Set("traceparent", caller.Traceparent())
	reply, err := nc.RequestMsg(msg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// requestSpan waits for the request span of caller's trace.
func requestSpan(t *testing.T, rec *spantest.Recorder, caller spantest.Caller) tracetest.SpanStub {
	t.Helper()
	return rec.WaitFor(t, 10*time.Second, 1, tracing.SpanRequest, func(s tracetest.SpanStub) bool {
		return s.SpanContext.TraceID() == caller.TraceID()
	})[0]
}

func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[string]string) {
	t.Helper()
	for key, v := range want {
		if got := spantest.AttrString(s, attribute.Key(key)); got != v {
			t.Errorf("%s: %s = %q, want %q", s.Name, key, got, v)
		}
	}
}

// A cache miss over NATS: the request span is the caller's child, and the
// IdP call, the store write and the event's publish hang under it, in the
// caller's trace; the event names the publish span in its traceparent. A
// cache hit then is one span; so is one over HTTP. No span holds a secret.
func TestTracingFollowsARequestFromCallerToEvent(t *testing.T) {
	rec := spantest.Start(t)
	idp := brokertest.StartIdP(t, time.Hour, fakeidp.WithRecordIssued())
	suite.addIdP(idp)
	cfg := durableConfig(idp, newKey(t), t.TempDir(), "")
	cfg.HTTPAddr = "127.0.0.1:0"
	b := startBroker(t, cfg, newLogSink(), 0)
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	events, err := nc.SubscribeSync("token.refreshed." + app)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	miss := spantest.NewCaller(t)
	first := decodeReply(t, askTraced(t, nc, "token.request."+app, "", miss))
	req := requestSpan(t, rec, miss)
	if req.Parent.SpanID() != miss.SpanID() || req.SpanKind != trace.SpanKindServer {
		t.Fatalf("request span:%s", spantest.Describe(tracetest.SpanStubs{req}))
	}
	wantAttrs(t, req, map[string]string{"tokenbroker.cache": "miss", "tokenbroker.source": "idp",
		"tokenbroker.credential": app, "tokenbroker.outcome": "ok", "tokenbroker.transport": "nats"})
	// The publish span ends after the reply went out: wait for it.
	rec.WaitFor(t, 10*time.Second, 1, tracing.SpanPublish, func(s tracetest.SpanStub) bool {
		return s.SpanContext.TraceID() == miss.TraceID()
	})
	byName := map[string]tracetest.SpanStub{}
	for _, s := range rec.InTrace(miss.TraceID()) {
		if _, dup := byName[s.Name]; dup {
			t.Fatalf("two %s spans in the trace:%s", s.Name, spantest.Describe(rec.InTrace(miss.TraceID())))
		}
		byName[s.Name] = s
	}
	for _, name := range []string{tracing.SpanIdP, tracing.SpanStorePut, tracing.SpanPublish} {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no %s span in the caller's trace:%s", name, spantest.Describe(rec.InTrace(miss.TraceID())))
		}
		if s.Parent.SpanID() != req.SpanContext.SpanID() {
			t.Errorf("%s is the child of %s, not of the request span %s", name, s.Parent.SpanID(), req.SpanContext.SpanID())
		}
	}
	idpSpan := byName[tracing.SpanIdP]
	if idpSpan.SpanKind != trace.SpanKindClient {
		t.Errorf("IdP span of kind %s", idpSpan.SpanKind)
	}
	wantAttrs(t, idpSpan, map[string]string{"tokenbroker.grant": "client_credentials", "server.address": "127.0.0.1",
		"tokenbroker.idp.attempts": "1", "tokenbroker.breaker.state": "closed", "tokenbroker.outcome": "ok"})
	wantAttrs(t, byName[tracing.SpanStorePut], map[string]string{"tokenbroker.credential": app})
	wantAttrs(t, byName[tracing.SpanPublish], map[string]string{"messaging.destination.name": "token.refreshed." + app})
	ev, err := events.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := "00-" + miss.TraceID().String() + "-" + byName[tracing.SpanPublish].SpanContext.SpanID().String() + "-01"; ev.Header.Get("traceparent") != want {
		t.Errorf("event traceparent %q, want the publish span's %q", ev.Header.Get("traceparent"), want)
	}

	hit := spantest.NewCaller(t)
	decodeReply(t, askTraced(t, nc, "token.request", `{"credential":"`+app+`"}`, hit))
	s := requestSpan(t, rec, hit)
	wantAttrs(t, s, map[string]string{"tokenbroker.cache": "hit", "tokenbroker.credential": app, "tokenbroker.outcome": "ok"})
	if n := len(rec.InTrace(hit.TraceID())); n != 1 {
		t.Errorf("a cache hit made %d spans:%s", n, spantest.Describe(rec.InTrace(hit.TraceID())))
	}

	overHTTP := spantest.NewCaller(t)
	hreq, err := http.NewRequest(http.MethodPost, "http://"+b.HTTPAddr()+"/requesttoken",
		strings.NewReader(`{"username":"`+user+`","password":"`+password+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("traceparent", overHTTP.Traceparent())
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP status %d", resp.StatusCode)
	}
	s = requestSpan(t, rec, overHTTP)
	if s.Parent.SpanID() != overHTTP.SpanID() {
		t.Errorf("the HTTP request span is not the caller's child")
	}
	wantAttrs(t, s, map[string]string{"tokenbroker.transport": "http", "tokenbroker.cache": "miss",
		"tokenbroker.source": "idp", "http.response.status_code": "200"})
	if id := spantest.AttrString(s, tracing.Credential); !strings.HasPrefix(id, "u-") {
		t.Errorf("a user's credential %q, want its credential_id", id)
	}
	rec.WaitFor(t, 10*time.Second, 1, tracing.SpanIdP, func(s tracetest.SpanStub) bool {
		return s.SpanContext.TraceID() == overHTTP.TraceID() && spantest.AttrString(s, tracing.Grant) == "password"
	})

	all := spantest.Everything(rec.Spans())
	for _, secret := range append([]string{user, password, secret, first.AccessToken}, idp.IssuedTokens()...) {
		if secret != "" && strings.Contains(all, secret) {
			t.Fatalf("a span holds a secret (%.6s...):\n%s", secret, all)
		}
	}
}

// Callers that share one IdP call: the call hangs under the span of the
// first, and the others' request spans link to that span.
func TestTracingLinksCallersThatShareAnIdPCall(t *testing.T) {
	rec := spantest.Start(t)
	e := start(t, time.Hour, 10*time.Minute)
	release := e.idp.Hold()
	callers := []spantest.Caller{spantest.NewCaller(t), spantest.NewCaller(t)}
	replies := make(chan *nats.Msg, len(callers))
	for _, c := range callers {
		msg := nats.NewMsg("token.request." + app)
		msg.Header.Set("traceparent", c.Traceparent())
		msg.Reply = e.nc.NewRespInbox()
		sub, err := e.nc.ChanSubscribe(msg.Reply, replies)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := e.nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Until(t, 10*time.Second, "both requests at the broker", func() bool {
		return e.broker.Service().Stats().Endpoints[1].NumRequests == len(callers)
	})
	release()
	for range callers {
		select {
		case m := <-replies:
			decodeReply(t, m)
		case <-time.After(10 * time.Second):
			t.Fatal("no reply")
		}
	}
	if calls := e.idp.Calls(); calls != 1 {
		t.Fatalf("%d IdP calls, want 1", calls)
	}
	var spans [2]tracetest.SpanStub
	for i, c := range callers {
		spans[i] = requestSpan(t, rec, c)
	}
	idpSpans := rec.Named(tracing.SpanIdP)
	if len(idpSpans) != 1 {
		t.Fatalf("%d IdP spans, want 1:%s", len(idpSpans), spantest.Describe(rec.Spans()))
	}
	first, other := 0, 1
	if idpSpans[0].SpanContext.TraceID() == callers[1].TraceID() {
		first, other = 1, 0
	}
	if idpSpans[0].Parent.SpanID() != spans[first].SpanContext.SpanID() {
		t.Fatalf("the IdP span's parent is not a caller's request span:%s", spantest.Describe(rec.Spans()))
	}
	links := spans[other].Links
	if len(links) != 1 || links[0].SpanContext.SpanID() != spans[first].SpanContext.SpanID() {
		t.Fatalf("the other caller's links %v, want one to %s", links, spans[first].SpanContext.SpanID())
	}
	if len(spans[first].Links) != 0 {
		t.Errorf("the first caller links to %v", spans[first].Links)
	}
}

// A refresh of the credential's own timer is a root span,
// tokenbroker.refresh, with the IdP call and the publish under it; and a
// token served past its threshold while the IdP fails is a stale hit.
func TestTracingRefreshIsARootAndStaleIsSaid(t *testing.T) {
	rec := spantest.Start(t)
	// Fresh for the first 2 s of a token's 4, then refreshed; once the
	// IdP is down, served stale for the last 2.
	const lifetime, threshold = 4 * time.Second, 2 * time.Second
	e := start(t, lifetime, threshold)
	decodeReply(t, e.request(t, `{"credential":"app"}`))
	refresh := rec.WaitFor(t, 10*time.Second, 1, tracing.SpanRefresh, func(s tracetest.SpanStub) bool {
		return spantest.AttrString(s, tracing.Credential) == app && spantest.AttrString(s, tracing.Outcome) == "ok"
	})[0]
	if refresh.Parent.IsValid() {
		t.Errorf("the refresh span has a parent %s", refresh.Parent.SpanID())
	}
	wantAttrs(t, refresh, map[string]string{"tokenbroker.action": "refreshed existing token", "tokenbroker.source": "idp"})
	for _, name := range []string{tracing.SpanIdP, tracing.SpanPublish} {
		rec.WaitFor(t, 10*time.Second, 1, name, func(s tracetest.SpanStub) bool {
			return s.Parent.SpanID() == refresh.SpanContext.SpanID()
		})
	}

	// The IdP goes down; once the timer's refresh has failed and the
	// token is past its threshold, a caller gets it all the same, stale.
	e.idp.Fail(fakeidp.FailStatus(http.StatusServiceUnavailable, "", ""), -1)
	testkit.Until(t, 10*time.Second, "a failed refresh past the threshold", func() bool {
		for _, c := range e.broker.Router().Status().Named {
			if c.CredentialID == app && c.LastError != "" && c.ExpiresOn != nil {
				return time.Now().After(c.ExpiresOn.Add(-threshold))
			}
		}
		return false
	})
	failed := rec.WaitFor(t, 10*time.Second, 1, tracing.SpanRefresh, func(s tracetest.SpanStub) bool {
		return spantest.AttrString(s, tracing.Credential) == app && spantest.AttrString(s, tracing.Outcome) == "503"
	})[0]
	if failed.Status.Description != "temporarily_unavailable" {
		t.Errorf("failed refresh status %v", failed.Status)
	}
	caller := spantest.NewCaller(t)
	decodeReply(t, askTraced(t, e.nc, "token.request."+app, "", caller))
	wantAttrs(t, requestSpan(t, rec, caller), map[string]string{"tokenbroker.cache": "stale", "tokenbroker.source": "cache"})
}

// With tracing off, a request's traceparent is not read and nothing is
// traced, even with a global OpenTelemetry provider installed: no span, and
// no traceparent on the reply or the event.
func TestTracingOffAddsNothing(t *testing.T) {
	if tracing.Enabled() {
		t.Fatal("tracing on")
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)

	e := start(t, time.Hour, 10*time.Minute)
	events, err := e.nc.SubscribeSync("token.refreshed." + app)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	caller := spantest.NewCaller(t)
	for range 2 { // a miss, then a hit
		if reply := askTraced(t, e.nc, "token.request."+app, "", caller); reply.Header.Get("traceparent") != "" {
			t.Error("a traceparent on the reply")
		}
	}
	ev, err := events.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h := ev.Header.Get("traceparent"); h != "" {
		t.Errorf("event traceparent %q with tracing off", h)
	}
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Errorf("spans with tracing off:%s", spantest.Describe(spans))
	}
}
