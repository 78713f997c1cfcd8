package oauth

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

const certApp = "cert-app"

// Two generated certificates shared by the tests against the fake IdP: the
// first is registered on certApp, the second is not.
var (
	fakeCertsOnce sync.Once
	fakeCerts     [2]struct {
		cert *x509.Certificate
		key  crypto.Signer
	}
)

func fakeCert(t *testing.T, i int) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	fakeCertsOnce.Do(func() {
		for j := range fakeCerts {
			cert, key, _, _, err := fakeidp.GenerateCertificate("tokenbroker test " + certApp)
			if err != nil {
				panic(err)
			}
			fakeCerts[j].cert, fakeCerts[j].key = cert, key
		}
	})
	return fakeCerts[i].cert, fakeCerts[i].key
}

// startCertIdP starts a fake IdP on a fixed clock with certApp registered
// with the first certificate, and returns a Client on the same clock and a
// signer with the registered certificate and key.
func startCertIdP(t *testing.T) (*fakeidp.Server, *Client, *AssertionSigner) {
	t.Helper()
	cert, key := fakeCert(t, 0)
	clock := func() time.Time { return fixedNow }
	s, err := fakeidp.Start(fakeidp.WithClock(clock), fakeidp.WithCertificateClient(certApp, cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := NewClient(nil, 5*time.Second)
	c.SetClock(clock)
	signer, err := NewAssertionSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, signer
}

// wantRejected checks err is the IdP's invalid_client with AADSTS code.
func wantRejected(t *testing.T, err error, aadsts int) *RetrieveError {
	t.Helper()
	var re *RetrieveError
	if !errors.As(err, &re) || re.StatusCode != 401 || re.ErrorCode != "invalid_client" || !re.HasErrorCode(aadsts) || re.Temporary() {
		t.Fatalf("err = %v, want 401 invalid_client AADSTS%d", err, aadsts)
	}
	return re
}

func TestClientAssertionAgainstFakeIdP(t *testing.T) {
	ctx := context.Background()

	t.Run("v1 and v2 succeed", func(t *testing.T) {
		s, c, signer := startCertIdP(t)
		for _, ep := range []Endpoint{
			{TokenURL: s.V1TokenURL(), ClientID: certApp, Resource: "https://graph.windows.net"},
			{TokenURL: s.V2TokenURL(), ClientID: certApp, Scope: "https://graph.microsoft.com/.default"},
		} {
			tok, err := c.ClientAssertion(ctx, ep, signer)
			if err != nil {
				t.Fatalf("%s: %v", ep.TokenURL, err)
			}
			if !s.Valid(tok.AccessToken) || s.Claims(tok.AccessToken)["appid"] != certApp || tok.Lifetime != time.Hour {
				t.Errorf("%s: token %v claims %v", ep.TokenURL, tok, s.Claims(tok.AccessToken))
			}
		}
		if n := s.CallsFor(fakeidp.GrantClientCredentials); n != 2 {
			t.Errorf("%d client_credentials calls, want 2", n)
		}
	})

	t.Run("wrong key with the registered certificate's thumbprint", func(t *testing.T) {
		s, c, _ := startCertIdP(t)
		cert, _ := fakeCert(t, 0)
		_, otherKey := fakeCert(t, 1)
		wrong, err := newAssertionSigner(cert, otherKey) // NewAssertionSigner refuses this pairing
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ClientAssertion(ctx, Endpoint{TokenURL: s.V2TokenURL(), ClientID: certApp, Scope: "api://x/.default"}, wrong)
		re := wantRejected(t, err, 700027)
		if !strings.Contains(re.Description, "signature") {
			t.Errorf("description %q", re.Description)
		}
	})

	t.Run("unregistered certificate", func(t *testing.T) {
		s, c, _ := startCertIdP(t)
		other, err := NewAssertionSigner(fakeCert(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ClientAssertion(ctx, Endpoint{TokenURL: s.V1TokenURL(), ClientID: certApp, Resource: "r"}, other)
		wantRejected(t, err, 700027)
	})

	t.Run("wrong audience, issuer or subject", func(t *testing.T) {
		s, c, signer := startCertIdP(t)
		ep := Endpoint{TokenURL: s.V2TokenURL(), ClientID: certApp, Scope: "api://x/.default"}
		for _, tc := range []struct{ aud, iss string }{
			{"https://login.microsoftonline.com/" + s.Tenant() + "/oauth2/v2.0/token", certApp}, // another host
			{s.URL() + "/other-tenant/oauth2/v2.0/token", certApp},
			{s.V2TokenURL(), "someone-else"},
		} {
			jwt, err := signer.Assertion(tc.aud, tc.iss, fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Exchange(ctx, ep, url.Values{
				"grant_type":            {"client_credentials"},
				"client_assertion_type": {ClientAssertionType},
				"client_assertion":      {jwt},
			})
			wantRejected(t, err, 50012)
		}
	})

	t.Run("client clock off", func(t *testing.T) {
		s, _, signer := startCertIdP(t)
		ep := Endpoint{TokenURL: s.V2TokenURL(), ClientID: certApp, Scope: "api://x/.default"}
		for _, off := range []time.Duration{-time.Hour, -16 * time.Minute, 6 * time.Minute, 2 * time.Hour} {
			c := NewClient(nil, 5*time.Second)
			c.SetClock(func() time.Time { return fixedNow.Add(off) })
			_, err := c.ClientAssertion(ctx, ep, signer)
			re := wantRejected(t, err, 700024)
			if !strings.Contains(re.Description, "valid time range") {
				t.Errorf("clock %v: description %q", off, re.Description)
			}
		}
		// Within Azure's five minutes of skew the assertion passes.
		for _, off := range []time.Duration{-14 * time.Minute, 4 * time.Minute} {
			c := NewClient(nil, 5*time.Second)
			c.SetClock(func() time.Time { return fixedNow.Add(off) })
			if _, err := c.ClientAssertion(ctx, ep, signer); err != nil {
				t.Errorf("clock %v: %v", off, err)
			}
		}
	})

	t.Run("replayed assertion", func(t *testing.T) {
		s, c, signer := startCertIdP(t)
		jwt, err := signer.Assertion(s.V2TokenURL(), certApp, fixedNow)
		if err != nil {
			t.Fatal(err)
		}
		ep := Endpoint{TokenURL: s.V2TokenURL(), ClientID: certApp, Scope: "api://x/.default"}
		form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {ClientAssertionType}, "client_assertion": {jwt}}
		if _, err := c.Exchange(ctx, ep, form); err != nil {
			t.Fatalf("first use: %v", err)
		}
		_, err = c.Exchange(ctx, ep, form)
		re := wantRejected(t, err, 700027)
		if !strings.Contains(re.Description, "jti") || strings.Contains(err.Error(), jwt) || strings.Contains(re.Description, jwt) {
			t.Errorf("error %v description %q", err, re.Description)
		}
		// ClientAssertion signs a fresh assertion per call, so it is never
		// taken for a replay.
		for range 3 {
			if _, err := c.ClientAssertion(ctx, ep, signer); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("certificate client sending a secret", func(t *testing.T) {
		s, c, _ := startCertIdP(t)
		_, err := c.ClientCredentials(ctx, Endpoint{TokenURL: s.V2TokenURL(), ClientID: certApp, ClientSecret: "guess", Scope: "api://x/.default"})
		wantRejected(t, err, 7000215)
		_, err = c.ClientCredentials(ctx, Endpoint{TokenURL: s.V2TokenURL(), ClientID: certApp, Scope: "api://x/.default"})
		wantRejected(t, err, 7000218)
	})

	t.Run("endpoint secret is not sent with the assertion", func(t *testing.T) {
		s, c, signer := startCertIdP(t)
		// The fake rejects a call carrying both; ClientAssertion drops it.
		ep := Endpoint{TokenURL: s.V2TokenURL(), ClientID: certApp, ClientSecret: "stale-secret", Scope: "api://x/.default"}
		if _, err := c.ClientAssertion(ctx, ep, signer); err != nil {
			t.Fatal(err)
		}
	})
}
