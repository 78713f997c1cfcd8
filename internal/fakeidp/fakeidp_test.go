package fakeidp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/oauth"
)

const (
	user       = "alice@contoso.com"
	password   = "correct horse"
	publicApp  = "public-app"
	confApp    = "conf-app"
	confSecret = "conf-s3cret"
	resource   = "https://graph.windows.net"
	scopeV2    = "https://graph.microsoft.com/User.Read offline_access"
	scopeApp   = "https://graph.microsoft.com/.default"
)

// start returns a started Server with a user and both kinds of client.
func start(t *testing.T, opts ...fakeidp.Option) *fakeidp.Server {
	t.Helper()
	opts = append([]fakeidp.Option{
		fakeidp.WithUser(user, password),
		fakeidp.WithClient(publicApp, ""),
		fakeidp.WithClient(confApp, confSecret),
	}, opts...)
	s, err := fakeidp.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func post(t *testing.T, tokenURL string, form url.Values) reply {
	t.Helper()
	resp, err := http.PostForm(tokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	_ = json.Unmarshal(data, &r.body)
	return r
}

func form(kv ...string) url.Values {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

func TestGrants(t *testing.T) {
	s := start(t)
	type want struct {
		stringLifetimes bool
		refresh         bool
		aud             string
		sub             string
	}
	tests := []struct {
		name     string
		tokenURL string
		form     url.Values
		want     want
	}{
		{"v1 password", s.V1TokenURL(), form("grant_type", "password", "client_id", publicApp, "resource", resource, "username", user, "password", password),
			want{true, true, resource, user}},
		{"v1 password, confidential", s.V1TokenURL(), form("grant_type", "password", "client_id", confApp, "client_secret", confSecret, "resource", resource, "username", user, "password", password),
			want{true, true, resource, user}},
		{"v1 client credentials", s.V1TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret, "resource", resource),
			want{true, false, resource, confApp}},
		{"v2 password with offline_access", s.V2TokenURL(), form("grant_type", "password", "client_id", publicApp, "scope", scopeV2, "username", user, "password", password),
			want{false, true, "https://graph.microsoft.com", user}},
		{"v2 password without offline_access", s.V2TokenURL(), form("grant_type", "password", "client_id", publicApp, "scope", "https://graph.microsoft.com/User.Read", "username", user, "password", password),
			want{false, false, "https://graph.microsoft.com", user}},
		{"v2 client credentials", s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret, "scope", scopeApp),
			want{false, false, "https://graph.microsoft.com", confApp}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, tc.tokenURL, tc.form)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			checkLifetimes(t, r.body, tc.want.stringLifetimes, 3600)
			at, _ := r.body["access_token"].(string)
			if !s.Valid(at) || r.body["token_type"] != "Bearer" {
				t.Errorf("access token %q not valid or token_type %v", at, r.body["token_type"])
			}
			if c := s.Claims(at); c["aud"] != tc.want.aud || c["sub"] != tc.want.sub || c["tid"] != fakeidp.DefaultTenant {
				t.Errorf("claims %v", c)
			}
			_, hasRT := r.body["refresh_token"]
			if hasRT != tc.want.refresh {
				t.Errorf("refresh_token present = %v, want %v", hasRT, tc.want.refresh)
			}
			if !hasRT {
				return
			}
			// The refresh grant on the same endpoint rotates the token.
			f := form("grant_type", "refresh_token", "client_id", tc.form.Get("client_id"), "client_secret", tc.form.Get("client_secret"),
				"resource", tc.form.Get("resource"), "scope", tc.form.Get("scope"), "refresh_token", r.body["refresh_token"].(string))
			if f.Get("client_secret") == "" {
				f.Del("client_secret")
			}
			r2 := post(t, tc.tokenURL, f)
			if r2.status != 200 {
				t.Fatalf("refresh: status %d: %s", r2.status, r2.raw)
			}
			checkLifetimes(t, r2.body, tc.want.stringLifetimes, 3600)
			if rt2, _ := r2.body["refresh_token"].(string); rt2 == "" || rt2 == r.body["refresh_token"] {
				t.Errorf("refresh did not rotate the refresh token")
			}
			if r2.body["access_token"] == at || !s.Valid(r2.body["access_token"].(string)) {
				t.Errorf("refresh returned the same or an invalid access token")
			}
		})
	}
	if got := s.CallsFor(fakeidp.GrantRefreshToken); got != 3 {
		t.Errorf("refresh calls = %d, want 3", got)
	}
}

// checkLifetimes checks the v1 (strings) or v2 (numbers) lifetime fields.
func checkLifetimes(t *testing.T, body map[string]any, asStrings bool, secs int64) {
	t.Helper()
	for _, k := range []string{"expires_in", "ext_expires_in"} {
		if asStrings {
			if body[k] != fmt.Sprint(secs) {
				t.Errorf("%s = %#v, want string %q", k, body[k], fmt.Sprint(secs))
			}
		} else if body[k] != float64(secs) {
			t.Errorf("%s = %#v, want number %d", k, body[k], secs)
		}
	}
	for _, k := range []string{"expires_on", "not_before", "resource"} {
		_, ok := body[k].(string)
		if ok != asStrings {
			t.Errorf("%s = %#v; present as string: %v, want %v", k, body[k], ok, asStrings)
		}
	}
}

func TestLifetimeAndClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	s := start(t, fakeidp.WithClock(clk.Now), fakeidp.WithLifetime(2500*time.Millisecond))
	r := post(t, s.V1TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret, "resource", resource))
	checkLifetimes(t, r.body, true, 2)
	if r.body["expires_on"] != "1700000002" || r.body["not_before"] != "1700000000" {
		t.Errorf("expires_on %v not_before %v", r.body["expires_on"], r.body["not_before"])
	}
	at := r.body["access_token"].(string)
	if !s.Valid(at) {
		t.Fatal("fresh token not valid")
	}
	clk.Advance(2 * time.Second)
	if s.Valid(at) {
		t.Error("token valid at its expiry")
	}
	if s.Valid(at[:len(at)-2]+"xx") || s.Valid("a.b.c") || s.Valid("") {
		t.Error("tampered token valid")
	}

	s.SetLifetime(0)
	r = post(t, s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret, "scope", scopeApp))
	checkLifetimes(t, r.body, false, 1)
}

func passwordV1(_ *fakeidp.Server, pw string) url.Values {
	return form("grant_type", "password", "client_id", publicApp, "resource", resource, "username", user, "password", pw)
}

func refreshV1(rt string) url.Values {
	return form("grant_type", "refresh_token", "client_id", publicApp, "resource", resource, "refresh_token", rt)
}

// wantAADSTS checks an Azure-shaped error.
func wantAADSTS(t *testing.T, r reply, status int, code string, aadsts int) {
	t.Helper()
	if r.status != status || r.body["error"] != code {
		t.Fatalf("got %d %v, want %d %s: %s", r.status, r.body["error"], status, code, r.raw)
	}
	codes, _ := r.body["error_codes"].([]any)
	if len(codes) != 1 || codes[0] != float64(aadsts) {
		t.Errorf("error_codes %v, want [%d]", r.body["error_codes"], aadsts)
	}
	desc, _ := r.body["error_description"].(string)
	if !strings.HasPrefix(desc, fmt.Sprintf("AADSTS%d: ", aadsts)) || !strings.Contains(desc, "\r\nTrace ID: ") || !strings.Contains(desc, "\r\nCorrelation ID: ") {
		t.Errorf("error_description %q", desc)
	}
	for _, k := range []string{"trace_id", "correlation_id", "timestamp", "error_uri"} {
		if v, _ := r.body[k].(string); v == "" {
			t.Errorf("missing %s", k)
		}
	}
}

func TestRotation(t *testing.T) {
	for _, strict := range []bool{true, false} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			s := start(t, fakeidp.WithStrictRotation(strict))
			rt1 := post(t, s.V1TokenURL(), passwordV1(s, password)).body["refresh_token"].(string)
			r := post(t, s.V1TokenURL(), refreshV1(rt1))
			rt2, _ := r.body["refresh_token"].(string)
			if r.status != 200 || rt2 == "" || rt2 == rt1 {
				t.Fatalf("refresh: %d %s", r.status, r.raw)
			}
			again := post(t, s.V1TokenURL(), refreshV1(rt1))
			if strict {
				wantAADSTS(t, again, 400, "invalid_grant", 700082)
			} else if again.status != 200 {
				t.Errorf("reuse without strict rotation: %d %s", again.status, again.raw)
			}
			if r := post(t, s.V1TokenURL(), refreshV1(rt2)); r.status != 200 {
				t.Errorf("newest refresh token: %d %s", r.status, r.raw)
			}
		})
	}
}

func TestRevokeAndPasswordChange(t *testing.T) {
	s := start(t)
	rt := post(t, s.V1TokenURL(), passwordV1(s, password)).body["refresh_token"].(string)
	s.RevokeRefreshTokens()
	wantAADSTS(t, post(t, s.V1TokenURL(), refreshV1(rt)), 400, "invalid_grant", 700082)

	rt = post(t, s.V1TokenURL(), passwordV1(s, password)).body["refresh_token"].(string)
	s.SetPassword(user, "new password")
	wantAADSTS(t, post(t, s.V1TokenURL(), refreshV1(rt)), 400, "invalid_grant", 50173)
	wantAADSTS(t, post(t, s.V1TokenURL(), passwordV1(s, password)), 400, "invalid_grant", 50126)
	r := post(t, s.V1TokenURL(), passwordV1(s, "new password"))
	if r.status != 200 {
		t.Fatalf("new password: %d %s", r.status, r.raw)
	}
	if r := post(t, s.V1TokenURL(), refreshV1(r.body["refresh_token"].(string))); r.status != 200 {
		t.Errorf("refresh after new password: %d %s", r.status, r.raw)
	}
}

func TestErrors(t *testing.T) {
	s := start(t, fakeidp.WithTenant("contoso"))
	s.AddUser("bob", "pw")
	other := post(t, s.V1TokenURL(), form("grant_type", "password", "client_id", confApp, "client_secret", confSecret, "resource", resource, "username", "bob", "password", "pw"))
	otherRT := other.body["refresh_token"].(string)
	tests := []struct {
		name     string
		tokenURL string
		form     url.Values
		status   int
		code     string
		aadsts   int
	}{
		{"wrong password", s.V1TokenURL(), form("grant_type", "password", "client_id", publicApp, "resource", resource, "username", user, "password", "nope"), 400, "invalid_grant", 50126},
		{"unknown user", s.V1TokenURL(), form("grant_type", "password", "client_id", publicApp, "resource", resource, "username", "eve", "password", "x"), 400, "invalid_grant", 50034},
		{"missing password", s.V1TokenURL(), form("grant_type", "password", "client_id", publicApp, "resource", resource, "username", user), 400, "invalid_request", 900144},
		{"unknown client", s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", "nobody", "client_secret", "x", "scope", scopeApp), 400, "unauthorized_client", 700016},
		{"bad secret", s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", "wrong", "scope", scopeApp), 401, "invalid_client", 7000215},
		{"confidential without secret", s.V1TokenURL(), form("grant_type", "password", "client_id", confApp, "resource", resource, "username", user, "password", password), 401, "invalid_client", 7000218},
		{"public client with secret", s.V1TokenURL(), form("grant_type", "password", "client_id", publicApp, "client_secret", "x", "resource", resource, "username", user, "password", password), 401, "invalid_client", 700025},
		{"public client credentials", s.V1TokenURL(), form("grant_type", "client_credentials", "client_id", publicApp, "resource", resource), 401, "invalid_client", 7000218},
		{"v1 without resource", s.V1TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret), 400, "invalid_resource", 50001},
		{"v2 without scope", s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret), 400, "invalid_request", 90014},
		{"v2 client credentials without /.default", s.V2TokenURL(), form("grant_type", "client_credentials", "client_id", confApp, "client_secret", confSecret, "scope", "https://graph.microsoft.com/User.Read"), 400, "invalid_scope", 1002012},
		{"unsupported grant", s.V1TokenURL(), form("grant_type", "authorization_code", "client_id", publicApp, "resource", resource), 400, "unsupported_grant_type", 70003},
		{"missing grant_type", s.V1TokenURL(), form("client_id", publicApp, "resource", resource), 400, "invalid_request", 900144},
		{"missing client_id", s.V1TokenURL(), form("grant_type", "password", "resource", resource), 400, "invalid_request", 900144},
		{"garbage refresh token", s.V1TokenURL(), refreshV1("garbage"), 400, "invalid_grant", 9002313},
		{"refresh token of another client", s.V1TokenURL(), refreshV1(otherRT), 400, "invalid_grant", 70000},
		{"unknown tenant", s.URL() + "/other/oauth2/token", passwordV1(s, password), 400, "invalid_request", 90002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, tc.tokenURL, tc.form)
			wantAADSTS(t, r, tc.status, tc.code, tc.aadsts)
			if strings.Contains(r.raw, password) || strings.Contains(r.raw, confSecret) {
				t.Errorf("error body echoes a secret: %s", r.raw)
			}
		})
	}
	t.Run("GET is 405", func(t *testing.T) {
		resp, err := http.Get(s.V2TokenURL())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Errorf("GET: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("correlation id echoes client-request-id", func(t *testing.T) {
		req, _ := http.NewRequest("POST", s.V1TokenURL(), strings.NewReader(refreshV1("garbage").Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("client-request-id", "11111111-2222-4333-8444-555555555555")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		if body["correlation_id"] != "11111111-2222-4333-8444-555555555555" {
			t.Errorf("correlation_id %v", body["correlation_id"])
		}
	})
	if got := s.CallsFor(""); got != 2 { // missing grant_type and the GET
		t.Errorf(`CallsFor("") = %d, want 2`, got)
	}
}

// TestFailuresThroughClient runs each failure kind on both endpoints through
// the oauth client, checking the fake produces what the client must classify.
func TestFailuresThroughClient(t *testing.T) {
	tests := []struct {
		failure fakeidp.Failure
		check   func(t *testing.T, err error)
	}{
		{fakeidp.FailStatus(502, "bad gateway", "text/plain"), retrieve(502, "server_error", true)},
		{fakeidp.FailAADSTS(400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password."), retrieve(400, "invalid_grant", false, 50126)},
		{fakeidp.FailHTML(200), unusable},
		{fakeidp.FailHTML(503), retrieve(503, "temporarily_unavailable", true)},
		{fakeidp.FailTruncated(), unusable},
		{fakeidp.FailMissingAccessToken(), unusable},
		{fakeidp.FailLifetime(""), unusable},
		{fakeidp.FailLifetime("0"), unusable},
		{fakeidp.FailLifetime("-5"), unusable},
		{fakeidp.FailLifetime("99999999999"), unusable},
		{fakeidp.FailLifetime("soon"), unusable},
		{fakeidp.FailRetryAfter(429, 7), func(t *testing.T, err error) {
			retrieve(429, "temporarily_unavailable", true, 90033)(t, err)
			var re *oauth.RetrieveError
			if errors.As(err, &re) && re.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter %v", re.RetryAfter)
			}
		}},
		{fakeidp.Fail200WithError(), retrieve(200, "invalid_grant", false, 50126)},
		{fakeidp.FailHang(), func(t *testing.T, err error) {
			var te *oauth.TransportError
			if !errors.As(err, &te) || !te.Timeout() {
				t.Errorf("err = %v, want a timeout", err)
			}
		}},
	}
	s := start(t)
	c := oauth.NewClient(nil, 200*time.Millisecond)
	eps := map[string]oauth.Endpoint{
		"v1": {TokenURL: s.V1TokenURL(), ClientID: confApp, ClientSecret: confSecret, Resource: resource},
		"v2": {TokenURL: s.V2TokenURL(), ClientID: confApp, ClientSecret: confSecret, Scope: scopeApp},
	}
	for _, tc := range tests {
		for name, ep := range eps {
			t.Run(tc.failure.String()+"/"+name, func(t *testing.T) {
				before := s.Calls()
				s.Fail(tc.failure, 1)
				tok, err := c.ClientCredentials(context.Background(), ep)
				if err == nil {
					t.Fatalf("got token %v, want an error", tok)
				}
				tc.check(t, err)
				if got := s.Calls() - before; got != 1 {
					t.Errorf("calls = %d, want 1", got)
				}
				// The failure was for one call only.
				if _, err := c.ClientCredentials(context.Background(), ep); err != nil {
					t.Errorf("next call: %v", err)
				}
			})
		}
	}
}

func retrieve(status int, code string, temporary bool, aadsts ...int) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var re *oauth.RetrieveError
		if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code || re.Temporary() != temporary {
			t.Fatalf("err = %#v, want RetrieveError %d %s temporary=%v", err, status, code, temporary)
		}
		for _, n := range aadsts {
			if !re.HasErrorCode(n) || re.TraceID == "" || re.CorrelationID == "" {
				t.Errorf("error codes %v trace %q correlation %q", re.ErrorCodes, re.TraceID, re.CorrelationID)
			}
		}
	}
}

func unusable(t *testing.T, err error) {
	t.Helper()
	var re *oauth.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v (%T), want ResponseError", err, err)
	}
}

func TestClientGrantsEndToEnd(t *testing.T) {
	s := start(t)
	c := oauth.NewClient(nil, 5*time.Second)
	ctx := context.Background()
	ep := oauth.Endpoint{TokenURL: s.V1TokenURL(), ClientID: publicApp, Resource: resource}
	tok, err := c.Password(ctx, ep, user, password)
	if err != nil || tok.RefreshToken == "" || !s.Valid(tok.AccessToken) || tok.Lifetime != time.Hour || tok.Resource != resource {
		t.Fatalf("password: %v %v", tok, err)
	}
	tok2, err := c.Refresh(ctx, ep, tokenbroker.Secret(tok.RefreshToken))
	if err != nil || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v %v", tok2, err)
	}
	_, err = c.Refresh(ctx, ep, tokenbroker.Secret(tok.RefreshToken))
	var re *oauth.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || !re.HasErrorCode(700082) || strings.Contains(err.Error(), tok.RefreshToken) {
		t.Fatalf("reused refresh token: %v", err)
	}
	_, err = c.Password(ctx, ep, user, "wrong")
	if !errors.As(err, &re) || !re.HasErrorCode(50126) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestFailQueue(t *testing.T) {
	s := start(t)
	c := oauth.NewClient(nil, 5*time.Second)
	ep := oauth.Endpoint{TokenURL: s.V2TokenURL(), ClientID: confApp, ClientSecret: confSecret, Scope: scopeApp}
	call := func() error { _, err := c.ClientCredentials(context.Background(), ep); return err }

	s.Fail(fakeidp.FailHTML(500), 2)
	s.Fail(fakeidp.FailTruncated(), 1)
	s.Fail(fakeidp.FailHTML(200), 0) // no-op
	for i, want := range []string{"retrieve", "retrieve", "response", "ok"} {
		err := call()
		var re *oauth.RetrieveError
		var pe *oauth.ResponseError
		got := "ok"
		switch {
		case errors.As(err, &re):
			got = "retrieve"
		case errors.As(err, &pe):
			got = "response"
		case err != nil:
			got = err.Error()
		}
		if got != want {
			t.Errorf("call %d: %s, want %s", i, got, want)
		}
	}
	s.Fail(fakeidp.FailRetryAfter(503, 1), -1)
	for i := 0; i < 3; i++ {
		if err := call(); err == nil {
			t.Fatalf("call %d succeeded during an unbounded failure", i)
		}
	}
	s.ClearFailures()
	if err := call(); err != nil {
		t.Fatalf("after ClearFailures: %v", err)
	}
	if s.Calls() != 8 || s.CallsFor(fakeidp.GrantClientCredentials) != 8 {
		t.Errorf("Calls %d, CallsFor %d, want 8", s.Calls(), s.CallsFor(fakeidp.GrantClientCredentials))
	}
}

func TestHold(t *testing.T) {
	s := start(t)
	arrived := make(chan string, 10)
	s.OnCall(func(grant string) { arrived <- grant })
	release := s.Hold()
	t.Cleanup(release)

	c := oauth.NewClient(nil, 10*time.Second)
	ep := oauth.Endpoint{TokenURL: s.V1TokenURL(), ClientID: confApp, ClientSecret: confSecret, Resource: resource}
	const n = 5
	var finished atomic.Int32
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := c.ClientCredentials(context.Background(), ep)
			finished.Add(1)
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case g := <-arrived:
			if g != fakeidp.GrantClientCredentials {
				t.Errorf("OnCall grant %q", g)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d calls arrived", i)
		}
	}
	if f := finished.Load(); f != 0 {
		t.Fatalf("%d calls finished while held", f)
	}
	if s.Calls() != n {
		t.Errorf("Calls = %d, want %d", s.Calls(), n)
	}
	release()
	release() // idempotent
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("held call: %v", err)
		}
	}

	// A held call honours its context.
	release = s.Hold()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	_, err := c.ClientCredentials(ctx, ep)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled held call: %v", err)
	}
}

func TestCloseReleasesHeldAndHangingCalls(t *testing.T) {
	s, err := fakeidp.Start(fakeidp.WithClient(confApp, confSecret))
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan string, 2)
	s.OnCall(func(grant string) { arrived <- grant })
	s.Hold()
	c := oauth.NewClient(nil, 10*time.Second)
	ep := oauth.Endpoint{TokenURL: s.V1TokenURL(), ClientID: confApp, ClientSecret: confSecret, Resource: resource}
	errs := make(chan error, 1)
	go func() { _, err := c.ClientCredentials(context.Background(), ep); errs <- err }()
	<-arrived
	s.Close()
	s.Close()
	if err := <-errs; err == nil {
		t.Error("held call succeeded after Close")
	}
}

func TestNewServesOnAnyListener(t *testing.T) {
	s := fakeidp.New(fakeidp.WithTenant("t1"))
	defer s.Close()
	if s.URL() != "" || s.Tenant() != "t1" || s.Handler() == nil {
		t.Errorf("URL %q Tenant %q", s.URL(), s.Tenant())
	}
}
