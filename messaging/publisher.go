package messaging

import (
	"log/slog"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/tracing"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Publisher publishes the broker's events on NATS, encoded by package wire.
// Each event's event_id is also its Nats-Msg-Id header, so a JetStream
// stream capturing the subjects drops a duplicate sent after a failover.
type Publisher struct {
	nc       *nats.Conn
	subjects wire.Subjects
	log      *slog.Logger
	metrics  *metrics.Metrics
}

var (
	_ tokenbroker.Publisher = (*Publisher)(nil)
	_ tracing.Publisher     = (*Publisher)(nil)
)

// NewPublisher returns a Publisher on nc; m, which may be nil, counts the
// events published.
func NewPublisher(nc *nats.Conn, subjects wire.Subjects, log *slog.Logger, m *metrics.Metrics) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{nc: nc, subjects: subjects, log: log, metrics: m}
}

// PublishRefreshed implements tokenbroker.Publisher.
func (p *Publisher) PublishRefreshed(e tokenbroker.RefreshedEvent) {
	p.PublishRefreshedUnder(trace.SpanContext{}, e)
}

// PublishRefreshedUnder implements tracing.Publisher: with a valid parent
// (and tracing on), publishing is a span under it, whose traceparent the
// message carries, so that a consumer can link to the refresh.
func (p *Publisher) PublishRefreshedUnder(parent trace.SpanContext, e tokenbroker.RefreshedEvent) {
	msg, err := wire.EncodeRefreshed(p.subjects, e)
	var span trace.Span
	if err == nil {
		span = tracePublish(parent, msg.Subject, e.CredentialID, e.EventID, wire.HeaderCarrier(msg.Header))
	}
	err = p.publish(p.subjects.Refreshed(e.CredentialID), msg, err)
	p.metrics.Event(metrics.EventRefreshed)
	if span != nil {
		if err != nil {
			span.SetStatus(codes.Error, "publish failed")
		}
		span.End()
	}
}

// PublishFailed implements tokenbroker.Publisher.
func (p *Publisher) PublishFailed(e tokenbroker.FailedEvent) {
	msg, err := wire.EncodeFailed(p.subjects, e)
	_ = p.publish(p.subjects.Failed(e.CredentialID), msg, err)
	p.metrics.Event(metrics.EventFailed)
}

// publish sends an event encoded by wire, the encoding the Go client
// decodes, and returns why it could not. It does not wait for the
// server: nats.go buffers the message, and a broker that lost its
// connection resends it on reconnect.
func (p *Publisher) publish(subject string, msg *nats.Msg, err error) error {
	if err != nil {
		p.log.Error("encode event", "subject", subject, "err", err)
		return err
	}
	if err := p.nc.PublishMsg(msg); err != nil {
		p.log.Warn("publish event", "subject", subject, "err", err)
		return err
	}
	return nil
}
