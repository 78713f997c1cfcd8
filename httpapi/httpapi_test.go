package httpapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/metrics"
)

// Values a realistic exchange carries. None of them may show up in a log.
const (
	testUser     = "alice@contoso.com"
	testPassword = "Tr0ub4dor&3"
	testToken    = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2NybSJ9.c2lnbmF0dXJl"
)

// helperRequest is the original helper's request body, as Python's
// requests.post(url, json={'username': u, 'password': p}) sends it.
var helperRequest = fmt.Sprintf(`{"username": %q, "password": %q}`, testUser, testPassword)

// replyBody is a realistic encoded Reply, as the Service produces it.
func replyBody(t testing.TB, action string) []byte {
	t.Helper()
	b, err := json.Marshal(tokenbroker.Reply{
		AccessToken:  testToken,
		ExpiresOn:    "1526704330",
		Action:       action,
		TokenType:    "Bearer",
		ExpiresIn:    3599,
		CredentialID: "u-3f9a1c0e",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stub is a tokenbroker.Service whose behaviour each test scripts.
type stub struct {
	calls atomic.Int32
	serve func(req tokenbroker.Request, rep tokenbroker.Replier)
}

func (s *stub) Serve(req tokenbroker.Request, rep tokenbroker.Replier) {
	s.calls.Add(1)
	s.serve(req, rep)
}

// answerSync answers before Serve returns, like a cache hit.
func answerSync(body []byte, action string) func(tokenbroker.Request, tokenbroker.Replier) {
	return func(_ tokenbroker.Request, rep tokenbroker.Replier) { rep.Respond(action, body) }
}

// answerAsync answers from another goroutine after Serve returned, like a
// credential's actor.
func answerAsync(body []byte, action string) func(tokenbroker.Request, tokenbroker.Replier) {
	return func(_ tokenbroker.Request, rep tokenbroker.Replier) { go rep.Respond(action, body) }
}

// recordAsync is answerAsync that first hands the request to got, for tests
// that check what the Service was asked.
func recordAsync(got chan<- tokenbroker.Request, body []byte, action string) func(tokenbroker.Request, tokenbroker.Replier) {
	return func(req tokenbroker.Request, rep tokenbroker.Replier) {
		got <- req
		go rep.Respond(action, body)
	}
}

// failWith fails from another goroutine.
func failWith(e *tokenbroker.Error) func(tokenbroker.Request, tokenbroker.Replier) {
	return func(_ tokenbroker.Request, rep tokenbroker.Replier) { go rep.Fail(e) }
}

// start runs the gateway on a free port of 127.0.0.1 and returns its URL.
func start(t testing.TB, o httpapi.Options) string {
	t.Helper()
	srv := httpapi.NewServer("127.0.0.1:0", httpapi.NewHandler(o), 0)
	addr, err := srv.Start("", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return "http://" + addr
}

// response is a read and closed HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, c *http.Client, method, url, contentType string, body io.Reader) response {
	t.Helper()
	r, err := try(c, method, url, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// try is do for goroutines other than the test's, which may not call
// t.Fatal.
func try(c *http.Client, method, url, contentType string, body io.Reader) (response, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func post(t testing.TB, url, body string) response {
	t.Helper()
	return do(t, nil, http.MethodPost, url+"/requesttoken", "application/json", strings.NewReader(body))
}

// checkErrorBody asserts the contract's error document.
func checkErrorBody(t testing.TB, r response, wantOAuth string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e map[string]any
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	for k := range e {
		if k != "error" && k != "error_description" && k != "retry_after" {
			t.Errorf("error body %s has the unexpected key %q", r.body, k)
		}
	}
	if ra := r.header.Get("Retry-After"); ra != "" && fmt.Sprint(e["retry_after"]) != ra {
		t.Errorf("retry_after %v differs from Retry-After %q", e["retry_after"], ra)
	}
	if s, _ := e["error"].(string); s == "" || (wantOAuth != "" && s != wantOAuth) {
		t.Errorf("error = %v, want %q", e["error"], wantOAuth)
	}
	if s, _ := e["error_description"].(string); s == "" {
		t.Errorf("error_description missing in %s", r.body)
	}
}

func TestStatusCodes(t *testing.T) {
	ok := replyBody(t, tokenbroker.ActionNew)
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		serve      func(tokenbroker.Request, tokenbroker.Replier)
		wantStatus int
		wantOAuth  string // "" for a success
		wantRetry  string
		wantCalls  int32
	}{
		{name: "200 sync", serve: answerSync(ok, tokenbroker.ActionNew), wantStatus: 200, wantCalls: 1},
		{name: "200 async", serve: answerAsync(ok, tokenbroker.ActionNew), wantStatus: 200, wantCalls: 1},
		{name: "400 malformed JSON", body: `{"username": `, wantStatus: 400, wantOAuth: "invalid_request"},
		{name: "400 empty body", body: " ", wantStatus: 400, wantOAuth: "invalid_request"},
		{name: "400 missing password", body: `{"username":"bob"}`, wantStatus: 400, wantOAuth: "invalid_request"},
		{name: "401 rejected", serve: failWith(&tokenbroker.Error{Code: tokenbroker.CodeRejected, OAuth: "invalid_grant",
			Description: "AADSTS50126: Error validating credentials due to invalid username or password."}),
			wantStatus: 401, wantOAuth: "invalid_grant", wantCalls: 1},
		{name: "404 unknown credential", body: `{"credential":"nope"}`,
			serve:      failWith(tokenbroker.Errorf(tokenbroker.CodeNotFound, "invalid_request", "no credential named so")),
			wantStatus: 404, wantOAuth: "invalid_request", wantCalls: 1},
		{name: "413 too large", body: `{"username":"` + strings.Repeat("a", tokenbroker.MaxRequestBytes) + `"}`,
			wantStatus: 413, wantOAuth: "invalid_request"},
		{name: "429 with Retry-After", serve: failWith(&tokenbroker.Error{Code: tokenbroker.CodeTooMany, OAuth: "temporarily_unavailable",
			Description: "the identity provider refused 5 sign-ins of this username within 1m0s", RetryAfter: 42}),
			wantStatus: 429, wantOAuth: "temporarily_unavailable", wantRetry: "42", wantCalls: 1},
		{name: "502 unusable IdP answer", serve: failWith(tokenbroker.Errorf(tokenbroker.CodeBadGateway, "server_error", "IdP answered without access_token")),
			wantStatus: 502, wantOAuth: "server_error", wantCalls: 1},
		{name: "503 with Retry-After", serve: failWith(&tokenbroker.Error{Code: tokenbroker.CodeUnavailable, OAuth: "temporarily_unavailable",
			Description: "IdP throttling", RetryAfter: 7}),
			wantStatus: 503, wantOAuth: "temporarily_unavailable", wantRetry: "7", wantCalls: 1},
		{name: "503 without Retry-After", serve: failWith(tokenbroker.Errorf(tokenbroker.CodeUnavailable, "temporarily_unavailable", "IdP unreachable")),
			wantStatus: 503, wantOAuth: "temporarily_unavailable", wantCalls: 1},
		{name: "504 from the Service", serve: failWith(tokenbroker.Errorf(tokenbroker.CodeTimeout, "temporarily_unavailable", "actor busy")),
			wantStatus: 504, wantOAuth: "temporarily_unavailable", wantCalls: 1},
		{name: "500 internal", serve: failWith(tokenbroker.AsError(errors.New("boom"))),
			wantStatus: 500, wantOAuth: "server_error", wantCalls: 1},
		{name: "500 for a Fail(nil)", serve: failWith(nil), wantStatus: 500, wantOAuth: "server_error", wantCalls: 1},
		{name: "405 PUT", method: http.MethodPut, wantStatus: 405, wantOAuth: "invalid_request"},
		{name: "405 DELETE", method: http.MethodDelete, wantStatus: 405, wantOAuth: "invalid_request"},
		{name: "404 unknown path", path: "/token", wantStatus: 404, wantOAuth: "invalid_request"},
		{name: "404 trailing slash", path: "/requesttoken/", wantStatus: 404, wantOAuth: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &stub{serve: tc.serve}
			if s.serve == nil {
				s.serve = func(_ tokenbroker.Request, rep tokenbroker.Replier) {
					t.Error("Service called")
					rep.Fail(tokenbroker.AsError(nil))
				}
			}
			url := start(t, httpapi.Options{Service: s})
			method, path, body := tc.method, tc.path, tc.body
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/requesttoken"
			}
			if body == "" {
				body = helperRequest
			}
			r := do(t, nil, method, url+path, "application/json", strings.NewReader(body))

			if r.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantOAuth == "" {
				if !bytes.Equal(r.body, ok) {
					t.Errorf("body = %s, want the Service's %s", r.body, ok)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
			} else {
				checkErrorBody(t, r, tc.wantOAuth)
			}
			if got := r.header.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tc.wantRetry)
			}
			if tc.wantStatus == 405 {
				if got := r.header.Get("Allow"); got != "GET, POST" {
					t.Errorf("Allow = %q, want %q", got, "GET, POST")
				}
			}
			if path == "/requesttoken" && tc.wantStatus != 405 {
				if got := r.header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", got)
				}
			}
			if got := s.calls.Load(); got != tc.wantCalls {
				t.Errorf("Service called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
}

// TestOriginalHelperShape replays what the original helper's clients do,
// requests.post(url, json={'username': u, 'password': p}).json()['accesstoken'],
// and checks the field names byte for byte.
func TestOriginalHelperShape(t *testing.T) {
	want := replyBody(t, tokenbroker.ActionNew)
	got := make(chan tokenbroker.Request, 1)
	s := &stub{serve: recordAsync(got, want, tokenbroker.ActionNew)}
	url := start(t, httpapi.Options{Service: s})

	r := post(t, url, helperRequest)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	req := <-got
	if req.Username != testUser || req.Password.Reveal() != testPassword || req.Credential != "" {
		t.Errorf("the Service got username %q, a password that matches: %v, credential %q",
			req.Username, req.Password.Reveal() == testPassword, req.Credential)
	}
	if !bytes.Equal(r.body, want) {
		t.Errorf("body = %s, want exactly %s", r.body, want)
	}
	if !bytes.HasPrefix(r.body, []byte(`{"accesstoken":"`)) {
		t.Errorf("body does not start with the original helper's accesstoken field: %s", r.body)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"accesstoken", "expires_on", "action"} {
		if _, ok := doc[key]; !ok {
			t.Errorf("reply lacks %q: %s", key, r.body)
		}
	}
	if string(doc["accesstoken"]) != strconv.Quote(testToken) {
		t.Errorf("accesstoken = %s", doc["accesstoken"])
	}
	if string(doc["expires_on"]) != `"1526704330"` {
		t.Errorf("expires_on = %s, want a string of Unix seconds", doc["expires_on"])
	}
	if string(doc["action"]) != `"retrieved new token"` {
		t.Errorf("action = %s", doc["action"])
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

func TestGetWithBodyWorksLikePost(t *testing.T) {
	want := replyBody(t, tokenbroker.ActionRefreshed)
	got := make(chan tokenbroker.Request, 1)
	s := &stub{serve: recordAsync(got, want, tokenbroker.ActionRefreshed)}
	url := start(t, httpapi.Options{Service: s})

	r := do(t, nil, http.MethodGet, url+"/requesttoken", "application/json",
		strings.NewReader(`{"credential":"crm-prod","min_ttl":300}`))
	if r.status != http.StatusOK || !bytes.Equal(r.body, want) {
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	if req := <-got; req.Credential != "crm-prod" || req.MinTTL != 300 {
		t.Errorf("the Service got %+v", req)
	}

	// A GET without a body is a request without fields, as for POST.
	r = do(t, nil, http.MethodGet, url+"/requesttoken", "application/json", nil)
	if r.status != http.StatusBadRequest {
		t.Errorf("GET without body: status %d, want 400", r.status)
	}
	checkErrorBody(t, r, "invalid_request")
}

// onlyReader hides the length of its reader, so the client sends the body
// chunked and the server learns its size only by reading it.
type onlyReader struct{ io.Reader }

func TestBodyLimit(t *testing.T) {
	body := replyBody(t, tokenbroker.ActionNew)
	s := &stub{serve: answerSync(body, tokenbroker.ActionNew)}
	url := start(t, httpapi.Options{Service: s})

	// Exactly at the limit is allowed: valid JSON padded with spaces.
	atLimit := helperRequest + strings.Repeat(" ", tokenbroker.MaxRequestBytes-len(helperRequest))
	if r := post(t, url, atLimit); r.status != http.StatusOK {
		t.Fatalf("body of exactly %d bytes: status %d: %s", len(atLimit), r.status, r.body)
	}
	if got := s.calls.Load(); got != 1 {
		t.Fatalf("Service called %d times, want 1", got)
	}

	over := atLimit + " "
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"with Content-Length", strings.NewReader(over)},
		{"chunked", onlyReader{strings.NewReader(over)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh client: the server closes a connection whose body
			// it did not read to the end.
			c := &http.Client{Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			r := do(t, c, http.MethodPost, url+"/requesttoken", "application/json", tc.body)
			if r.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413; body %s", r.status, r.body)
			}
			checkErrorBody(t, r, "invalid_request")
			if got := s.calls.Load(); got != 1 {
				t.Errorf("Service called for an oversized body")
			}
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady atomic.Pointer[error]
	url := start(t, httpapi.Options{
		Service: &stub{serve: func(tokenbroker.Request, tokenbroker.Replier) {}},
		Ready: func() error {
			if p := notReady.Load(); p != nil {
				return *p
			}
			return nil
		},
	})
	get := func(path string) response {
		t.Helper()
		return do(t, nil, http.MethodGet, url+path, "", nil)
	}
	expect := func(r response, status int, body string) {
		t.Helper()
		if r.status != status || string(r.body) != body {
			t.Errorf("got %d %s, want %d %s", r.status, r.body, status, body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	}

	expect(get("/healthz"), 200, `{"status":"ok"}`)
	expect(get("/readyz"), 200, `{"status":"ready"}`)

	err := errors.New("NATS disconnected")
	notReady.Store(&err)
	expect(get("/readyz"), 503, `{"status":"unready","reason":"NATS disconnected"}`)
	// Liveness does not follow readiness: restarting would not reconnect
	// NATS any sooner.
	expect(get("/healthz"), 200, `{"status":"ok"}`)

	notReady.Store(nil)
	expect(get("/readyz"), 200, `{"status":"ready"}`)

	r := do(t, nil, http.MethodPost, url+"/healthz", "", nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /healthz: %d, Allow %q", r.status, r.header.Get("Allow"))
	}
	checkErrorBody(t, r, "invalid_request")
	if r := do(t, nil, http.MethodHead, url+"/readyz", "", nil); r.status != 200 {
		t.Errorf("HEAD /readyz: %d", r.status)
	}
}

func TestReadyWithoutReadyFunc(t *testing.T) {
	url := start(t, httpapi.Options{Service: &stub{serve: func(tokenbroker.Request, tokenbroker.Replier) {}}})
	if r := do(t, nil, http.MethodGet, url+"/readyz", "", nil); r.status != 200 {
		t.Errorf("/readyz without Ready: %d %s", r.status, r.body)
	}
}

// metricValue finds one sample of the Prometheus text output; labels are
// given as they appear, in the sorted order the exposition format uses.
func metricValue(t testing.TB, text, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("sample %q: %v", line, err)
			}
			return v
		}
	}
	return 0 // a series not yet created has counted nothing
}

func TestMetrics(t *testing.T) {
	m := metrics.New()
	var fail atomic.Bool
	fresh := replyBody(t, tokenbroker.ActionNew)
	s := &stub{serve: func(_ tokenbroker.Request, rep tokenbroker.Replier) {
		if fail.Load() {
			rep.Fail(tokenbroker.Errorf(tokenbroker.CodeRejected, "invalid_grant", "bad password"))
			return
		}
		rep.Respond(tokenbroker.ActionNew, fresh)
	}}
	url := start(t, httpapi.Options{Service: s, Metrics: m})
	scrape := func() string {
		t.Helper()
		r := do(t, nil, http.MethodGet, url+"/metrics", "", nil)
		if r.status != 200 {
			t.Fatalf("/metrics: %d", r.status)
		}
		return string(r.body)
	}
	const okSeries = `tokenbroker_requests_total{action="retrieved new token",outcome="ok",transport="http"}`
	const rejected = `tokenbroker_requests_total{action="",outcome="401",transport="http"}`
	const invalid = `tokenbroker_requests_total{action="",outcome="400",transport="http"}`

	before := scrape()
	for _, name := range []string{"tokenbroker_requests_total", "go_goroutines"} {
		if !strings.Contains(before, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	post(t, url, helperRequest)
	post(t, url, helperRequest)
	fail.Store(true)
	post(t, url, helperRequest)
	post(t, url, `{}`)

	after := scrape()
	for _, c := range []struct {
		series string
		delta  float64
	}{{okSeries, 2}, {rejected, 1}, {invalid, 1}} {
		if d := metricValue(t, after, c.series) - metricValue(t, before, c.series); d != c.delta {
			t.Errorf("%s grew by %v, want %v", c.series, d, c.delta)
		}
	}
	for _, secret := range []string{testUser, testPassword, testToken} {
		if strings.Contains(after, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}
}

func TestMetricsNil(t *testing.T) {
	url := start(t, httpapi.Options{Service: &stub{serve: answerSync(replyBody(t, tokenbroker.ActionNew), tokenbroker.ActionNew)}})
	r := do(t, nil, http.MethodGet, url+"/metrics", "", nil)
	if r.status != http.StatusNotFound {
		t.Errorf("/metrics without Metrics: %d, want 404", r.status)
	}
	checkErrorBody(t, r, "")
	// Requests still work without metrics.
	if r := post(t, url, helperRequest); r.status != 200 {
		t.Errorf("request without Metrics: %d", r.status)
	}
}

// TestServiceTimeout checks the 504 the Service answers by its
// REQUEST_TIMEOUT, as actors.Router does: the gateway, which has no timer of
// its own, passes it on, and an answer arriving after it (which breaks the
// Replier contract) is dropped without blocking the Service's goroutine (an
// actor, in the broker) or leaving anything behind.
func TestServiceTimeout(t *testing.T) {
	reps := make(chan tokenbroker.Replier, 1)
	s := &stub{serve: func(_ tokenbroker.Request, rep tokenbroker.Replier) {
		reps <- rep
		go rep.Fail(tokenbroker.Errorf(tokenbroker.CodeTimeout, tokenbroker.OAuthTemporarilyUnavailable,
			"the broker did not answer within 30s"))
	}}
	url := start(t, httpapi.Options{Service: s})
	baseline := runtime.NumGoroutine()

	// A client of its own, so its connections can be closed to count
	// goroutines.
	c := &http.Client{Transport: &http.Transport{}}
	r := do(t, c, http.MethodPost, url+"/requesttoken", "application/json", strings.NewReader(helperRequest))
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", r.status)
	}
	checkErrorBody(t, r, "temporarily_unavailable")
	if !strings.Contains(string(r.body), "within 30s") {
		t.Errorf("body %s is not the Service's", r.body)
	}

	rep := <-reps
	late := replyBody(t, tokenbroker.ActionNew)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep.Respond(tokenbroker.ActionNew, late)
		// A second answer breaks the Replier contract, but must not
		// block either.
		rep.Fail(tokenbroker.AsError(nil))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a late answer blocked the Service's goroutine")
	}

	// Nothing is left waiting: not the handler, not a timer, not the
	// connections once closed.
	c.CloseIdleConnections()
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > baseline {
			return fmt.Errorf("%d goroutines, %d before the request", n, baseline)
		}
		return nil
	})
}

func TestClientGoneStopsWaiting(t *testing.T) {
	var sink testkit.LogBuffer
	called := make(chan tokenbroker.Replier, 1)
	s := &stub{serve: func(_ tokenbroker.Request, rep tokenbroker.Replier) { called <- rep }}
	// The Service never answers here, and the handler has no timer of
	// its own: only the client's departure can end its wait.
	url := start(t, httpapi.Options{Service: s, Logger: sink.JSONLogger()})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/requesttoken", strings.NewReader(helperRequest))
	req.Header.Set("Content-Type", "application/json")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	rep := <-called
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v, want context.Canceled", err)
	}
	// The handler logs its line when it returns.
	testkit.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(sink.String(), `"path":"/requesttoken"`) {
			return errors.New("the handler is still waiting")
		}
		return nil
	})
	rep.Respond(tokenbroker.ActionNew, replyBody(t, tokenbroker.ActionNew)) // dropped, not blocking
}

func TestLogsHoldNoSecrets(t *testing.T) {
	var sink testkit.LogBuffer
	var fail atomic.Bool
	body := replyBody(t, tokenbroker.ActionNew)
	s := &stub{serve: func(_ tokenbroker.Request, rep tokenbroker.Replier) {
		if fail.Load() {
			go rep.Fail(tokenbroker.Errorf(tokenbroker.CodeRejected, "invalid_grant", "bad password"))
			return
		}
		go rep.Respond(tokenbroker.ActionNew, body)
	}}
	url := start(t, httpapi.Options{Service: s, Logger: sink.JSONLogger()})

	post(t, url, helperRequest)
	fail.Store(true)
	post(t, url, helperRequest)
	do(t, nil, http.MethodPost, url+"/requesttoken?username="+testUser, "application/json", strings.NewReader(helperRequest))

	testkit.Eventually(t, 5*time.Second, func() error {
		if n := strings.Count(sink.String(), "\n"); n < 3 {
			return fmt.Errorf("%d log lines, want 3", n)
		}
		return nil
	})
	logs := sink.String()
	for _, secret := range []string{testUser, testPassword, testToken, "alice"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"method", "path", "status", "duration"} {
			if _, ok := rec[key]; !ok {
				t.Errorf("log line lacks %s: %s", key, line)
			}
		}
		if rec["level"] != "DEBUG" {
			t.Errorf("log line not at Debug: %s", line)
		}
	}
	if !strings.Contains(logs, `"status":401`) || !strings.Contains(logs, `"status":200`) {
		t.Errorf("logs lack the statuses:\n%s", logs)
	}
}

// TestRespondBodyIsCopied checks that the Service may reuse its buffer once
// Respond returns, as the Replier contract allows.
func TestRespondBodyIsCopied(t *testing.T) {
	want := replyBody(t, tokenbroker.ActionExisting)
	s := &stub{serve: func(_ tokenbroker.Request, rep tokenbroker.Replier) {
		buf := bytes.Clone(want)
		rep.Respond(tokenbroker.ActionExisting, buf)
		for i := range buf {
			buf[i] = 'x'
		}
	}}
	url := start(t, httpapi.Options{Service: s})
	if r := post(t, url, helperRequest); !bytes.Equal(r.body, want) {
		t.Errorf("body = %s, want %s", r.body, want)
	}
}

// TestShutdownAnswersInFlight checks that Shutdown lets a request waiting
// on the Service get its answer.
func TestShutdownAnswersInFlight(t *testing.T) {
	reps := make(chan tokenbroker.Replier, 1)
	s := &stub{serve: func(_ tokenbroker.Request, rep tokenbroker.Replier) { reps <- rep }}
	srv := httpapi.NewServer("127.0.0.1:0", httpapi.NewHandler(httpapi.Options{Service: s}), 0)
	addr, err := srv.Start("", "")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan response, 1)
	go func() {
		r, err := try(nil, http.MethodPost, "http://"+addr+"/requesttoken", "application/json", strings.NewReader(helperRequest))
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	rep := <-reps

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	// New connections are refused once shutdown has begun.
	testkit.Eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return errors.New("still accepting connections")
		}
		return nil
	})
	want := replyBody(t, tokenbroker.ActionNew)
	rep.Respond(tokenbroker.ActionNew, want)
	if r := <-got; r.status != 200 || !bytes.Equal(r.body, want) {
		t.Errorf("in-flight request: %d %s", r.status, r.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// selfSigned writes a TLS server certificate for 127.0.0.1 and its key to
// dir, and returns them with a pool that trusts the certificate.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c := testkit.NewCertificate(t, testkit.CertOptions{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	certFile, keyFile = c.WriteFiles(t, dir, "server")
	return certFile, keyFile, c.Pool()
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	want := replyBody(t, tokenbroker.ActionNew)
	srv := httpapi.NewServer("127.0.0.1:0", httpapi.NewHandler(httpapi.Options{
		Service: &stub{serve: answerAsync(want, tokenbroker.ActionNew)},
	}), 0)
	addr, err := srv.Start(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/requesttoken", strings.NewReader(helperRequest))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("HTTPS request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.TLS == nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("HTTPS: TLS %v, status %d, body %s", resp.TLS != nil, resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2 over TLS", resp.Proto)
	}

	// Plain HTTP on the TLS port gets no token.
	if r, err := http.Post("http://"+addr+"/requesttoken", "application/json", strings.NewReader(helperRequest)); err == nil {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Errorf("plain HTTP on the TLS port answered 200: %s", b)
		}
	}
}

func TestStartErrors(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	h := httpapi.NewHandler(httpapi.Options{Service: &stub{serve: func(tokenbroker.Request, tokenbroker.Replier) {}}})
	for _, tc := range []struct {
		name, addr, cert, key string
	}{
		{"cert without key", "127.0.0.1:0", certFile, ""},
		{"key without cert", "127.0.0.1:0", "", keyFile},
		{"missing files", "127.0.0.1:0", certFile + ".missing", keyFile},
		{"key is not a key", "127.0.0.1:0", certFile, certFile},
		{"bad address", "127.0.0.1:99999", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httpapi.NewServer(tc.addr, h, 0)
			if addr, err := srv.Start(tc.cert, tc.key); err == nil {
				_ = srv.Shutdown(context.Background())
				t.Fatalf("Start succeeded on %s", addr)
			}
			if err := srv.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown after a failed Start: %v", err)
			}
		})
	}

	srv := httpapi.NewServer("127.0.0.1:0", h, 0)
	if _, err := srv.Start("", ""); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if _, err := srv.Start("", ""); err == nil {
		t.Error("a second Start succeeded")
	}
}
