package oauth

// Certificate credentials: the client assertion grant of RFC 7523 section
// 2.2 ("private_key_jwt"), as Azure AD (Entra ID) wants it for confidential
// clients that authenticate with a certificate instead of a secret.
//
// The JWS is written by hand: no JWT library is in the project's dependency
// set, and the format is fixed by RFC 7515 (JWS compact serialization),
// RFC 7518 (RS256, ES256 and their signature encodings) and RFC 7523 (the
// claims), so a few lines of crypto/rsa and crypto/ecdsa do it.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"time"

	"github.com/google/uuid"
)

// ClientAssertionType is the client_assertion_type of a JWT client assertion
// (RFC 7523 section 2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionLifetime is how long a client assertion is valid after it is
// signed (its exp minus its iat). Azure AD accepts up to a day; ten minutes
// covers clock skew and a slow network, and limits what a leaked assertion
// is good for.
const AssertionLifetime = 10 * time.Minute

// minRSABits is the smallest RSA key accepted; Azure AD rejects smaller
// certificate keys.
const minRSABits = 2048

// AssertionSigner signs client assertions with a certificate's private key.
// It is immutable once made and safe for concurrent use. Its String,
// GoString and LogValue methods name the certificate only, so a signer that
// slips into a log line shows no key material.
type AssertionSigner struct {
	cert    *x509.Certificate
	key     crypto.Signer
	alg     string      // RS256, ES256, ES384 or ES512
	hash    crypto.Hash // the hash of alg
	ecBytes int         // ECDSA: bytes of r and of s in the signature
	x5t     string      // base64url SHA-1 of cert.Raw
	x5tS256 string      // base64url SHA-256 of cert.Raw
}

// NewAssertionSigner returns a signer for cert and its private key. key must
// be an RSA key of at least 2048 bits (signing RS256, the algorithm Azure AD
// expects) or an ECDSA key on P-256, P-384 or P-521 (signing ES256, ES384 or
// ES512, for IdPs that accept them), and its public key must be cert's.
// key may be any crypto.Signer (an HSM or KMS key too) whose Public method
// returns an *rsa.PublicKey or *ecdsa.PublicKey. The errors wrap
// ErrInvalidArgument.
func NewAssertionSigner(cert *x509.Certificate, key crypto.Signer) (*AssertionSigner, error) {
	if cert == nil || key == nil {
		return nil, fmt.Errorf("%w: assertion signer needs a certificate and a private key", ErrInvalidArgument)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: the private key does not match the certificate's public key", ErrInvalidArgument)
	}
	return newAssertionSigner(cert, key)
}

// newAssertionSigner is NewAssertionSigner without the check that key
// belongs to cert; tests use it to sign with the wrong key.
func newAssertionSigner(cert *x509.Certificate, key crypto.Signer) (*AssertionSigner, error) {
	s := &AssertionSigner{cert: cert, key: key}
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits; at least %d are needed", ErrInvalidArgument, pub.N.BitLen(), minRSABits)
		}
		s.alg, s.hash = "RS256", crypto.SHA256
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			s.alg, s.hash = "ES256", crypto.SHA256
		case elliptic.P384():
			s.alg, s.hash = "ES384", crypto.SHA384
		case elliptic.P521():
			s.alg, s.hash = "ES512", crypto.SHA512
		default:
			return nil, fmt.Errorf("%w: unsupported ECDSA curve", ErrInvalidArgument)
		}
		s.ecBytes = (pub.Curve.Params().BitSize + 7) / 8
	default:
		return nil, fmt.Errorf("%w: unsupported private key type %T; RSA or ECDSA is needed", ErrInvalidArgument, pub)
	}
	sum1 := sha1.Sum(cert.Raw)
	sum256 := sha256.Sum256(cert.Raw)
	s.x5t = base64.RawURLEncoding.EncodeToString(sum1[:])
	s.x5tS256 = base64.RawURLEncoding.EncodeToString(sum256[:])
	return s, nil
}

// LoadAssertionSigner reads a signer from PEM files: the first CERTIFICATE
// block of certFile, and the first private key block of keyFile, in PKCS#8
// ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY")
// form. Other blocks (a chain, EC PARAMETERS) are skipped, so certFile and
// keyFile may be one combined file. Encrypted keys are not supported. The
// key must match the certificate; see NewAssertionSigner.
//
// Errors name the file and what is wrong with it, and never quote its
// contents. The key file's bytes are zeroed once parsed.
func LoadAssertionSigner(certFile, keyFile string) (*AssertionSigner, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("oauth: certificate file: %w", err) // *PathError names the file
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("oauth: private key file: %w", err) // *PathError names the file
	}
	defer clear(keyPEM)
	return parseAssertionSigner(certPEM, keyPEM, pemSource{
		cert:     "certificate file " + certFile,
		key:      "private key file " + keyFile,
		mismatch: fmt.Sprintf("private key file %s does not match the certificate in %s", keyFile, certFile),
	})
}

// ParseAssertionSigner is LoadAssertionSigner from the files' contents, for
// credentials that carry PEM rather than paths (those from the registry):
// the first CERTIFICATE block of certPEM and the first private key block of
// keyPEM, which may be the same bytes. Errors say which of the two is wrong
// and never quote either. The DER it decodes from keyPEM is zeroed once
// parsed; keyPEM itself is the caller's, left as it is, for the caller to
// clear once done with it.
func ParseAssertionSigner(certPEM, keyPEM []byte) (*AssertionSigner, error) {
	return parseAssertionSigner(certPEM, keyPEM, pemSource{
		cert:     "certificate PEM",
		key:      "private key PEM",
		mismatch: "the private key PEM does not match the certificate PEM",
	})
}

// pemSource names where the PEM of LoadAssertionSigner or
// ParseAssertionSigner came from, so that the one parser gives each its own
// error messages.
type pemSource struct {
	cert, key string // "certificate file PATH", "private key PEM", ...
	mismatch  string // the whole message for a key that is not the certificate's
}

func parseAssertionSigner(certPEM, keyPEM []byte, src pemSource) (*AssertionSigner, error) {
	cert, err := parseCertificatePEM(certPEM, src.cert)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKeyPEM(keyPEM, src.key)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("oauth: " + src.mismatch)
	}
	s, err := newAssertionSigner(cert, key)
	if err != nil {
		return nil, fmt.Errorf("oauth: %s: %w", src.key, err)
	}
	return s, nil
}

func parseCertificatePEM(data []byte, what string) (*x509.Certificate, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("oauth: %s: no PEM CERTIFICATE block", what)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			// A certificate is public: the parser's reason may be quoted.
			return nil, fmt.Errorf("oauth: %s: %w", what, err)
		}
		return cert, nil
	}
}

// parsePrivateKeyPEM zeroes every block it decodes (pem.Decode copies the
// base64 into new DER bytes), so no key material it made outlives it but
// the parsed key.
func parsePrivateKeyPEM(data []byte, what string) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("oauth: %s: no PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block", what)
		}
		key, err := parsePrivateKey(block)
		clear(block.Bytes)
		if errors.Is(err, errNotAKey) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("oauth: %s: %w", what, err)
		}
		return key, nil
	}
}

var errNotAKey = errors.New("not a private key block")

// parsePrivateKey parses one PEM block. Its errors never wrap the parser's,
// which might describe the key's contents.
func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	var (
		key any
		err error
	)
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted private keys are not supported; decrypt it (openssl pkey) and protect the file instead")
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, errNotAKey
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted {
		return nil, errors.New("encrypted private keys are not supported; decrypt it (openssl pkey) and protect the file instead")
	}
	if err != nil {
		return nil, fmt.Errorf("the %s block does not parse", block.Type)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

// Thumbprint returns the certificate's thumbprint as sent in the x5t header:
// the base64url (unpadded) SHA-1 of its DER encoding. Azure AD shows the same
// SHA-1 in hex on the app registration's certificate list.
func (s *AssertionSigner) Thumbprint() string { return s.x5t }

// Certificate returns the certificate whose key signs, for callers that
// check or report its NotAfter. It must not be modified.
func (s *AssertionSigner) Certificate() *x509.Certificate { return s.cert }

// Algorithm returns the JWS alg of the assertions: RS256, ES256, ES384 or
// ES512.
func (s *AssertionSigner) Algorithm() string { return s.alg }

// String names the certificate without key material.
func (s *AssertionSigner) String() string {
	if s == nil {
		return "<nil>"
	}
	return fmt.Sprintf("oauth.AssertionSigner{Subject:%q Alg:%s X5t:%s NotAfter:%s}",
		s.cert.Subject.String(), s.alg, s.x5t, s.cert.NotAfter.UTC().Format(time.RFC3339))
}

// GoString is String, so %#v shows no key material either.
func (s *AssertionSigner) GoString() string { return s.String() }

// LogValue implements slog.LogValuer without key material.
func (s *AssertionSigner) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("subject", s.cert.Subject.String()),
		slog.String("alg", s.alg),
		slog.String("x5t", s.x5t),
		slog.Time("not_after", s.cert.NotAfter),
	)
}

type assertionHeader struct {
	Alg     string `json:"alg"`
	Typ     string `json:"typ"`
	X5t     string `json:"x5t"`
	X5tS256 string `json:"x5t#S256"`
}

type assertionClaims struct {
	Aud string `json:"aud"`
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Jti string `json:"jti"`
	Nbf int64  `json:"nbf"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// Assertion returns a signed client assertion (a JWS compact serialization)
// for clientID at audience, the token endpoint URL: header alg, typ JWT, x5t
// and x5t#S256; claims aud = audience, iss = sub = clientID, a random UUID
// jti, nbf = iat = now and exp = now + AssertionLifetime, in Unix seconds.
// ClientAssertion calls it; it is exported for grants that take a client
// assertion alongside other parameters, through Exchange. The assertion is a
// credential: never log it.
func (s *AssertionSigner) Assertion(audience, clientID string, now time.Time) (string, error) {
	if audience == "" || clientID == "" {
		return "", fmt.Errorf("%w: a client assertion needs an audience and a client ID", ErrInvalidArgument)
	}
	jti, err := uuid.NewRandom()
	if err != nil {
		return "", fmt.Errorf("oauth: client assertion jti: %w", err)
	}
	header, err := json.Marshal(assertionHeader{Alg: s.alg, Typ: "JWT", X5t: s.x5t, X5tS256: s.x5tS256})
	if err != nil {
		return "", fmt.Errorf("oauth: client assertion header: %w", err)
	}
	claims, err := json.Marshal(assertionClaims{
		Aud: audience, Iss: clientID, Sub: clientID, Jti: jti.String(),
		Nbf: now.Unix(), Iat: now.Unix(), Exp: now.Add(AssertionLifetime).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("oauth: client assertion claims: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, err := s.sign([]byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// sign returns the JWS signature of input (RFC 7518 section 3): RSASSA-
// PKCS1-v1_5 for RS256, and for ECDSA the fixed-size big-endian r || s, not
// the ASN.1 DER that crypto.Signer returns.
func (s *AssertionSigner) sign(input []byte) ([]byte, error) {
	var digest []byte
	switch s.hash {
	case crypto.SHA256:
		d := sha256.Sum256(input)
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384(input)
		digest = d[:]
	case crypto.SHA512:
		d := sha512.Sum512(input)
		digest = d[:]
	}
	sig, err := s.key.Sign(rand.Reader, digest, s.hash)
	if err != nil {
		return nil, fmt.Errorf("oauth: sign client assertion: %w", err)
	}
	if s.ecBytes == 0 {
		return sig, nil
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 || rs.R == nil || rs.S == nil {
		return nil, errors.New("oauth: sign client assertion: the ECDSA signer returned a malformed signature")
	}
	out := make([]byte, 2*s.ecBytes)
	rs.R.FillBytes(out[:s.ecBytes])
	rs.S.FillBytes(out[s.ecBytes:])
	return out, nil
}

// ClientAssertion runs the client credentials grant (RFC 6749 4.4)
// authenticated by a client assertion (RFC 7523 2.2) that s signs: the form
// carries client_id, client_assertion_type, client_assertion and ep's scope
// or resource, and never a client secret (ep.ClientSecret is ignored). The
// assertion's audience is ep.TokenURL without query or fragment, its issuer
// and subject ep.ClientID, and its times come from the Client's clock. A
// fresh assertion, with a new jti, is signed for every call.
//
// Azure AD rejects a bad assertion with invalid_client: AADSTS700027 for a
// signature or thumbprint it does not know (the certificate is not
// registered on the app, or the key is not the certificate's), AADSTS700024
// for an assertion outside its time range (the local clock is off), and
// AADSTS50012 for a wrong audience, issuer or subject. See Exchange for the
// error types; an empty ClientID or a nil s is an ErrInvalidArgument.
func (c *Client) ClientAssertion(ctx context.Context, ep Endpoint, s *AssertionSigner) (*Token, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil assertion signer", ErrInvalidArgument)
	}
	if ep.ClientID == "" {
		return nil, fmt.Errorf("%w: a client assertion needs a client ID", ErrInvalidArgument)
	}
	if _, err := checkTokenURL(ep.TokenURL); err != nil {
		return nil, err
	}
	u, _ := url.Parse(ep.TokenURL) // checked above
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	assertion, err := s.Assertion(u.String(), ep.ClientID, c.now())
	if err != nil {
		return nil, err
	}
	return c.assertionGrant(ctx, ep, assertion)
}

// assertionGrant runs the client credentials grant authenticated by
// assertion, whoever signed it: ClientAssertion's own or
// FederatedAssertion's from a file. A client secret is never sent with it:
// Azure AD refuses a call carrying both (AADSTS90023).
func (c *Client) assertionGrant(ctx context.Context, ep Endpoint, assertion string) (*Token, error) {
	ep.ClientSecret = ""
	return c.Exchange(ctx, ep, url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {ClientAssertionType},
		"client_assertion":      {assertion},
	})
}
