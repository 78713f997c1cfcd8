package messaging

import (
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
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

var _ tokenbroker.Publisher = (*Publisher)(nil)

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
	msg, err := wire.EncodeRefreshed(p.subjects, e)
	p.publish(p.subjects.Refreshed(e.CredentialID), msg, err)
	p.metrics.Event(metrics.EventRefreshed)
}

// PublishFailed implements tokenbroker.Publisher.
func (p *Publisher) PublishFailed(e tokenbroker.FailedEvent) {
	msg, err := wire.EncodeFailed(p.subjects, e)
	p.publish(p.subjects.Failed(e.CredentialID), msg, err)
	p.metrics.Event(metrics.EventFailed)
}

// publish sends an event encoded by wire, the encoding the Go client
// decodes. It does not wait for the server: nats.go buffers the message,
// and a broker that lost its connection resends it on reconnect.
func (p *Publisher) publish(subject string, msg *nats.Msg, err error) {
	if err != nil {
		p.log.Error("encode event", "subject", subject, "err", err)
		return
	}
	if err := p.nc.PublishMsg(msg); err != nil {
		p.log.Warn("publish event", "subject", subject, "err", err)
	}
}
