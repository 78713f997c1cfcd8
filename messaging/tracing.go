package messaging

import (
	"context"

	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/tracing"
	"github.com/tokenbroker/tokenbroker/wire"
)

// startTrace starts the span of a token request, the child of the span its
// traceparent header names, if it has one. Called only with tracing on.
func startTrace(req micro.Request) *tracing.Request {
	return tracing.StartRequest(wire.HeaderCarrier(req.Headers()), tokenbroker.TransportNATS,
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", req.Subject()),
		attribute.String("messaging.operation.type", "process"))
}

// tracePublish starts the span of publishing an event of the job whose
// span context is parent, and writes its traceparent into the event's
// headers, so that a consumer can link what it does with the token to the
// refresh that produced it. It returns nil, having done nothing, when the
// event comes from no traced job (tracing off, or a job before it was on).
func tracePublish(parent trace.SpanContext, subject, credential, eventID string, h wire.HeaderCarrier) trace.Span {
	if !parent.IsValid() {
		return nil
	}
	ctx, span := tracing.Start(trace.ContextWithSpanContext(context.Background(), parent), tracing.SpanPublish,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.message.id", eventID),
			tracing.Credential.String(credential)))
	if span == nil {
		return nil
	}
	tracing.Inject(ctx, h)
	return span
}
