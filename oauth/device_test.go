package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

const (
	deviceApp   = "device-app"
	deviceUser  = "carol@contoso.com"
	deviceScope = "https://graph.microsoft.com/User.Read offline_access"
)

// deviceRig is a fake IdP and a Client on one fake clock, and a sleep for
// PollDevice that moves that clock instead of waiting, records each wait,
// and runs the test's hook after it, before the poll it precedes.
type deviceRig struct {
	idp    *fakeidp.Server
	clk    *clock.Fake
	c      *Client
	v2, v1 Endpoint

	mu     sync.Mutex
	waits  []time.Duration
	before func(n int) // after the n-th wait (from 1), before its poll
	short  map[int]time.Duration
}

func newDeviceRig(t *testing.T, opts ...fakeidp.Option) *deviceRig {
	t.Helper()
	clk := clock.NewFake(fixedNow)
	s, err := fakeidp.Start(append([]fakeidp.Option{fakeidp.WithClock(clk.Now), fakeidp.WithClient(deviceApp, "")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := NewClient(nil, 5*time.Second)
	c.SetClock(clk.Now)
	return &deviceRig{
		idp: s, clk: clk, c: c,
		v2: Endpoint{TokenURL: s.V2TokenURL(), ClientID: deviceApp, Scope: deviceScope},
		v1: Endpoint{TokenURL: s.V1TokenURL(), ClientID: deviceApp, Resource: "https://graph.windows.net"},
	}
}

// sleep is PollDevice's sleep: it records d and moves the clock by d, or
// by short[n] when the test wants the n-th wait cut short.
func (r *deviceRig) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	r.waits = append(r.waits, d)
	n := len(r.waits)
	advance, cut := r.short[n]
	before := r.before
	r.mu.Unlock()
	if !cut {
		advance = d
	}
	r.clk.Advance(advance)
	if before != nil {
		before(n)
	}
	return ctx.Err()
}

func (r *deviceRig) recorded() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

func (r *deviceRig) authorize(t *testing.T, deviceURL string, ep Endpoint) *DeviceAuthorization {
	t.Helper()
	da, err := r.c.DeviceAuthorization(context.Background(), deviceURL, ep)
	if err != nil {
		t.Fatal(err)
	}
	return da
}

// approveAt returns a hook that signs deviceUser in with da's user code
// after the n-th wait.
func (r *deviceRig) approveAt(t *testing.T, da *DeviceAuthorization, n int) func(int) {
	return func(i int) {
		if i == n {
			if err := r.idp.ApproveDevice(da.UserCode, deviceUser); err != nil {
				t.Error(err)
			}
		}
	}
}

func secs(s ...int) []time.Duration {
	d := make([]time.Duration, len(s))
	for i, v := range s {
		d[i] = time.Duration(v) * time.Second
	}
	return d
}

func sameWaits(got, want []time.Duration) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// noDeviceCode fails t when err's message or the IdP's words in it hold
// the device code.
func noDeviceCode(t *testing.T, err error, da *DeviceAuthorization) {
	t.Helper()
	dc := da.DeviceCode.Reveal()
	var re *RetrieveError
	if strings.Contains(err.Error(), dc) || (errors.As(err, &re) && (strings.Contains(re.Description, dc) || strings.Contains(re.ErrorURI, dc))) {
		t.Errorf("the device code is in the error: %v", err)
	}
}

func TestDeviceAuthorizationAgainstFakeIdP(t *testing.T) {
	r := newDeviceRig(t)
	da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
	if pending := r.idp.PendingDeviceCodes(); len(pending) != 1 || da.UserCode != pending[0] {
		t.Errorf("UserCode %q, pending %v", da.UserCode, pending)
	}
	if da.DeviceCode.IsZero() || da.VerificationURI != r.idp.DeviceVerificationURL() ||
		!strings.Contains(da.VerificationURIComplete, da.UserCode) || !strings.Contains(da.Message, da.UserCode) {
		t.Errorf("%+v", da)
	}
	if da.ExpiresIn != 15*time.Minute || da.Interval != 5*time.Second {
		t.Errorf("ExpiresIn %s Interval %s", da.ExpiresIn, da.Interval)
	}
	// The device code is a Secret: printing the response shows none of it.
	for _, s := range []string{fmt.Sprintf("%v", da), fmt.Sprintf("%+v", da), fmt.Sprintf("%#v", da)} {
		if strings.Contains(s, da.DeviceCode.Reveal()) {
			t.Errorf("device code printed: %s", s)
		}
	}

	// v1: resource, verification_url and lifetimes as strings.
	d1 := r.authorize(t, r.idp.V1DeviceAuthorizationURL(), r.v1)
	if d1.VerificationURI != r.idp.DeviceVerificationURL() || d1.ExpiresIn != 15*time.Minute || d1.Interval != 5*time.Second {
		t.Errorf("v1: %+v", d1)
	}
	if got := r.idp.DeviceAuthorizationCalls(); got != 2 {
		t.Errorf("DeviceAuthorizationCalls = %d, want 2", got)
	}
}

func TestPollDevicePendingThenSuccess(t *testing.T) {
	for _, v := range []string{"v2", "v1"} {
		t.Run(v, func(t *testing.T) {
			r := newDeviceRig(t)
			ep, deviceURL := r.v2, r.idp.DeviceAuthorizationURL()
			if v == "v1" {
				ep, deviceURL = r.v1, r.idp.V1DeviceAuthorizationURL()
			}
			da := r.authorize(t, deviceURL, ep)
			r.before = r.approveAt(t, da, 3) // two polls find it pending
			tok, err := r.c.PollDevice(context.Background(), ep, da, r.sleep)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.recorded(); !sameWaits(got, secs(5, 5, 5)) {
				t.Errorf("waits %v, want the interval before each of three polls", got)
			}
			if n := r.idp.CallsFor(fakeidp.GrantDeviceCode); n != 3 {
				t.Errorf("%d polls, want 3", n)
			}
			if !r.idp.Valid(tok.AccessToken) || r.idp.Claims(tok.AccessToken)["upn"] != deviceUser {
				t.Errorf("token not valid or not the approving user's: %v", r.idp.Claims(tok.AccessToken))
			}
			if tok.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			// The refresh token works, and rotates.
			tok2, err := r.c.Refresh(context.Background(), ep, tokenbroker.Secret(tok.RefreshToken))
			if err != nil || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
				t.Errorf("refresh: %v, %v", tok2, err)
			}
		})
	}
}

func TestPollDeviceSlowDown(t *testing.T) {
	r := newDeviceRig(t)
	da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
	// The second wait ends early on the IdP's clock, as if the client's
	// clock ran fast: the IdP answers slow_down to that poll.
	r.short = map[int]time.Duration{2: 2 * time.Second}
	r.before = r.approveAt(t, da, 4)
	if _, err := r.c.PollDevice(context.Background(), r.v2, da, r.sleep); err != nil {
		t.Fatal(err)
	}
	// 5 s, 5 s (cut short: slow_down), then 10 s for good: the IdP raised
	// its interval too, so a client that kept 5 s would get slow_down again.
	if got := r.recorded(); !sameWaits(got, secs(5, 5, 10, 10)) {
		t.Errorf("waits %v, want [5s 5s 10s 10s]", got)
	}
	if n := r.idp.CallsFor(fakeidp.GrantDeviceCode); n != 4 {
		t.Errorf("%d polls, want 4", n)
	}
}

func TestPollDeviceDenied(t *testing.T) {
	for _, azure := range []bool{false, true} {
		t.Run(fmt.Sprintf("azure=%v", azure), func(t *testing.T) {
			r := newDeviceRig(t, fakeidp.WithAzureDeviceDecline(azure))
			da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
			r.before = func(n int) {
				if n == 2 {
					if err := r.idp.DenyDevice(da.UserCode); err != nil {
						t.Error(err)
					}
				}
			}
			_, err := r.c.PollDevice(context.Background(), r.v2, da, r.sleep)
			if !errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrExpiredToken) || errors.Is(err, ErrAuthorizationPending) {
				t.Fatalf("err = %v, want ErrAccessDenied alone", err)
			}
			var re *RetrieveError
			if !errors.As(err, &re) || re.StatusCode != 400 {
				t.Fatalf("err = %#v, want the IdP's *RetrieveError", err)
			}
			if n := r.idp.CallsFor(fakeidp.GrantDeviceCode); n != 2 {
				t.Errorf("%d polls, want 2: no poll after the denial", n)
			}
			if ce := Classify(err); ce.Code != tokenbroker.CodeRejected || ce.OAuth != re.ErrorCode {
				t.Errorf("Classify = %+v, want rejected with %s", ce, re.ErrorCode)
			}
			if OutcomeOf(err) != OutcomeRejected {
				t.Errorf("OutcomeOf = %s", OutcomeOf(err))
			}
			noDeviceCode(t, err, da)
		})
	}
}

func TestPollDeviceExpired(t *testing.T) {
	t.Run("the IdP says so", func(t *testing.T) {
		r := newDeviceRig(t, fakeidp.WithDeviceExpiry(12*time.Second))
		da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
		da.ExpiresIn = time.Hour // the client would poll on; the IdP ends it
		_, err := r.c.PollDevice(context.Background(), r.v2, da, r.sleep)
		var re *RetrieveError
		if !errors.Is(err, ErrExpiredToken) || !errors.As(err, &re) || re.StatusCode != 400 || !re.HasErrorCode(70019) {
			t.Fatalf("err = %v, want the IdP's expired_token", err)
		}
		if n := r.idp.CallsFor(fakeidp.GrantDeviceCode); n != 3 {
			t.Errorf("%d polls, want 3 (5 s, 10 s, 15 s)", n)
		}
		if ce := Classify(err); ce.Code != tokenbroker.CodeRejected || ce.OAuth != "expired_token" {
			t.Errorf("Classify = %+v", ce)
		}
		noDeviceCode(t, err, da)
	})

	t.Run("by its expires_in", func(t *testing.T) {
		r := newDeviceRig(t, fakeidp.WithDeviceExpiry(12*time.Second))
		da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
		_, err := r.c.PollDevice(context.Background(), r.v2, da, r.sleep)
		if !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("err = %v, want ErrExpiredToken", err)
		}
		// Polls at 5 s and 10 s; one at 15 s would be past the expiry at
		// 12 s, so there is none, and no wait for it either.
		if n := r.idp.CallsFor(fakeidp.GrantDeviceCode); n != 2 {
			t.Errorf("%d polls, want 2", n)
		}
		if got := r.recorded(); !sameWaits(got, secs(5, 5)) {
			t.Errorf("waits %v", got)
		}
		var re *RetrieveError
		if !errors.As(err, &re) || re.StatusCode != 0 || re.ErrorCode != "expired_token" {
			t.Errorf("err = %#v, want a *RetrieveError of no status", err)
		}
		if ce := Classify(err); ce.Code != tokenbroker.CodeRejected || ce.OAuth != "expired_token" {
			t.Errorf("Classify = %+v", ce)
		}
		if !strings.Contains(err.Error(), "expired") {
			t.Errorf("message %q", err)
		}
		noDeviceCode(t, err, da)
	})

	t.Run("counted from the response", func(t *testing.T) {
		r := newDeviceRig(t)
		da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
		r.clk.Advance(da.ExpiresIn - 3*time.Second) // the user read slowly
		_, err := r.c.PollDevice(context.Background(), r.v2, da, r.sleep)
		if !errors.Is(err, ErrExpiredToken) || r.idp.CallsFor(fakeidp.GrantDeviceCode) != 0 {
			t.Errorf("err = %v after %d polls, want ErrExpiredToken and none", err, r.idp.CallsFor(fakeidp.GrantDeviceCode))
		}
	})
}

func TestPollDeviceContext(t *testing.T) {
	t.Run("cancelled while waiting", func(t *testing.T) {
		r := newDeviceRig(t)
		da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r.before = func(n int) {
			if n == 2 {
				cancel()
			}
		}
		_, err := r.c.PollDevice(ctx, r.v2, da, r.sleep)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if n := r.idp.CallsFor(fakeidp.GrantDeviceCode); n != 1 {
			t.Errorf("%d polls, want 1", n)
		}
	})

	t.Run("default sleep, cancelled", func(t *testing.T) {
		r := newDeviceRig(t)
		da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() {
			_, err := r.c.PollDevice(ctx, r.v2, da, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("PollDevice waited out its interval on a cancelled context")
		}
		if n := r.idp.CallsFor(fakeidp.GrantDeviceCode); n != 0 {
			t.Errorf("%d polls", n)
		}
	})
}

func TestPollDeviceThroughTemporaryFailures(t *testing.T) {
	r := newDeviceRig(t)
	da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
	r.idp.Fail(fakeidp.FailHTML(502), 2)
	r.idp.Fail(fakeidp.FailRetryAfter(429, 60), 1)
	r.before = r.approveAt(t, da, 4)
	if _, err := r.c.PollDevice(context.Background(), r.v2, da, r.sleep); err != nil {
		t.Fatal(err)
	}
	// 5 s; after one failure 10 s, after two 20 s, then the Retry-After,
	// longer than the 40 s the backoff had come to.
	if got := r.recorded(); !sameWaits(got, secs(5, 10, 20, 60)) {
		t.Errorf("waits %v, want [5s 10s 20s 60s]", got)
	}

	t.Run("until the code expires", func(t *testing.T) {
		r := newDeviceRig(t, fakeidp.WithDeviceExpiry(30*time.Second))
		da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
		r.idp.Fail(fakeidp.FailHTML(503), -1)
		_, err := r.c.PollDevice(context.Background(), r.v2, da, r.sleep)
		// The IdP failing is why the sign-in did not complete, not the
		// user: its error is the answer.
		var re *RetrieveError
		if !errors.As(err, &re) || !re.Temporary() || errors.Is(err, ErrExpiredToken) {
			t.Fatalf("err = %v, want the IdP's temporary failure", err)
		}
		if ce := Classify(err); ce.Code != tokenbroker.CodeUnavailable {
			t.Errorf("Classify = %+v", ce)
		}
	})
}

func TestDeviceTokenErrors(t *testing.T) {
	r := newDeviceRig(t, fakeidp.WithStrictDevicePolling(false))
	da := r.authorize(t, r.idp.DeviceAuthorizationURL(), r.v2)
	ctx := context.Background()

	_, err := r.c.DeviceToken(ctx, r.v2, da.DeviceCode)
	if !errors.Is(err, ErrAuthorizationPending) || errors.Is(err, ErrSlowDown) {
		t.Fatalf("err = %v, want ErrAuthorizationPending", err)
	}
	// Waiting for the user is an answer of a working IdP: not Temporary,
	// not unavailable, so no breaker opens on a user who takes their time.
	var re *RetrieveError
	if !errors.As(err, &re) || re.Temporary() || re.ErrorCode != "authorization_pending" || !re.HasErrorCode(70016) {
		t.Fatalf("err = %#v", err)
	}
	if OutcomeOf(err) == OutcomeUnavailable {
		t.Error("pending counted as the IdP failing")
	}

	// An IdP that echoes the device code does not get it into the error.
	dc := da.DeviceCode.Reveal()
	r.idp.Fail(fakeidp.FailAADSTS(400, "invalid_grant", 70000, "The device code "+dc+" is malformed."), 1)
	_, err = r.c.DeviceToken(ctx, r.v2, da.DeviceCode)
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || errors.Is(err, ErrAccessDenied) {
		t.Fatalf("err = %v", err)
	}
	noDeviceCode(t, err, da)

	if _, err := r.c.DeviceToken(ctx, r.v2, ""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty device code: %v", err)
	}
	if _, err := r.c.PollDevice(ctx, r.v2, &DeviceAuthorization{}, r.sleep); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no device code: %v", err)
	}
	if _, err := r.c.DeviceAuthorization(ctx, "", r.v2); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no device URL: %v", err)
	}
	if _, err := r.c.DeviceAuthorization(ctx, "ftp://example.com/devicecode", r.v2); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ftp device URL: %v", err)
	}
	if _, err := r.c.DeviceAuthorization(ctx, r.idp.DeviceAuthorizationURL(), Endpoint{Scope: deviceScope}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no client id: %v", err)
	}
	if n := r.idp.DeviceAuthorizationCalls(); n != 1 {
		t.Errorf("%d device authorization calls, want only the first", n)
	}
}

func TestDeviceClientAuthentication(t *testing.T) {
	const app, secret = "device-post-app", "device-s3cret"
	r := newDeviceRig(t, fakeidp.WithPostClient(app, secret))
	ep := Endpoint{TokenURL: r.idp.V2TokenURL(), ClientID: app, ClientSecret: secret, Scope: deviceScope}
	da := r.authorize(t, r.idp.DeviceAuthorizationURL(), ep)
	// Not an Azure AD host: Basic first, refused, then the form body,
	// which is remembered for the token endpoint.
	if b, p := r.idp.CallsWithAuth(fakeidp.AuthMethodBasic), r.idp.CallsWithAuth(fakeidp.AuthMethodPost); b != 1 || p != 1 {
		t.Fatalf("Basic %d, post %d; want one each", b, p)
	}
	if err := r.idp.ApproveDevice(da.UserCode, deviceUser); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.DeviceToken(context.Background(), ep, da.DeviceCode); err != nil {
		t.Fatal(err)
	}
	if b, p := r.idp.CallsWithAuth(fakeidp.AuthMethodBasic), r.idp.CallsWithAuth(fakeidp.AuthMethodPost); b != 1 || p != 2 {
		t.Errorf("Basic %d, post %d; want the poll to send the secret in the body at once", b, p)
	}

	// The wrong secret: refused both ways, and never in the error.
	bad := ep
	bad.ClientSecret = "not-the-secret"
	_, err := NewClient(nil, 5*time.Second).DeviceAuthorization(context.Background(), r.idp.DeviceAuthorizationURL(), bad)
	var re *RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || strings.Contains(err.Error()+re.Description, "not-the-secret") {
		t.Errorf("err = %v", err)
	}
}

// TestDeviceRequests checks what goes on the wire and how responses are
// read, against a server of the test's own.
func TestDeviceRequests(t *testing.T) {
	var mu sync.Mutex
	var forms []url.Values
	record := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			mu.Lock()
			forms = append(forms, r.PostForm)
			mu.Unlock()
			h(w, r)
		}
	}
	last := func() url.Values {
		mu.Lock()
		defer mu.Unlock()
		return forms[len(forms)-1]
	}
	ctx := context.Background()

	t.Run("polls", func(t *testing.T) {
		c, tokenURL := newTestClient(t, record(respond(200, "application/json", goodV2)))
		v2URL := strings.Replace(tokenURL, "/oauth2/token", "/oauth2/v2.0/token", 1)
		if _, err := c.DeviceToken(ctx, Endpoint{TokenURL: v2URL, ClientID: "app", Scope: "s"}, "DC-1234"); err != nil {
			t.Fatal(err)
		}
		f := last()
		if f.Get("grant_type") != GrantTypeDeviceCode || f.Get("device_code") != "DC-1234" || f.Get("client_id") != "app" || f.Has("code") {
			t.Errorf("v2 poll form %v", f)
		}
		// Azure AD v1: the device code in code too, as ADAL sent it.
		if _, err := c.DeviceToken(ctx, Endpoint{TokenURL: tokenURL, ClientID: "app", Resource: "r"}, "DC-1234"); err != nil {
			t.Fatal(err)
		}
		if f := last(); f.Get("device_code") != "DC-1234" || f.Get("code") != "DC-1234" || f.Get("resource") != "r" {
			t.Errorf("v1 poll form %v", f)
		}
	})

	t.Run("authorization request", func(t *testing.T) {
		c, devURL := newTestClient(t, record(respond(200, "application/json",
			`{"device_code":"DC","user_code":"U","verification_uri":"https://x/devicelogin","expires_in":600}`)))
		da, err := c.DeviceAuthorization(ctx, devURL, Endpoint{TokenURL: devURL, ClientID: "app", Scope: "a b", Resource: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if f := last(); f.Get("client_id") != "app" || f.Get("scope") != "a b" || f.Get("resource") != "r" || f.Has("grant_type") {
			t.Errorf("form %v", f)
		}
		if da.Interval != DefaultDeviceInterval || da.ExpiresIn != 10*time.Minute {
			t.Errorf("Interval %s ExpiresIn %s, want the default interval", da.Interval, da.ExpiresIn)
		}
	})

	good := func(da *DeviceAuthorization, err error) error {
		if err != nil {
			return err
		}
		if da.DeviceCode != "DC" || da.UserCode != "U" || da.VerificationURI != "https://x/l" {
			return fmt.Errorf("%+v", da)
		}
		return nil
	}
	tests := []struct {
		name   string
		status int
		ct     string
		body   string
		check  func(*DeviceAuthorization, error) error
	}{
		{"interval 0 means the default", 200, "application/json", `{"device_code":"DC","user_code":"U","verification_uri":"https://x/l","expires_in":900,"interval":0}`,
			func(da *DeviceAuthorization, err error) error {
				if err := good(da, err); err != nil {
					return err
				}
				if da.Interval != DefaultDeviceInterval {
					return fmt.Errorf("Interval %s", da.Interval)
				}
				return nil
			}},
		{"v1 shape", 200, "application/json", `{"device_code":"DC","user_code":"U","verification_url":"https://x/l","expires_in":"900","interval":"7","message":"M"}`,
			func(da *DeviceAuthorization, err error) error {
				if err := good(da, err); err != nil {
					return err
				}
				if da.Interval != 7*time.Second || da.ExpiresIn != 15*time.Minute || da.Message != "M" {
					return fmt.Errorf("%+v", da)
				}
				return nil
			}},
		{"no device_code", 200, "application/json", `{"user_code":"U","verification_uri":"https://x/l","expires_in":900}`, unusableDevice("no device_code")},
		{"no user_code", 200, "application/json", `{"device_code":"DC","verification_uri":"https://x/l","expires_in":900}`, unusableDevice("no user_code")},
		{"no verification_uri", 200, "application/json", `{"device_code":"DC","user_code":"U","expires_in":900}`, unusableDevice("no verification_uri")},
		{"no expires_in", 200, "application/json", `{"device_code":"DC","user_code":"U","verification_uri":"https://x/l"}`, unusableDevice("no expires_in")},
		{"absurd expires_in", 200, "application/json", `{"device_code":"DC","user_code":"U","verification_uri":"https://x/l","expires_in":99999999}`, unusableDevice("expires_in 99999999")},
		{"device_code a number", 200, "application/json", `{"device_code":7,"user_code":"U","verification_uri":"https://x/l","expires_in":900}`, unusableDevice(`"device_code" has the wrong type`)},
		{"HTML", 200, "text/html", `<html>DC</html>`, unusableDevice("not valid JSON")},
		{"null", 200, "application/json", `null`, unusableDevice("JSON null")},
		{"error in a 200", 200, "application/json", `{"error":"invalid_client","error_description":"no"}`, retrieveDevice(200, "invalid_client", false)},
		{"Azure error", 400, "application/json", `{"error":"invalid_scope","error_description":"AADSTS70011: bad scope","error_codes":[70011]}`, retrieveDevice(400, "invalid_scope", false)},
		{"outage", 503, "text/html", `<html>down</html>`, retrieveDevice(503, "temporarily_unavailable", true)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, devURL := newTestClient(t, respond(tc.status, tc.ct, tc.body))
			da, err := c.DeviceAuthorization(ctx, devURL, Endpoint{ClientID: "app", Scope: "s"})
			if err := tc.check(da, err); err != nil {
				t.Error(err)
			}
			if err != nil && strings.Contains(err.Error(), `"DC"`) {
				t.Errorf("body quoted in %v", err)
			}
		})
	}
}

func unusableDevice(reason string) func(*DeviceAuthorization, error) error {
	return func(da *DeviceAuthorization, err error) error {
		var rs *ResponseError
		if !errors.As(err, &rs) || !strings.Contains(rs.Reason, reason) {
			return fmt.Errorf("err = %v, want unusable: %s", err, reason)
		}
		return nil
	}
}

func retrieveDevice(status int, code string, temporary bool) func(*DeviceAuthorization, error) error {
	return func(da *DeviceAuthorization, err error) error {
		var re *RetrieveError
		if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code || re.Temporary() != temporary {
			return fmt.Errorf("err = %v, want %d %s temporary=%v", err, status, code, temporary)
		}
		return nil
	}
}

// A poll's error from an IdP that echoes the request body reaches no log.
func TestDeviceErrorsHoldNoDeviceCode(t *testing.T) {
	c, tokenURL := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"error":"authorization_pending","error_description":"request was %s","error_uri":"https://x/?%s"}`, body, body)
	})
	dc := tokenbroker.Secret("GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8")
	v2URL := strings.Replace(tokenURL, "/oauth2/token", "/oauth2/v2.0/token", 1)
	// v2 sends the code in device_code alone; v1 in code as well.
	for _, ep := range []Endpoint{{TokenURL: v2URL, ClientID: "app", Scope: "s"}, {TokenURL: tokenURL, ClientID: "app", Resource: "r"}} {
		_, err := c.DeviceToken(context.Background(), ep, dc)
		if !errors.Is(err, ErrAuthorizationPending) {
			t.Fatalf("err = %v", err)
		}
		noDeviceCode(t, err, &DeviceAuthorization{DeviceCode: dc})
		var re *RetrieveError
		errors.As(err, &re)
		if !strings.Contains(re.Description, "[redacted]") {
			t.Errorf("description %q: nothing redacted, so the test proves nothing", re.Description)
		}
	}
}
