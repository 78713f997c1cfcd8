// Package guard protects the identity provider and the broker's callers from
// each other. A *Client wraps an *oauth.Client with the same three grant
// methods (so it satisfies actors.TokenClient) and adds, per token endpoint:
//
//   - Retries of temporary failures only: an unreachable IdP or one that
//     timed out (*oauth.TransportError), and throttling or an outage
//     (*oauth.RetrieveError whose Temporary reports true: 429, 5xx,
//     temporarily_unavailable, server_error). A rejection (invalid_grant,
//     invalid_client, ...) or an unusable answer (*oauth.ResponseError) is
//     returned at once: asking again would get the same answer and only add
//     load on the IdP.
//   - Exponential backoff with full jitter between attempts, so callers that
//     failed together do not retry together; a Retry-After from the IdP
//     replaces the backoff. A wait that would outlive the call's deadline is
//     not started: the caller gets the error at once and can fall back on a
//     cached token or answer 503 quickly, rather than hang.
//   - One deadline for a whole call: every attempt, backoff and wait for a
//     slot ends by the sooner of the caller's ctx deadline and the
//     oauth.Client's Timeout (IDP_TIMEOUT) from the start of the call. Each
//     attempt gets what is left of it, so an IdP that hangs costs a caller
//     one Timeout and a 503, not one Timeout per attempt.
//   - A limit on concurrent calls to one token endpoint, so that many tokens
//     expiring together (a refresh storm) queue here instead of at the IdP.
//   - A circuit breaker: after FailureThreshold consecutive temporary
//     failures, calls fail fast with a *CircuitOpenError (matching
//     ErrCircuitOpen, and unwrapping to the *oauth.FailFastError that
//     oauth.Classify answers 503 with) for an open time, or for as long as
//     the IdP asked with Retry-After if that is longer; then one probe call
//     goes through, and its outcome closes or re-opens the breaker.
//
// What counts as a temporary failure is oauth.OutcomeOf's
// oauth.OutcomeUnavailable, the outcome Options.OnAttempt reports too.
//
// Endpoints are keyed by their token URL without user info, query or
// fragment, so an endpoint's limit and breaker are shared by every credential
// that uses it, and a failing endpoint does not affect any other. The Client
// keeps one small entry per endpoint for its lifetime; endpoints come from
// configuration, so their number is bounded.
//
// # How long the breaker stays open
//
// Most outages are short, and while the breaker is open a caller without a
// token gets a 503 even if the IdP is already back. So the first open time
// is short, MinOpenFor (1s), and each failed probe doubles it, up to OpenFor
// (30s): probes come 1, 3, 7, 15, 31, 61, 91, ... seconds after the breaker
// opened. A good answer closes the breaker and the next outage starts again
// at MinOpenFor. Once the IdP is back, callers see 503s for at most the open
// time in force: about as long as the outage had lasted (plus MinOpenFor),
// never more than OpenFor, unless the IdP asked for longer with Retry-After.
// A 15s outage, say, opens the breaker soon after it starts, so the probe 15s
// after opening finds the IdP back and a token is served within about as
// long as the breaker took to open. A long outage still costs the IdP only
// one probe every OpenFor.
//
// # Refresh tokens and retries
//
// The refresh_token grant is retried like the others, with a known risk:
// under strict rotation (Azure AD for single-page apps, and what a careful
// broker must assume) the IdP invalidates a refresh token as soon as it
// redeems it. If the IdP redeemed it but its answer was lost (a timeout, a
// cut connection, a 5xx from a gateway behind which the IdP did answer), the
// retry presents an already-rotated token and gets invalid_grant. That is
// not data loss: the broker treats invalid_grant on a refresh by dropping the
// refresh token and getting a fresh token with the credential's own grant
// (password or client credentials). Not retrying would turn every transient
// blip into that same fallback, so retrying is still the better default.
package guard
