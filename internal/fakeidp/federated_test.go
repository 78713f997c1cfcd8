package fakeidp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

const (
	fedApp     = "fed-app"
	fedSubject = "system:serviceaccount:payments:api"
	fedIssuer  = "https://oidc.cluster.test/abc"
)

// newIssuer returns a FederatedIssuer named name on assertionNow.
func newIssuer(t *testing.T, name string) *fakeidp.FederatedIssuer {
	t.Helper()
	f, err := fakeidp.NewFederatedIssuer(name)
	if err != nil {
		t.Fatal(err)
	}
	f.SetClock(func() time.Time { return assertionNow })
	return f
}

// startFed returns a Server on assertionNow with fedApp trusting iss for
// fedSubject, and certApp with its certificate.
func startFed(t *testing.T, iss *fakeidp.FederatedIssuer, opts ...fakeidp.Option) *fakeidp.Server {
	t.Helper()
	opts = append([]fakeidp.Option{
		fakeidp.WithClock(func() time.Time { return assertionNow }),
		fakeidp.WithFederatedClient(fedApp, iss.Issuer(), fedSubject, iss.PublicKey()),
		fakeidp.WithCertificateClient(certApp, certs(t).cert),
	}, opts...)
	return start(t, opts...)
}

// fedClaims returns valid federated claims at assertionNow, changed by kv
// (a nil value deletes the claim).
func fedClaims(iss string, kv ...any) map[string]any {
	c := map[string]any{
		"iss": iss, "sub": fedSubject, "aud": fakeidp.FederatedAudience, "jti": newJTI(),
		"iat": certTime, "nbf": certTime, "exp": certTime + 3600,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func TestFederatedAssertionAccepted(t *testing.T) {
	iss := newIssuer(t, fedIssuer)
	s := startFed(t, iss)
	g := certs(t)
	rsaKey := g.key.(*rsa.PrivateKey)
	// A second credential on the app, RS256 this time, and a rolled-over
	// key for the first issuer.
	const rsaIssuer = "https://token.actions.ci.test"
	s.AddFederatedClient(fedApp, rsaIssuer, fedSubject, &rsaKey.PublicKey)
	rolled, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.AddFederatedClient(fedApp, fedIssuer, fedSubject, &rolled.PublicKey)
	// A certificate client may be federated too.
	s.AddFederatedClient(certApp, fedIssuer, fedSubject, iss.PublicKey())

	v1, v2 := s.V1TokenURL(), s.V2TokenURL()
	tests := []struct {
		name, clientID, tokenURL, jwt string
	}{
		{"ES256 from Mint, v2", fedApp, v2, iss.Mint(fedSubject, time.Hour)},
		{"ES256 from Mint, v1", fedApp, v1, iss.Mint(fedSubject, time.Hour)},
		{"RS256", fedApp, v2, signJWT(t, "RS256", rsaKey, nil, fedClaims(rsaIssuer))},
		{"the rolled-over key", fedApp, v2, signJWT(t, "ES256", rolled, nil, fedClaims(fedIssuer))},
		{"audience as an array", fedApp, v2, iss.Sign(fedClaims(fedIssuer, "aud", []string{"https://other.test", fakeidp.FederatedAudience}))},
		{"no nbf", fedApp, v2, iss.Sign(fedClaims(fedIssuer, "nbf", nil))},
		{"exp 4 minutes ago (skew)", fedApp, v2, iss.Sign(fedClaims(fedIssuer, "nbf", certTime-3600, "exp", certTime-240))},
		{"no jti", fedApp, v2, iss.Sign(fedClaims(fedIssuer, "jti", nil))},
		{"certificate client, federated assertion", certApp, v2, iss.Mint(fedSubject, time.Hour)},
		{"certificate client, its certificate's assertion", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v2))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, tc.tokenURL, assertionForm(tc.clientID, scopeApp, tc.jwt, tc.tokenURL == v2, "resource", resource))
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			at, _ := r.body["access_token"].(string)
			if !s.Valid(at) || s.Claims(at)["appid"] != tc.clientID {
				t.Errorf("access token claims %v", s.Claims(at))
			}
		})
	}
}

func TestFederatedAssertionRejected(t *testing.T) {
	iss := newIssuer(t, fedIssuer)
	impostor := newIssuer(t, fedIssuer) // same name, another key
	stranger := newIssuer(t, "https://oidc.elsewhere.test")
	s := startFed(t, iss, fakeidp.WithFederatedClient("other-fed-app", stranger.Issuer(), fedSubject, stranger.PublicKey()))
	own, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.AddFederatedClient(fedApp, "https://own.test", fedSubject, &own.PublicKey)
	ownClaims := fedClaims("https://own.test")

	tests := []struct {
		name     string
		clientID string
		jwt      string
		status   int
		code     string
		aadsts   int
		descHas  string
	}{
		// Issuer and subject.
		{"unknown issuer", fedApp, stranger.Mint(fedSubject, time.Hour), 401, "invalid_client", 70021, "Assertion Issuer: 'https://oidc.elsewhere.test'"},
		{"unknown subject", fedApp, iss.Mint("system:serviceaccount:payments:other", time.Hour), 401, "invalid_client", 70021, "Assertion Subject: 'system:serviceaccount:payments:other'"},
		{"another client's credential", "other-fed-app", iss.Mint(fedSubject, time.Hour), 401, "invalid_client", 70021, "No matching federated identity record"},
		// Signature.
		{"signed by another key", fedApp, impostor.Mint(fedSubject, time.Hour), 401, "invalid_client", 50013, "signature validation"},
		{"tampered claims", fedApp, tamper(iss.Mint(fedSubject, time.Hour)), 401, "invalid_client", 50013, "signature validation"},
		{"alg none", fedApp, signJWT(t, "none", nil, nil, fedClaims(fedIssuer)), 401, "invalid_client", 50013, "'none' is not supported"},
		{"alg HS256", fedApp, signJWT(t, "HS256", []byte("guessable"), nil, fedClaims(fedIssuer)), 401, "invalid_client", 50013, "'HS256' is not supported"},
		{"ES256 in ASN.1 DER", fedApp, signJWT(t, "ES256-DER", own, nil, ownClaims), 401, "invalid_client", 50013, "signature validation"},
		{"RS256 claimed for an EC key", fedApp, signJWT(t, "RS256", certs(t).key.(*rsa.PrivateKey), nil, fedClaims("https://own.test")), 401, "invalid_client", 50013, "signature validation"},
		// Audience.
		{"wrong audience", fedApp, iss.Sign(fedClaims(fedIssuer, "aud", "api://something-else")), 401, "invalid_client", 700212, "audience 'api://something-else'"},
		{"the token endpoint as audience", fedApp, iss.Sign(fedClaims(fedIssuer, "aud", s.V2TokenURL())), 401, "invalid_client", 700212, "audience"},
		{"no audience", fedApp, iss.Sign(fedClaims(fedIssuer, "aud", nil)), 401, "invalid_client", 700212, "audience"},
		// Time.
		{"expired", fedApp, iss.Mint(fedSubject, -10*time.Minute), 401, "invalid_client", 700024, "valid time range"},
		{"not yet valid", fedApp, iss.Sign(fedClaims(fedIssuer, "nbf", certTime+600)), 401, "invalid_client", 700024, "valid time range"},
		// Malformed.
		{"no exp", fedApp, iss.Sign(fedClaims(fedIssuer, "exp", nil)), 400, "invalid_request", 50027, "exp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, s.V2TokenURL(), assertionForm(tc.clientID, scopeApp, tc.jwt, true))
			wantAADSTS(t, r, tc.status, tc.code, tc.aadsts)
			desc, _ := r.body["error_description"].(string)
			if !strings.Contains(desc, tc.descHas) {
				t.Errorf("description %q does not contain %q", desc, tc.descHas)
			}
			if sig := strings.Split(tc.jwt, ".")[2]; strings.Contains(r.raw, tc.jwt) || (sig != "" && strings.Contains(r.raw, sig)) {
				t.Errorf("error body echoes the assertion: %s", r.raw)
			}
		})
	}

	t.Run("federated client sending a secret", func(t *testing.T) {
		r := post(t, s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", fedApp, "client_secret", "guess", "scope", scopeApp))
		wantAADSTS(t, r, 401, "invalid_client", 7000215)
	})
	t.Run("federated client sending nothing", func(t *testing.T) {
		r := post(t, s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", fedApp, "scope", scopeApp))
		wantAADSTS(t, r, 401, "invalid_client", 7000218)
	})
	// A federated client's own client_id as iss is a certificate's
	// assertion, and it has no certificate.
	t.Run("assertion issued by the client itself", func(t *testing.T) {
		r := post(t, s.V2TokenURL(), assertionForm(fedApp, scopeApp, iss.Sign(fedClaims(fedApp, "sub", fedApp)), true))
		wantAADSTS(t, r, 401, "invalid_client", 700027)
	})
}

func TestFederatedAssertionReplay(t *testing.T) {
	iss := newIssuer(t, fedIssuer)

	t.Run("refused by default", func(t *testing.T) {
		s := startFed(t, iss)
		jwt := iss.Mint(fedSubject, time.Hour)
		f := assertionForm(fedApp, scopeApp, jwt, true)
		if r := post(t, s.V2TokenURL(), f); r.status != 200 {
			t.Fatalf("first use: %d %s", r.status, r.raw)
		}
		r := post(t, s.V2TokenURL(), f)
		wantAADSTS(t, r, 401, "invalid_client", 700027)
		if desc, _ := r.body["error_description"].(string); !strings.Contains(desc, "already used") || strings.Contains(r.raw, jwt) {
			t.Errorf("description %q", desc)
		}
		// A freshly minted one, as the issuer rotates the token, passes.
		if r := post(t, s.V2TokenURL(), assertionForm(fedApp, scopeApp, iss.Mint(fedSubject, time.Hour), true)); r.status != 200 {
			t.Fatalf("new assertion: %d %s", r.status, r.raw)
		}
	})

	t.Run("without a jti, the same token is a replay", func(t *testing.T) {
		s := startFed(t, iss)
		f := assertionForm(fedApp, scopeApp, iss.Sign(fedClaims(fedIssuer, "jti", nil)), true)
		if r := post(t, s.V2TokenURL(), f); r.status != 200 {
			t.Fatalf("first use: %d %s", r.status, r.raw)
		}
		wantAADSTS(t, post(t, s.V2TokenURL(), f), 401, "invalid_client", 700027)
	})

	t.Run("the same jti of another client is not a replay", func(t *testing.T) {
		s := startFed(t, iss)
		s.AddFederatedClient("fed-app-2", fedIssuer, fedSubject, iss.PublicKey())
		jwt := iss.Mint(fedSubject, time.Hour)
		for _, client := range []string{fedApp, "fed-app-2"} {
			if r := post(t, s.V2TokenURL(), assertionForm(client, scopeApp, jwt, true)); r.status != 200 {
				t.Fatalf("%s: %d %s", client, r.status, r.raw)
			}
		}
	})

	t.Run("a refused assertion is not remembered", func(t *testing.T) {
		// Refused as not yet valid, then accepted once the Server's clock
		// reaches its nbf: the refusal must not have recorded its jti.
		var now atomic.Int64
		now.Store(certTime)
		s := startFed(t, iss, fakeidp.WithClock(func() time.Time { return time.Unix(now.Load(), 0) }))
		f := assertionForm(fedApp, scopeApp, iss.Sign(fedClaims(fedIssuer, "nbf", certTime+600)), true)
		wantAADSTS(t, post(t, s.V2TokenURL(), f), 401, "invalid_client", 700024)
		now.Store(certTime + 600)
		if r := post(t, s.V2TokenURL(), f); r.status != 200 {
			t.Fatalf("once valid: %d %s", r.status, r.raw)
		}
		wantAADSTS(t, post(t, s.V2TokenURL(), f), 401, "invalid_client", 700027)
	})

	t.Run("accepted again WithFederatedReuse, as Azure AD does", func(t *testing.T) {
		s := startFed(t, iss, fakeidp.WithFederatedReuse())
		f := assertionForm(fedApp, scopeApp, iss.Mint(fedSubject, time.Hour), true)
		for i := range 3 {
			if r := post(t, s.V2TokenURL(), f); r.status != 200 {
				t.Fatalf("use %d: %d %s", i+1, r.status, r.raw)
			}
		}
	})

	// The certificate path keeps its own replay check.
	t.Run("certificate assertions still checked", func(t *testing.T) {
		s := startFed(t, iss, fakeidp.WithFederatedReuse())
		g := certs(t)
		jwt := signJWT(t, "RS256", g.key.(*rsa.PrivateKey), map[string]any{"x5t": b64(sha1Of(g.cert.Raw))}, claimsFor(certApp, s.V2TokenURL()))
		f := assertionForm(certApp, scopeApp, jwt, true)
		if r := post(t, s.V2TokenURL(), f); r.status != 200 {
			t.Fatalf("first use: %d %s", r.status, r.raw)
		}
		wantAADSTS(t, post(t, s.V2TokenURL(), f), 401, "invalid_client", 700027)
	})
}

// TestFederatedIssuerMint checks the minted claims, which a Server on
// another clock would refuse, and that PublicKey verifies them.
func TestFederatedIssuerMint(t *testing.T) {
	iss := newIssuer(t, fedIssuer)
	jwt := iss.Mint(fedSubject, 30*time.Minute)
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", jwt)
	}
	header, claims := segment(t, parts[0]), segment(t, parts[1])
	if header["alg"] != "ES256" || header["kid"] == "" {
		t.Errorf("header %v", header)
	}
	want := map[string]any{"iss": fedIssuer, "sub": fedSubject, "aud": fakeidp.FederatedAudience,
		"iat": float64(certTime), "nbf": float64(certTime), "exp": float64(certTime + 1800)}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	next := segment(t, strings.Split(iss.Mint(fedSubject, time.Minute), ".")[1])
	if jti, _ := claims["jti"].(string); jti == "" || next["jti"] == jti {
		t.Errorf("jti %v is empty or repeated", claims["jti"])
	}
	if _, ok := iss.PublicKey().(*ecdsa.PublicKey); !ok {
		t.Errorf("PublicKey %T", iss.PublicKey())
	}
	// On the real clock it is refused by a Server on assertionNow, years
	// earlier: the clocks must agree.
	other, err := fakeidp.NewFederatedIssuer(fedIssuer)
	if err != nil {
		t.Fatal(err)
	}
	s := startFed(t, iss, fakeidp.WithFederatedClient(fedApp, fedIssuer, fedSubject, other.PublicKey()))
	wantAADSTS(t, post(t, s.V2TokenURL(), assertionForm(fedApp, scopeApp, other.Mint(fedSubject, time.Hour), true)), 401, "invalid_client", 700024)
}

// segment decodes one base64url JSON segment of a JWS.
func segment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
