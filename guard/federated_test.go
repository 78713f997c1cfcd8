package guard_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/oauth"
)

const (
	fedApp     = "fed-app"
	fedSubject = "system:serviceaccount:payments:api"
)

// startFederated returns a started fake IdP (on the real clock, as the
// harness's oauth.Client is) with fedApp trusting a new issuer for
// fedSubject, the issuer, and a token file holding a fresh assertion.
func startFederated(t *testing.T) (*fakeidp.Server, *fakeidp.FederatedIssuer, string) {
	t.Helper()
	iss, err := fakeidp.NewFederatedIssuer("https://oidc.cluster.test/abc")
	if err != nil {
		t.Fatal(err)
	}
	s, err := fakeidp.Start(fakeidp.WithFederatedClient(fedApp, iss.Issuer(), fedSubject, iss.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	writeFile(t, file, iss.Mint(fedSubject, time.Hour))
	return s, iss, file
}

func writeFile(t *testing.T, path, contents string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
}

func fedEP(s *fakeidp.Server) oauth.Endpoint {
	return oauth.Endpoint{TokenURL: s.V2TokenURL(), ClientID: fedApp, Scope: scopeApp}
}

func TestFederatedAssertion(t *testing.T) {
	ctx := context.Background()

	t.Run("a token", func(t *testing.T) {
		s, _, file := startFederated(t)
		h := newClient(t, guard.Options{})
		tok, err := h.c.FederatedAssertion(ctx, fedEP(s), file)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Valid(tok.AccessToken) || s.Claims(tok.AccessToken)["appid"] != fedApp {
			t.Errorf("token claims %v", s.Claims(tok.AccessToken))
		}
		if got := h.att.Got(); !equalStrings(got, []string{"client_assertion ok"}) {
			t.Errorf("attempts = %q", got)
		}
	})

	t.Run("a temporary failure is retried, with the file read again", func(t *testing.T) {
		s, iss, file := startFederated(t)
		h := newClient(t, guard.Options{})
		s.Fail(fakeidp.FailHTML(503), 1)
		if _, err := h.c.FederatedAssertion(ctx, fedEP(s), file); err != nil {
			t.Fatal(err)
		}
		if n := s.Calls(); n != 2 {
			t.Errorf("IdP calls = %d, want 2", n)
		}
		if got := h.att.Got(); !equalStrings(got, []string{"client_assertion unavailable", "client_assertion ok"}) {
			t.Errorf("attempts = %q", got)
		}

		// The issuer replaces the file while the first attempt is out:
		// the retry must read the new contents, here an expired token,
		// and stop there without asking the IdP again.
		s.Fail(fakeidp.FailHTML(503), 1)
		s.OnCall(func(string) {
			// On the IdP's goroutine: no t.Fatal here.
			if err := os.WriteFile(file, []byte(iss.Mint(fedSubject, -time.Minute)), 0o600); err != nil {
				t.Error(err)
			}
		})
		_, err := h.c.FederatedAssertion(ctx, fedEP(s), file)
		var af *oauth.AssertionFileError
		if !errors.As(err, &af) {
			t.Fatalf("err = %v, want the retry's *oauth.AssertionFileError", err)
		}
		if n := s.Calls(); n != 3 {
			t.Errorf("IdP calls = %d, want 3", n)
		}
	})

	t.Run("an unusable file is not retried and spares the breaker", func(t *testing.T) {
		const threshold = 2
		s, iss, file := startFederated(t)
		h := newClient(t, guard.Options{MaxAttempts: 1, FailureThreshold: threshold})
		expired := filepath.Join(t.TempDir(), "expired")
		writeFile(t, expired, iss.Mint(fedSubject, -time.Minute))
		missing := filepath.Join(t.TempDir(), "missing")

		// One temporary failure: one short of opening.
		s.Fail(fakeidp.FailHTML(503), 1)
		if _, err := h.c.FederatedAssertion(ctx, fedEP(s), file); err == nil {
			t.Fatal("want the 503")
		}
		// Local refusals, more than the threshold: none counts against
		// the endpoint, and none says it is healthy either.
		for i := range 2 * threshold {
			for _, f := range []string{expired, missing} {
				_, err := h.c.FederatedAssertion(ctx, fedEP(s), f)
				var af *oauth.AssertionFileError
				if !errors.As(err, &af) {
					t.Fatalf("call %d with %s: err = %v, want an *oauth.AssertionFileError", i, f, err)
				}
				if e := oauth.Classify(err); e.Code != tokenbroker.CodeRejected || e.OAuth != tokenbroker.OAuthInvalidClient {
					t.Fatalf("oauth.Classify = %+v, want 401 invalid_client", e)
				}
			}
		}
		if st := h.c.State(s.V2TokenURL()); st != guard.StateClosed {
			t.Fatalf("state after local refusals = %s, want closed", st)
		}
		if n := s.Calls(); n != 1 {
			t.Errorf("IdP calls = %d, want 1: a refused file must not reach the IdP", n)
		}
		if w := h.sleeps.Waits(); len(w) != 0 {
			t.Errorf("backoffs = %v, want none", w)
		}
		if got := h.att.Got(); !equalStrings(got, []string{"client_assertion unavailable"}) {
			t.Errorf("attempts = %q, want only the IdP's", got)
		}

		// The count still stands: a second temporary failure opens the
		// breaker, which then holds federated calls back like any other.
		s.Fail(fakeidp.FailHTML(503), 1)
		if _, err := h.c.FederatedAssertion(ctx, fedEP(s), file); err == nil {
			t.Fatal("want the 503")
		}
		if st := h.c.State(s.V2TokenURL()); st != guard.StateOpen {
			t.Fatalf("state after %d failures = %s, want open", threshold, st)
		}
		if _, err := h.c.FederatedAssertion(ctx, fedEP(s), file); !errors.Is(err, guard.ErrCircuitOpen) {
			t.Fatalf("err = %v, want ErrCircuitOpen", err)
		}
	})
}
