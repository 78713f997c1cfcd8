package broker_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

func TestCertificateCredentialGetsATokenWithASignedAssertion(t *testing.T) {
	cert, _, certPEM, keyPEM, err := fakeidp.GenerateCertificate("tokenbroker-test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e := start(t, time.Hour, 10*time.Minute, func(c *config.Config, idp *fakeidp.Server) {
		idp.AddCertificateClient("cert-app", cert)
		c.Credentials = append(c.Credentials, config.Credential{
			Name: "cert-app", Grant: config.GrantClientAssertion, TokenEndpoint: idp.V2TokenURL(), ClientID: "cert-app",
			Scope: resource + "/.default", CertificateFile: certFile, PrivateKeyFile: keyFile,
			RefreshThreshold: 10 * time.Minute, KeepWarm: true,
		})
	})
	r := decodeReply(t, e.request(t, `{"credential":"cert-app"}`))
	if r.CredentialID != "cert-app" || !e.idp.Valid(r.AccessToken) {
		t.Fatalf("reply %+v", r)
	}
	if got := e.idp.CallsFor("client_credentials"); got != 1 {
		t.Fatalf("client_credentials calls %d", got)
	}
	assertNoSecrets(t, e.logs.String(), string(keyPEM[40:80]), r.AccessToken)
}
