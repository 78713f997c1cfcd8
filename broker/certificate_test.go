package broker_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/metrics"
)

// certificateExpiry reads tokenbroker_certificate_expiry_seconds of
// credential, and whether it is there.
func certificateExpiry(t *testing.T, m *metrics.Metrics, credential string) (float64, bool) {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "tokenbroker_certificate_expiry_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "credential" && l.GetValue() == credential {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func TestARenewedCertificateIsUsedWithoutASignalAndItsExpiryIsReported(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	old := testkit.NewCertificate(t, testkit.CertOptions{NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	replaceFile(t, certFile, string(old.CertPEM))
	replaceFile(t, keyFile, string(old.KeyPEM))
	var idp *fakeidp.Server
	e := fileBroker(t, func(s *fakeidp.Server) string {
		idp = s
		s.AddCertificateClient("cert-app", old.Cert)
		path := filepath.Join(dir, "credentials.yaml")
		replaceFile(t, path, fmt.Sprintf("credentials:\n  - name: cert-app\n    token_endpoint: %s\n    client_id: cert-app\n    grant: client_assertion\n    certificate_file: %s\n    private_key_file: %s\n    scope: %s/.default\n",
			s.V2TokenURL(), certFile, keyFile, brokertest.Resource))
		return path
	})
	if !strings.Contains(e.logs.String(), "client certificate expires soon") || !strings.Contains(e.logs.String(), "days_left=9") {
		t.Fatalf("no warning for a certificate 10 days from expiry:\n%s", e.logs.String())
	}
	if v, ok := certificateExpiry(t, e.broker.Metrics(), "cert-app"); !ok || v < 9*86400 || v > 10*86400 {
		t.Fatalf("certificate expiry gauge: %v %v", v, ok)
	}
	first := askName(t, e, "cert-app")

	// The certificate is renewed: the IdP knows the new one, and the files
	// are replaced, key first, as a deploy tool might.
	renewed := testkit.NewCertificate(t, testkit.CertOptions{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	idp.AddCertificateClient("cert-app", renewed.Cert)
	replaceFile(t, keyFile, string(renewed.KeyPEM))
	replaceFile(t, certFile, string(renewed.CertPEM))
	testkit.Until(t, 10*time.Second, "the renewed certificate's expiry reported", func() bool {
		v, ok := certificateExpiry(t, e.broker.Metrics(), "cert-app")
		return ok && v > 80*86400
	})
	if got := askName(t, e, "cert-app"); got.AccessToken != first.AccessToken {
		t.Fatal("a renewed certificate dropped the token held")
	}
	if code, _ := askNamedForced(e, "cert-app"); code != 0 {
		t.Fatalf("a new assertion with the renewed certificate: %d", code)
	}
}
