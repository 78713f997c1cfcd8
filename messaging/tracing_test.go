package messaging_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/spantest"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/tracing"
	"github.com/tokenbroker/tokenbroker/wire"
)

// appendStub answers "hit" from the cache, as the Router does, and
// anything else from another goroutine, as a credential's actor does,
// telling the test whether the request reached it traced.
type appendStub struct{ traced chan bool }

func (s appendStub) Serve(req tokenbroker.Request, rep tokenbroker.Replier) {
	s.ServeAppend(nil, &req, rep)
}

func (s appendStub) ServeAppend(dst []byte, req *tokenbroker.Request, rep tokenbroker.Replier) ([]byte, bool) {
	if req.Credential == "hit" {
		return append(dst, `{"accesstoken":"t","credential_id":"hit"}`...), true
	}
	id := req.Credential // req is read during the call only
	go func() {
		tr := tracing.Of(rep)
		s.traced <- tr != nil
		tr.Note(tracing.CacheMiss, tokenbroker.SourceIdP, id)
		rep.Respond(tokenbroker.ActionNew, []byte(`{"accesstoken":"t"}`))
	}()
	return dst, false
}

func startTracedService(t *testing.T) (*nats.Conn, appendStub) {
	t.Helper()
	s := natstest.StartServer(t)
	backend := appendStub{traced: make(chan bool, 1)}
	svc, err := messaging.NewService(natstest.Connect(t, s), wire.Subjects{Prefix: "token"}, backend, messaging.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return natstest.Connect(t, s), backend
}

func request(t *testing.T, nc *nats.Conn, subject, body, traceparent string) *nats.Msg {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = []byte(body)
	if traceparent != "" {
		msg.Header.Set("traceparent", traceparent)
	}
	reply, err := nc.RequestMsg(msg, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// A request's traceparent makes the broker's span its child: one span for
// a cache hit, ended with the answer; one for a request the actor answers
// later; one for a request refused on its body.
func TestRequestSpansAreTheCallersChildren(t *testing.T) {
	rec := spantest.Start(t)
	caller, backend := startTracedService(t)

	hit := spantest.NewCaller(t)
	request(t, caller, "token.request.hit", "", hit.Traceparent())
	// The span ends just after the answer went out: wait for it.
	inTrace(t, rec, hit)
	spans := rec.InTrace(hit.TraceID())
	if len(spans) != 1 {
		t.Fatalf("a cache hit made %d spans, want 1:%s", len(spans), spantest.Describe(rec.Spans()))
	}
	s := spans[0]
	if s.Name != tracing.SpanRequest || s.SpanKind != trace.SpanKindServer || s.Parent.SpanID() != hit.SpanID() {
		t.Errorf("hit:%s", spantest.Describe(spans))
	}
	for key, want := range map[string]string{"tokenbroker.cache": "hit", "tokenbroker.credential": "hit",
		"tokenbroker.outcome": "ok", "messaging.destination.name": "token.request.hit", "tokenbroker.transport": "nats"} {
		if got := spantest.AttrString(s, attribute.Key(key)); got != want {
			t.Errorf("hit: %s = %q, want %q", key, got, want)
		}
	}

	miss := spantest.NewCaller(t)
	request(t, caller, "token.request", `{"credential":"app"}`, miss.Traceparent())
	if !<-backend.traced {
		t.Error("the backend did not find the request's trace on its replier")
	}
	spans = inTrace(t, rec, miss)
	if len(spans) != 1 || spans[0].Parent.SpanID() != miss.SpanID() {
		t.Fatalf("miss:%s", spantest.Describe(rec.Spans()))
	}
	if got := spantest.AttrString(spans[0], tracing.Cache); got != "miss" {
		t.Errorf("miss: cache %q", got)
	}
	if got := spantest.AttrString(spans[0], tracing.Source); got != "idp" {
		t.Errorf("miss: source %q", got)
	}

	bad := spantest.NewCaller(t)
	reply := request(t, caller, "token.request", `{"credential":`, bad.Traceparent())
	if reply.Header.Get(micro.ErrorCodeHeader) != "400" {
		t.Fatalf("answer %s", reply.Data)
	}
	spans = inTrace(t, rec, bad)
	if len(spans) != 1 || spantest.AttrString(spans[0], tracing.Outcome) != "400" {
		t.Fatalf("refused:%s", spantest.Describe(rec.Spans()))
	}

	// No traceparent: a trace of the broker's own.
	rec.Reset()
	request(t, caller, "token.request.hit", "", "")
	if spans := rec.WaitFor(t, 5*time.Second, 1, tracing.SpanRequest, nil); len(spans) != 1 || spans[0].Parent.IsValid() {
		t.Fatalf("untraced caller:%s", spantest.Describe(spans))
	}
}

// inTrace waits for the request span of caller's trace, and returns the
// spans of that trace.
func inTrace(t *testing.T, rec *spantest.Recorder, caller spantest.Caller) tracetest.SpanStubs {
	t.Helper()
	rec.WaitFor(t, 5*time.Second, 1, tracing.SpanRequest, func(s tracetest.SpanStub) bool {
		return s.SpanContext.TraceID() == caller.TraceID()
	})
	return rec.InTrace(caller.TraceID())
}

// With tracing off the request reaches the backend untraced and the answer
// carries no header of tracing's.
func TestTracingOffMakesNothing(t *testing.T) {
	if tracing.Enabled() {
		t.Fatal("tracing on")
	}
	caller, backend := startTracedService(t)
	tp := spantest.NewCaller(t).Traceparent()
	if reply := request(t, caller, "token.request.hit", "", tp); reply.Header.Get("traceparent") != "" {
		t.Error("a traceparent in the answer")
	}
	request(t, caller, "token.request", `{"credential":"app"}`, tp)
	if <-backend.traced {
		t.Error("the backend found a trace with tracing off")
	}
}

// A refreshed event of a traced job is published in a span under the
// job's, and carries that span's traceparent; one of no traced job, or
// with tracing off, carries none.
func TestPublisherCarriesTheTraceparent(t *testing.T) {
	s := natstest.StartServer(t)
	consumer := natstest.Connect(t, s)
	sub, err := consumer.SubscribeSync("token.refreshed.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Flush(); err != nil {
		t.Fatal(err)
	}
	pub := messaging.NewPublisher(natstest.Connect(t, s), wire.Subjects{Prefix: "token"}, nil, nil)
	next := func() *nats.Msg {
		t.Helper()
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	event := tokenbroker.RefreshedEvent{EventID: "e1", CredentialID: "app", AccessToken: "t", TokenType: "Bearer"}
	job := spantest.NewCaller(t).SpanContext

	// Off: nothing, even with a job's span given.
	pub.PublishRefreshedUnder(job, event)
	if h := next().Header.Get("traceparent"); h != "" {
		t.Errorf("tracing off: traceparent %q", h)
	}

	rec := spantest.Start(t)
	pub.PublishRefreshed(event)
	if h := next().Header.Get("traceparent"); h != "" || len(rec.Spans()) != 0 {
		t.Errorf("no job span: traceparent %q, spans:%s", h, spantest.Describe(rec.Spans()))
	}

	pub.PublishRefreshedUnder(job, event)
	msg := next()
	spans := rec.Named(tracing.SpanPublish)
	if len(spans) != 1 {
		t.Fatalf("spans:%s", spantest.Describe(rec.Spans()))
	}
	span := spans[0]
	if span.SpanKind != trace.SpanKindProducer || span.Parent.SpanID() != job.SpanID() || span.SpanContext.TraceID() != job.TraceID() {
		t.Errorf("publish span:%s", spantest.Describe(spans))
	}
	if got := spantest.AttrString(span, attribute.Key("messaging.message.id")); got != "e1" {
		t.Errorf("message id %q", got)
	}
	want := "00-" + job.TraceID().String() + "-" + span.SpanContext.SpanID().String() + "-01"
	if got := msg.Header.Get("traceparent"); got != want {
		t.Errorf("traceparent %q, want the publish span's %q", got, want)
	}
	if msg.Header.Get(nats.MsgIdHdr) != "e1" {
		t.Error("the Nats-Msg-Id header is gone")
	}
}
