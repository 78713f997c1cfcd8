package fakeidp_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

const (
	basicApp = "basic-app"
	postApp  = "post-app"
	// An id and a secret with every character RFC 6749 2.3.1's encoding is
	// there for: ':' (the Basic separator), '%', '+', a space, non-ASCII.
	oddApp    = "odd:app %+ü"
	oddSecret = "s:e c%r+et/é="
)

// basicHeader is RFC 6749 2.3.1's header, written out here rather than
// taken from the oauth package, so that the fake is checked against the
// RFC and not against the client it tests.
func basicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// postAuth posts form to tokenURL with an Authorization header (none when
// "").
func postAuth(t *testing.T, tokenURL, authorization string, form url.Values) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	_ = json.Unmarshal(data, &r.body)
	return r
}

func TestClientAuthMethods(t *testing.T) {
	s := start(t, fakeidp.WithBasicClient(basicApp, confSecret))
	s.AddPostClient(postApp, confSecret)
	s.AddBasicClient(oddApp, oddSecret)
	cc := func(kv ...string) url.Values {
		return form(append([]string{"grant_type", "client_credentials", "scope", scopeApp}, kv...)...)
	}
	tests := []struct {
		name   string
		auth   string
		form   url.Values
		status int
		code   string
		aadsts float64
	}{
		{"either: body", "", cc("client_id", confApp, "client_secret", confSecret), 200, "", 0},
		{"either: basic", basicHeader(confApp, confSecret), cc(), 200, "", 0},
		{"either: basic with client_id in the body too", basicHeader(confApp, confSecret), cc("client_id", confApp), 200, "", 0},
		{"either: basic, wrong secret", basicHeader(confApp, "wrong"), cc(), 401, "invalid_client", 7000215},
		{"basic only: basic", basicHeader(basicApp, confSecret), cc(), 200, "", 0},
		{"basic only: body", "", cc("client_id", basicApp, "client_secret", confSecret), 401, "invalid_client", 7000218},
		{"basic only: basic, wrong secret", basicHeader(basicApp, "wrong"), cc(), 401, "invalid_client", 7000215},
		{"post only: body", "", cc("client_id", postApp, "client_secret", confSecret), 200, "", 0},
		{"post only: basic", basicHeader(postApp, confSecret), cc("client_id", postApp), 401, "invalid_client", 7000218},
		{"reserved characters", basicHeader(oddApp, oddSecret), cc(), 200, "", 0},
		{"reserved characters not form-encoded", "Basic " + base64.StdEncoding.EncodeToString([]byte(oddApp+":"+oddSecret)), cc(), 401, "invalid_client", 0},
		{"not base64", "Basic !!!", cc(), 401, "invalid_client", 7000218},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte(confApp)), cc(), 401, "invalid_client", 7000218},
		{"bad escape", "Basic " + base64.StdEncoding.EncodeToString([]byte(confApp+":%zz")), cc(), 401, "invalid_client", 7000218},
		{"not basic", "Bearer " + confSecret, cc(), 401, "invalid_client", 7000218},
		{"two credentials", basicHeader(confApp, confSecret), cc("client_secret", confSecret), 400, "invalid_request", 90023},
		{"header and body disagree on the client", basicHeader(confApp, confSecret), cc("client_id", basicApp), 401, "invalid_client", 700016},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := postAuth(t, s.V2TokenURL(), tc.auth, tc.form)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status == 200 {
				at, _ := r.body["access_token"].(string)
				if !s.Valid(at) {
					t.Fatalf("no valid access token: %s", r.raw)
				}
				return
			}
			if r.body["error"] != tc.code {
				t.Errorf("error %v, want %s", r.body["error"], tc.code)
			}
			// Azure's shape: trace ids and error_codes, whatever the cause.
			codes, _ := r.body["error_codes"].([]any)
			if len(codes) != 1 || r.body["trace_id"] == nil || r.body["correlation_id"] == nil {
				t.Fatalf("not an Azure error body: %s", r.raw)
			}
			if tc.aadsts != 0 && codes[0] != tc.aadsts {
				t.Errorf("error_codes %v, want [%v]", codes, tc.aadsts)
			}
			if strings.Contains(r.raw, confSecret) || strings.Contains(r.raw, oddSecret) {
				t.Errorf("the error holds the secret: %s", r.raw)
			}
		})
	}
}

func TestClientAuthCounts(t *testing.T) {
	s := start(t, fakeidp.WithPostClient(postApp, confSecret))
	cc := form("grant_type", "client_credentials", "scope", scopeApp)
	postAuth(t, s.V2TokenURL(), basicHeader(postApp, confSecret), cc) // refused
	postAuth(t, s.V2TokenURL(), "", form("grant_type", "client_credentials", "scope", scopeApp, "client_id", postApp, "client_secret", confSecret))
	postAuth(t, s.V2TokenURL(), "", form("grant_type", "password", "client_id", publicApp, "scope", scopeV2, "username", user, "password", password)) // no secret
	if b, p := s.CallsWithAuth(fakeidp.AuthMethodBasic), s.CallsWithAuth(fakeidp.AuthMethodPost); b != 1 || p != 1 {
		t.Errorf("calls with basic %d, with post %d; want 1 and 1", b, p)
	}
	if n := s.Calls(); n != 3 {
		t.Errorf("calls %d, want 3", n)
	}
}

// A method-bound client's secret and refresh tokens work as any client's:
// the password and refresh_token grants through the header.
func TestBasicClientGrants(t *testing.T) {
	s := start(t, fakeidp.WithBasicClient(basicApp, confSecret))
	auth := basicHeader(basicApp, confSecret)
	r := postAuth(t, s.V1TokenURL(), auth, form("grant_type", "password", "resource", resource, "username", user, "password", password))
	rt, _ := r.body["refresh_token"].(string)
	if r.status != 200 || rt == "" {
		t.Fatalf("password grant: status %d: %s", r.status, r.raw)
	}
	r = postAuth(t, s.V1TokenURL(), auth, form("grant_type", "refresh_token", "resource", resource, "refresh_token", rt))
	if r.status != 200 {
		t.Fatalf("refresh grant: status %d: %s", r.status, r.raw)
	}
	if c := s.Claims(r.body["access_token"].(string)); c["appid"] != basicApp || c["sub"] != user {
		t.Errorf("claims %v", c)
	}
}
