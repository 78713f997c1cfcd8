package guard

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// idpTrace is the span of one guarded IdP call, retries included: how
// many attempts it took, how each went, the waits between them, and the
// breaker's state. Its methods do nothing on nil, which is what a call
// has with tracing off.
type idpTrace struct {
	span     trace.Span
	attempts int
	status   int // HTTP status of the last attempt's error answer; 0 for none
}

// startIdPTrace starts the span of a call to the token endpoint key with
// grant, whose breaker is in state before. Called only with tracing on;
// it returns ctx and nil if tracing went off meanwhile.
func startIdPTrace(ctx context.Context, grant, key string, before BreakerState) (context.Context, *idpTrace) {
	attrs := []attribute.KeyValue{tracing.Grant.String(grant), tracing.Breaker.String(before.String())}
	// The host and the path, as the breaker knows the endpoint: no user
	// info and no query, which might carry anything.
	if u, err := url.Parse(key); err == nil {
		attrs = append(attrs, attribute.String("server.address", u.Hostname()), attribute.String("url.full", key))
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err == nil {
				attrs = append(attrs, attribute.Int("server.port", n))
			}
		}
	}
	ctx, span := tracing.Start(ctx, tracing.SpanIdP, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if span == nil {
		return ctx, nil
	}
	return ctx, &idpTrace{span: span}
}

// attempted records one call to the IdP that took d.
func (t *idpTrace) attempted(outcome oauth.Outcome, err error, d time.Duration) {
	if t == nil {
		return
	}
	t.attempts++
	attrs := []attribute.KeyValue{attribute.Int("attempt", t.attempts), attribute.String("outcome", string(outcome)),
		attribute.Int64("duration_ms", d.Milliseconds())}
	t.status = 0
	var re *oauth.RetrieveError
	if errors.As(err, &re) {
		t.status = re.StatusCode
		attrs = append(attrs, attribute.Int("http.response.status_code", re.StatusCode))
		if re.ErrorCode != "" {
			attrs = append(attrs, attribute.String("error", re.ErrorCode))
		}
	}
	t.span.AddEvent("attempt", trace.WithAttributes(attrs...))
}

// retrying records the wait before the next attempt.
func (t *idpTrace) retrying(wait time.Duration) {
	if t == nil {
		return
	}
	t.span.AddEvent("retry", trace.WithAttributes(attribute.Int64("wait_ms", wait.Milliseconds())))
}

// end ends the span with the call's result and the breaker's state after
// it. The error is named by its OAuth code, never by its description,
// which is the IdP's prose.
func (t *idpTrace) end(err error, after BreakerState) {
	if t == nil {
		return
	}
	attrs := []attribute.KeyValue{tracing.Attempts.Int(t.attempts), tracing.BreakerAfter.String(after.String())}
	if t.status != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", t.status))
	}
	if err != nil {
		e := oauth.Classify(err)
		attrs = append(attrs, tracing.Outcome.String(strconv.Itoa(e.Code)), tracing.Error.String(e.OAuth))
		if errors.Is(err, ErrCircuitOpen) && t.attempts == 0 {
			attrs = append(attrs, attribute.Bool("tokenbroker.breaker.fail_fast", true))
		}
		t.span.SetStatus(codes.Error, e.OAuth)
	} else {
		attrs = append(attrs, tracing.Outcome.String("ok"))
	}
	t.span.SetAttributes(attrs...)
	t.span.End()
}
