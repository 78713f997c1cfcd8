package actors

import (
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/store"
)

// getToken is one request the cache could not answer, resolved once by the
// Router to its credential. It carries the caller's password (for a
// username/password request) only until the actor has used or dropped it.
type getToken struct {
	req      tokenbroker.Request
	verifier Verifier
	rep      tokenbroker.Replier
	pending  *pending            // counts it until answered, for a clean Stop
	audit    tokenbroker.Auditor // nil: no audit trail
	key      cellKey
	id       string
	spec     *Spec
	deadline time.Time // past it the caller gets a 504
	// afterFailure is set, with tracing on, when the last job g waited
	// on failed: a held token it is then served is stale.
	afterFailure bool
}

// respond answers with a token that came from source. The record comes
// first, so that an audit trail read after an answer holds it.
func (g *getToken) respond(action, source string, body []byte) {
	g.record("ok", source, action)
	g.noteTrace(source)
	g.rep.Respond(action, body)
	g.done()
}

func (g *getToken) fail(err *tokenbroker.Error) {
	g.record(strconv.Itoa(err.Code), "", "")
	g.noteTrace("")
	g.rep.Fail(err)
	g.done()
}

func (g *getToken) record(outcome, source, action string) {
	if g.audit == nil {
		return
	}
	g.audit.Audit(tokenbroker.AuditRecord{Time: time.Now(), CredentialID: g.id, Caller: g.req.Caller,
		Transport: g.req.Transport, Outcome: outcome, Source: source, Action: action})
}

// done lets go of the request once answered.
func (g *getToken) done() {
	g.req.Password = ""
	g.pending.done()
}

// jobDone reports the end of a job to its actor: a token from the IdP (tok,
// stored at rev), one another broker stored (rec), or an error.
type jobDone struct {
	seq  uint64 // the job's
	tok  *oauth.Token
	rev  uint64
	rec  *store.Record
	err  error
	took time.Duration
	// span is the span the job's spans hung under, the refreshed event's
	// parent; invalid when the job was not traced.
	span trace.SpanContext
}

// release zeroes the token and the record the message carries, once the
// actor has taken what it keeps of them.
func (d *jobDone) release() {
	if d.tok != nil {
		*d.tok = oauth.Token{}
	}
	if d.rec != nil {
		*d.rec = store.Record{}
	}
}

// loaded is the stored record read when the actor started.
type loaded struct {
	rec *store.Record
	err error
}

// release zeroes the record, as jobDone's does.
func (m *loaded) release() {
	if m.rec != nil {
		*m.rec = store.Record{}
	}
}

// wake is the actor's timer firing; gen discards timers since replaced.
type wake struct{ gen uint64 }

// overdue is the waiters' timer firing: answer callers past their deadline.
type overdue struct{}

// respec is a named credential's new declaration. With reset, the token
// held answers a question no longer asked (another endpoint, client,
// audience, grant or user) and is dropped.
type respec struct {
	spec  *Spec
	reset bool
}

// removed tells a named credential's actor that the credential is no
// longer served.
type removed struct{}
