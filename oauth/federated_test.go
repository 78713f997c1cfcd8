package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

const (
	fedApp     = "fed-app"
	fedSubject = "system:serviceaccount:payments:api"
)

// startFederatedIdP starts a fake IdP on fixedNow with fedApp trusting a
// new issuer for fedSubject, and returns the issuer (minting on fixedNow)
// and a Client on the same clock.
func startFederatedIdP(t *testing.T, opts ...fakeidp.Option) (*fakeidp.Server, *Client, *fakeidp.FederatedIssuer) {
	t.Helper()
	iss, err := fakeidp.NewFederatedIssuer("https://oidc.cluster.test/abc")
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return fixedNow }
	iss.SetClock(clock)
	opts = append([]fakeidp.Option{fakeidp.WithClock(clock), fakeidp.WithFederatedClient(fedApp, iss.Issuer(), fedSubject, iss.PublicKey())}, opts...)
	s, err := fakeidp.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := NewClient(nil, 5*time.Second)
	c.SetClock(clock)
	return s, c, iss
}

// writeToken writes contents to path, replacing the file as its issuer
// does.
func writeToken(t *testing.T, path, contents string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFederatedAssertionAgainstFakeIdP(t *testing.T) {
	ctx := context.Background()

	t.Run("v1 and v2 succeed", func(t *testing.T) {
		s, c, iss := startFederatedIdP(t)
		file := filepath.Join(t.TempDir(), "azure-identity-token")
		for _, ep := range []Endpoint{
			{TokenURL: s.V1TokenURL(), ClientID: fedApp, Resource: "https://graph.windows.net"},
			{TokenURL: s.V2TokenURL(), ClientID: fedApp, Scope: "https://graph.microsoft.com/.default"},
		} {
			writeToken(t, file, iss.Mint(fedSubject, time.Hour))
			tok, err := c.FederatedAssertion(ctx, ep, file)
			if err != nil {
				t.Fatalf("%s: %v", ep.TokenURL, err)
			}
			if !s.Valid(tok.AccessToken) || s.Claims(tok.AccessToken)["appid"] != fedApp || tok.Lifetime != time.Hour {
				t.Errorf("%s: token %v claims %v", ep.TokenURL, tok, s.Claims(tok.AccessToken))
			}
		}
		if n := s.CallsFor(fakeidp.GrantClientCredentials); n != 2 {
			t.Errorf("%d client_credentials calls, want 2", n)
		}
	})

	// The fake refuses a federated assertion it has seen, so a second
	// call passes only with what the issuer wrote since: the file is read
	// for every call, and sent as it is.
	t.Run("the file is read for every call", func(t *testing.T) {
		s, c, iss := startFederatedIdP(t)
		ep := Endpoint{TokenURL: s.V2TokenURL(), ClientID: fedApp, Scope: "api://x/.default"}
		file := filepath.Join(t.TempDir(), "token")
		writeToken(t, file, iss.Mint(fedSubject, time.Hour))
		if _, err := c.FederatedAssertion(ctx, ep, file); err != nil {
			t.Fatal(err)
		}
		_, err := c.FederatedAssertion(ctx, ep, file)
		wantRejected(t, err, 700027)
		writeToken(t, file, iss.Mint(fedSubject, time.Hour))
		if _, err := c.FederatedAssertion(ctx, ep, file); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
		// The issuer stopped rotating: the next call fails before the IdP.
		before := s.Calls()
		writeToken(t, file, iss.Mint(fedSubject, -time.Minute))
		_, err = c.FederatedAssertion(ctx, ep, file)
		var af *AssertionFileError
		if !errors.As(err, &af) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("err = %v, want an AssertionFileError saying expired", err)
		}
		if n := s.Calls(); n != before {
			t.Errorf("%d IdP calls for an expired file, want none", n-before)
		}
	})

	t.Run("the same token again, where the IdP allows it", func(t *testing.T) {
		s, c, iss := startFederatedIdP(t, fakeidp.WithFederatedReuse())
		ep := Endpoint{TokenURL: s.V2TokenURL(), ClientID: fedApp, Scope: "api://x/.default"}
		file := filepath.Join(t.TempDir(), "token")
		writeToken(t, file, iss.Mint(fedSubject, time.Hour))
		for i := range 3 {
			if _, err := c.FederatedAssertion(ctx, ep, file); err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
		}
	})

	t.Run("white space around the token, and a stale endpoint secret", func(t *testing.T) {
		s, c, iss := startFederatedIdP(t)
		// The fake refuses a call carrying a secret and an assertion.
		ep := Endpoint{TokenURL: s.V2TokenURL(), ClientID: fedApp, ClientSecret: "stale-secret", Scope: "api://x/.default"}
		file := filepath.Join(t.TempDir(), "token")
		writeToken(t, file, "\n  "+iss.Mint(fedSubject, time.Hour)+" \r\n\t")
		if _, err := c.FederatedAssertion(ctx, ep, file); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a subject the app does not trust", func(t *testing.T) {
		s, c, iss := startFederatedIdP(t)
		file := filepath.Join(t.TempDir(), "token")
		writeToken(t, file, iss.Mint("system:serviceaccount:payments:other", time.Hour))
		_, err := c.FederatedAssertion(ctx, Endpoint{TokenURL: s.V2TokenURL(), ClientID: fedApp, Scope: "api://x/.default"}, file)
		wantRejected(t, err, 70021)
		if e := Classify(err); e.Code != tokenbroker.CodeRejected || e.OAuth != tokenbroker.OAuthInvalidClient {
			t.Errorf("Classify = %+v, want 401 invalid_client", e)
		}
	})
}

// TestFederatedAssertionRequest checks the form sent, exactly.
func TestFederatedAssertionRequest(t *testing.T) {
	var got url.Values
	c, tokenURL := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got = r.PostForm
		if _, _, ok := r.BasicAuth(); ok {
			t.Error("Basic authentication sent with an assertion")
		}
		respond(200, "application/json", goodV2)(w, r)
	})
	jwt := testJWT(map[string]any{"exp": fixedNow.Add(time.Hour).Unix(), "iss": "https://issuer.test"})
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, jwt+"\n")
	ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: "s3cret", Scope: "api://x/.default"}
	if _, err := c.FederatedAssertion(context.Background(), ep, file); err != nil {
		t.Fatal(err)
	}
	want := url.Values{
		"grant_type":            {"client_credentials"},
		"client_id":             {"cid"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {jwt},
		"scope":                 {"api://x/.default"},
	}
	if got.Encode() != want.Encode() {
		t.Errorf("form = %v\nwant %v", got, want)
	}
}

// testJWT returns a compact JWS of claims with an arbitrary signature: the
// client checks the shape and exp, never the signature.
func testJWT(claims map[string]any) string {
	return jwtOf(`{"alg":"RS256","typ":"JWT","kid":"k1"}`, claims)
}

func jwtOf(header string, claims any) string {
	var payload string
	switch c := claims.(type) {
	case string:
		payload = c
	default:
		var b strings.Builder
		b.WriteString("{")
		first := true
		for k, v := range c.(map[string]any) {
			if !first {
				b.WriteString(",")
			}
			first = false
			if s, ok := v.(string); ok {
				fmt.Fprintf(&b, "%q:%q", k, s)
			} else {
				fmt.Fprintf(&b, "%q:%v", k, v)
			}
		}
		b.WriteString("}")
		payload = b.String()
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc([]byte("signature-bytes-not-checked"))
}

// TestFederatedAssertionFileRefused runs every way an assertion file can be
// unusable, and checks each is refused before any request, with an error
// that names the file and the fault, never the token, and that the broker
// classifies as the credential refused, not as the IdP failing.
func TestFederatedAssertionFileRefused(t *testing.T) {
	var calls atomic.Int64
	c, tokenURL := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		respond(200, "application/json", goodV2)(w, r)
	})
	ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", Scope: "api://x/.default"}
	dir := t.TempDir()
	exp := fixedNow.Add(time.Hour).Unix()
	valid := testJWT(map[string]any{"exp": exp, "sub": "system:serviceaccount:ns:sa"})
	parts := strings.Split(valid, ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

	tests := []struct {
		name     string
		contents *string // nil: no such file
		wantIn   string
	}{
		{"no such file", nil, "cannot be read: no such file or directory"},
		{"empty", ptr(""), "is empty"},
		{"white space only", ptr(" \n\t\r\n"), "is empty"},
		{"one part", ptr("not-a-jwt-at-all"), "1 dot-separated parts, want 3"},
		{"a JWE (five parts)", ptr(valid + ".x.y"), "5 dot-separated parts, want 3"},
		{"unsigned", ptr(parts[0] + "." + parts[1] + "."), "unsigned JWT"},
		{"signature not base64url", ptr(parts[0] + "." + parts[1] + ".sig+/=="), "signature is not base64url"},
		{"header not base64url", ptr("!!." + parts[1] + "." + parts[2]), "header is not a base64url JSON object"},
		{"header not JSON", ptr(enc("alg RS256") + "." + parts[1] + "." + parts[2]), "header is not a base64url JSON object"},
		{"payload not JSON", ptr(parts[0] + "." + enc("exp=1") + "." + parts[2]), "payload is not a base64url JSON object"},
		{"payload an array", ptr(jwtOf(`{"alg":"RS256"}`, `[1,2]`)), "payload is not a base64url JSON object"},
		{"payload null", ptr(jwtOf(`{"alg":"RS256"}`, `null`)), "payload is not a base64url JSON object"},
		{"no exp", ptr(testJWT(map[string]any{"sub": "x"})), "without an exp claim"},
		{"exp a string", ptr(jwtOf(`{"alg":"RS256"}`, fmt.Sprintf(`{"exp":"%d"}`, exp))), "exp claim is not a time"},
		{"exp null", ptr(jwtOf(`{"alg":"RS256"}`, `{"exp":null}`)), "exp claim is not a time"},
		{"exp absurd", ptr(jwtOf(`{"alg":"RS256"}`, `{"exp":1e300}`)), "exp claim is not a time"},
		{"expired an hour ago", ptr(testJWT(map[string]any{"exp": fixedNow.Add(-time.Hour).Unix()})), "expired JWT (exp 2023-11-14T21:13:20Z)"},
		{"expiring now", ptr(testJWT(map[string]any{"exp": fixedNow.Unix()})), "expired JWT"},
		{"over 64 KiB", ptr(strings.Repeat("a", 64<<10) + "." + parts[1] + "." + parts[2]), "too large"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, fmt.Sprintf("token%d", i))
			if tc.contents != nil {
				writeToken(t, file, *tc.contents)
			}
			tok, err := c.FederatedAssertion(context.Background(), ep, file)
			var af *AssertionFileError
			if !errors.As(err, &af) {
				t.Fatalf("got %v, %v; want an *AssertionFileError", tok, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "oauth: assertion file "+file+": ") || !strings.Contains(msg, tc.wantIn) {
				t.Errorf("error %q, want it to name %s and say %q", msg, file, tc.wantIn)
			}
			if tc.contents != nil {
				for _, p := range strings.Split(strings.TrimSpace(*tc.contents), ".") {
					if len(p) >= 8 && strings.Contains(msg+fmt.Sprintf("%#v", err), p) {
						t.Errorf("error %q quotes the file's contents", msg)
					}
				}
			}
			if !errors.Is(err, ErrInvalidArgument) {
				t.Error("not an ErrInvalidArgument: guard would count it against the IdP")
			}
			if tc.contents == nil && !errors.Is(err, fs.ErrNotExist) {
				t.Error("a missing file is not fs.ErrNotExist")
			}
			e := Classify(err)
			if e.Code != tokenbroker.CodeRejected || e.OAuth != tokenbroker.OAuthInvalidClient || !strings.Contains(e.Description, tc.wantIn) || strings.Contains(e.Description, dir) {
				t.Errorf("Classify = %+v, want 401 invalid_client saying %q without the path", e, tc.wantIn)
			}
			if o := OutcomeOf(err); o != OutcomeRejected {
				t.Errorf("OutcomeOf = %s, want rejected", o)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests sent for unusable files, want none", n)
	}

	// What passes, for contrast: the same checks on a good file, with a
	// fractional exp (a NumericDate may have one).
	for _, contents := range []string{valid, jwtOf(`{"alg":"ES256"}`, fmt.Sprintf(`{"exp":%d.5}`, fixedNow.Unix()))} {
		file := filepath.Join(dir, "good")
		writeToken(t, file, contents)
		if _, err := c.FederatedAssertion(context.Background(), ep, file); err != nil {
			t.Errorf("%v", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d requests for good files, want 2", n)
	}
}

func TestFederatedAssertionInvalidArguments(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, testJWT(map[string]any{"exp": time.Now().Add(time.Hour).Unix()}))
	c := NewClient(nil, 0)
	for _, tc := range []struct {
		name string
		ep   Endpoint
		file string
	}{
		{"no client ID", Endpoint{TokenURL: "https://login.example/t/oauth2/token"}, file},
		{"no token URL", Endpoint{ClientID: "cid"}, file},
		{"relative token URL", Endpoint{TokenURL: "/oauth2/token", ClientID: "cid"}, file},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.FederatedAssertion(context.Background(), tc.ep, tc.file)
			var af *AssertionFileError
			if !errors.Is(err, ErrInvalidArgument) || errors.As(err, &af) {
				t.Fatalf("err = %v, want an ErrInvalidArgument about the arguments", err)
			}
		})
	}
	_, err := c.FederatedAssertion(context.Background(), Endpoint{TokenURL: "https://login.example/t/oauth2/token", ClientID: "cid"}, "")
	var af *AssertionFileError
	if !errors.As(err, &af) || err.Error() != "oauth: assertion file: no path given" {
		t.Errorf("no path: err = %v", err)
	}
}

func ptr(s string) *string { return &s }
