package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// fixedNow is the local clock of every test client.
var fixedNow = time.Unix(1_700_000_000, 0)

const (
	testPassword = "hunter2-Pa55word!"
	testSecret   = "client-s3cret-value"
	testRefresh  = "0.ARrefresh-token-value"
)

// newTestClient returns a client on fixedNow and a server answering every
// request with h.
func newTestClient(t *testing.T, h http.HandlerFunc) (*Client, string) {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	c := NewClient(ts.Client(), 5*time.Second)
	c.now = func() time.Time { return fixedNow }
	return c, ts.URL + "/tenant/oauth2/token"
}

// respond returns a handler that answers with status, content type and body.
func respond(status int, contentType, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const goodV2 = `{"token_type":"Bearer","scope":"api://x/.default","expires_in":3599,"ext_expires_in":3599,"access_token":"AT"}`

func TestFormBodyPerGrant(t *testing.T) {
	type captured struct {
		method, path, contentType, accept, rawQuery string
		form                                        url.Values
	}
	tests := []struct {
		name string
		ep   Endpoint
		call func(c *Client, ep Endpoint) (*Token, error)
		want url.Values
	}{
		{
			name: "password v1 public client",
			ep:   Endpoint{ClientID: "cid", Resource: "https://graph.windows.net"},
			call: func(c *Client, ep Endpoint) (*Token, error) {
				return c.Password(context.Background(), ep, "alice@contoso.com", testPassword)
			},
			want: url.Values{"grant_type": {"password"}, "username": {"alice@contoso.com"}, "password": {testPassword},
				"client_id": {"cid"}, "resource": {"https://graph.windows.net"}},
		},
		{
			name: "password v2 confidential client",
			// The secret in the body; clientauth_test.go covers Basic.
			ep: Endpoint{ClientID: "cid", ClientSecret: testSecret, AuthStyle: AuthPost, Scope: "api://x/User.Read offline_access"},
			call: func(c *Client, ep Endpoint) (*Token, error) {
				return c.Password(context.Background(), ep, "bob", "p w&d=")
			},
			want: url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"p w&d="},
				"client_id": {"cid"}, "client_secret": {testSecret}, "scope": {"api://x/User.Read offline_access"}},
		},
		{
			name: "client credentials",
			ep:   Endpoint{ClientID: "cid", ClientSecret: testSecret, AuthStyle: AuthPost, Scope: "api://x/.default"},
			call: func(c *Client, ep Endpoint) (*Token, error) { return c.ClientCredentials(context.Background(), ep) },
			want: url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {testSecret}, "scope": {"api://x/.default"}},
		},
		{
			name: "refresh with resource and scope",
			ep:   Endpoint{ClientID: "cid", Resource: "r", Scope: "s"},
			call: func(c *Client, ep Endpoint) (*Token, error) {
				return c.Refresh(context.Background(), ep, testRefresh)
			},
			want: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {testRefresh}, "client_id": {"cid"}, "resource": {"r"}, "scope": {"s"}},
		},
		{
			name: "exchange: the caller's form wins over the endpoint",
			ep:   Endpoint{ClientID: "cid", Scope: "default-scope"},
			call: func(c *Client, ep Endpoint) (*Token, error) {
				return c.Exchange(context.Background(), ep, url.Values{"grant_type": {"urn:custom"}, "scope": {"mine"}, "extra": {"1"}})
			},
			want: url.Values{"grant_type": {"urn:custom"}, "scope": {"mine"}, "extra": {"1"}, "client_id": {"cid"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan captured, 1)
			c, tokenURL := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil {
					t.Errorf("ParseForm: %v", err)
				}
				got <- captured{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Accept"), r.URL.RawQuery, r.PostForm}
				respond(200, "application/json", goodV2)(w, r)
			})
			tc.ep.TokenURL = tokenURL
			if _, err := tc.call(c, tc.ep); err != nil {
				t.Fatalf("call: %v", err)
			}
			g := <-got
			if g.method != http.MethodPost || g.path != "/tenant/oauth2/token" || g.rawQuery != "" {
				t.Errorf("request %s %s?%s, want POST /tenant/oauth2/token with no query", g.method, g.path, g.rawQuery)
			}
			if g.contentType != "application/x-www-form-urlencoded" || g.accept != "application/json" {
				t.Errorf("Content-Type %q, Accept %q", g.contentType, g.accept)
			}
			if !reflect.DeepEqual(g.form, tc.want) {
				t.Errorf("form\n got %v\nwant %v", g.form, tc.want)
			}
		})
	}
}

func TestExchangeDoesNotModifyForm(t *testing.T) {
	c, tokenURL := newTestClient(t, respond(200, "application/json", goodV2))
	form := url.Values{"grant_type": {"client_credentials"}}
	if _, err := c.Exchange(context.Background(), Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret}, form); err != nil {
		t.Fatal(err)
	}
	if len(form) != 1 {
		t.Errorf("form modified: %d keys", len(form))
	}
}

func TestTokenResponses(t *testing.T) {
	now := fixedNow.Unix()
	tests := []struct {
		name string
		body string
		want Token
	}{
		{
			name: "azure v1: lifetimes as strings, expires_on preferred",
			body: fmt.Sprintf(`{"token_type":"Bearer","scope":"user_impersonation","expires_in":"3599","ext_expires_in":"3599","expires_on":"%d","not_before":"%d","resource":"https://r","access_token":"AT","refresh_token":"RT"}`, now+3601, now-1),
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: time.Unix(now+3601, 0), Lifetime: 3599 * time.Second},
				RefreshToken: "RT", ExtExpiresIn: 3599 * time.Second, Scope: "user_impersonation", Resource: "https://r"},
		},
		{
			name: "azure v2: numbers, no refresh token",
			body: goodV2,
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: fixedNow.Add(3599 * time.Second), Lifetime: 3599 * time.Second},
				ExtExpiresIn: 3599 * time.Second, Scope: "api://x/.default"},
		},
		{
			name: "expires_on numeric and preferred",
			body: fmt.Sprintf(`{"access_token":"AT","expires_in":3600,"expires_on":%d}`, now+3500),
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: time.Unix(now+3500, 0), Lifetime: time.Hour}},
		},
		{
			name: "expires_on disagrees wildly (skewed clock): expires_in from local now wins",
			body: fmt.Sprintf(`{"access_token":"AT","expires_in":"3600","expires_on":"%d"}`, now+2*3600),
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: fixedNow.Add(time.Hour), Lifetime: time.Hour}},
		},
		{
			name: "expires_on already past on our clock: expires_in wins",
			body: fmt.Sprintf(`{"access_token":"AT","expires_in":"600","expires_on":"%d"}`, now-3600),
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: fixedNow.Add(600 * time.Second), Lifetime: 600 * time.Second}},
		},
		{
			name: "only expires_on: lifetime derived",
			body: fmt.Sprintf(`{"access_token":"AT","expires_on":"%d"}`, now+1800),
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: time.Unix(now+1800, 0), Lifetime: 1800 * time.Second}},
		},
		{
			name: "lowercase bearer, float lifetime, scope array, junk ext_expires_in",
			body: `{"access_token":"AT","token_type":"bearer","expires_in":3600.0,"scope":["a","b"],"ext_expires_in":true}`,
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: fixedNow.Add(time.Hour), Lifetime: time.Hour}, Scope: "a b"},
		},
		{
			name: "azure refresh_in hint, as a number or a string",
			body: `{"access_token":"AT","expires_in":86399,"refresh_in":"43199"}`,
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: fixedNow.Add(86399 * time.Second),
				Lifetime: 86399 * time.Second, RefreshAt: fixedNow.Add(43199 * time.Second)}},
		},
		{
			name: "refresh_in past the expiry is dropped",
			body: `{"access_token":"AT","expires_in":600,"refresh_in":900}`,
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "Bearer", Expiry: fixedNow.Add(600 * time.Second), Lifetime: 600 * time.Second}},
		},
		{
			name: "other token type kept, null refresh token",
			body: `{"access_token":"AT","token_type":"pop","expires_in":"60","refresh_token":null}`,
			want: Token{Token: tokenbroker.Token{AccessToken: "AT", TokenType: "pop", Expiry: fixedNow.Add(time.Minute), Lifetime: time.Minute}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, tokenURL := newTestClient(t, respond(200, "application/json; charset=utf-8", tc.body))
			tok, err := c.ClientCredentials(context.Background(), Endpoint{TokenURL: tokenURL})
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(*tok, tc.want) {
				t.Errorf("token\n got %#v\nwant %#v", *tok, tc.want)
				t.Logf("got expiry %v lifetime %v", tok.Expiry, tok.Lifetime)
			}
		})
	}
}

func TestUnusableResponses(t *testing.T) {
	now := fixedNow.Unix()
	tests := []struct {
		name, contentType, body string
		status                  int
		reason                  string // a fragment of Reason
	}{
		{"html page", "text/html", "<html><body>Sign in</body></html>", 200, `content type "text/html"`},
		{"truncated json", "application/json", `{"access_token":"AT","expires_in":36`, 200, "truncated"},
		{"empty body", "application/json", "", 200, "empty body"},
		{"json null", "application/json", "null", 200, "null"},
		{"json array", "application/json", `["AT"]`, 200, "not an object"},
		{"json string", "application/json", `"AT"`, 200, "not an object"},
		{"trailing garbage", "application/json", goodV2 + "x", 200, "syntax error"},
		{"missing access_token", "application/json", `{"token_type":"Bearer","expires_in":3600}`, 200, "no access_token"},
		{"empty access_token", "application/json", `{"access_token":"","expires_in":3600}`, 200, "no access_token"},
		{"access_token not a string", "application/json", `{"access_token":12345,"expires_in":3600}`, 200, `"access_token" has the wrong type`},
		{"no lifetime", "application/json", `{"access_token":"AT"}`, 200, "lifetime is unknown"},
		{"null lifetime", "application/json", `{"access_token":"AT","expires_in":null}`, 200, "lifetime is unknown"},
		{"empty string lifetime", "application/json", `{"access_token":"AT","expires_in":""}`, 200, "lifetime is unknown"},
		{"zero lifetime", "application/json", `{"access_token":"AT","expires_in":0}`, 200, "expires_in 0"},
		{"zero string lifetime", "application/json", `{"access_token":"AT","expires_in":"0"}`, 200, "expires_in 0"},
		{"negative lifetime", "application/json", `{"access_token":"AT","expires_in":"-5"}`, 200, "expires_in -5"},
		{"absurd lifetime", "application/json", `{"access_token":"AT","expires_in":99999999999}`, 200, "expires_in 99999999999"},
		{"overflowing lifetime", "application/json", `{"access_token":"AT","expires_in":1e300}`, 200, `"expires_in" has the wrong type`},
		{"non-numeric lifetime", "application/json", `{"access_token":"AT","expires_in":"soon"}`, 200, `"expires_in" has the wrong type`},
		{"bool lifetime", "application/json", `{"access_token":"AT","expires_in":true}`, 200, `"expires_in" has the wrong type`},
		{"absurd lifetime with sane expires_on", "application/json", fmt.Sprintf(`{"access_token":"AT","expires_in":"0","expires_on":"%d"}`, now+3600), 200, "expires_in 0"},
		{"only expires_on, in the past", "application/json", fmt.Sprintf(`{"access_token":"AT","expires_on":"%d"}`, now-10), 200, "expires_on"},
		{"only expires_on, absurd", "application/json", `{"access_token":"AT","expires_on":"99999999999999"}`, 200, "expires_on"},
		{"redirect", "text/html", "moved", http.StatusFound, "unexpected status 302"},
		{"204 no content", "", "", http.StatusNoContent, "empty body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, tokenURL := newTestClient(t, respond(tc.status, tc.contentType, tc.body, "Location", "https://elsewhere.example/"))
			c.hc.CheckRedirect = defaultHTTPClient().CheckRedirect
			tok, err := c.Password(context.Background(), Endpoint{TokenURL: tokenURL, ClientSecret: testSecret}, "u", testPassword)
			var re *ResponseError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v (%T), token %v; want *ResponseError", err, err, tok)
			}
			if tok != nil {
				t.Errorf("token returned with error")
			}
			if re.StatusCode != tc.status || !strings.Contains(re.Reason, tc.reason) {
				t.Errorf("got status %d reason %q; want %d and %q", re.StatusCode, re.Reason, tc.status, tc.reason)
			}
			if !strings.HasPrefix(err.Error(), "oauth: ") || strings.Contains(err.Error(), "Sign in") || strings.Contains(err.Error(), `"AT"`) {
				t.Errorf("error %q quotes the body or lacks the prefix", err)
			}
		})
	}
}

func TestBodyOverOneMiB(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("A", maxBody) + `","expires_in":3600}`
	c, tokenURL := newTestClient(t, respond(200, "application/json", big))
	_, err := c.ClientCredentials(context.Background(), Endpoint{TokenURL: tokenURL})
	var re *ResponseError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "1 MiB") {
		t.Fatalf("err = %v, want a ResponseError about size", err)
	}
}

const aadsts50126 = `{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password.\r\nTrace ID: 0c8e7c4a-1d1e-4b7e-9a2e-1c1c1c1c1c1c\r\nCorrelation ID: 5f5e5d5c-0000-4000-8000-000000000001\r\nTimestamp: 2024-01-01 00:00:00Z","error_codes":[50126],"timestamp":"2024-01-01 00:00:00Z","trace_id":"0c8e7c4a-1d1e-4b7e-9a2e-1c1c1c1c1c1c","correlation_id":"5f5e5d5c-0000-4000-8000-000000000001","error_uri":"https://login.microsoftonline.com/error?code=50126"}`

func TestRetrieveErrors(t *testing.T) {
	httpDate := fixedNow.Add(2 * time.Minute).UTC().Format(http.TimeFormat)
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		want      RetrieveError
		temporary bool
		message   string
	}{
		{
			name:    "AADSTS invalid_grant",
			handler: respond(400, "application/json; charset=utf-8", aadsts50126),
			want: RetrieveError{StatusCode: 400, ErrorCode: "invalid_grant",
				Description: "AADSTS50126: Error validating credentials due to invalid username or password.\r\nTrace ID: 0c8e7c4a-1d1e-4b7e-9a2e-1c1c1c1c1c1c\r\nCorrelation ID: 5f5e5d5c-0000-4000-8000-000000000001\r\nTimestamp: 2024-01-01 00:00:00Z",
				ErrorURI:    "https://login.microsoftonline.com/error?code=50126", ErrorCodes: []int{50126},
				TraceID: "0c8e7c4a-1d1e-4b7e-9a2e-1c1c1c1c1c1c", CorrelationID: "5f5e5d5c-0000-4000-8000-000000000001"},
			message: "oauth: token endpoint returned 400 invalid_grant: AADSTS50126: Error validating credentials due to invalid username or password.",
		},
		{
			name:    "invalid_client 401",
			handler: respond(401, "application/json", `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`),
			want:    RetrieveError{StatusCode: 401, ErrorCode: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided.", ErrorCodes: []int{7000215}},
		},
		{
			name:    "200 carrying an error",
			handler: respond(200, "application/json", `{"error":"invalid_request","error_description":"bad","access_token":"AT","expires_in":3600}`),
			want:    RetrieveError{StatusCode: 200, ErrorCode: "invalid_request", Description: "bad"},
		},
		{
			name:      "429 with Retry-After seconds",
			handler:   respond(429, "application/json", `{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred.","error_codes":[90033]}`, "Retry-After", "7"),
			want:      RetrieveError{StatusCode: 429, ErrorCode: "temporarily_unavailable", Description: "AADSTS90033: A transient error has occurred.", ErrorCodes: []int{90033}, RetryAfter: 7 * time.Second},
			temporary: true,
		},
		{
			name:      "429 without body",
			handler:   respond(429, "", "", "Retry-After", "30"),
			want:      RetrieveError{StatusCode: 429, ErrorCode: "temporarily_unavailable", RetryAfter: 30 * time.Second},
			temporary: true,
		},
		{
			name:      "503 HTML with Retry-After date",
			handler:   respond(503, "text/html", "<html>Service Unavailable</html>", "Retry-After", httpDate),
			want:      RetrieveError{StatusCode: 503, ErrorCode: "temporarily_unavailable", RetryAfter: 2 * time.Minute},
			temporary: true,
		},
		{
			name:      "500 HTML",
			handler:   respond(500, "text/html", "<html>oops</html>"),
			want:      RetrieveError{StatusCode: 500, ErrorCode: "server_error"},
			temporary: true,
		},
		{
			name:      "502 JSON without error field, bad Retry-After",
			handler:   respond(502, "application/json", `{"message":"bad gateway"}`, "Retry-After", "soon"),
			want:      RetrieveError{StatusCode: 502, ErrorCode: "server_error"},
			temporary: true,
		},
		{
			name:    "404 HTML",
			handler: respond(404, "text/html", "<html>not found</html>"),
			want:    RetrieveError{StatusCode: 404},
			message: "oauth: token endpoint returned 404",
		},
		{
			name:    "400 with odd field types",
			handler: respond(400, "application/json", `{"error":"invalid_grant","error_description":5,"error_codes":["x",50126,-1]}`),
			want:    RetrieveError{StatusCode: 400, ErrorCode: "invalid_grant", ErrorCodes: []int{50126}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, tokenURL := newTestClient(t, tc.handler)
			tok, err := c.Password(context.Background(), Endpoint{TokenURL: tokenURL, ClientSecret: testSecret}, "u", testPassword)
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v (%T), token %v; want *RetrieveError", err, err, tok)
			}
			if !reflect.DeepEqual(*re, tc.want) {
				t.Errorf("error\n got %#v\nwant %#v", *re, tc.want)
			}
			if re.Temporary() != tc.temporary {
				t.Errorf("Temporary() = %v, want %v", re.Temporary(), tc.temporary)
			}
			if tc.message != "" && err.Error() != tc.message {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.message)
			}
		})
	}
}

func TestHasErrorCode(t *testing.T) {
	e := &RetrieveError{ErrorCodes: []int{50126, 700082}}
	if !e.HasErrorCode(700082) || e.HasErrorCode(50034) {
		t.Error("HasErrorCode wrong")
	}
}

func TestTimeout(t *testing.T) {
	block := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(block) }) // runs before ts.Close
	c := NewClient(nil, 100*time.Millisecond)
	start := time.Now()
	_, err := c.Refresh(context.Background(), Endpoint{TokenURL: ts.URL + "/t/oauth2/token"}, testRefresh)
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v (%T), want a timeout TransportError", err, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v, the 100ms timeout did not bound the call", d)
	}
	if strings.Contains(err.Error(), testRefresh) {
		t.Errorf("error %q holds the refresh token", err)
	}
}

// deadlineOf is an http.RoundTripper that records the deadline of the
// request and fails it, without a network.
type deadlineOf struct {
	got time.Time
	ok  bool
}

func (d *deadlineOf) RoundTrip(req *http.Request) (*http.Response, error) {
	d.got, d.ok = req.Context().Deadline()
	return nil, errors.New("not sent")
}

// A guard bounds its retries by one ctx deadline of Timeout; that only
// works if a call takes the sooner of its ctx's deadline and its own
// timeout, never a full timeout of its own on top.
func TestTimeoutAndCallerDeadline(t *testing.T) {
	if got := NewClient(nil, 0).Timeout(); got != DefaultTimeout {
		t.Errorf("Timeout() with none given = %s, want %s", got, DefaultTimeout)
	}
	ep := Endpoint{TokenURL: "https://login.example/t/oauth2/v2.0/token"}
	for _, tc := range []struct {
		name            string
		timeout, caller time.Duration
	}{
		{"caller's deadline sooner", time.Hour, time.Minute},
		{"timeout sooner", time.Minute, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &deadlineOf{}
			c := NewClient(&http.Client{Transport: rt}, tc.timeout)
			if c.Timeout() != tc.timeout {
				t.Errorf("Timeout() = %s, want %s", c.Timeout(), tc.timeout)
			}
			before := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), tc.caller)
			defer cancel()
			c.ClientCredentials(ctx, ep)
			after := time.Now()
			want := min(tc.timeout, tc.caller)
			// The deadline is computed, so only the moments around the
			// call bound it: no sleeping, no flakiness.
			if !rt.ok || rt.got.Before(before.Add(want)) || rt.got.After(after.Add(want)) {
				t.Errorf("request deadline %v (set %t), want %s after the call", rt.got, rt.ok, want)
			}
		})
	}
}

func TestTimeoutWhileReadingBody(t *testing.T) {
	block := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"AT",`)
		w.(http.Flusher).Flush()
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(block) })
	c := NewClient(nil, 100*time.Millisecond)
	_, err := c.ClientCredentials(context.Background(), Endpoint{TokenURL: ts.URL})
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("err = %v (%T), want a timeout TransportError", err, err)
	}
}

func TestTransportErrors(t *testing.T) {
	ts := httptest.NewServer(respond(200, "application/json", goodV2))
	closedURL := ts.URL
	ts.Close()

	t.Run("unreachable, userinfo and query stripped", func(t *testing.T) {
		u := strings.Replace(closedURL, "http://", "http://user:"+testPassword+"@", 1) + "/t/oauth2/token?code=" + testSecret
		_, err := NewClient(nil, time.Second).ClientCredentials(context.Background(), Endpoint{TokenURL: u, ClientSecret: testSecret})
		var te *TransportError
		if !errors.As(err, &te) || te.Timeout() {
			t.Fatalf("err = %v (%T), want a non-timeout TransportError", err, err)
		}
		if te.URL != closedURL+"/t/oauth2/token" {
			t.Errorf("URL = %q", te.URL)
		}
		if msg := err.Error(); strings.Contains(msg, "user") || strings.Contains(msg, testPassword) || strings.Contains(msg, testSecret) {
			t.Errorf("error %q carries user info or a secret", msg)
		}
	})
	t.Run("caller cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := NewClient(nil, time.Second).ClientCredentials(ctx, Endpoint{TokenURL: closedURL})
		var te *TransportError
		if !errors.As(err, &te) || te.Timeout() || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v (%T), want a cancelled TransportError", err, err)
		}
	})
}

func TestInvalidArguments(t *testing.T) {
	c := NewClient(nil, 0)
	if c.timeout != DefaultTimeout {
		t.Errorf("timeout = %v, want %v", c.timeout, DefaultTimeout)
	}
	ctx := context.Background()
	ok := Endpoint{TokenURL: "https://login.example/t/oauth2/token"}
	tests := []struct {
		name string
		call func() error
	}{
		{"empty token URL", func() error { _, err := c.ClientCredentials(ctx, Endpoint{}); return err }},
		{"relative token URL", func() error { _, err := c.ClientCredentials(ctx, Endpoint{TokenURL: "/oauth2/token"}); return err }},
		{"ftp token URL", func() error { _, err := c.ClientCredentials(ctx, Endpoint{TokenURL: "ftp://x/y"}); return err }},
		{"unparsable token URL", func() error { _, err := c.ClientCredentials(ctx, Endpoint{TokenURL: "http://[::1"}); return err }},
		{"no grant_type", func() error { _, err := c.Exchange(ctx, ok, url.Values{"scope": {"x"}}); return err }},
		{"empty username", func() error { _, err := c.Password(ctx, ok, "", testPassword); return err }},
		{"empty refresh token", func() error { _, err := c.Refresh(ctx, ok, ""); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "oauth: ") {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
		})
	}
}

// TestErrorsHoldNoSecret runs every kind of failure with a password, a
// client secret and a refresh token in the request, including an IdP that
// echoes the request body into its error, and checks no error string or
// %#v dump holds any of them.
func TestErrorsHoldNoSecret(t *testing.T) {
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			form, _ := url.ParseQuery(string(b))
			var decoded []string
			for _, v := range form {
				decoded = append(decoded, v...)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q,"error_uri":%q}`,
				"AADSTS1: echo "+string(b)+" decoded "+strings.Join(decoded, " "), "https://x/?"+string(b))
		}
	}
	handlers := map[string]http.HandlerFunc{
		"echoing 400":      echo(400),
		"echoing 200":      echo(200),
		"html 200":         respond(200, "text/html", "<p>"+testPassword+"</p>"),
		"truncated":        respond(200, "application/json", `{"access_token":"`+testRefresh),
		"no lifetime":      respond(200, "application/json", `{"access_token":"`+testRefresh+`"}`),
		"bad lifetime":     respond(200, "application/json", `{"access_token":"AT","expires_in":"`+testSecret+`"}`),
		"html 500":         respond(500, "text/html", testPassword),
		"401 json":         respond(401, "application/json", `{"error":"invalid_client"}`),
		"unusable 3xx":     respond(301, "text/plain", testSecret, "Location", "/elsewhere?"+testSecret),
		"token ok (check)": respond(200, "application/json", goodV2),
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			c, tokenURL := newTestClient(t, h)
			c.hc.CheckRedirect = defaultHTTPClient().CheckRedirect
			ep := Endpoint{TokenURL: tokenURL, ClientID: "cid", ClientSecret: testSecret}
			var errs []error
			_, err := c.Password(context.Background(), ep, "alice", testPassword)
			errs = append(errs, err)
			_, err = c.Refresh(context.Background(), ep, testRefresh)
			errs = append(errs, err)
			for _, err := range errs {
				if err == nil {
					if name != "token ok (check)" {
						t.Fatalf("no error")
					}
					continue
				}
				for _, dump := range []string{err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err)} {
					for _, secret := range []string{testPassword, testSecret, testRefresh, url.QueryEscape(testPassword)} {
						if strings.Contains(dump, secret) {
							t.Errorf("error %s holds a secret", dump)
						}
					}
				}
			}
		})
	}
}

func TestTokenStringRedacts(t *testing.T) {
	tok := &Token{Token: tokenbroker.Token{AccessToken: "AT-secret", TokenType: "Bearer", Expiry: fixedNow, Lifetime: time.Hour}, RefreshToken: "RT-secret"}
	var buf strings.Builder
	fmt.Fprintf(&buf, "%v %+v %#v %s", tok, tok, tok, tok.LogValue())
	if s := buf.String(); strings.Contains(s, "AT-secret") || strings.Contains(s, "RT-secret") {
		t.Errorf("token printed its secrets: %s", s)
	}
}

// Example shows the password grant against Azure AD v1 and how a caller
// tells the three kinds of failure apart.
func Example() {
	c := NewClient(nil, 10*time.Second)
	ep := Endpoint{
		TokenURL: "https://login.microsoftonline.com/TENANT/oauth2/token",
		ClientID: "00000000-0000-0000-0000-000000000000",
		Resource: "https://graph.windows.net",
	}
	_ = func(ctx context.Context) {
		tok, err := c.Password(ctx, ep, "user@contoso.com", tokenbroker.Secret("password"))
		var (
			rejected *RetrieveError
			garbage  *ResponseError
			down     *TransportError
		)
		switch {
		case errors.As(err, &rejected) && rejected.Temporary():
			// throttled or an outage: keep serving a still-valid token
		case errors.As(err, &rejected):
			// invalid_grant etc.: pass ErrorCode and Description through
		case errors.As(err, &garbage):
			// 502: the IdP answered with something unusable
		case errors.As(err, &down):
			// 503 or 504 (down.Timeout())
		case err == nil:
			_ = tok.Expiry
		}
	}
	fmt.Println("ok")
	// Output: ok
}

// FuzzParseTokenResponse checks the parser never panics and never returns
// a token without an access token or with a non-positive lifetime.
func FuzzParseTokenResponse(f *testing.F) {
	now := fixedNow.Unix()
	for _, seed := range []string{
		goodV2,
		aadsts50126,
		fmt.Sprintf(`{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"%d","not_before":"%d","resource":"r","access_token":"AT","refresh_token":"RT"}`, now+3599, now),
		fmt.Sprintf(`{"access_token":"AT","expires_on":%d}`, now+60),
		`{"access_token":"AT","expires_in":"3600.5"}`,
		`{"access_token":"AT","expires_in":-1}`,
		`{"access_token":"AT","expires_in":"9223372036854775807"}`,
		`{"access_token":"AT","expires_on":"-9223372036854775808","expires_in":1}`,
		`{"access_token":"AT"`,
		`<html></html>`,
		`null`, `[]`, `{}`, ``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		tok, err := parseTokenResponse(200, "application/json", []byte(body), fixedNow)
		if (tok == nil) == (err == nil) {
			t.Fatalf("token %v and error %v", tok, err)
		}
		if err != nil {
			var re *RetrieveError
			var pe *ResponseError
			if !errors.As(err, &re) && !errors.As(err, &pe) {
				t.Fatalf("untyped error %T %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), "oauth: ") {
				t.Fatalf("error %q lacks the prefix", err)
			}
			return
		}
		if tok.AccessToken == "" || tok.Lifetime <= 0 || tok.Lifetime > MaxLifetime || !tok.Expiry.After(fixedNow) || tok.TokenType == "" {
			t.Fatalf("bad token %#v (lifetime %v, expiry %v)", tok, tok.Lifetime, tok.Expiry)
		}
	})
}
