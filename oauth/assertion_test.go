package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// RSA 2048 keys take a while to generate, under -race most of all: the tests
// share two.
var (
	rsaKeysOnce sync.Once
	rsaKeys     [2]*rsa.PrivateKey
)

func testRSAKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	rsaKeysOnce.Do(func() {
		for j := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[j] = k
		}
	})
	return rsaKeys[i]
}

func testECKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// selfSigned returns a self-signed certificate for key.
func selfSigned(t testing.TB, key crypto.Signer) *x509.Certificate {
	t.Helper()
	return testkit.NewCertificate(t, testkit.CertOptions{Key: key,
		NotBefore: fixedNow.Add(-time.Hour), NotAfter: fixedNow.Add(24 * time.Hour)}).Cert
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// decodeJWT splits a compact JWS into its decoded header and claims (as
// generic maps, to see exactly what was sent), signing input and signature.
func decodeJWT(t *testing.T, jwt string) (header, claims map[string]any, input string, sig []byte) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion has %d parts, want 3", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d is not unpadded base64url: %v", i, err)
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(dst); err != nil {
			t.Fatalf("part %d is not JSON: %v", i, err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("signature is not unpadded base64url: %v", err)
	}
	return header, claims, parts[0] + "." + parts[1], sig
}

// verifyJWS checks sig with the certificate's public key, independently of
// the signer's code.
func verifyJWS(t *testing.T, alg string, pub crypto.PublicKey, input string, sig []byte) {
	t.Helper()
	switch alg {
	case "RS256":
		d := sha256.Sum256([]byte(input))
		if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig); err != nil {
			t.Fatalf("RS256 signature does not verify: %v", err)
		}
	case "ES256", "ES384":
		var digest []byte
		if alg == "ES256" {
			d := sha256.Sum256([]byte(input))
			digest = d[:]
		} else {
			d := sha512.Sum384([]byte(input))
			digest = d[:]
		}
		k := pub.(*ecdsa.PublicKey)
		n := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			t.Fatalf("%s signature is %d bytes, want r||s of %d", alg, len(sig), 2*n)
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(k, digest, r, s) {
			t.Fatalf("%s signature does not verify", alg)
		}
	default:
		t.Fatalf("unexpected alg %q", alg)
	}
}

func TestClientAssertionRequest(t *testing.T) {
	tests := []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"RSA", testRSAKey(t, 0), "RS256"},
		{"EC P-256", testECKey(t, elliptic.P256()), "ES256"},
		{"EC P-384", testECKey(t, elliptic.P384()), "ES384"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := selfSigned(t, tc.key)
			signer, err := NewAssertionSigner(cert, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			sum1, sum256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
			if signer.Thumbprint() != b64(sum1[:]) || signer.Algorithm() != tc.alg || signer.Certificate() != cert {
				t.Fatalf("Thumbprint %q Algorithm %q", signer.Thumbprint(), signer.Algorithm())
			}

			forms := make(chan url.Values, 2)
			c, tokenURL := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil {
					t.Errorf("ParseForm: %v", err)
				}
				forms <- r.PostForm
				respond(200, "application/json", goodV2)(w, r)
			})
			ep := Endpoint{TokenURL: tokenURL + "?api-version=1", ClientID: "cid", ClientSecret: testSecret, Scope: "api://x/.default"}
			var jtis []string
			for range 2 {
				tok, err := c.ClientAssertion(context.Background(), ep, signer)
				if err != nil || tok.AccessToken != "AT" {
					t.Fatalf("ClientAssertion: %v %v", tok, err)
				}
				form := <-forms
				jwt := form.Get("client_assertion")
				form.Del("client_assertion")
				want := url.Values{
					"grant_type":            {"client_credentials"},
					"client_id":             {"cid"},
					"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
					"scope":                 {"api://x/.default"},
				}
				if !reflect.DeepEqual(form, want) {
					t.Errorf("form (without client_assertion) = %v, want %v (and never client_secret)", form, want)
				}

				header, claims, input, sig := decodeJWT(t, jwt)
				wantHeader := map[string]any{"alg": tc.alg, "typ": "JWT", "x5t": b64(sum1[:]), "x5t#S256": b64(sum256[:])}
				if !reflect.DeepEqual(header, wantHeader) {
					t.Errorf("header = %v, want %v", header, wantHeader)
				}
				now, exp := json.Number(fmt.Sprint(fixedNow.Unix())), json.Number(fmt.Sprint(fixedNow.Add(10*time.Minute).Unix()))
				jti, _ := claims["jti"].(string)
				if id, err := uuid.Parse(jti); err != nil || id.Version() != 4 || len(jti) != 36 {
					t.Errorf("jti %q is not a random UUID", jti)
				}
				jtis = append(jtis, jti)
				delete(claims, "jti")
				wantClaims := map[string]any{"aud": tokenURL, "iss": "cid", "sub": "cid", "nbf": now, "iat": now, "exp": exp}
				if !reflect.DeepEqual(claims, wantClaims) {
					t.Errorf("claims = %v, want %v (aud without the query)", claims, wantClaims)
				}
				verifyJWS(t, tc.alg, cert.PublicKey, input, sig)
			}
			if jtis[0] == jtis[1] {
				t.Errorf("two calls sent the same jti %s", jtis[0])
			}
		})
	}
}

func TestClientAssertionInvalidArguments(t *testing.T) {
	var calls atomic.Int32
	c, tokenURL := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	key := testRSAKey(t, 0)
	signer, err := NewAssertionSigner(selfSigned(t, key), key)
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"nil signer": func() error {
			_, err := c.ClientAssertion(context.Background(), Endpoint{TokenURL: tokenURL, ClientID: "cid"}, nil)
			return err
		},
		"no client id": func() error {
			_, err := c.ClientAssertion(context.Background(), Endpoint{TokenURL: tokenURL}, signer)
			return err
		},
		"bad token URL": func() error {
			_, err := c.ClientAssertion(context.Background(), Endpoint{TokenURL: "ftp://x/token", ClientID: "cid"}, signer)
			return err
		},
		"no audience": func() error { _, err := signer.Assertion("", "cid", fixedNow); return err },
	} {
		if err := call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", name, err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d calls reached the IdP", n)
	}
}

func TestNewAssertionSigner(t *testing.T) {
	rsaKey, otherKey := testRSAKey(t, 0), testRSAKey(t, 1)
	cert := selfSigned(t, rsaKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	smallKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224Key := testECKey(t, elliptic.P224())
	tests := []struct {
		name string
		cert *x509.Certificate
		key  crypto.Signer
	}{
		{"nil certificate", nil, rsaKey},
		{"nil key", cert, nil},
		{"key of another certificate", cert, otherKey},
		{"Ed25519", selfSigned(t, edKey), edKey},
		{"RSA 1024", selfSigned(t, smallKey), smallKey},
		{"EC P-224", selfSigned(t, p224Key), p224Key},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAssertionSigner(tc.cert, tc.key); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("err = %v, want ErrInvalidArgument", err)
			}
		})
	}
}

// keyMaterial lists strings that must not appear in an error or log line:
// the PEM body lines of the key and, for RSA and EC keys, the private scalar
// in decimal and hex.
func keyMaterial(keyPEM []byte, key crypto.Signer) []string {
	var out []string
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	var d *big.Int
	switch k := key.(type) {
	case *rsa.PrivateKey:
		d = k.D
	case *ecdsa.PrivateKey:
		if ecdh, err := k.ECDH(); err == nil {
			d = new(big.Int).SetBytes(ecdh.Bytes())
		}
	}
	if d != nil {
		out = append(out, d.String()[:30], d.Text(16)[:30])
	}
	return out
}

func writeFile(t *testing.T, dir, name string, data ...[]byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, bytes.Join(data, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemBlock(typ string, der []byte, headers ...string) []byte {
	b := &pem.Block{Type: typ, Bytes: der}
	if len(headers) == 2 {
		b.Headers = map[string]string{headers[0]: headers[1]}
	}
	return pem.EncodeToMemory(b)
}

func TestLoadAssertionSigner(t *testing.T) {
	dir := t.TempDir()
	rsaKey, otherKey := testRSAKey(t, 0), testRSAKey(t, 1)
	ecKey := testECKey(t, elliptic.P256())
	rsaCert, ecCert := selfSigned(t, rsaKey), selfSigned(t, ecKey)
	rsaCertPEM, ecCertPEM := pemBlock("CERTIFICATE", rsaCert.Raw), pemBlock("CERTIFICATE", ecCert.Raw)
	otherCertPEM := pemBlock("CERTIFICATE", selfSigned(t, otherKey).Raw)

	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("PRIVATE KEY", der)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS8, rsaPKCS1 := pkcs8(rsaKey), pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	ecSEC1, ecPKCS8 := pemBlock("EC PRIVATE KEY", ecDER), pkcs8(ecKey)
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})

	good := []struct {
		name            string
		certPEM, keyPEM [][]byte
		combined        bool
		wantCert        *x509.Certificate
		wantAlg         string
	}{
		{name: "RSA PKCS#8", certPEM: [][]byte{rsaCertPEM}, keyPEM: [][]byte{rsaPKCS8}, wantCert: rsaCert, wantAlg: "RS256"},
		{name: "RSA PKCS#1", certPEM: [][]byte{rsaCertPEM}, keyPEM: [][]byte{rsaPKCS1}, wantCert: rsaCert, wantAlg: "RS256"},
		{name: "EC SEC1 after EC PARAMETERS", certPEM: [][]byte{ecCertPEM}, keyPEM: [][]byte{ecParams, ecSEC1}, wantCert: ecCert, wantAlg: "ES256"},
		{name: "EC PKCS#8", certPEM: [][]byte{ecCertPEM}, keyPEM: [][]byte{ecPKCS8}, wantCert: ecCert, wantAlg: "ES256"},
		{name: "first certificate of a chain", certPEM: [][]byte{[]byte("subject=CN=test\n"), rsaCertPEM, otherCertPEM}, keyPEM: [][]byte{rsaPKCS8}, wantCert: rsaCert, wantAlg: "RS256"},
		{name: "one combined file", certPEM: [][]byte{rsaPKCS1, rsaCertPEM}, combined: true, wantCert: rsaCert, wantAlg: "RS256"},
	}
	for i, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			certFile := writeFile(t, dir, fmt.Sprintf("good%d.crt", i), tc.certPEM...)
			keyFile := certFile
			if !tc.combined {
				keyFile = writeFile(t, dir, fmt.Sprintf("good%d.key", i), tc.keyPEM...)
			}
			s, err := LoadAssertionSigner(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Certificate().Equal(tc.wantCert) || s.Algorithm() != tc.wantAlg {
				t.Fatalf("loaded %v, want the certificate and %s", s, tc.wantAlg)
			}
			jwt, err := s.Assertion("https://idp.test/t/oauth2/v2.0/token", "cid", fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			_, _, input, sig := decodeJWT(t, jwt)
			verifyJWS(t, tc.wantAlg, tc.wantCert.PublicKey, input, sig)
		})
	}

	secretRSA := keyMaterial(rsaPKCS8, rsaKey)
	secretRSA = append(secretRSA, keyMaterial(rsaPKCS1, rsaKey)...)
	secretEC := keyMaterial(ecSEC1, ecKey)
	garbage := pemBlock("PRIVATE KEY", bytes.Repeat([]byte("s3cret-key-bytes"), 8))
	bad := []struct {
		name     string
		cert     [][]byte // nil: no such file
		key      [][]byte
		wantIn   []string // substrings of the error; $KEY and $CERT stand for the paths
		material []string
	}{
		{"key of another certificate", [][]byte{otherCertPEM}, [][]byte{rsaPKCS8}, []string{"$KEY", "does not match", "$CERT"}, secretRSA},
		{"EC key for an RSA certificate", [][]byte{rsaCertPEM}, [][]byte{ecSEC1}, []string{"$KEY", "does not match"}, secretEC},
		{"no certificate file", nil, [][]byte{rsaPKCS8}, []string{"$CERT", "no such file"}, secretRSA},
		{"no key file", [][]byte{rsaCertPEM}, nil, []string{"$KEY", "no such file"}, nil},
		{"no CERTIFICATE block", [][]byte{rsaPKCS1}, [][]byte{rsaPKCS8}, []string{"$CERT", "no PEM CERTIFICATE block"}, secretRSA},
		{"bad certificate", [][]byte{pemBlock("CERTIFICATE", []byte("nope"))}, [][]byte{rsaPKCS8}, []string{"$CERT", "x509"}, secretRSA},
		{"no key block", [][]byte{rsaCertPEM}, [][]byte{rsaCertPEM}, []string{"$KEY", "no PEM PRIVATE KEY"}, nil},
		{"key does not parse", [][]byte{rsaCertPEM}, [][]byte{garbage}, []string{"$KEY", "does not parse"}, []string{"s3cret"}},
		{"PKCS#1 block holding PKCS#8", [][]byte{rsaCertPEM}, [][]byte{pemBlock("RSA PRIVATE KEY", mustPKCS8(t, rsaKey))}, []string{"$KEY", "RSA PRIVATE KEY block does not parse"}, secretRSA},
		{"encrypted PKCS#8", [][]byte{rsaCertPEM}, [][]byte{pemBlock("ENCRYPTED PRIVATE KEY", []byte("x"))}, []string{"$KEY", "encrypted"}, nil},
		{"legacy encrypted PEM", [][]byte{rsaCertPEM}, [][]byte{pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), "Proc-Type", "4,ENCRYPTED")}, []string{"$KEY", "encrypted"}, secretRSA},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			certFile := filepath.Join(dir, fmt.Sprintf("missing%d.crt", i))
			if tc.cert != nil {
				certFile = writeFile(t, dir, fmt.Sprintf("bad%d.crt", i), tc.cert...)
			}
			keyFile := filepath.Join(dir, fmt.Sprintf("missing%d.key", i))
			if tc.key != nil {
				keyFile = writeFile(t, dir, fmt.Sprintf("bad%d.key", i), tc.key...)
			}
			s, err := LoadAssertionSigner(certFile, keyFile)
			if err == nil {
				t.Fatalf("loaded %v, want an error", s)
			}
			msg := err.Error()
			for _, want := range tc.wantIn {
				want = strings.NewReplacer("$KEY", keyFile, "$CERT", certFile).Replace(want)
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			for _, m := range tc.material {
				if strings.Contains(msg, m) {
					t.Errorf("error %q contains key material %q", msg, m)
				}
			}
		})
	}
}

// TestParseAssertionSigner checks the contents-based twin of
// LoadAssertionSigner: the same blocks accepted, errors that say which of
// the two inputs is wrong without quoting key material, and the caller's
// bytes left as they were.
func TestParseAssertionSigner(t *testing.T) {
	rsaKey, otherKey := testRSAKey(t, 0), testRSAKey(t, 1)
	ecKey := testECKey(t, elliptic.P256())
	rsaCert, ecCert := selfSigned(t, rsaKey), selfSigned(t, ecKey)
	rsaCertPEM, ecCertPEM := pemBlock("CERTIFICATE", rsaCert.Raw), pemBlock("CERTIFICATE", ecCert.Raw)
	otherCertPEM := pemBlock("CERTIFICATE", selfSigned(t, otherKey).Raw)
	rsaPKCS8 := pemBlock("PRIVATE KEY", mustPKCS8(t, rsaKey))
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecSEC1 := pemBlock("EC PRIVATE KEY", ecDER)
	combined := bytes.Join([][]byte{rsaCertPEM, otherCertPEM, rsaPKCS8}, nil)

	good := []struct {
		name            string
		certPEM, keyPEM []byte
		wantCert        *x509.Certificate
		wantAlg         string
	}{
		{"RSA", rsaCertPEM, rsaPKCS8, rsaCert, "RS256"},
		{"EC", ecCertPEM, ecSEC1, ecCert, "ES256"},
		{"one combined PEM for both", combined, combined, rsaCert, "RS256"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			certBefore, keyBefore := bytes.Clone(tc.certPEM), bytes.Clone(tc.keyPEM)
			s, err := ParseAssertionSigner(tc.certPEM, tc.keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Certificate().Equal(tc.wantCert) || s.Algorithm() != tc.wantAlg {
				t.Fatalf("parsed %v, want the certificate and %s", s, tc.wantAlg)
			}
			if !bytes.Equal(tc.certPEM, certBefore) || !bytes.Equal(tc.keyPEM, keyBefore) {
				t.Error("ParseAssertionSigner modified its input")
			}
			jwt, err := s.Assertion("https://idp.test/t/oauth2/v2.0/token", "cid", fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			_, _, input, sig := decodeJWT(t, jwt)
			verifyJWS(t, tc.wantAlg, tc.wantCert.PublicKey, input, sig)
		})
	}

	secretRSA := keyMaterial(rsaPKCS8, rsaKey)
	garbage := pemBlock("PRIVATE KEY", bytes.Repeat([]byte("s3cret-key-bytes"), 8))
	bad := []struct {
		name            string
		certPEM, keyPEM []byte
		wantIn          []string
		material        []string
	}{
		{"key of another certificate", otherCertPEM, rsaPKCS8, []string{"private key PEM does not match the certificate PEM"}, secretRSA},
		{"empty certificate", nil, rsaPKCS8, []string{"certificate PEM", "no PEM CERTIFICATE block"}, secretRSA},
		{"no CERTIFICATE block", rsaPKCS8, rsaPKCS8, []string{"certificate PEM", "no PEM CERTIFICATE block"}, secretRSA},
		{"bad certificate", pemBlock("CERTIFICATE", []byte("nope")), rsaPKCS8, []string{"certificate PEM", "x509"}, secretRSA},
		{"empty key", rsaCertPEM, nil, []string{"private key PEM", "no PEM PRIVATE KEY"}, nil},
		{"key does not parse", rsaCertPEM, garbage, []string{"private key PEM", "does not parse"}, []string{"s3cret"}},
		{"encrypted key", rsaCertPEM, pemBlock("ENCRYPTED PRIVATE KEY", []byte("x")), []string{"private key PEM", "encrypted"}, nil},
		{"RSA key under 2048 bits", pemBlock("CERTIFICATE", selfSigned(t, smallRSAKey(t)).Raw), pemBlock("PRIVATE KEY", mustPKCS8(t, smallRSAKey(t))), []string{"private key PEM", "at least 2048"}, nil},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseAssertionSigner(tc.certPEM, tc.keyPEM)
			if err == nil {
				t.Fatalf("parsed %v, want an error", s)
			}
			msg := err.Error()
			for _, want := range tc.wantIn {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			for _, m := range tc.material {
				if strings.Contains(msg, m) {
					t.Errorf("error %q contains key material %q", msg, m)
				}
			}
		})
	}
}

var (
	smallRSAOnce sync.Once
	smallRSA     *rsa.PrivateKey
)

// smallRSAKey is a 1024-bit key, which Azure AD and the signer refuse.
func smallRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	smallRSAOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		smallRSA = k
	})
	return smallRSA
}

func mustPKCS8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestAssertionSignerPrintsNoKey checks that a signer printed with any verb,
// or logged, shows no key material: fmt would otherwise print the private
// key's numbers through the unexported field.
func TestAssertionSignerPrintsNoKey(t *testing.T) {
	rsaKey := testRSAKey(t, 0)
	ecKey := testECKey(t, elliptic.P256())
	for _, key := range []crypto.Signer{rsaKey, ecKey} {
		cert := selfSigned(t, key)
		s, err := NewAssertionSigner(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("loaded", "signer", s)
		slog.New(slog.NewTextHandler(&logs, nil)).Info("loaded", "signer", s)
		out := fmt.Sprintf("%v %+v %#v %s", s, s, s, s) + logs.String()
		for _, m := range keyMaterial(pemBlock("PRIVATE KEY", der), key) {
			if strings.Contains(out, m) {
				t.Fatalf("output contains key material %q: %s", m, out)
			}
		}
		if !strings.Contains(out, s.Thumbprint()) || !strings.Contains(out, "tokenbroker test") {
			t.Errorf("output does not name the certificate: %s", out)
		}
	}
}
