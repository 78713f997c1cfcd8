package tokenbroker

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes, as the contract numbers them. They are HTTP statuses on the
// gateway and the Nats-Service-Error-Code header on token.request.
const (
	CodeInvalidRequest = http.StatusBadRequest            // 400: malformed or invalid request
	CodeRejected       = http.StatusUnauthorized          // 401: the IdP rejected the credentials
	CodeNotFound       = http.StatusNotFound              // 404: unknown named credential
	CodeTooLarge       = http.StatusRequestEntityTooLarge // 413: request over MaxRequestBytes
	CodeTooMany        = http.StatusTooManyRequests       // 429: too many refused sign-ins for a username; retry_after says when to try again
	CodeBadGateway     = http.StatusBadGateway            // 502: the IdP answered with something unusable
	CodeUnavailable    = http.StatusServiceUnavailable    // 503: IdP unreachable or throttling, no valid cached token
	CodeTimeout        = http.StatusGatewayTimeout        // 504: the broker could not answer in time
	CodeInternal       = http.StatusInternalServerError   // 500: a bug; never expected
)

// OAuth error codes: the "error" field of an error reply, and of an IdP's
// error response. The first group is RFC 6749 section 5.2 (and 4.1.2.1);
// the broker passes an IdP's own code through unchanged, so any string can
// appear, but the broker itself writes only these.
const (
	OAuthInvalidRequest         = "invalid_request"
	OAuthInvalidClient          = "invalid_client"
	OAuthInvalidGrant           = "invalid_grant"
	OAuthUnauthorizedClient     = "unauthorized_client"
	OAuthUnsupportedGrantType   = "unsupported_grant_type"
	OAuthInvalidScope           = "invalid_scope"
	OAuthAccessDenied           = "access_denied"
	OAuthServerError            = "server_error"
	OAuthTemporarilyUnavailable = "temporarily_unavailable"
	// OAuthInteractionRequired is OpenID Connect's: the user must sign in
	// again (Azure AD sends it for MFA and consent).
	OAuthInteractionRequired = "interaction_required"
	// OAuthUnknownCredential is the broker's own: no credential of that
	// name (404).
	OAuthUnknownCredential = "unknown_credential"
	// OAuthInvalidResource is Azure AD v1's: no resource of that name in
	// the tenant. The broker never writes it; it passes it through from
	// the IdP, and the fake IdP sends it.
	OAuthInvalidResource = "invalid_resource"
)

// Error is the one error a caller sees. OAuth is the RFC 6749 error string
// ("invalid_grant", "invalid_request", ...) and Description its
// error_description; for IdP rejections both are the IdP's own words, passed
// through. Neither ever holds a secret, a token or a username.
type Error struct {
	Code        int    // one of the Code constants
	OAuth       string // the "error" field of the reply
	Description string // the "error_description" field of the reply
	RetryAfter  int    // seconds a caller should wait before asking again; 0 when unknown
}

// Error implements error.
func (e *Error) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("tokenbroker: %d %s", e.Code, e.OAuth)
	}
	return fmt.Sprintf("tokenbroker: %d %s: %s", e.Code, e.OAuth, e.Description)
}

// Errorf returns an *Error with the given code, OAuth error string and a
// formatted description.
func Errorf(code int, oauthErr, format string, args ...any) *Error {
	return &Error{Code: code, OAuth: oauthErr, Description: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error. An error that is not one becomes a 500
// whose description hides the internals, since they may carry anything.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, OAuth: OAuthServerError, Description: "internal error"}
}

// ErrorCode returns the contract code of err: its Code when it is an *Error,
// else CodeInternal.
func ErrorCode(err error) int { return AsError(err).Code }

// OAuthFor is the OAuth error code that goes with a contract code when
// nothing more precise is known: for an answer that carried a code but no
// body, say.
func OAuthFor(code int) string {
	switch code {
	case CodeInvalidRequest, CodeTooLarge:
		return OAuthInvalidRequest
	case CodeRejected:
		return OAuthInvalidGrant
	case CodeNotFound:
		return OAuthUnknownCredential
	case CodeUnavailable, CodeTimeout, CodeTooMany:
		return OAuthTemporarilyUnavailable
	default:
		return OAuthServerError
	}
}
