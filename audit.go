package tokenbroker

import "time"

// Transports, as an AuditRecord names them.
const (
	TransportNATS = "nats"
	TransportHTTP = "http"
)

// Where the token of an answer came from, as an AuditRecord says.
const (
	SourceCache = "cache" // held in memory
	SourceStore = "store" // read from the durable state: another broker's, or kept across a restart
	SourceIdP   = "idp"   // obtained from the IdP for this answer
)

// AuditRecord is one answer the broker gave. It never holds a token, a
// password or a username: a username's credential_id is its keyed hash.
type AuditRecord struct {
	Time         time.Time
	CredentialID string // "" when the request named none the broker could resolve
	// Caller is who asked, as the transport knows it: on NATS the account
	// and user nats-server reports in the Nats-Request-Info header of a
	// request that came through a service import with share: true ("" when
	// absent); on HTTP the remote address.
	Caller    string
	Transport string // TransportNATS or TransportHTTP
	Outcome   string // "ok", or the error code as a string ("401")
	Source    string // SourceCache, SourceStore or SourceIdP; "" for an error
	Action    string // the reply's action phrase; "" for an error
}

// Auditor takes the audit records. Audit must not block: it is called on
// the cache-hit path and from credentials' actors.
type Auditor interface {
	Audit(AuditRecord)
}

// NopAuditor drops every record.
type NopAuditor struct{}

// Audit implements Auditor.
func (NopAuditor) Audit(AuditRecord) {}
