package tracing

import (
	"bytes"
	"context"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
)

// Request is the trace of one token request: its span, and what whoever
// answers it learnt on the way. A transport starts it when the request
// arrives (StartRequest) and its replier ends it with the answer (Respond
// or Fail). Its methods may be called from the transport's goroutine and
// a credential's actor alike, and all of them do nothing on a nil
// *Request, which is what an untraced request has.
type Request struct {
	span trace.Span

	mu         sync.Mutex // guards the rest: the actor notes, the transport ends
	cache      string
	source     string
	credential string
	ended      bool
}

// Traced is implemented by a tokenbroker.Replier whose request may be
// traced (the transports' repliers): through it a credential's actor adds
// to the request's span what only the actor knows, and hangs the IdP call
// it starts for the request under that span.
type Traced interface {
	// Trace returns the request's trace, nil when it is not traced.
	Trace() *Request
}

// Of returns the trace of the request rep answers, or nil: tracing is off,
// or rep is not a Traced replier, or its request is not traced.
func Of(rep any) *Request {
	if state.Load() == nil {
		return nil
	}
	if t, ok := rep.(Traced); ok {
		return t.Trace()
	}
	return nil
}

// StartRequest starts the span of a request that just arrived on
// transport (tokenbroker.TransportNATS or TransportHTTP), as the child of
// the span carrier's traceparent names, if it names one. attrs are added
// to it; a nil carrier starts a new trace. It returns nil, having read
// nothing, when tracing is off.
func StartRequest(carrier propagation.TextMapCarrier, transport string, attrs ...attribute.KeyValue) *Request {
	st := state.Load()
	if st == nil {
		return nil
	}
	ctx := context.Background()
	if carrier != nil {
		ctx = st.prop.Extract(ctx, carrier)
	}
	_, span := st.tracer.Start(ctx, SpanRequest, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(append(attrs, Transport.String(transport))...))
	return &Request{span: span}
}

// Span returns the request's span; nil for a nil Request.
func (r *Request) Span() trace.Span {
	if r == nil {
		return nil
	}
	return r.span
}

// SpanContext returns the request's span context; the zero (invalid) one
// for a nil Request.
func (r *Request) SpanContext() trace.SpanContext {
	if r == nil {
		return trace.SpanContext{}
	}
	return r.span.SpanContext()
}

// SetCredential records the credential_id the request is for, once the
// transport or the actor knows it.
func (r *Request) SetCredential(id string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.credential = id
	r.mu.Unlock()
}

// Note records, before it answers, what the answerer knows of the
// request: how the cache served it (CacheHit, CacheMiss or CacheStale),
// where the token came from (tokenbroker.SourceCache, SourceIdP,
// SourceStore; "" when the request failed) and its credential_id.
func (r *Request) Note(cache, source, credential string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.cache, r.source, r.credential = cache, source, credential
	r.mu.Unlock()
}

// SetAttributes adds attrs to the request's span.
func (r *Request) SetAttributes(attrs ...attribute.KeyValue) {
	if r == nil {
		return
	}
	r.span.SetAttributes(attrs...)
}

// Respond ends the span of a request answered with a token. A request
// nobody noted was answered from the cache without its actor when action
// is "returned existing token" (a cache hit), and is a miss otherwise; its
// credential, when unknown, is read from the reply's credential_id.
func (r *Request) Respond(action string, body []byte) {
	if r == nil { // untraced: not even the closure
		return
	}
	r.end(func(cache, source, credential string) ([]attribute.KeyValue, string) {
		if cache == "" {
			cache, source = CacheMiss, ""
			if action == tokenbroker.ActionExisting {
				cache, source = CacheHit, tokenbroker.SourceCache
			}
		}
		if credential == "" {
			credential = credentialOf(body)
		}
		attrs := []attribute.KeyValue{Outcome.String("ok"), Action.String(action), Cache.String(cache)}
		if source != "" {
			attrs = append(attrs, Source.String(source))
		}
		if credential != "" {
			attrs = append(attrs, Credential.String(credential))
		}
		return attrs, ""
	})
}

// Fail ends the span of a request answered with e. A server error (5xx)
// sets the span's status to Error; a refusal (4xx) is the broker doing its
// job, and leaves it unset, as OpenTelemetry's conventions have it for
// servers.
func (r *Request) Fail(e *tokenbroker.Error) {
	if r == nil { // untraced: not even the closure
		return
	}
	r.end(func(cache, _, credential string) ([]attribute.KeyValue, string) {
		attrs := []attribute.KeyValue{Outcome.String(strconv.Itoa(e.Code)), Error.String(e.OAuth)}
		if cache != "" {
			attrs = append(attrs, Cache.String(cache))
		}
		if credential != "" {
			attrs = append(attrs, Credential.String(credential))
		}
		if e.Code >= 500 {
			// The OAuth code, not the description: the IdP's own words may
			// run long, and they are in the broker's log.
			return attrs, e.OAuth
		}
		return attrs, ""
	})
}

// Abandon ends the span of a request whose caller left before the answer
// (an HTTP client that hung up). The answer, when it comes, is dropped.
func (r *Request) Abandon() {
	if r == nil { // untraced: not even the closure
		return
	}
	r.end(func(_, _, credential string) ([]attribute.KeyValue, string) {
		attrs := []attribute.KeyValue{Outcome.String("abandoned")}
		if credential != "" {
			attrs = append(attrs, Credential.String(credential))
		}
		return attrs, ""
	})
}

// end ends the span once, whichever of Respond, Fail and Abandon comes
// first, with the attributes attrs makes from what was noted; a non-empty
// errStatus sets the span's status to Error with it.
func (r *Request) end(attrs func(cache, source, credential string) ([]attribute.KeyValue, string)) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.ended = true
	kv, errStatus := attrs(r.cache, r.source, r.credential)
	r.span.SetAttributes(kv...)
	if errStatus != "" {
		r.span.SetStatus(codes.Error, errStatus)
	}
	r.span.End()
}

// credentialKey precedes the credential_id in an encoded reply.
var credentialKey = []byte(`"credential_id":"`)

// credentialOf returns the credential_id of an encoded reply, "" when it
// has none. Ids are names of [A-Za-z0-9_-] or keyed hashes of the same
// letters, so they hold no escapes; the field comes last, hence the
// search from the end.
func credentialOf(body []byte) string {
	i := bytes.LastIndex(body, credentialKey)
	if i < 0 {
		return ""
	}
	rest := body[i+len(credentialKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
