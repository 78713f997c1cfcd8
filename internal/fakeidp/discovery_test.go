package fakeidp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/discovery"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// getDocument GETs url and decodes the JSON object it answers.
func getDocument(t *testing.T, url string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var doc map[string]any
	_ = json.Unmarshal(data, &doc)
	return resp.StatusCode, doc, resp.Header
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestDiscoveryDocuments(t *testing.T) {
	s := start(t)
	for _, tc := range []struct{ name, url, issuer string }{
		{"azure v2", s.V2Issuer() + "/.well-known/openid-configuration", s.URL() + "/" + fakeidp.DefaultTenant + "/v2.0"},
		{"generic", s.URL() + "/.well-known/openid-configuration", s.URL() + "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, doc, h := getDocument(t, tc.url)
			if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d, content type %q", status, h.Get("Content-Type"))
			}
			want := map[string]any{
				"issuer":                        tc.issuer,
				"token_endpoint":                s.V2TokenURL(),
				"device_authorization_endpoint": s.URL() + "/" + fakeidp.DefaultTenant + "/oauth2/v2.0/devicecode",
			}
			for k, v := range want {
				if doc[k] != v {
					t.Errorf("%s = %v, want %v", k, doc[k], v)
				}
			}
			if got := strs(doc["token_endpoint_auth_methods_supported"]); !reflect.DeepEqual(got, []string{"client_secret_post", "private_key_jwt", "client_secret_basic"}) {
				t.Errorf("auth methods %v", got)
			}
			if got := strs(doc["grant_types_supported"]); !reflect.DeepEqual(got, []string{"password", "client_credentials", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"}) {
				t.Errorf("grant types %v", got)
			}
		})
	}
	if s.DeviceAuthorizationURL() != s.URL()+"/"+fakeidp.DefaultTenant+"/oauth2/v2.0/devicecode" {
		t.Errorf("DeviceAuthorizationURL %s", s.DeviceAuthorizationURL())
	}
	if n := s.DiscoveryCalls(); n != 2 {
		t.Errorf("DiscoveryCalls = %d, want 2", n)
	}
	if n := s.Calls(); n != 0 {
		t.Errorf("token Calls = %d, want 0", n)
	}
}

func TestDiscoveryAuthMethods(t *testing.T) {
	s := start(t, fakeidp.WithAuthMethods(fakeidp.AuthMethodBasic, fakeidp.AuthMethodPost))
	methods := func() any {
		_, doc, _ := getDocument(t, s.V2Issuer()+"/.well-known/openid-configuration")
		return doc["token_endpoint_auth_methods_supported"]
	}
	if got := strs(methods()); !reflect.DeepEqual(got, []string{"client_secret_basic", "client_secret_post"}) {
		t.Errorf("WithAuthMethods: %v", got)
	}
	s.SetAuthMethods(fakeidp.AuthMethodJWT)
	if got := strs(methods()); !reflect.DeepEqual(got, []string{"private_key_jwt"}) {
		t.Errorf("SetAuthMethods: %v", got)
	}
	s.SetAuthMethods()
	if got := methods(); got != nil {
		t.Errorf("no methods: the field is %v, want it left out", got)
	}
}

func TestDiscoveryRefusals(t *testing.T) {
	s := start(t)
	status, doc, _ := getDocument(t, s.URL()+"/other-tenant/v2.0/.well-known/openid-configuration")
	if status != 400 || doc["error"] != "invalid_tenant" {
		t.Errorf("another tenant: status %d, %v", status, doc)
	}
	resp, err := http.Post(s.V2Issuer()+"/.well-known/openid-configuration", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", resp.StatusCode)
	}
}

// A Server served on a listener of its own names itself by the request's
// host, and answers 503 once closed.
func TestDiscoveryOnOwnListener(t *testing.T) {
	s := fakeidp.New()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	wellKnown := ts.URL + "/" + s.Tenant() + "/v2.0/.well-known/openid-configuration"
	status, doc, _ := getDocument(t, wellKnown)
	if status != 200 || doc["issuer"] != ts.URL+"/"+s.Tenant()+"/v2.0" || doc["token_endpoint"] != ts.URL+"/"+s.Tenant()+"/oauth2/v2.0/token" {
		t.Errorf("status %d, document %v", status, doc)
	}
	s.Close()
	if status, _, _ := getDocument(t, wellKnown); status != http.StatusServiceUnavailable {
		t.Errorf("after Close: status %d, want 503", status)
	}
}

func TestFailDiscovery(t *testing.T) {
	s := start(t)
	s.FailDiscovery(fakeidp.FailHTML(503), 1)
	s.Fail(fakeidp.FailHTML(500), 1) // the token endpoints' queue, left alone
	wellKnown := s.V2Issuer() + "/.well-known/openid-configuration"
	status, _, h := getDocument(t, wellKnown)
	if status != 503 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("scripted failure: status %d, %q", status, h.Get("Content-Type"))
	}
	if status, doc, _ := getDocument(t, wellKnown); status != 200 || doc["issuer"] != s.V2Issuer() {
		t.Errorf("after the failure: status %d", status)
	}
	s.FailDiscovery(fakeidp.FailStatus(404, "", ""), -1)
	for range 2 {
		if status, _, _ := getDocument(t, wellKnown); status != 404 {
			t.Errorf("until cleared: status %d", status)
		}
	}
	s.ClearDiscoveryFailures()
	if status, _, _ := getDocument(t, wellKnown); status != 200 {
		t.Errorf("cleared: status %d", status)
	}
	if n := s.DiscoveryCalls(); n != 5 {
		t.Errorf("DiscoveryCalls = %d, want 5", n)
	}
	// The token endpoints' failure is still queued, for the next token call.
	r := post(t, s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret, "scope", scopeApp))
	if r.status != 500 {
		t.Errorf("token call: status %d, want the queued 500", r.status)
	}
}

// The documents pass the discovery package's checks, and what they say of
// client authentication gets a method-bound client its token in one call.
func TestDiscoveryWithClients(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []fakeidp.Option
		client  string
		basic   int64
		post    int64
		generic bool
	}{
		{"post first (Azure's order), post client", []fakeidp.Option{fakeidp.WithPostClient("app", confSecret)}, "app", 0, 1, false},
		{"basic first, basic client", []fakeidp.Option{fakeidp.WithBasicClient("app", confSecret), fakeidp.WithAuthMethods(fakeidp.AuthMethodBasic, fakeidp.AuthMethodPost)}, "app", 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.opts...)
			issuer := s.V2Issuer()
			if tc.generic {
				issuer = strings.TrimSuffix(s.Issuer(), "/")
			}
			doc, err := discovery.Fetch(context.Background(), nil, issuer)
			if err != nil {
				t.Fatal(err)
			}
			if doc.TokenEndpoint != s.V2TokenURL() || doc.DeviceAuthorizationEndpoint != s.DeviceAuthorizationURL() {
				t.Errorf("document %+v", doc)
			}
			ep := oauth.Endpoint{TokenURL: doc.TokenEndpoint, ClientID: tc.client, ClientSecret: confSecret, Scope: scopeApp, AuthMethods: doc.TokenEndpointAuthMethods}
			tok, err := oauth.NewClient(nil, 0).ClientCredentials(context.Background(), ep)
			if err != nil || !s.Valid(tok.AccessToken) {
				t.Fatalf("token: %v", err)
			}
			if b, p := s.CallsWithAuth(fakeidp.AuthMethodBasic), s.CallsWithAuth(fakeidp.AuthMethodPost); b != tc.basic || p != tc.post {
				t.Errorf("calls with basic %d, post %d; want %d, %d", b, p, tc.basic, tc.post)
			}
		})
	}
}
