package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokenbroker/tokenbroker/discovery"
)

// idp is a discovery endpoint on 127.0.0.1 that counts requests and
// answers each as its handler says, given its own base URL.
type idp struct {
	url     string
	fetches atomic.Int64
	handler atomic.Pointer[func(base string, w http.ResponseWriter, r *http.Request)]
}

func newIdP(t *testing.T, h func(base string, w http.ResponseWriter, r *http.Request)) *idp {
	t.Helper()
	p := &idp{}
	p.set(h)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		(*p.handler.Load())(p.url, w, r)
	}))
	t.Cleanup(ts.Close)
	p.url = ts.URL
	return p
}

func (p *idp) set(h func(base string, w http.ResponseWriter, r *http.Request)) { p.handler.Store(&h) }

// serve answers with status, content type and body, wherever asked.
func serve(status int, contentType, body string) func(string, http.ResponseWriter, *http.Request) {
	return func(_ string, w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		} else {
			w.Header()["Content-Type"] = nil // no header, not a sniffed one
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// document answers at WellKnownPath under path with a document whose
// issuer is base+issuerPath, built from the fields given as JSON
// fragments; 404 elsewhere.
func document(path, issuerPath string, fields ...string) func(string, http.ResponseWriter, *http.Request) {
	return func(base string, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != path+discovery.WellKnownPath {
			http.NotFound(w, r)
			return
		}
		all := append([]string{fmt.Sprintf(`"issuer":%q`, base+issuerPath)}, fields...)
		body := strings.ReplaceAll("{"+strings.Join(all, ",")+"}", "BASE", base)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, body)
	}
}

var goodFields = []string{
	`"token_endpoint":"BASE/t/oauth2/v2.0/token"`,
	`"device_authorization_endpoint":"BASE/t/oauth2/v2.0/devicecode"`,
	`"token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_basic","client_secret_post"]`,
	`"grant_types_supported":["client_credentials","refresh_token"]`,
	`"scopes_supported":["openid","offline_access"]`,
	`"jwks_uri":"BASE/keys"`,
	`"response_types_supported":["code"]`,
}

func TestFetchGoodDocument(t *testing.T) {
	p := newIdP(t, document("/t/v2.0", "/t/v2.0", goodFields...))
	doc, err := discovery.Fetch(context.Background(), nil, p.url+"/t/v2.0")
	if err != nil {
		t.Fatal(err)
	}
	want := &discovery.Document{
		Issuer:                      p.url + "/t/v2.0",
		TokenEndpoint:               p.url + "/t/oauth2/v2.0/token",
		DeviceAuthorizationEndpoint: p.url + "/t/oauth2/v2.0/devicecode",
		TokenEndpointAuthMethods:    []string{"private_key_jwt", "client_secret_basic", "client_secret_post"},
		GrantTypes:                  []string{"client_credentials", "refresh_token"},
		Scopes:                      []string{"openid", "offline_access"},
	}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("document\n got %+v\nwant %+v", doc, want)
	}
}

func TestFetchMinimalDocument(t *testing.T) {
	p := newIdP(t, document("", "", `"token_endpoint":"BASE/token"`))
	doc, err := discovery.Fetch(context.Background(), nil, p.url)
	if err != nil {
		t.Fatal(err)
	}
	if doc.TokenEndpoint != p.url+"/token" || doc.DeviceAuthorizationEndpoint != "" || doc.TokenEndpointAuthMethods != nil || doc.GrantTypes != nil || doc.Scopes != nil {
		t.Errorf("document %+v", doc)
	}
}

// One trailing slash, on either side, is the one difference tolerated.
func TestFetchIssuerTrailingSlash(t *testing.T) {
	tests := []struct {
		name                 string
		configured, docIssue string // paths after the base URL
		ok                   bool
	}{
		{"same", "/realms/a", "/realms/a", true},
		{"configured with slash", "/realms/a/", "/realms/a", true},
		{"document with slash", "/realms/a", "/realms/a/", true},
		{"root, document with slash (Hydra)", "", "/", true},
		{"root, both with slash", "/", "/", true},
		{"two slashes", "/realms/a", "/realms/a//", false},
		{"other case", "/realms/a", "/Realms/a", false},
		{"other path", "/realms/a", "/realms/b", false},
		{"prefix", "/realms/a", "/realms", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wellKnownAt := strings.TrimSuffix(tc.configured, "/")
			p := newIdP(t, document(wellKnownAt, tc.docIssue, `"token_endpoint":"BASE/token"`))
			_, err := discovery.Fetch(context.Background(), nil, p.url+tc.configured)
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "the document is issuer")) {
				t.Fatalf("err = %v, want an issuer mismatch", err)
			}
		})
	}
}

func TestFetchRejects(t *testing.T) {
	huge := `{"token_endpoint":"x","pad":"` + strings.Repeat("a", discovery.MaxBody) + `"}`
	tests := []struct {
		name    string
		handler func(string, http.ResponseWriter, *http.Request)
		want    string
	}{
		{"another issuer", func(base string, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"issuer":"https://login.example.net/evil","token_endpoint":"https://login.example.net/token"}`)
		}, `the document is issuer "https://login.example.net/evil"'s`},
		{"no issuer", serve(200, "application/json", `{"token_endpoint":"https://x/token"}`), "the document has no issuer"},
		{"no token_endpoint", document("", "", `"grant_types_supported":["password"]`), "the document has no token_endpoint"},
		{"empty token_endpoint", document("", "", `"token_endpoint":""`), "the document has no token_endpoint"},
		{"token_endpoint relative", document("", "", `"token_endpoint":"/token"`), `token_endpoint "/token" is not an absolute http(s) URL`},
		{"token_endpoint plain http elsewhere", document("", "", `"token_endpoint":"http://idp.example.net/token"`), `token_endpoint "http://idp.example.net/token" is plain http on a host that is not loopback`},
		{"token_endpoint another scheme", document("", "", `"token_endpoint":"ftp://idp.example.net/token"`), "is not an absolute http(s) URL"},
		{"token_endpoint with user info", document("", "", `"token_endpoint":"https://u:p@idp.example.net/token"`), "has user info or a fragment"},
		{"token_endpoint wrong type", document("", "", `"token_endpoint":42`), "the document's token_endpoint has the wrong type"},
		{"auth methods wrong type", document("", "", `"token_endpoint":"BASE/t"`, `"token_endpoint_auth_methods_supported":"client_secret_basic"`), "the document's token_endpoint_auth_methods_supported has the wrong type"},
		{"device endpoint plain http elsewhere", document("", "", `"token_endpoint":"BASE/t"`, `"device_authorization_endpoint":"http://idp.example.net/device"`), "device_authorization_endpoint"},
		{"html", serve(200, "text/html; charset=utf-8", "<!DOCTYPE html><html><body>Sign in</body></html>"), `content type "text/html", want application/json`},
		{"no content type", serve(200, "", `{}`), `content type "", want application/json`},
		{"html labelled json", serve(200, "application/json", "<html></html>"), "the document is not a JSON object"},
		{"json array", serve(200, "application/json", `[{"issuer":"x"}]`), "the document is not a JSON object"},
		{"json null", serve(200, "application/json", `null`), "the document is not a JSON object"},
		{"truncated", serve(200, "application/json", `{"issuer":"x","token_`), "the document is not valid JSON"},
		{"trailing garbage", serve(200, "application/json", `{"issuer":"x"} {}`), "the document is not valid JSON"},
		{"empty", serve(200, "application/json", ``), "the document is not a JSON object"},
		{"404", serve(404, "text/html", "<html>Not Found</html>"), "answered status 404, want 200"},
		{"500 json", serve(500, "application/json", `{"error":"server_error"}`), "answered status 500, want 200"},
		{"204", serve(204, "application/json", ``), "answered status 204, want 200"},
		{"redirect", func(base string, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		}, "answered status 302, want 200"},
		{"oversized", serve(200, "application/json", huge), fmt.Sprintf("the document is over %d bytes", discovery.MaxBody)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newIdP(t, tc.handler)
			doc, err := discovery.Fetch(context.Background(), nil, p.url)
			if err == nil {
				t.Fatalf("no error; document %+v", doc)
			}
			checkError(t, err, p.url, tc.want)
		})
	}
}

// checkError checks err is one *Error line naming issuer and saying want.
func checkError(t *testing.T, err error, issuer, want string) {
	t.Helper()
	var de *discovery.Error
	if !errors.As(err, &de) || de.Issuer != issuer {
		t.Fatalf("err = %#v, want a *discovery.Error for %s", err, issuer)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "discovery: issuer "+issuer+": ") || !strings.Contains(msg, want) {
		t.Errorf("err = %q, want it to name the issuer and say %q", msg, want)
	}
	if strings.ContainsAny(msg, "\r\n") || len(msg) > 400 {
		t.Errorf("err is not one short line: %q", msg)
	}
}

func TestFetchBadIssuer(t *testing.T) {
	tests := []struct{ issuer, safe, want string }{
		{"http://idp.example.net/realms/a", "http://idp.example.net/realms/a", "not an absolute https URL"},
		{"/realms/a", "/realms/a", "not an absolute https URL"},
		{"https://idp.example.net/a?x=1", "https://idp.example.net/a", "no user info, query or fragment"},
		{"https://idp.example.net/a#f", "https://idp.example.net/a", "no user info, query or fragment"},
		{"https://admin:hunter2@idp.example.net/a", "https://idp.example.net/a", "no user info, query or fragment"},
		{"", "(unparsable)", "not a URL"},
		{"https://idp.example.net/%zz", "(unparsable)", "not a URL"},
	}
	for _, tc := range tests {
		t.Run(tc.issuer, func(t *testing.T) {
			_, err := discovery.Fetch(context.Background(), nil, tc.issuer)
			if err == nil {
				t.Fatal("no error")
			}
			checkError(t, err, tc.safe, tc.want)
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error holds the password: %v", err)
			}
		})
	}
}

func TestFetchUnreachable(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	base := ts.URL
	ts.Close()
	_, err := discovery.Fetch(context.Background(), nil, base)
	checkError(t, err, base, "cannot fetch "+base+discovery.WellKnownPath+": ")
	var de *discovery.Error
	if errors.As(err, &de); de.Err == nil {
		t.Error("no underlying error")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := newIdP(t, document("", "", `"token_endpoint":"BASE/token"`))
	_, err = discovery.Fetch(ctx, nil, p.url)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// Fetch uses the client it is given, redirects and all.
func TestFetchWithClient(t *testing.T) {
	p := newIdP(t, nil)
	p.set(func(base string, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old"+discovery.WellKnownPath {
			http.Redirect(w, r, base+discovery.WellKnownPath, http.StatusMovedPermanently)
			return
		}
		document("", "/old", `"token_endpoint":"BASE/token"`)(base, w, r)
	})
	if _, err := discovery.Fetch(context.Background(), nil, p.url+"/old"); err == nil || !strings.Contains(err.Error(), "status 301") {
		t.Fatalf("default client: err = %v, want the redirect refused", err)
	}
	if _, err := discovery.Fetch(context.Background(), &http.Client{}, p.url+"/old"); err != nil {
		t.Fatalf("a client that follows redirects: %v", err)
	}
}
