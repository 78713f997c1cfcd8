package wire

// Names the contract fixes: the micro service, its queue group, and the
// default subject prefix.
const (
	ServiceName   = "tokenbroker"
	QueueGroup    = "tokenbroker"
	DefaultPrefix = "token"
)

// Subjects builds every subject from the configured prefix (SUBJECT_PREFIX),
// so brokers of several environments can share one NATS. The zero value
// uses DefaultPrefix.
type Subjects struct {
	Prefix string
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Request is the subject callers send token requests to.
func (s Subjects) Request() string { return s.prefix() + ".request" }

// Refreshed is the subject of credentialID's refreshed events.
func (s Subjects) Refreshed(credentialID string) string {
	return s.prefix() + ".refreshed." + credentialID
}

// Failed is the subject of credentialID's failed events.
func (s Subjects) Failed(credentialID string) string { return s.prefix() + ".failed." + credentialID }

// AllRefreshed matches every credential's refreshed events.
func (s Subjects) AllRefreshed() string { return s.prefix() + ".refreshed.>" }

// AllFailed matches every credential's failed events.
func (s Subjects) AllFailed() string { return s.prefix() + ".failed.>" }
