package tokenbroker

import "time"

// Token is an access token as the broker holds it: the one token shape that
// every layer shares. The token endpoint client (oauth.Token) and the
// durable record (store.Record) embed it and add what only they need (the
// refresh token, Azure AD's extras, the store revision); the credential
// actors publish it, and policy.Policy decides from it alone whether it may
// answer a request.
//
// Its AccessToken is a secret: never log it.
type Token struct {
	// AccessToken is the token to send in an Authorization header.
	AccessToken string
	// TokenType is the token type, "Bearer" unless the IdP said otherwise.
	TokenType string
	// Expiry is when the access token expires, on the local clock.
	Expiry time.Time
	// Lifetime is the lifetime the IdP granted (expires_in): refresh
	// thresholds are bounded by it, and a min_ttl at or above it can never
	// be met.
	Lifetime time.Duration
	// RefreshAt is when the IdP asked for the token to be refreshed
	// (Azure AD's refresh_in), zero when it did not say.
	RefreshAt time.Time
}

// ExpiresIn returns the whole seconds left at now, never negative: the
// expires_in a caller is told.
func (t *Token) ExpiresIn(now time.Time) int64 { return secondsLeft(t.Expiry, now) }
