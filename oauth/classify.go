package oauth

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// FailFastError is returned, without calling the IdP, by a client in front
// of a Client that knows the token endpoint is failing and holds calls back
// rather than add to its load: guard's open circuit breaker, whose
// *guard.CircuitOpenError unwraps to one. It is oauth's, not guard's, so
// that Classify and OutcomeOf recognise it without knowing who held the call
// back.
type FailFastError struct {
	// TokenURL is the token endpoint without user info, query or fragment.
	TokenURL string
	// RetryAfter is how long until the endpoint may be called again; 0 when
	// unknown.
	RetryAfter time.Duration
}

// Error returns "oauth: token endpoint URL: not called while it is failing",
// with the wait when it is known.
func (e *FailFastError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("oauth: token endpoint %s: not called while it is failing, retry after %s", e.TokenURL, e.RetryAfter)
	}
	return fmt.Sprintf("oauth: token endpoint %s: not called while it is failing", e.TokenURL)
}

// Temporary reports true: the endpoint is called again once it recovers, so
// a caller may serve a cached token meanwhile and ask again later.
func (e *FailFastError) Temporary() bool { return true }

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up so that a
// caller told to wait does not come back a moment too early; 0 when unknown.
func (e *FailFastError) RetryAfterSeconds() int {
	return int((e.RetryAfter + time.Second - 1) / time.Second)
}

// Outcome is what one call to a token endpoint came to, as the IdP's health
// and the metrics see it. Its values are metric label values: keep them.
type Outcome string

// The outcomes of a call, as OutcomeOf reports them.
const (
	// OutcomeOK is a token.
	OutcomeOK Outcome = "ok"
	// OutcomeRejected is an OAuth2 error that is not temporary
	// (invalid_grant, invalid_client, ...): the IdP answered, and said no.
	// An *AssertionFileError is one too: the credential is unusable
	// before any call, as the IdP would have said.
	OutcomeRejected Outcome = "rejected"
	// OutcomeUnusable is an answer that is not a usable token
	// (*ResponseError): an HTML page, truncated JSON, ...
	OutcomeUnusable Outcome = "unusable"
	// OutcomeUnavailable is throttling, an outage, a timeout or an
	// unreachable IdP: the failures worth retrying, and that say the IdP is
	// failing.
	OutcomeUnavailable Outcome = "unavailable"
)

// OutcomeOf returns the outcome of a call that returned err. An error that
// is none of this package's (a cancelled wait for the call, say) counts as
// OutcomeUnavailable: the IdP gave no answer that could be read as one.
func OutcomeOf(err error) Outcome {
	var re *RetrieveError
	var rs *ResponseError
	var af *AssertionFileError
	switch {
	case err == nil:
		return OutcomeOK
	case errors.As(err, &af):
		return OutcomeRejected
	case errors.As(err, &re):
		if re.Temporary() {
			return OutcomeUnavailable
		}
		return OutcomeRejected
	case errors.As(err, &rs):
		return OutcomeUnusable
	default:
		return OutcomeUnavailable
	}
}

// Classify maps the error of a call for a token to what the broker's caller
// is told; nil for nil. Every error of this package has its answer:
//
//   - *FailFastError: 503 temporarily_unavailable, with its RetryAfter.
//   - *AssertionFileError: 401 invalid_client, as Azure AD answers for an
//     expired or malformed assertion: the credential is refused, and asking
//     again will not help until its issuer rewrites the file. The
//     description says what is wrong but not the path, which is the
//     broker's business, not its caller's.
//   - *RetrieveError with a 2xx status (an error body in a success): 502
//     server_error, since the IdP, or a gateway in front of it, contradicts
//     itself.
//   - *RetrieveError that is Temporary: 503 with the IdP's code and
//     description (temporarily_unavailable and a generic description when
//     it sent none) and its Retry-After.
//   - any other *RetrieveError: 401 with the IdP's code and description
//     passed through (invalid_request when it sent no code).
//   - *ResponseError: 502 server_error.
//   - *TransportError, and any other error: 503 temporarily_unavailable.
func Classify(err error) *tokenbroker.Error {
	var ff *FailFastError
	var re *RetrieveError
	var rs *ResponseError
	var te *TransportError
	var af *AssertionFileError
	var own *tokenbroker.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &own):
		// Decided by the broker itself, before any IdP call (a credential
		// that needs a login, a claims challenge it cannot send).
		return own
	case errors.As(err, &af):
		return tokenbroker.Errorf(tokenbroker.CodeRejected, tokenbroker.OAuthInvalidClient,
			"the broker's federated assertion file %s", af.Reason)
	case errors.As(err, &ff):
		return &tokenbroker.Error{Code: tokenbroker.CodeUnavailable, OAuth: tokenbroker.OAuthTemporarilyUnavailable,
			Description: "the identity provider is failing; not asking it again yet", RetryAfter: ff.RetryAfterSeconds()}
	case errors.As(err, &re) && re.StatusCode >= 200 && re.StatusCode < 300:
		// Nothing is cached from a success that carries an error.
		return tokenbroker.Errorf(tokenbroker.CodeBadGateway, tokenbroker.OAuthServerError,
			"the identity provider answered %d with an error body: %s: %s", re.StatusCode, re.ErrorCode, re.Description)
	case errors.As(err, &re):
		e := &tokenbroker.Error{Code: tokenbroker.CodeRejected, OAuth: re.ErrorCode, Description: re.Description, RetryAfter: int(re.RetryAfter / time.Second)}
		if re.Temporary() {
			e.Code = tokenbroker.CodeUnavailable
			if e.OAuth == "" {
				e.OAuth = tokenbroker.OAuthTemporarilyUnavailable
			}
			if e.Description == "" {
				e.Description = "the identity provider is unavailable or throttling"
			}
		}
		if e.OAuth == "" {
			e.OAuth = tokenbroker.OAuthInvalidRequest
		}
		return e
	case errors.As(err, &rs):
		return tokenbroker.Errorf(tokenbroker.CodeBadGateway, tokenbroker.OAuthServerError, "the identity provider answered with something unusable: %s", rs.Reason)
	case errors.As(err, &te):
		if te.Timeout() {
			return tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "the identity provider did not answer in time")
		}
		return tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "the identity provider is unreachable")
	default:
		return tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "the identity provider could not be asked")
	}
}
