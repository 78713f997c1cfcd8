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
	CodeBadGateway     = http.StatusBadGateway            // 502: the IdP answered with something unusable
	CodeUnavailable    = http.StatusServiceUnavailable    // 503: IdP unreachable or throttling, no valid cached token
	CodeTimeout        = http.StatusGatewayTimeout        // 504: the broker could not answer in time
	CodeInternal       = http.StatusInternalServerError   // 500: a bug; never expected
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
	return &Error{Code: CodeInternal, OAuth: "server_error", Description: "internal error"}
}

// ErrorCode returns the contract code of err: its Code when it is an *Error,
// else CodeInternal.
func ErrorCode(err error) int { return AsError(err).Code }
