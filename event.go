package tokenbroker

import "time"

// RefreshedEvent is published on token.refreshed.<credential_id> once per
// token acquired or refreshed.
type RefreshedEvent struct {
	EventID      string    `json:"event_id"` // a fresh UUID, also the Nats-Msg-Id header
	CredentialID string    `json:"credential_id"`
	AccessToken  string    `json:"accesstoken"`
	TokenType    string    `json:"token_type"`
	ExpiresOn    string    `json:"expires_on"` // Unix seconds, as a string
	ExpiresIn    int64     `json:"expires_in"` // seconds left when published
	Action       string    `json:"action"`
	RefreshedAt  time.Time `json:"refreshed_at"` // RFC 3339
}

// FailedEvent is published on token.failed.<credential_id> when a refresh
// fails for good, for example with invalid_grant. It never carries a secret.
type FailedEvent struct {
	EventID      string    `json:"event_id"`
	CredentialID string    `json:"credential_id"`
	Error        string    `json:"error"`
	Description  string    `json:"error_description"`
	At           time.Time `json:"at"`
}

// Publisher pushes events to consumers. Implementations must be safe for
// concurrent use and must not block for long: a credential's actor calls them.
type Publisher interface {
	PublishRefreshed(RefreshedEvent)
	PublishFailed(FailedEvent)
}

// NopPublisher drops every event.
type NopPublisher struct{}

// PublishRefreshed implements Publisher.
func (NopPublisher) PublishRefreshed(RefreshedEvent) {}

// PublishFailed implements Publisher.
func (NopPublisher) PublishFailed(FailedEvent) {}

// Replier carries one answer back to one caller, from wherever the answer is
// ready: the transport's own goroutine on a cache hit, a credential's actor
// otherwise. Exactly one of its methods is called, exactly once, and it must
// not block: implementations hand the bytes to their transport and return.
type Replier interface {
	// Respond sends a successful reply; body is the encoded Reply and action
	// its action phrase, for metrics. body may be reused after Respond returns.
	Respond(action string, body []byte)
	// Fail sends an error reply.
	Fail(err *Error)
}

// Service answers token requests. Serve must not block on the IdP: it
// answers at once from the cache or hands the request to whoever will.
// Every request is answered, by the service's REQUEST_TIMEOUT at the
// latest (a 504): transports need no timer of their own.
type Service interface {
	Serve(req Request, rep Replier)
}

// AppendService is a Service that can also answer a cache hit into a
// transport's own buffer, the fast path of a transport that reuses one
// buffer for every reply.
type AppendService interface {
	Service
	// ServeAppend resolves req once. When the cache can answer it, it
	// appends the "returned existing token" reply to dst and returns it
	// with true, and rep is not used, so the transport may reuse it. Else
	// it returns dst and false, and answers through rep exactly once: at
	// once for an invalid request, later for one handed to a credential.
	// req is read during the call only.
	ServeAppend(dst []byte, req *Request, rep Replier) ([]byte, bool)
}
