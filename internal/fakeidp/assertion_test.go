package fakeidp_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/oauth"
)

const (
	certApp  = "cert-app"
	bothApp  = "both-app" // a secret and a certificate
	ecApp    = "ec-app"
	jwtType  = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	certTime = 1_700_000_000
)

var assertionNow = time.Unix(certTime, 0)

type generated struct {
	cert            *x509.Certificate
	key             crypto.Signer
	certPEM, keyPEM []byte
	x5t, x5tS256    string
	ecCert          *x509.Certificate
	ecKey           *ecdsa.PrivateKey
	ecX5t           string
	otherKey        crypto.Signer
	otherCert       *x509.Certificate
}

var (
	genOnce sync.Once
	gen     generated
	genErr  error
)

// certs generates, once for the package, a registered RSA certificate, an
// unregistered one, and an EC P-256 certificate.
func certs(t *testing.T) *generated {
	t.Helper()
	genOnce.Do(func() {
		gen.cert, gen.key, gen.certPEM, gen.keyPEM, genErr = fakeidp.GenerateCertificate("cert-app")
		if genErr != nil {
			return
		}
		gen.otherCert, gen.otherKey, _, _, genErr = fakeidp.GenerateCertificate("intruder")
		if genErr != nil {
			return
		}
		s1, s256 := sha1.Sum(gen.cert.Raw), sha256.Sum256(gen.cert.Raw)
		gen.x5t, gen.x5tS256 = b64(s1[:]), b64(s256[:])
		// GenerateCertificate makes RSA certificates only.
		ec := testkit.NewCertificate(t, testkit.CertOptions{CommonName: "ec-app"})
		gen.ecCert, gen.ecKey = ec.Cert, ec.Key.(*ecdsa.PrivateKey)
		es1 := sha1.Sum(ec.Cert.Raw)
		gen.ecX5t = b64(es1[:])
	})
	if genErr != nil {
		t.Fatal(genErr)
	}
	return &gen
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// startCert returns a Server on assertionNow with certApp (certificate
// only), bothApp (secret and certificate), ecApp (EC certificate) and the
// public client.
func startCert(t *testing.T) *fakeidp.Server {
	t.Helper()
	g := certs(t)
	s := start(t, fakeidp.WithClock(func() time.Time { return assertionNow }),
		fakeidp.WithCertificateClient(certApp, g.cert),
		fakeidp.WithClient(bothApp, confSecret),
		fakeidp.WithCertificateClient(ecApp, g.ecCert))
	s.AddCertificateClient(bothApp, g.cert)
	return s
}

// signJWT builds a compact JWS of header and claims signed with alg by key
// (an HMAC secret for HS256, nothing for none).
func signJWT(t *testing.T, alg string, key any, header, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	hj, _ := json.Marshal(h)
	cj, _ := json.Marshal(claims)
	input := b64(hj) + "." + b64(cj)
	d := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), d[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case "ES256-DER": // the ASN.1 form a careless signer sends
		h["alg"] = "ES256"
		return signJWTRaw(t, h, claims, func(input string) []byte {
			d := sha256.Sum256([]byte(input))
			der, err := ecdsa.SignASN1(rand.Reader, key.(*ecdsa.PrivateKey), d[:])
			if err != nil {
				t.Fatal(err)
			}
			return der
		})
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	default:
		t.Fatalf("alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func signJWTRaw(t *testing.T, header, claims map[string]any, sign func(string) []byte) string {
	t.Helper()
	hj, _ := json.Marshal(header)
	cj, _ := json.Marshal(claims)
	input := b64(hj) + "." + b64(cj)
	return input + "." + b64(sign(input))
}

// claimsFor returns valid claims of clientID for tokenURL at assertionNow,
// with a new jti, changed by kv (a nil value deletes the claim).
func claimsFor(clientID, tokenURL string, kv ...any) map[string]any {
	c := map[string]any{
		"aud": tokenURL, "iss": clientID, "sub": clientID, "jti": newJTI(),
		"nbf": certTime, "iat": certTime, "exp": certTime + 600,
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

func newJTI() string {
	b := make([]byte, 16)
	rand.Read(b)
	return b64(b)
}

func assertionForm(clientID, scopeOrResource, jwt string, v2 bool, kv ...string) url.Values {
	f := form("grant_type", "client_credentials", "client_id", clientID, "client_assertion_type", jwtType, "client_assertion", jwt)
	if v2 {
		f.Set("scope", scopeOrResource)
	} else {
		f.Set("resource", scopeOrResource)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			f.Del(kv[i])
		} else {
			f.Set(kv[i], kv[i+1])
		}
	}
	return f
}

func TestClientAssertionAccepted(t *testing.T) {
	s := startCert(t)
	g := certs(t)
	v1, v2 := s.V1TokenURL(), s.V2TokenURL()
	rsaKey := g.key.(*rsa.PrivateKey)
	tests := []struct {
		name, clientID, tokenURL string
		jwt                      string
	}{
		{"RS256 v1", certApp, v1, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v1))},
		{"RS256 v2 with both thumbprints", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t, "x5t#S256": g.x5tS256}, claimsFor(certApp, v2))},
		{"PS256, x5t#S256 only", certApp, v2, signJWT(t, "PS256", rsaKey, map[string]any{"x5t#S256": g.x5tS256}, claimsFor(certApp, v2))},
		{"ES256", ecApp, v2, signJWT(t, "ES256", g.ecKey, map[string]any{"x5t": g.ecX5t}, claimsFor(ecApp, v2))},
		{"v1 audience on the v2 endpoint", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v2, "aud", v1))},
		{"audience as an array", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v2, "aud", []string{"https://x.test", v2}))},
		{"no nbf", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v2, "nbf", nil))},
		{"nbf 4 minutes ahead (skew)", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v2, "nbf", certTime+240))},
		{"exp 4 minutes ago (skew)", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v2, "nbf", certTime-900, "exp", certTime-240))},
		{"a day long", certApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(certApp, v2, "exp", certTime+86400))},
		{"client with a secret too", bothApp, v2, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.x5t}, claimsFor(bothApp, v2))},
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
	t.Run("client with a secret and a certificate may use the secret", func(t *testing.T) {
		r := post(t, v2, form("grant_type", "client_credentials", "client_id", bothApp, "client_secret", confSecret, "scope", scopeApp))
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.raw)
		}
	})
}

func TestClientAssertionRejected(t *testing.T) {
	s := startCert(t)
	g := certs(t)
	v1, v2 := s.V1TokenURL(), s.V2TokenURL()
	rsaKey := g.key.(*rsa.PrivateKey)
	x5t := map[string]any{"x5t": g.x5t}
	rs256 := func(kv ...any) string { return signJWT(t, "RS256", rsaKey, x5t, claimsFor(certApp, v2, kv...)) }
	tests := []struct {
		name   string
		form   url.Values
		status int
		code   string
		aadsts int
	}{
		// Signature and key.
		{"wrong key, registered thumbprint", assertionForm(certApp, scopeApp, signJWT(t, "RS256", g.otherKey, x5t, claimsFor(certApp, v2)), true), 401, "invalid_client", 700027},
		{"unregistered certificate", assertionForm(certApp, scopeApp, signJWT(t, "RS256", g.otherKey, map[string]any{"x5t": b64(sha1Of(g.otherCert.Raw))}, claimsFor(certApp, v2)), true), 401, "invalid_client", 700027},
		{"no thumbprint", assertionForm(certApp, scopeApp, signJWT(t, "RS256", rsaKey, nil, claimsFor(certApp, v2)), true), 401, "invalid_client", 700027},
		{"alg none", assertionForm(certApp, scopeApp, signJWT(t, "none", nil, x5t, claimsFor(certApp, v2)), true), 401, "invalid_client", 700027},
		{"alg HS256 keyed with the certificate", assertionForm(certApp, scopeApp, signJWT(t, "HS256", g.cert.Raw, x5t, claimsFor(certApp, v2)), true), 401, "invalid_client", 700027},
		{"ES256 in ASN.1 DER", assertionForm(ecApp, scopeApp, signJWT(t, "ES256-DER", g.ecKey, map[string]any{"x5t": g.ecX5t}, claimsFor(ecApp, v2)), true), 401, "invalid_client", 700027},
		{"RS256 claimed for an EC certificate", assertionForm(ecApp, scopeApp, signJWT(t, "RS256", rsaKey, map[string]any{"x5t": g.ecX5t}, claimsFor(ecApp, v2)), true), 401, "invalid_client", 700027},
		{"tampered claims", assertionForm(certApp, scopeApp, tamper(rs256()), true), 401, "invalid_client", 700027},
		{"another client's certificate", assertionForm(ecApp, scopeApp, signJWT(t, "RS256", rsaKey, x5t, claimsFor(ecApp, v2)), true), 401, "invalid_client", 700027},
		// Audience, issuer, subject.
		{"audience of another tenant", assertionForm(certApp, scopeApp, rs256("aud", s.URL()+"/other/oauth2/v2.0/token"), true), 401, "invalid_client", 50012},
		{"audience of another host", assertionForm(certApp, scopeApp, rs256("aud", "https://login.microsoftonline.com/"+fakeidp.DefaultTenant+"/oauth2/v2.0/token"), true), 401, "invalid_client", 50012},
		{"audience not the token endpoint", assertionForm(certApp, scopeApp, rs256("aud", s.URL()), true), 401, "invalid_client", 50012},
		{"no audience", assertionForm(certApp, scopeApp, rs256("aud", nil), true), 401, "invalid_client", 50012},
		{"wrong issuer", assertionForm(certApp, scopeApp, rs256("iss", "other"), true), 401, "invalid_client", 50012},
		{"wrong subject", assertionForm(certApp, scopeApp, rs256("sub", "other"), true), 401, "invalid_client", 50012},
		// Time.
		{"expired", assertionForm(certApp, scopeApp, rs256("nbf", certTime-3600, "exp", certTime-360), true), 401, "invalid_client", 700024},
		{"not yet valid", assertionForm(certApp, scopeApp, rs256("nbf", certTime+360, "exp", certTime+900), true), 401, "invalid_client", 700024},
		{"longer than a day", assertionForm(certApp, scopeApp, rs256("exp", certTime+2*86400), true), 401, "invalid_client", 700024},
		// Malformed.
		{"not a JWT", assertionForm(certApp, scopeApp, "not-a-jwt", true), 400, "invalid_request", 50027},
		{"segments not base64url JSON", assertionForm(certApp, scopeApp, "e30.!!.e30", true), 400, "invalid_request", 50027},
		{"no exp", assertionForm(certApp, scopeApp, rs256("exp", nil), true), 400, "invalid_request", 50027},
		{"no jti", assertionForm(certApp, scopeApp, rs256("jti", nil), true), 400, "invalid_request", 50027},
		{"wrong assertion type", assertionForm(certApp, scopeApp, rs256(), true, "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"), 400, "invalid_request", 50027},
		{"no assertion type", assertionForm(certApp, scopeApp, rs256(), true, "client_assertion_type", ""), 400, "invalid_request", 900144},
		{"no assertion", assertionForm(certApp, scopeApp, "", true), 400, "invalid_request", 900144},
		// Client authentication.
		{"secret and assertion", assertionForm(bothApp, scopeApp, signJWT(t, "RS256", rsaKey, x5t, claimsFor(bothApp, v2)), true, "client_secret", confSecret), 400, "invalid_request", 90023},
		{"public client with an assertion", assertionForm(publicApp, resource, signJWT(t, "RS256", rsaKey, x5t, claimsFor(publicApp, v1)), false), 401, "invalid_client", 700025},
		{"secret client with an assertion", assertionForm(confApp, scopeApp, signJWT(t, "RS256", rsaKey, x5t, claimsFor(confApp, v2)), true), 401, "invalid_client", 700027},
		{"certificate client with a secret", form("grant_type", "client_credentials", "client_id", certApp, "client_secret", "guess", "scope", scopeApp), 401, "invalid_client", 7000215},
		{"certificate client with nothing", form("grant_type", "client_credentials", "client_id", certApp, "scope", scopeApp), 401, "invalid_client", 7000218},
		{"certificate client, password grant without credential", form("grant_type", "password", "client_id", certApp, "scope", scopeV2, "username", user, "password", password), 401, "invalid_client", 7000218},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tokenURL := v2
			if tc.form.Has("resource") {
				tokenURL = v1
			}
			r := post(t, tokenURL, tc.form)
			wantAADSTS(t, r, tc.status, tc.code, tc.aadsts)
			if a := tc.form.Get("client_assertion"); len(a) > 20 && strings.Contains(r.raw, a) {
				t.Errorf("error body echoes the assertion: %s", r.raw)
			}
		})
	}
}

func sha1Of(b []byte) []byte { s := sha1.Sum(b); return s[:] }

// tamper changes the claims segment of a JWS, keeping its signature.
func tamper(jwt string) string {
	parts := strings.Split(jwt, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	json.Unmarshal(raw, &c)
	c["exp"] = certTime + 3000
	cj, _ := json.Marshal(c)
	return parts[0] + "." + b64(cj) + "." + parts[2]
}

func TestClientAssertionReplay(t *testing.T) {
	s := startCert(t)
	g := certs(t)
	jwt := signJWT(t, "RS256", g.key.(*rsa.PrivateKey), map[string]any{"x5t": g.x5t}, claimsFor(certApp, s.V2TokenURL()))
	f := assertionForm(certApp, scopeApp, jwt, true)
	if r := post(t, s.V2TokenURL(), f); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	r := post(t, s.V2TokenURL(), f)
	wantAADSTS(t, r, 401, "invalid_client", 700027)
	if desc, _ := r.body["error_description"].(string); !strings.Contains(desc, "jti") {
		t.Errorf("description %q does not name the jti", desc)
	}
}

// TestGenerateCertificate checks the helper's PEM round-trips through the
// oauth loader and authenticates end to end, on v1 and v2.
func TestGenerateCertificate(t *testing.T) {
	g := certs(t)
	if g.cert.Subject.CommonName != "cert-app" || g.cert.PublicKey.(*rsa.PublicKey).N.BitLen() != 2048 {
		t.Errorf("certificate %v", g.cert.Subject)
	}
	if life := g.cert.NotAfter.Sub(g.cert.NotBefore); life < 24*time.Hour || life > 25*time.Hour || time.Now().Before(g.cert.NotBefore) {
		t.Errorf("valid %v to %v", g.cert.NotBefore, g.cert.NotAfter)
	}
	cb, _ := pem.Decode(g.certPEM)
	kb, _ := pem.Decode(g.keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "PRIVATE KEY" {
		t.Fatalf("PEM blocks %v %v", cb, kb)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.crt"), filepath.Join(dir, "app.key")
	if err := os.WriteFile(certFile, g.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, g.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := oauth.LoadAssertionSigner(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, fakeidp.WithCertificateClient(certApp, g.cert)) // on the real clock
	c := oauth.NewClient(nil, 5*time.Second)
	for _, ep := range []oauth.Endpoint{
		{TokenURL: s.V1TokenURL(), ClientID: certApp, Resource: resource},
		{TokenURL: s.V2TokenURL(), ClientID: certApp, Scope: scopeApp},
	} {
		tok, err := c.ClientAssertion(context.Background(), ep, signer)
		if err != nil || !s.Valid(tok.AccessToken) {
			t.Fatalf("%s: %v %v", ep.TokenURL, tok, err)
		}
	}
}
