package fakeidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// JWTBearerAssertionType is the client_assertion_type of a JWT client
// assertion (RFC 7523 section 2.2), the only one the Server accepts.
const JWTBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionClockSkew is how far an assertion's nbf may be in the future, and
// its exp in the past, before the Server rejects it, as Azure AD allows.
const AssertionClockSkew = 5 * time.Minute

// MaxAssertionLifetime is how far in the future an assertion's exp may be,
// from the Server's now.
const MaxAssertionLifetime = 24 * time.Hour

// WithCertificateClient adds a client application that authenticates with a
// client assertion signed by cert's key; see AddCertificateClient.
func WithCertificateClient(clientID string, cert *x509.Certificate) Option {
	return func(s *Server) { s.certs[clientID] = append(s.certs[clientID], cert) }
}

// AddCertificateClient registers cert on the client application clientID,
// adding the application if unknown. A client may have several certificates
// (as during a rollover in Azure AD) and a secret too (AddClient); either
// credential then works.
//
// A certificate client authenticates with client_assertion_type
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer and a
// client_assertion JWT (RFC 7523), which the Server checks like Azure AD:
//
//   - header x5t (base64url SHA-1) or x5t#S256 (base64url SHA-256) names a
//     certificate registered on the client, and the signature verifies with
//     its key (alg RS256, PS256, ES256, ES384 or ES512); else invalid_client
//     AADSTS700027;
//   - iss and sub are the client_id, and aud is this tenant's v1 or v2 token
//     endpoint URL on the host the request was sent to (either scheme); else
//     invalid_client AADSTS50012;
//   - exp is after now and at most MaxAssertionLifetime ahead, and nbf, if
//     present, is not after now, both within AssertionClockSkew by the
//     Server's clock; else invalid_client AADSTS700024;
//   - jti was not seen on an earlier assertion of the client that is still
//     within its lifetime; else invalid_client AADSTS700027. (Azure AD
//     itself tolerates reuse of a still-valid assertion, which MSAL does;
//     the Server is stricter so that a client signing a fresh assertion per
//     call is tested for it.)
//
// A malformed assertion, or one without exp or jti, is invalid_request
// AADSTS50027. A certificate-only client that sends a client_secret gets
// invalid_client AADSTS7000215. The certificate's own validity period is not
// checked.
func (s *Server) AddCertificateClient(clientID string, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[clientID] = append(s.certs[clientID], cert)
}

// GenerateCertificate returns a self-signed certificate for commonName with
// a new RSA 2048 key, valid from 5 minutes ago for a day, as parsed values
// and as PEM: certPEM holds one CERTIFICATE block, keyPEM one PKCS#8
// PRIVATE KEY block. Tests and the demo register cert with
// AddCertificateClient and sign with the key.
func GenerateCertificate(commonName string) (cert *x509.Certificate, key crypto.Signer, certPEM, keyPEM []byte, err error) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("fakeidp: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("fakeidp: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsaKey.PublicKey, rsaKey)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("fakeidp: create certificate: %w", err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("fakeidp: parse certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("fakeidp: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return cert, rsaKey, certPEM, keyPEM, nil
}

// checkAssertion verifies the client assertion of a call by clientID against
// the client's certificates, writing Azure's error and returning false when
// it fails. The caller holds s.mu.
func (s *Server) checkAssertion(w http.ResponseWriter, r *http.Request, v version, clientID string, certs []*x509.Certificate) bool {
	form := r.PostForm
	invalidClient := func(aadsts int, description string) bool {
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, aadsts, description)
		return false
	}
	malformed := func(why string) bool {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 50027, "JWT token is invalid or malformed: "+why+".")
		return false
	}
	switch typ := form.Get("client_assertion_type"); {
	case typ == "":
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 900144, "The request body must contain the following parameter: 'client_assertion_type'.")
		return false
	case typ != JWTBearerAssertionType:
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 50027, "Invalid client_assertion_type: only '"+JWTBearerAssertionType+"' is supported.")
		return false
	case form.Get("client_assertion") == "":
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 900144, "The request body must contain the following parameter: 'client_assertion'.")
		return false
	}
	if s.isFederatedAssertion(clientID, form.Get("client_assertion")) {
		return s.checkFederated(w, r, clientID)
	}

	parts := strings.Split(form.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return malformed("not a JWS compact serialization")
	}
	var header struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
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
	if claims.Jti == "" {
		return malformed("the jti claim is missing")
	}

	// The key: the registered certificate the header names.
	var cert *x509.Certificate
	for _, c := range certs {
		sum1, sum256 := sha1.Sum(c.Raw), sha256.Sum256(c.Raw)
		if (header.X5t != "" && header.X5t == base64.RawURLEncoding.EncodeToString(sum1[:])) ||
			(header.X5tS256 != "" && header.X5tS256 == base64.RawURLEncoding.EncodeToString(sum256[:])) {
			cert = c
			break
		}
	}
	if cert == nil {
		return invalidClient(700027, fmt.Sprintf("Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", thumbprintHex(header.X5t), clientID))
	}
	if why := verifyJWS(header.Alg, cert.PublicKey, parts[0]+"."+parts[1], sig); why != "" {
		return invalidClient(700027, "Client assertion contains an invalid signature. [Reason - "+why+", Thumbprint of key used by client: '"+thumbprintHex(header.X5t)+"']")
	}

	// The claims.
	if claims.Iss != clientID || claims.Sub != clientID {
		return invalidClient(50012, "Client assertion failed validation: the iss and sub claims must both be the client_id '"+clientID+"'.")
	}
	if !s.audienceOK(r, claims.Aud) {
		return invalidClient(50012, "Client assertion failed validation: the aud claim must be the token endpoint URL, "+s.tokenURLFor(r, v)+".")
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
	if early || !now.Before(exp.Add(AssertionClockSkew)) || exp.After(now.Add(MaxAssertionLifetime+AssertionClockSkew)) {
		return invalidClient(700024, fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
			now.UTC().Format(layout), validFrom, exp.UTC().Format(layout)))
	}

	// Replay: remember jti until the assertion could no longer pass anyway.
	for k, until := range s.jtis {
		if now.After(until) {
			delete(s.jtis, k)
		}
	}
	key := clientID + " " + claims.Jti
	if _, seen := s.jtis[key]; seen {
		return invalidClient(700027, "Client assertion failed validation: an assertion with jti '"+claims.Jti+"' was already used. Sign a new assertion for every request.")
	}
	s.jtis[key] = exp.Add(AssertionClockSkew)
	return true
}

func decodeSegment(seg string, v any) error {
	data, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// thumbprintHex shows an x5t as Azure does, in upper-case hex; "" when
// absent or not base64url.
func thumbprintHex(x5t string) string {
	b, err := base64.RawURLEncoding.DecodeString(x5t)
	if err != nil {
		return ""
	}
	return strings.ToUpper(fmt.Sprintf("%x", b))
}

// verifyJWS checks a JWS signature (RFC 7518 section 3) and returns "" when
// it verifies, else the reason.
func verifyJWS(alg string, pub crypto.PublicKey, input string, sig []byte) string {
	var (
		hash   crypto.Hash
		digest []byte
	)
	switch alg {
	case "RS256", "PS256", "ES256":
		d := sha256.Sum256([]byte(input))
		hash, digest = crypto.SHA256, d[:]
	case "ES384":
		d := sha512.Sum384([]byte(input))
		hash, digest = crypto.SHA384, d[:]
	case "ES512":
		d := sha512.Sum512([]byte(input))
		hash, digest = crypto.SHA512, d[:]
	default:
		return "The signing algorithm '" + alg + "' is not supported"
	}
	switch key := pub.(type) {
	case *rsa.PublicKey:
		var err error
		switch alg {
		case "RS256":
			err = rsa.VerifyPKCS1v15(key, hash, digest, sig)
		case "PS256":
			err = rsa.VerifyPSS(key, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		default:
			return "The signing algorithm '" + alg + "' does not fit the certificate's RSA key"
		}
		if err != nil {
			return "The signature does not verify with the certificate's key"
		}
		return ""
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		if want == nil || key.Curve != want {
			return "The signing algorithm '" + alg + "' does not fit the certificate's ECDSA key"
		}
		n := (key.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return "The ECDSA signature is not the r || s encoding of RFC 7518"
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(key, digest, r, s) {
			return "The signature does not verify with the certificate's key"
		}
		return ""
	default:
		return "The certificate's key type is not supported"
	}
}

// audienceOK reports whether aud (a string or an array of strings) holds
// this tenant's v1 or v2 token endpoint URL on the host r was sent to.
func (s *Server) audienceOK(r *http.Request, aud json.RawMessage) bool {
	var list []string
	var one string
	if json.Unmarshal(aud, &one) == nil {
		list = []string{one}
	} else if json.Unmarshal(aud, &list) != nil {
		return false
	}
	for _, a := range list {
		u, err := url.Parse(strings.TrimSuffix(a, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			continue
		}
		if !strings.EqualFold(u.Host, r.Host) {
			continue
		}
		tenant := "/" + s.tenant
		if strings.EqualFold(u.Path, tenant+"/oauth2/token") || strings.EqualFold(u.Path, tenant+"/oauth2/v2.0/token") {
			return true
		}
	}
	return false
}

// tokenURLFor is the token endpoint URL of version v on the host r was sent
// to, for error messages.
func (s *Server) tokenURLFor(r *http.Request, v version) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := "/oauth2/token"
	if v == v2 {
		path = "/oauth2/v2.0/token"
	}
	return scheme + "://" + r.Host + "/" + s.tenant + path
}
