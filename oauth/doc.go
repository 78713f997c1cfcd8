// Package oauth is a small client for OAuth2 token endpoints (RFC 6749
// section 3.2), written for Azure AD (Entra ID) v1 and v2 and generic IdPs.
//
// It is hand-written rather than built on golang.org/x/oauth2 because that
// package cannot send Azure AD v1's resource parameter on the password and
// refresh_token grants, its auth-style auto-detection sends a second request
// to the IdP whenever the first one fails (doubling IdP calls exactly when the
// IdP is struggling), and it drops v1's expires_on. It also treats a response
// without expires_in as a token that never expires, which a broker that
// caches tokens must not do.
//
// Every call is one form POST, bounded by the Client's timeout. Results are a
// *Token or one of three typed errors, so the broker can map them to its
// codes:
//
//   - *RetrieveError: the IdP answered with an OAuth2 error (RFC 6749 5.2)
//     or an error status: a rejection (invalid_grant, invalid_client, ...) or,
//     when Temporary reports true, throttling or an outage.
//   - *ResponseError: the IdP answered 2xx with something that is not a
//     usable token (an HTML page, truncated JSON, no access_token, no or an
//     absurd lifetime).
//   - *TransportError: the IdP could not be reached or did not answer in time.
//
// A client in front of a Client that holds calls back while the IdP is
// failing (guard's circuit breaker) returns a *FailFastError, or an error
// that unwraps to one. Classify maps any of these to the *tokenbroker.Error
// a caller is told, and OutcomeOf to the Outcome that the breaker and the
// metrics count, so that the broker has one classification of IdP errors.
//
// No error string ever holds the request form, a password, a client secret, a
// refresh token or an access token.
//
// ClientAssertion runs the client credentials grant authenticated by an RFC
// 7523 client assertion (Azure AD certificate credentials), signed by an
// AssertionSigner loaded from PEM files with LoadAssertionSigner or from
// their contents with ParseAssertionSigner. FederatedAssertion runs it with
// a JWT another issuer signed and wrote to a file (workload identity
// federation), read for every call; a file that cannot be used is an
// *AssertionFileError before any request, which Classify answers as the
// credential refused.
package oauth
