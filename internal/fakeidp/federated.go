package fakeidp

// Federated identity credentials, as Azure AD (Entra ID) has them for
// workload identity federation: an app trusts JWTs that another issuer (a
// Kubernetes cluster's service account issuer, a CI system's OIDC provider)
// signed for a given subject, and a client sends such a JWT as its
// client_assertion instead of a secret or a certificate's assertion.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// FederatedAudience is the audience Azure AD expects in a federated
// assertion by default, and the only one the Server accepts.
const FederatedAudience = "api://AzureADTokenExchange"

// maxFederatedSeen bounds the federated assertions the Server remembers for
// replay detection. A fake must not grow without bound under a load test;
// past the bound, the entry that would be forgotten soonest goes first.
const maxFederatedSeen = 4096

// federation is the Server's federated identity credentials and what it
// remembers of the assertions presented with them. The Server's mu guards
// it.
type federation struct {
	creds      map[string][]federatedCredential // client id -> credentials
	seen       map[string]time.Time             // client id + " " + jti -> when it may be forgotten
	allowReuse bool                             // accept an assertion again while it is valid, as Azure AD does
}

// federatedCredential is one federated identity credential: assertions of
// issuer about subject, verified with key.
type federatedCredential struct {
	issuer, subject string
	key             crypto.PublicKey
}

func (f *federation) add(clientID, issuer, subject string, key crypto.PublicKey) {
	if f.creds == nil {
		f.creds = map[string][]federatedCredential{}
	}
	f.creds[clientID] = append(f.creds[clientID], federatedCredential{issuer: issuer, subject: subject, key: key})
}

// WithFederatedClient adds a client application with a federated identity
// credential; see AddFederatedClient.
func WithFederatedClient(clientID, issuer, subject string, key crypto.PublicKey) Option {
	return func(s *Server) { s.fed.add(clientID, issuer, subject, key) }
}

// WithFederatedReuse makes the Server accept a federated assertion more than
// once while it is valid, as Azure AD does: a workload's projected token is
// rotated by its issuer, not per request, so a client sends the same one
// until it is replaced. Without it the Server refuses a repeat (see
// AddFederatedClient), which proves a test that the client re-read its
// token; with it, a test can run a client against a token file that is not
// rotated for every call.
func WithFederatedReuse() Option { return func(s *Server) { s.fed.allowReuse = true } }

// AddFederatedClient adds a federated identity credential to the client
// application clientID, adding the application if unknown: the client may
// authenticate with a JWT that issuer signed with key's private key for
// subject. A client may have several (a key rollover, several clusters) and
// a secret or certificates too; each works. key is an *rsa.PublicKey or an
// *ecdsa.PublicKey on P-256.
//
// A federated client sends client_assertion_type
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer and the JWT as
// client_assertion, as a certificate client does; an assertion whose iss is
// not the client_id is taken for a federated one. The Server checks it like
// Azure AD, in this order:
//
//   - a credential of the client has the assertion's iss and sub; else
//     invalid_client AADSTS70021 (naming the issuer, subject and audience
//     presented, as Azure does);
//   - header alg is RS256 or ES256 and the signature verifies with the key
//     of one such credential; else invalid_client AADSTS50013;
//   - aud is (or, as an array, holds) FederatedAudience; else
//     invalid_client AADSTS700212;
//   - exp is after now and nbf, if present, is not after now, both within
//     AssertionClockSkew by the Server's clock; else invalid_client
//     AADSTS700024;
//   - unless the Server was made WithFederatedReuse, the assertion was not
//     accepted before: the same jti for the client (or, without a jti, the
//     same signed token) while it could still pass; else invalid_client
//     AADSTS700027. The Server remembers a bounded number of them.
//
// A malformed assertion, or one without exp, is invalid_request
// AADSTS50027, as for certificates.
func (s *Server) AddFederatedClient(clientID, issuer, subject string, key crypto.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fed.add(clientID, issuer, subject, key)
}

// hasFederated reports whether clientID has a federated identity
// credential. The caller holds s.mu.
func (s *Server) hasFederated(clientID string) bool { return len(s.fed.creds[clientID]) > 0 }

// isFederatedAssertion reports whether assertion, sent by clientID, is for
// a federated identity credential: the client has one and the assertion's
// iss is not the client itself, which a certificate's assertion would be.
// An assertion that does not decode is not: the certificate path reports
// it malformed. The caller holds s.mu.
func (s *Server) isFederatedAssertion(clientID, assertion string) bool {
	if !s.hasFederated(clientID) {
		return false
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return false
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	return decodeSegment(parts[1], &claims) == nil && claims.Iss != clientID
}

// checkFederated verifies the federated client assertion of a call by
// clientID, writing Azure's error and returning false when it fails. The
// caller holds s.mu and has checked client_assertion_type.
func (s *Server) checkFederated(w http.ResponseWriter, r *http.Request, clientID string) bool {
	invalidClient := func(aadsts int, description string) bool {
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, aadsts, description)
		return false
	}
	malformed := func(why string) bool {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 50027, "JWT token is invalid or malformed: "+why+".")
		return false
	}
	parts := strings.Split(r.PostForm.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return malformed("not a JWS compact serialization")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Jti string          `json:"jti"`
		Exp *float64        `json:"exp"`
		Nbf *float64        `json:"nbf"`
	}
	sig, sigErr := base64.RawURLEncoding.DecodeString(parts[2])
	if decodeSegment(parts[0], &header) != nil || decodeSegment(parts[1], &claims) != nil || sigErr != nil {
		return malformed("a segment is not base64url JSON")
	}
	if claims.Exp == nil {
		return malformed("the exp claim is missing")
	}
	audiences := audienceList(claims.Aud)

	// The credential: issuer and subject select it, as in Azure AD, where
	// they are the federated identity credential's key.
	var keys []crypto.PublicKey
	for _, c := range s.fed.creds[clientID] {
		if c.issuer == claims.Iss && c.subject == claims.Sub {
			keys = append(keys, c.key)
		}
	}
	if len(keys) == 0 {
		return invalidClient(70021, fmt.Sprintf("No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
			claims.Iss, claims.Sub, strings.Join(audiences, ",")))
	}

	// The signature, before any other claim is believed.
	if header.Alg != "RS256" && header.Alg != "ES256" {
		return invalidClient(50013, "Assertion failed signature validation. [Reason - The signing algorithm '"+header.Alg+"' is not supported; RS256 and ES256 are.]")
	}
	verified := false
	for _, key := range keys {
		if verifyJWS(header.Alg, key, parts[0]+"."+parts[1], sig) == "" {
			verified = true
			break
		}
	}
	if !verified {
		return invalidClient(50013, "Assertion failed signature validation. [Reason - The key was not found., Issuer: '"+claims.Iss+"']")
	}

	// The claims.
	audOK := false
	for _, a := range audiences {
		audOK = audOK || a == FederatedAudience
	}
	if !audOK {
		return invalidClient(700212, fmt.Sprintf("No matching federated identity record found for presented assertion audience '%s'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation", strings.Join(audiences, ",")))
	}
	now := s.now()
	exp := time.Unix(int64(*claims.Exp), 0)
	const layout = "01/02/2006 15:04:05"
	validFrom := "(no nbf)"
	early := false
	if claims.Nbf != nil {
		nbf := time.Unix(int64(*claims.Nbf), 0)
		validFrom = nbf.UTC().Format(layout)
		early = nbf.After(now.Add(AssertionClockSkew))
	}
	if early || !now.Before(exp.Add(AssertionClockSkew)) {
		return invalidClient(700024, fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://learn.microsoft.com/entra/workload-id/workload-identity-federation .",
			now.UTC().Format(layout), validFrom, exp.UTC().Format(layout)))
	}

	// Replay, remembered until the assertion could no longer pass anyway.
	// Without a jti the signed token itself is what must not come twice.
	if s.fed.allowReuse {
		return true
	}
	id := claims.Jti
	what := "an assertion with jti '" + claims.Jti + "'"
	if id == "" {
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		id, what = "sha256:"+base64.RawURLEncoding.EncodeToString(sum[:]), "the same assertion"
	}
	if !s.fed.remember(clientID+" "+id, exp.Add(AssertionClockSkew), now) {
		return invalidClient(700027, "Client assertion failed validation: "+what+" was already used.")
	}
	return true
}

// remember records key until until, and reports false when it was recorded
// already and has not been forgotten. Expired entries are dropped once the
// set is full, and if none has expired, the one due to go soonest.
func (f *federation) remember(key string, until, now time.Time) bool {
	if f.seen == nil {
		f.seen = map[string]time.Time{}
	}
	if prev, ok := f.seen[key]; ok && !now.After(prev) {
		return false
	}
	if len(f.seen) >= maxFederatedSeen {
		var soonest string
		for k, u := range f.seen {
			if now.After(u) {
				delete(f.seen, k)
			} else if soonest == "" || u.Before(f.seen[soonest]) {
				soonest = k
			}
		}
		if len(f.seen) >= maxFederatedSeen {
			delete(f.seen, soonest)
		}
	}
	f.seen[key] = until
	return true
}

// audienceList returns aud, a string or an array of strings, as a list; nil
// when it is neither.
func audienceList(aud json.RawMessage) []string {
	var one string
	if json.Unmarshal(aud, &one) == nil {
		return []string{one}
	}
	var list []string
	if json.Unmarshal(aud, &list) == nil {
		return list
	}
	return nil
}

// FederatedIssuer is an issuer of federated assertions for tests and the
// demo: a Kubernetes service account issuer or a CI system's OIDC provider
// in miniature, with an ES256 (P-256) key. Register it on a client with
// AddFederatedClient(clientID, f.Issuer(), subject, f.PublicKey()), and give
// the client what Mint returns. It is safe for concurrent use once SetClock,
// if needed, has been called.
type FederatedIssuer struct {
	issuer string
	key    *ecdsa.PrivateKey
	kid    string

	mu  sync.Mutex
	now func() time.Time
}

// NewFederatedIssuer returns an issuer named issuer (its iss claim, an
// https URL in real life) with a new key, on the real clock.
func NewFederatedIssuer(issuer string) (*FederatedIssuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fakeidp: generate federated issuer key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("fakeidp: federated issuer key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &FederatedIssuer{issuer: issuer, key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:16]), now: time.Now}, nil
}

// Issuer returns the issuer's name, the iss of what it mints.
func (f *FederatedIssuer) Issuer() string { return f.issuer }

// PublicKey returns the key that verifies what the issuer signs.
func (f *FederatedIssuer) PublicKey() crypto.PublicKey { return &f.key.PublicKey }

// SetClock sets the clock Mint takes iat, nbf and exp from, so that a test
// on a fake clock mints assertions its Server accepts.
func (f *FederatedIssuer) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// Mint returns a signed assertion about subject for FederatedAudience, with
// iat and nbf now, exp lifetime later (a negative lifetime makes an expired
// one) and a new random jti, as a projected service account token has them.
func (f *FederatedIssuer) Mint(subject string, lifetime time.Duration) string {
	f.mu.Lock()
	now := f.now()
	f.mu.Unlock()
	return f.Sign(map[string]any{
		"iss": f.issuer,
		"sub": subject,
		"aud": FederatedAudience,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(lifetime).Unix(),
		"jti": newUUID(),
	})
}

// Sign returns claims, as given, signed by the issuer with ES256: for tests
// that need an assertion Mint does not make (another audience, no exp).
// Like Mint, it panics only if crypto/rand fails.
func (f *FederatedIssuer) Sign(claims map[string]any) string {
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": f.kid})
	body, err := json.Marshal(claims)
	if err != nil {
		panic("fakeidp: federated assertion claims: " + err.Error())
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, f.key, digest[:])
	if err != nil {
		panic("fakeidp: sign federated assertion: " + err.Error())
	}
	// JWS wants r || s, each the curve's size, not ASN.1 (RFC 7518 3.4).
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
