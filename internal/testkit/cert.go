package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certificate is a generated certificate and its private key, parsed and as
// PEM: CertPEM is one CERTIFICATE block, KeyPEM one PKCS#8 PRIVATE KEY block.
//
// It is for tests that need what fakeidp.GenerateCertificate does not make:
// TLS server and client certificates, a CA that signs them, or a key other
// than RSA. A client assertion certificate comes from GenerateCertificate,
// as in the demo.
type Certificate struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// CertOptions say what NewCertificate makes. The zero value makes a
// self-signed certificate for "tokenbroker test" with a new ECDSA P-256
// key, valid from an hour ago for two hours.
type CertOptions struct {
	CommonName  string             // the subject's CN; default "tokenbroker test"
	Key         crypto.Signer      // the certificate's key; nil: a new ECDSA P-256 key
	Issuer      *Certificate       // signs the certificate; nil: it signs itself
	IsCA        bool               // it may sign certificates (give it as Issuer)
	ExtKeyUsage []x509.ExtKeyUsage // e.g. x509.ExtKeyUsageServerAuth for a TLS server
	IPAddresses []net.IP           // the addresses a TLS server certificate is valid for
	// NotBefore and NotAfter bound its validity, for tests on a fixed
	// clock; zero: from an hour ago for two hours.
	NotBefore, NotAfter time.Time
}

// NewCertificate makes a certificate as o says, failing tb if it cannot.
func NewCertificate(tb testing.TB, o CertOptions) *Certificate {
	tb.Helper()
	if o.CommonName == "" {
		o.CommonName = "tokenbroker test"
	}
	key := o.Key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatalf("testkit: certificate key: %v", err)
		}
		key = k
	}
	// Random, since an issuer's serials must differ and a test may have
	// one CA issue several certificates.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		tb.Fatalf("testkit: certificate serial: %v", err)
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           o.ExtKeyUsage,
		IPAddresses:           o.IPAddresses,
		IsCA:                  o.IsCA,
		BasicConstraintsValid: o.IsCA,
	}
	if o.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if o.Issuer != nil {
		parent, signer = o.Issuer.Cert, o.Issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		tb.Fatalf("testkit: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testkit: parse certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("testkit: marshal key: %v", err)
	}
	return &Certificate{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
}

// WriteFiles writes the certificate to dir/name-cert.pem and its key to
// dir/name-key.pem, readable by the owner only, for code that takes files.
func (c *Certificate) WriteFiles(tb testing.TB, dir, name string) (certFile, keyFile string) {
	tb.Helper()
	certFile, keyFile = filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem")
	for path, data := range map[string][]byte{certFile: c.CertPEM, keyFile: c.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			tb.Fatalf("testkit: %v", err)
		}
	}
	return certFile, keyFile
}

// Pool returns a pool that trusts c alone: a self-signed server
// certificate, or the CA of a chain.
func (c *Certificate) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	return pool
}
