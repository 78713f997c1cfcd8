package actors

import (
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/policy"
)

// Grant is how a credential gets a token when it has no refresh token to use.
type Grant string

// The grants a credential can be declared with.
const (
	GrantPassword          Grant = "password"
	GrantClientCredentials Grant = "client_credentials"
	// GrantClientAssertion is client credentials authenticated by a
	// certificate (RFC 7523 private_key_jwt) instead of a secret.
	GrantClientAssertion Grant = "client_assertion"
)

// grantRefresh is the refresh_token grant; a credential is never declared
// with it, it uses it when it holds a refresh token.
const grantRefresh Grant = "refresh_token"

// Spec declares a credential: where and how it gets its tokens.
type Spec struct {
	// Name is a named credential's name and credential_id; for the default
	// profile it names the profile ("default") and is mixed into the
	// credential ids of its users.
	Name     string
	Endpoint oauth.Endpoint
	Grant    Grant
	// Username and Password are a named password credential's service
	// account. Unused for the default profile, whose callers bring their own.
	Username string
	Password tokenbroker.Secret
	// Secrets, when set, are the client secret and own password to use,
	// read at each IdP call (they rotate); Endpoint.ClientSecret and
	// Password are then unused. Nil uses those two as they are.
	Secrets *Secrets
	// Assertion signs the client assertions of GrantClientAssertion.
	Assertion *oauth.AssertionSigner
	// DeviceURL is the device authorization endpoint of GrantDeviceCode
	// (RFC 8628), from discovery or Azure AD's token endpoint.
	DeviceURL string
	// Capabilities are the client capabilities declared with a claims
	// request (Azure AD's xms_cc: "cp1" for continuous access evaluation).
	Capabilities []string
	// AssertionFile, for GrantClientAssertion without Assertion, holds a
	// JWT another issuer signed (workload identity federation), read
	// again for every IdP call since its issuer rotates it.
	AssertionFile string
	// RefreshThreshold is how long before expiry a token stops being served
	// from cache and is refreshed. For a token that lives less than twice as
	// long, half its lifetime is used instead, so that short-lived tokens are
	// still cached.
	RefreshThreshold time.Duration
	// KeepWarm keeps the credential in memory and its token refreshed ahead
	// of expiry for as long as the broker runs, used or not. Without it the
	// credential leaves memory after the idle timeout.
	KeepWarm bool
}

// Policy is the credential's cache rule, from its refresh threshold.
func (s *Spec) Policy() policy.Policy { return policy.Policy{Threshold: s.RefreshThreshold} }
