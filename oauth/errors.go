package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// ErrInvalidArgument is wrapped by the errors a Client returns before calling
// the IdP at all: an empty or malformed TokenURL, a form without grant_type,
// an empty username or refresh token, an unusable assertion file (an
// *AssertionFileError). They are bugs or configuration mistakes, never the
// IdP's answer.
var ErrInvalidArgument = errors.New("oauth: invalid argument")

// RetrieveError is returned when the IdP answered with an OAuth2 error body
// (RFC 6749 section 5.2), with an error status, or with a 2xx that carries an
// error field. Its fields are the IdP's own words, passed through so the
// broker can hand them to its callers.
type RetrieveError struct {
	// StatusCode is the HTTP status of the response.
	StatusCode int
	// ErrorCode is the RFC 6749 error ("invalid_grant", "invalid_client",
	// "temporarily_unavailable", ...). It is "" when a 4xx body had none;
	// for 429 and 5xx without one it is "temporarily_unavailable" (429, 503)
	// or "server_error" (other 5xx), so callers can treat them uniformly.
	ErrorCode string
	// Description is error_description as sent (Azure: "AADSTS50126: ...",
	// followed by trace and correlation lines).
	Description string
	// ErrorURI is error_uri as sent, "" when absent.
	ErrorURI string
	// ErrorCodes are Azure AD's error_codes (AADSTS numbers), nil when absent.
	ErrorCodes []int
	// TraceID and CorrelationID are Azure AD's trace_id and correlation_id,
	// the values Microsoft support asks for.
	TraceID, CorrelationID string
	// RetryAfter is how long the IdP asked callers to wait, from a
	// Retry-After header in seconds or as an HTTP date; 0 when none.
	RetryAfter time.Duration
}

// Error returns "oauth: token endpoint returned STATUS ERROR: DESCRIPTION",
// with only the first line of the description: Azure appends trace and
// correlation lines that would break a log line in pieces.
func (e *RetrieveError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "oauth: token endpoint returned %d", e.StatusCode)
	if e.ErrorCode != "" {
		b.WriteString(" ")
		b.WriteString(e.ErrorCode)
	}
	if d := firstLine(e.Description); d != "" {
		b.WriteString(": ")
		b.WriteString(d)
	}
	return b.String()
}

// Temporary reports whether the error is throttling or an outage rather than
// a rejection: a 429 or 5xx status, or the error codes
// temporarily_unavailable and server_error. A caller may retry those later
// (after RetryAfter) and keep serving a still-valid token meanwhile.
func (e *RetrieveError) Temporary() bool {
	return e.StatusCode == 429 || e.StatusCode >= 500 ||
		e.ErrorCode == tokenbroker.OAuthTemporarilyUnavailable || e.ErrorCode == tokenbroker.OAuthServerError
}

// HasErrorCode reports whether the IdP listed the Azure AD error code
// (AADSTS number) code in error_codes.
func (e *RetrieveError) HasErrorCode(code int) bool {
	for _, c := range e.ErrorCodes {
		if c == code {
			return true
		}
	}
	return false
}

// ResponseError is returned when the IdP answered with something that is not
// a usable token: an HTML page, truncated or malformed JSON, no access_token,
// a missing, zero, negative or absurd lifetime. Reason says what was wrong
// without quoting the body, which may hold a token.
type ResponseError struct {
	StatusCode int    // the HTTP status of the response
	Reason     string // what was wrong; never body content beyond the content type
}

// Error returns "oauth: unusable token response (status N): REASON".
func (e *ResponseError) Error() string {
	return fmt.Sprintf("oauth: unusable token response (status %d): %s", e.StatusCode, e.Reason)
}

// TransportError is returned when the IdP could not be reached or did not
// answer in time: DNS, connection, TLS, timeout, a cancelled context, or a
// body cut off while being read.
type TransportError struct {
	// URL is the token endpoint without user info, query or fragment, so
	// the error names the IdP without carrying anything secret.
	URL string
	// Err is the underlying error (a net error, context.DeadlineExceeded,
	// context.Canceled, ...), with http.Client's *url.Error unwrapped since
	// it repeats the URL.
	Err error
}

// Error returns "oauth: token endpoint URL: ERR".
func (e *TransportError) Error() string {
	return fmt.Sprintf("oauth: token endpoint %s: %v", e.URL, e.Err)
}

// Unwrap returns Err, so errors.Is(err, context.DeadlineExceeded) works.
func (e *TransportError) Unwrap() error { return e.Err }

// Timeout reports whether the IdP did not answer in time: the Client's
// timeout or the caller's deadline passed, or a network timeout fired.
func (e *TransportError) Timeout() bool {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// Temporary reports true: an unreachable IdP may be reachable later.
func (e *TransportError) Temporary() bool { return true }

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
