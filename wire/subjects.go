package wire

import (
	"errors"
	"fmt"
	"strings"
)

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

// RequestFor is the subject that serves the named credential name alone,
// so that NATS permissions can grant a caller exactly its credentials.
func (s Subjects) RequestFor(name string) string { return s.prefix() + ".request." + name }

// NamedRequests matches every credential's own request subject.
func (s Subjects) NamedRequests() string { return s.prefix() + ".request.*" }

// ValidName reports whether name can be a subject token, and so a named
// credential's name: 1 to 64 of A-Z a-z 0-9 _ -, as the configuration
// requires.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Refreshed is the subject of credentialID's refreshed events.
func (s Subjects) Refreshed(credentialID string) string {
	return s.prefix() + ".refreshed." + credentialID
}

// Failed is the subject of credentialID's failed events.
func (s Subjects) Failed(credentialID string) string { return s.prefix() + ".failed." + credentialID }

// Audit is the subject of credentialID's audit records (AUDIT=nats). The
// caller picks a token for records without a credential id: a subject
// token cannot be empty.
func (s Subjects) Audit(credentialID string) string { return s.prefix() + ".audit." + credentialID }

// AllRefreshed matches every credential's refreshed events.
func (s Subjects) AllRefreshed() string { return s.prefix() + ".refreshed.>" }

// AllFailed matches every credential's failed events.
func (s Subjects) AllFailed() string { return s.prefix() + ".failed.>" }

// DefaultReplyPrefix is the inbox prefix of NATS clients that set none
// (REPLY_PREFIXES' default).
const DefaultReplyPrefix = "_INBOX"

// BrokerInboxPrefix is the prefix of the broker's own reply subjects, where
// JetStream answers it when it keeps the token state there. It is not
// "_INBOX", so that NATS permissions can let the broker subscribe to
// BrokerInboxPrefix.> without letting it read every caller's replies under
// _INBOX.>, and so that no caller's reply subject can reach it: it is never
// an allowed reply prefix.
const BrokerInboxPrefix = "_INBOX_tokenbroker"

// CheckReplyPrefixes validates inbox prefixes for replies and returns them
// each with its final dot. NATS does not check a request's reply subject
// against the sender's permissions, while the broker may publish events and
// talk to JetStream: a reply aimed at token.refreshed.<id>, $KV.<bucket>.<key>
// or $JS.API... would have the broker publish there. So a prefix may not be
// under the subject prefix or under $, nor hold wildcards or white space.
func CheckReplyPrefixes(prefixes []string, subjectPrefix string) ([]string, error) {
	if len(prefixes) == 0 {
		prefixes = []string{DefaultReplyPrefix}
	}
	if subjectPrefix == "" {
		subjectPrefix = DefaultPrefix
	}
	out := make([]string, 0, len(prefixes))
	for _, p := range prefixes {
		p = strings.TrimSuffix(strings.TrimSpace(p), ".")
		switch {
		case p == "":
			return nil, errors.New("wire: an empty reply prefix would allow every subject")
		case strings.ContainsAny(p, "*> \t\r\n") || strings.Contains(p, ".."):
			return nil, fmt.Errorf("wire: reply prefix %q: no wildcards, white space or empty tokens", p)
		case p == BrokerInboxPrefix || strings.HasPrefix(p, BrokerInboxPrefix+"."):
			return nil, fmt.Errorf("wire: reply prefix %q: the broker's own inbox, where JetStream answers it", p)
		case strings.HasPrefix(p, "$"):
			return nil, fmt.Errorf("wire: reply prefix %q: subjects under $ are the server's and JetStream's", p)
		case p == subjectPrefix || strings.HasPrefix(p, subjectPrefix+"."):
			return nil, fmt.Errorf("wire: reply prefix %q: under the subject prefix %q, where the broker publishes events", p, subjectPrefix)
		}
		out = append(out, p+".")
	}
	return out, nil
}
