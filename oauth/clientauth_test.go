package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// seen is one request as a token endpoint received it.
type seen struct {
	authorization string
	form          url.Values
}

func (s seen) basic() bool { return s.authorization != "" }

// recorder is a token endpoint that records every request and answers each
// with what answer returns for it.
type recorder struct {
	mu     sync.Mutex
	got    []seen
	answer func(seen) http.HandlerFunc
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	s := seen{authorization: r.Header.Get("Authorization"), form: r.PostForm}
	rc.mu.Lock()
	rc.got = append(rc.got, s)
	rc.mu.Unlock()
	rc.answer(s)(w, r)
}

func (rc *recorder) requests() []seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]seen(nil), rc.got...)
}

// styles returns "basic" or "post" for each request recorded.
func (rc *recorder) styles() []string {
	var out []string
	for _, s := range rc.requests() {
		switch {
		case s.basic():
			out = append(out, "basic")
		case s.form.Has("client_secret"):
			out = append(out, "post")
		default:
			out = append(out, "none")
		}
	}
	return out
}

// always answers every request with h.
func always(h http.HandlerFunc) func(seen) http.HandlerFunc {
	return func(seen) http.HandlerFunc { return h }
}

// postOnly is an IdP that does not read the Authorization header: Basic
// is a client without a secret, refused as Hydra refuses it.
func postOnly(s seen) http.HandlerFunc {
	if s.form.Get("client_secret") == "" {
		return respond(401, "application/json", `{"error":"invalid_client","error_description":"Client authentication failed."}`)
	}
	return respond(200, "application/json", goodV2)
}

// newRecorder returns a Client whose every request, to whatever host its
// URL names, reaches a server on 127.0.0.1 that records it. Tests use it
// for the Azure AD hosts, which must never be dialled.
func newRecorder(t *testing.T, answer func(seen) http.HandlerFunc) (*Client, *recorder, string) {
	t.Helper()
	rc := &recorder{answer: answer}
	ts := httptest.NewServer(rc)
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c := NewClient(&http.Client{Transport: tr}, 5*time.Second)
	c.now = func() time.Time { return fixedNow }
	return c, rc, ts.URL + "/oauth2/token"
}

func TestBasicAuthHeader(t *testing.T) {
	// The values are worked out by hand from RFC 6749 2.3.1: form-urlencode
	// each part (space is '+'), join with ':', base64.
	tests := []struct{ id, secret, want string }{
		{"cid", "sec", "Basic Y2lkOnNlYw=="},                           // cid:sec
		{"app:1", "p%w d+ü", "Basic YXBwJTNBMTpwJTI1dytkJTJCJUMzJUJD"}, // app%3A1:p%25w+d%2B%C3%BC
		{"ü id", "s:e:c%20", "Basic JUMzJUJDK2lkOnMlM0FlJTNBYyUyNTIw"}, // %C3%BC+id:s%3Ae%3Ac%2520
		{"a b", "x", "Basic YStiOng="},                                 // a+b:x
		{"~._-", "AZaz09", "Basic fi5fLTpBWmF6MDk="},                   // unreserved, as is
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			c, rc, tokenURL := newRecorder(t, always(respond(200, "application/json", goodV2)))
			ep := Endpoint{TokenURL: tokenURL, ClientID: tc.id, ClientSecret: tokenbroker.Secret(tc.secret), AuthStyle: AuthBasic}
			if _, err := c.ClientCredentials(context.Background(), ep); err != nil {
				t.Fatal(err)
			}
			got := rc.requests()[0]
			if got.authorization != tc.want {
				t.Errorf("Authorization %q, want %q", got.authorization, tc.want)
			}
			if got.form.Has("client_secret") {
				t.Error("the secret is in the body too")
			}
		})
	}
}

func TestAuthStyleBodies(t *testing.T) {
	const basicCID = "Basic Y2lkOmNsaWVudC1zM2NyZXQtdmFsdWU=" // cid:client-s3cret-value
	type call func(c *Client, ep Endpoint) error
	cc := func(c *Client, ep Endpoint) error {
		_, err := c.ClientCredentials(context.Background(), ep)
		return err
	}
	pw := func(c *Client, ep Endpoint) error {
		_, err := c.Password(context.Background(), ep, "alice", testPassword)
		return err
	}
	refresh := func(c *Client, ep Endpoint) error {
		_, err := c.Refresh(context.Background(), ep, testRefresh)
		return err
	}
	exchange := func(form url.Values) call {
		return func(c *Client, ep Endpoint) error { _, err := c.Exchange(context.Background(), ep, form); return err }
	}
	tests := []struct {
		name     string
		style    AuthStyle
		secret   tokenbroker.Secret
		call     call
		wantAuth string
		want     url.Values
	}{
		{"post: client credentials", AuthPost, testSecret, cc, "",
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {testSecret}, "scope": {"s"}}},
		{"basic: client credentials", AuthBasic, testSecret, cc, basicCID,
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "scope": {"s"}}},
		{"basic: password", AuthBasic, testSecret, pw, basicCID,
			url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {testPassword}, "client_id": {"cid"}, "scope": {"s"}}},
		{"basic: refresh", AuthBasic, testSecret, refresh, basicCID,
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {testRefresh}, "client_id": {"cid"}, "scope": {"s"}}},
		{"basic: another grant", AuthBasic, testSecret, exchange(url.Values{"grant_type": {"urn:custom"}}), basicCID,
			url.Values{"grant_type": {"urn:custom"}, "client_id": {"cid"}, "scope": {"s"}}},
		{"basic: public client", AuthBasic, "", refresh, "",
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {testRefresh}, "client_id": {"cid"}, "scope": {"s"}}},
		{"basic: a client assertion is left alone", AuthBasic, "",
			exchange(url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {ClientAssertionType}, "client_assertion": {"a.b.c"}}), "",
			url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {ClientAssertionType}, "client_assertion": {"a.b.c"}, "client_id": {"cid"}, "scope": {"s"}}},
		{"basic: the form's own secret is left alone", AuthBasic, testSecret,
			exchange(url.Values{"grant_type": {"client_credentials"}, "client_secret": {"form-secret"}}), "",
			url.Values{"grant_type": {"client_credentials"}, "client_secret": {"form-secret"}, "client_id": {"cid"}, "scope": {"s"}}},
		{"auto on an unknown IdP: basic first", AuthAuto, testSecret, cc, basicCID,
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "scope": {"s"}}},
		{"auto: public client", AuthAuto, "", pw, "",
			url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {testPassword}, "client_id": {"cid"}, "scope": {"s"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, rc, tokenURL := newRecorder(t, always(respond(200, "application/json", goodV2)))
			ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: tc.secret, Scope: "s", AuthStyle: tc.style}
			if err := tc.call(c, ep); err != nil {
				t.Fatal(err)
			}
			reqs := rc.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			if reqs[0].authorization != tc.wantAuth {
				t.Errorf("Authorization %q, want %q", reqs[0].authorization, tc.wantAuth)
			}
			if !reflect.DeepEqual(reqs[0].form, tc.want) {
				t.Errorf("form\n got %v\nwant %v", reqs[0].form, tc.want)
			}
		})
	}
}

func TestAuthAutoFallsBackOnceAndRemembers(t *testing.T) {
	c, rc, tokenURL := newRecorder(t, postOnly)
	ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret}
	for range 3 {
		if _, err := c.ClientCredentials(context.Background(), ep); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := rc.styles(), []string{"basic", "post", "post", "post"}; !reflect.DeepEqual(got, want) {
		t.Errorf("requests %v, want %v", got, want)
	}
	// The style is the endpoint's and the client's: another client of the
	// same endpoint finds out for itself.
	other := ep
	other.ClientID = "other"
	if _, err := c.ClientCredentials(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if got, want := rc.styles()[4:], []string{"basic", "post"}; !reflect.DeepEqual(got, want) {
		t.Errorf("another client's requests %v, want %v", got, want)
	}
	// A fresh Client knows nothing.
	fresh := NewClient(c.hc, time.Second)
	if _, err := fresh.ClientCredentials(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	if got, want := rc.styles()[6:], []string{"basic", "post"}; !reflect.DeepEqual(got, want) {
		t.Errorf("a new Client's requests %v, want %v", got, want)
	}
}

func TestAuthAutoRemembersBasic(t *testing.T) {
	c, rc, tokenURL := newRecorder(t, always(respond(200, "application/json", goodV2)))
	ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret}
	if _, err := c.ClientCredentials(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	if s, ok := c.styles.get(styleKey(tokenURL, "cid")); !ok || s != AuthBasic {
		t.Fatalf("remembered %v %v, want basic", s, ok)
	}
	// Once known, a 401 is an answer, not a reason to try the body.
	rc.answer = always(respond(401, "application/json", `{"error":"invalid_client"}`))
	_, err := c.ClientCredentials(context.Background(), ep)
	var re *RetrieveError
	if !errors.As(err, &re) || re.StatusCode != 401 {
		t.Fatalf("err = %v, want the 401", err)
	}
	if got, want := rc.styles(), []string{"basic", "basic"}; !reflect.DeepEqual(got, want) {
		t.Errorf("requests %v, want %v", got, want)
	}
}

// Only an answer that refuses the client leads to a second request, and
// only an answer that got past client authentication is remembered.
func TestAuthAutoWhatFallsBack(t *testing.T) {
	invalidClient := respond(401, "application/json", `{"error":"invalid_client"}`)
	tests := []struct {
		name     string
		answer   func(seen) http.HandlerFunc
		want     []string // the styles of the first call's requests
		remember AuthStyle
		wantErr  string
	}{
		{"401 invalid_client", postOnly, []string{"basic", "post"}, AuthPost, ""},
		{"400 invalid_client", func(s seen) http.HandlerFunc {
			if s.basic() {
				return respond(400, "application/json", `{"error":"invalid_client"}`)
			}
			return respond(200, "application/json", goodV2)
		}, []string{"basic", "post"}, AuthPost, ""},
		{"401 without a body", func(s seen) http.HandlerFunc {
			if s.basic() {
				return respond(401, "text/html", "<html>no</html>")
			}
			return respond(200, "application/json", goodV2)
		}, []string{"basic", "post"}, AuthPost, ""},
		{"both refused: nothing remembered", always(invalidClient), []string{"basic", "post"}, AuthAuto, "invalid_client"},
		{"body gets past the client, grant refused", func(s seen) http.HandlerFunc {
			if s.basic() {
				return invalidClient
			}
			return respond(400, "application/json", `{"error":"invalid_grant"}`)
		}, []string{"basic", "post"}, AuthPost, "invalid_grant"},
		{"invalid_grant to basic", always(respond(400, "application/json", `{"error":"invalid_grant"}`)), []string{"basic"}, AuthBasic, "invalid_grant"},
		{"500", always(respond(500, "text/html", "<html>down</html>")), []string{"basic"}, AuthAuto, "server_error"},
		{"503", always(respond(503, "application/json", `{"error":"invalid_client"}`)), []string{"basic"}, AuthAuto, "invalid_client"},
		{"429", always(respond(429, "", "", "Retry-After", "5")), []string{"basic"}, AuthAuto, "temporarily_unavailable"},
		{"garbage 200", always(respond(200, "text/html", "<html>hi</html>")), []string{"basic"}, AuthAuto, "unusable"},
		{"invalid_request", always(respond(400, "application/json", `{"error":"invalid_request"}`)), []string{"basic"}, AuthAuto, "invalid_request"},
		{"azure read the secret: wrong", always(respond(401, "application/json", `{"error":"invalid_client","error_codes":[7000215]}`)), []string{"basic"}, AuthAuto, "invalid_client"},
		{"azure read the secret: expired", always(respond(401, "application/json", `{"error":"invalid_client","error_codes":[7000222]}`)), []string{"basic"}, AuthAuto, "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, rc, tokenURL := newRecorder(t, tc.answer)
			ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret}
			_, err := c.ClientCredentials(context.Background(), ep)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %s", err, tc.wantErr)
			}
			if got := rc.styles(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("requests %v, want %v", got, tc.want)
			}
			s, ok := c.styles.get(styleKey(tokenURL, "cid"))
			if !ok {
				s = AuthAuto
			}
			if s != tc.remember {
				t.Errorf("remembered %v, want %v", s, tc.remember)
			}
		})
	}
}

func TestAuthAutoAzureUsesTheBody(t *testing.T) {
	hosts := []string{
		"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
		"login.partner.microsoftonline.cn", "login.microsoftonline.de",
		"contoso.ciamlogin.com", "contoso.b2clogin.com", "LOGIN.MicrosoftOnline.com", "login.microsoftonline.com:443",
		"login.microsoftonline.com.",
	}
	for _, host := range hosts {
		t.Run(host, func(t *testing.T) {
			// Refused, so that a fallback, were there one, would show.
			c, rc, _ := newRecorder(t, always(respond(401, "application/json", `{"error":"invalid_client"}`)))
			ep := Endpoint{TokenURL: "http://" + host + "/tenant/oauth2/v2.0/token", ClientID: "cid", ClientSecret: testSecret, Scope: "s"}
			if _, err := c.ClientCredentials(context.Background(), ep); err == nil {
				t.Fatal("no error")
			}
			reqs := rc.requests()
			if len(reqs) != 1 || reqs[0].basic() || reqs[0].form.Get("client_secret") != testSecret {
				t.Fatalf("requests %v (%d), want one with the secret in the body", rc.styles(), len(reqs))
			}
		})
	}
	// Names that only look like Azure AD's are probed like any IdP.
	for _, host := range []string{"login.microsoftonline.com.example.net", "ciamlogin.com", "b2clogin.com.example.net", "evilb2clogin.com", "microsoftonline.com"} {
		t.Run(host, func(t *testing.T) {
			c, rc, _ := newRecorder(t, postOnly)
			ep := Endpoint{TokenURL: "http://" + host + "/oauth2/token", ClientID: "cid", ClientSecret: testSecret}
			if _, err := c.ClientCredentials(context.Background(), ep); err != nil {
				t.Fatal(err)
			}
			if got, want := rc.styles(), []string{"basic", "post"}; !reflect.DeepEqual(got, want) {
				t.Errorf("requests %v, want %v", got, want)
			}
		})
	}
}

func TestAuthAutoFollowsDiscovery(t *testing.T) {
	tests := []struct {
		methods []string
		want    []string // the styles of two calls' requests, against postOnly
	}{
		{[]string{MethodPost, MethodBasic}, []string{"post", "post"}},
		// Both listed: the first, then the other once, since the server's
		// list says what it takes, not how this client is registered.
		{[]string{MethodBasic, MethodPost}, []string{"basic", "post", "post"}},
		{[]string{"private_key_jwt", MethodPost, MethodBasic}, []string{"post", "post"}},
		{[]string{"none", "private_key_jwt", MethodBasic}, []string{"basic", "basic"}},
		{[]string{"private_key_jwt"}, []string{"basic", "post", "post"}}, // says nothing of secrets: found out
		{[]string{}, []string{"basic", "post", "post"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.methods), func(t *testing.T) {
			c, rc, tokenURL := newRecorder(t, postOnly)
			ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret, AuthMethods: tc.methods}
			for range 2 {
				c.ClientCredentials(context.Background(), ep)
			}
			if got := rc.styles(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("requests %v, want %v", got, tc.want)
			}
		})
	}
	// Azure AD's own host wins over its discovery document, which lists
	// client_secret_basic too.
	c, rc, _ := newRecorder(t, always(respond(200, "application/json", goodV2)))
	ep := Endpoint{TokenURL: "http://login.microsoftonline.com/t/oauth2/v2.0/token", ClientID: "cid", ClientSecret: testSecret, AuthMethods: []string{MethodBasic}}
	c.ClientCredentials(context.Background(), ep)
	if got := rc.styles(); !reflect.DeepEqual(got, []string{"post"}) {
		t.Errorf("Azure AD with discovery: requests %v, want [post]", got)
	}
}

// An explicit style is used as given, whatever the host or discovery says,
// and never falls back.
func TestExplicitStyleWins(t *testing.T) {
	c, rc, _ := newRecorder(t, always(respond(401, "application/json", `{"error":"invalid_client"}`)))
	basic := Endpoint{TokenURL: "http://login.microsoftonline.com/t/oauth2/token", ClientID: "cid", ClientSecret: testSecret, AuthStyle: AuthBasic, AuthMethods: []string{MethodPost}}
	post := basic
	post.TokenURL, post.AuthStyle, post.AuthMethods = "http://idp.example/oauth2/token", AuthPost, []string{MethodBasic}
	c.ClientCredentials(context.Background(), basic)
	c.ClientCredentials(context.Background(), post)
	if got := rc.styles(); !reflect.DeepEqual(got, []string{"basic", "post"}) {
		t.Errorf("requests %v, want [basic post]", got)
	}
}

func TestUnknownAuthStyle(t *testing.T) {
	c, rc, tokenURL := newRecorder(t, always(respond(200, "application/json", goodV2)))
	_, err := c.ClientCredentials(context.Background(), Endpoint{TokenURL: tokenURL, ClientSecret: testSecret, AuthStyle: 7})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("err = %v, want ErrInvalidArgument", err)
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests", n)
	}
	if s := AuthStyle(7).String(); s != "AuthStyle(7)" {
		t.Errorf("String %q", s)
	}
	if AuthBasic.String() != MethodBasic || AuthPost.String() != MethodPost || AuthAuto.String() != "auto" {
		t.Error("String names")
	}
}

// An IdP that echoes the request, header included, in its error must not
// get the secret or the Basic credentials into the error, in either style.
func TestClientAuthSecretsNotInErrors(t *testing.T) {
	echo := func(s seen) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			fmt.Fprintf(w, `{"error":"invalid_client","error_description":%q,"error_uri":%q}`,
				"got "+s.authorization+" and "+s.form.Encode(), "https://x/?"+s.form.Get("client_secret"))
		}
	}
	c, _, tokenURL := newRecorder(t, echo)
	basic := strings.TrimPrefix(basicAuth("cid", testSecret), "Basic ")
	for _, style := range []AuthStyle{AuthBasic, AuthPost, AuthAuto} {
		ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret, AuthStyle: style}
		_, err := c.ClientCredentials(context.Background(), ep)
		var re *RetrieveError
		if !errors.As(err, &re) {
			t.Fatalf("%v: err = %v", style, err)
		}
		for _, dump := range []string{fmt.Sprintf("%v %+v %#v", err, err, err), re.Description, re.ErrorURI} {
			if strings.Contains(dump, testSecret) || strings.Contains(dump, basic) {
				t.Errorf("%v: error holds the secret: %s", style, dump)
			}
		}
		if !strings.Contains(re.Description, "[redacted]") {
			t.Errorf("%v: nothing redacted in %q: the echo did not happen", style, re.Description)
		}
	}
}

// Concurrent first calls may each find out, but every one gets its token
// and the Client ends up knowing.
func TestAuthAutoConcurrent(t *testing.T) {
	c, rc, tokenURL := newRecorder(t, postOnly)
	ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := c.ClientCredentials(context.Background(), ep)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	before := len(rc.requests())
	if before < 17 || before > 32 {
		t.Errorf("%d requests for 16 calls", before)
	}
	c.ClientCredentials(context.Background(), ep)
	if got := rc.styles()[before:]; !reflect.DeepEqual(got, []string{"post"}) {
		t.Errorf("after: %v, want [post]", got)
	}
}

func TestAuthStylesBounded(t *testing.T) {
	var a authStyles
	for i := range maxStyles + 10 {
		a.set(styleKey("https://idp/token", fmt.Sprint(i)), AuthPost)
	}
	if n := len(a.m); n != maxStyles {
		t.Errorf("%d entries, want %d", n, maxStyles)
	}
	if s, ok := a.get(styleKey("https://idp/token", fmt.Sprint(maxStyles+9))); !ok || s != AuthPost {
		t.Error("the latest entry is missing")
	}
}

// Against the fake IdP: a Basic-only client (Hydra's default) takes one
// request, a body-only one two the first time and one after, and a wrong
// secret at an IdP that reads both (Azure AD behind a host not known to be
// Azure's) one, since Azure says it read the secret.
func TestAuthAutoAgainstFakeIdP(t *testing.T) {
	const scope = "https://graph.microsoft.com/.default"
	idp, err := fakeidp.Start(
		fakeidp.WithBasicClient("basic-app", testSecret),
		fakeidp.WithPostClient("post-app", testSecret),
		fakeidp.WithClient("either-app", testSecret),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	c := NewClient(nil, 5*time.Second)
	ep := func(id string, secret tokenbroker.Secret) Endpoint {
		return Endpoint{TokenURL: idp.V2TokenURL(), ClientID: id, ClientSecret: secret, Scope: scope}
	}
	calls := func(wantBasic, wantPost int64) {
		t.Helper()
		if b, p := idp.CallsWithAuth(fakeidp.AuthMethodBasic), idp.CallsWithAuth(fakeidp.AuthMethodPost); b != wantBasic || p != wantPost {
			t.Errorf("calls with basic %d, post %d; want %d, %d", b, p, wantBasic, wantPost)
		}
	}
	for range 2 {
		tok, err := c.ClientCredentials(context.Background(), ep("basic-app", testSecret))
		if err != nil || !idp.Valid(tok.AccessToken) {
			t.Fatalf("basic-app: %v", err)
		}
	}
	calls(2, 0)
	for range 2 {
		tok, err := c.ClientCredentials(context.Background(), ep("post-app", testSecret))
		if err != nil || !idp.Valid(tok.AccessToken) {
			t.Fatalf("post-app: %v", err)
		}
	}
	calls(3, 2)
	_, err = c.ClientCredentials(context.Background(), ep("either-app", "wrong"))
	var re *RetrieveError
	if !errors.As(err, &re) || !re.HasErrorCode(7000215) {
		t.Fatalf("err = %v, want AADSTS7000215", err)
	}
	calls(4, 2)
}
