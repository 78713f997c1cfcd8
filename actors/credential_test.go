package actors

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

func TestActionsFollowTheTokenLifecycle(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOpts{clock: clk, lifetime: time.Hour, threshold: 10 * time.Minute})

	first := h.mustToken(user(testPassword), tokenbroker.ActionNew)
	wantCalls(t, h.idp, "password", 1)
	if !strings.HasPrefix(first.CredentialID, "u-") || strings.Contains(first.CredentialID, "alice") {
		t.Fatalf("credential_id %q must be an opaque u- id", first.CredentialID)
	}
	if first.ExpiresIn != 3600 || first.ExpiresOn != "1795870800" || first.TokenType != "Bearer" {
		t.Fatalf("unexpected reply %+v", first)
	}

	clk.Advance(30 * time.Minute)
	again := h.mustToken(user(testPassword), tokenbroker.ActionExisting)
	if again.AccessToken != first.AccessToken || again.ExpiresIn != 1800 {
		t.Fatalf("cache hit: got %+v, want the first token with 1800 s left", again)
	}
	wantCalls(t, h.idp, "password", 1)

	clk.Advance(21 * time.Minute) // 9 minutes left: inside the threshold
	refreshed := h.mustToken(user(testPassword), tokenbroker.ActionRefreshed)
	if refreshed.AccessToken == first.AccessToken {
		t.Fatal("refresh returned the old token")
	}
	wantCalls(t, h.idp, "refresh_token", 1)

	clk.Advance(2 * time.Hour) // the refreshed token has expired
	replaced := h.mustToken(user(testPassword), tokenbroker.ActionReplacedExpired)
	if replaced.AccessToken == refreshed.AccessToken || replaced.ExpiresIn != 3600 {
		t.Fatalf("replacement: got %+v", replaced)
	}
	if got := h.idp.Calls(); got != 3 {
		t.Fatalf("IdP calls: got %d, want 3", got)
	}
	for _, want := range []string{tokenbroker.ActionNew, tokenbroker.ActionRefreshed, tokenbroker.ActionReplacedExpired} {
		if ev := h.events.nextRefreshed(t); ev.Action != want || ev.CredentialID != first.CredentialID {
			t.Fatalf("event: got %q for %q, want %q", ev.Action, ev.CredentialID, want)
		}
	}
}

func TestProactiveRefreshPublishesBeforeExpiry(t *testing.T) {
	h := newHarness(t, harnessOpts{lifetime: 3 * time.Second, threshold: time.Second})
	first := h.mustToken(named(testApp), tokenbroker.ActionNew)
	if ev := h.events.nextRefreshed(t); ev.AccessToken != first.AccessToken {
		t.Fatal("first event is not the first token")
	}
	// No request: the actor's own timer refreshes ahead of the threshold.
	ev := h.events.nextRefreshed(t)
	if ev.Action != tokenbroker.ActionRefreshed || ev.AccessToken == first.AccessToken {
		t.Fatalf("proactive refresh event: %+v", ev)
	}
	if expiresOn := first.ExpiresOn; ev.RefreshedAt.Unix() >= mustInt(t, expiresOn) {
		t.Fatalf("refreshed at %s, after the old token expired (%s)", ev.RefreshedAt, expiresOn)
	}
	got := h.mustToken(named(testApp), tokenbroker.ActionExisting)
	if got.AccessToken != ev.AccessToken {
		t.Fatal("the next request did not get the refreshed token")
	}
	wantCalls(t, h.idp, "client_credentials", 2)
}

func TestSimultaneousColdRequestsShareOneIdPCall(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	release := h.idp.Hold()
	const n = 500
	repliers := make([]*replier, n)
	var wg sync.WaitGroup
	for i := range repliers {
		repliers[i] = newReplier()
		wg.Add(1)
		go func(r *replier) {
			defer wg.Done()
			h.router.Serve(user(testPassword), r)
		}(repliers[i])
	}
	wg.Wait() // every request is with the actor, the IdP still holds its one call
	release()
	var token string
	for i, r := range repliers {
		res := r.wait(t)
		if res.err != nil {
			t.Fatalf("request %d: %v", i, res.err)
		}
		if res.reply.Action != tokenbroker.ActionNew {
			t.Fatalf("request %d: action %q", i, res.reply.Action)
		}
		if token == "" {
			token = res.reply.AccessToken
		} else if res.reply.AccessToken != token {
			t.Fatalf("request %d got another token", i)
		}
	}
	if got := h.idp.Calls(); got != 1 {
		t.Fatalf("IdP calls: got %d, want 1", got)
	}
}

func TestWrongPasswordNeverGetsNorEvictsTheCachedToken(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	good := h.mustToken(user(testPassword), tokenbroker.ActionNew)

	res := h.ask(user("not the password"))
	if res.err == nil {
		t.Fatalf("wrong password got a token (%q)", res.reply.Action)
	}
	if res.err.Code != tokenbroker.CodeRejected || res.err.OAuth != "invalid_grant" || !strings.Contains(res.err.Description, "AADSTS50126") {
		t.Fatalf("want the IdP's invalid_grant AADSTS50126 as a 401, got %+v", res.err)
	}
	if strings.Contains(res.err.Description, "not the password") {
		t.Fatal("the error echoes the password")
	}

	again := h.mustToken(user(testPassword), tokenbroker.ActionExisting)
	if again.AccessToken != good.AccessToken {
		t.Fatal("the cached token was replaced")
	}
	if got := h.idp.Calls(); got != 2 {
		t.Fatalf("IdP calls: got %d, want 2 (one good, one wrong password)", got)
	}
}

func TestClientCredentialsNamedCredential(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.mustToken(named(testApp), tokenbroker.ActionNew)
	if first.CredentialID != testApp || first.ExpiresIn < 3590 {
		t.Fatalf("reply %+v", first)
	}
	if !h.idp.Valid(first.AccessToken) {
		t.Fatal("the IdP does not know the token")
	}
	second := h.mustToken(named(testApp), tokenbroker.ActionExisting)
	if second.AccessToken != first.AccessToken {
		t.Fatal("not served from cache")
	}
	wantCalls(t, h.idp, "client_credentials", 1)
}

func TestRefreshTokenRotationKeepsTheNewest(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOpts{clock: clk, idp: []fakeidp.Option{fakeidp.WithStrictRotation(true)}})
	h.mustToken(user(testPassword), tokenbroker.ActionNew)
	for i := 0; i < 3; i++ {
		clk.Advance(55 * time.Minute) // inside the threshold of the current token
		h.mustToken(user(testPassword), tokenbroker.ActionRefreshed)
	}
	// Strict rotation rejects a used refresh token: three clean refreshes
	// mean each used the one the previous refresh returned.
	wantCalls(t, h.idp, "refresh_token", 3)
	wantCalls(t, h.idp, "password", 1)
	select {
	case ev := <-h.events.failed:
		t.Fatalf("unexpected failure event %+v", ev)
	default:
	}
}

func TestRevokedRefreshTokenFallsBackAndPublishesFailed(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOpts{clock: clk})
	h.mustToken(user(testPassword), tokenbroker.ActionNew)
	h.idp.RevokeRefreshTokens()
	clk.Advance(55 * time.Minute)
	got := h.mustToken(user(testPassword), tokenbroker.ActionRefreshed)
	if got.ExpiresIn != 3600 {
		t.Fatalf("want a fresh token, got %+v", got)
	}
	if ev := h.events.nextFailed(t); ev.Error != "invalid_grant" || ev.CredentialID != got.CredentialID {
		t.Fatalf("failed event %+v", ev)
	}
	wantCalls(t, h.idp, "refresh_token", 1)
	wantCalls(t, h.idp, "password", 2)
}

func TestIdPErrorsAndUnknownCredentials(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tests := []struct {
		name  string
		req   tokenbroker.Request
		code  int
		oauth string
	}{
		{"unknown user", tokenbroker.Request{Username: "nobody@contoso.example", Password: "x"}, 401, "invalid_grant"},
		{"unknown named credential", named("no-such-app"), 404, "unknown_credential"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.ask(tc.req)
			if res.err == nil || res.err.Code != tc.code || res.err.OAuth != tc.oauth {
				t.Fatalf("want %d %s, got %+v", tc.code, tc.oauth, res.err)
			}
		})
	}
}

func TestMinTTLBeyondTheGrantedLifetimeIsRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.mustToken(named(testApp), tokenbroker.ActionNew)
	res := h.ask(tokenbroker.Request{Credential: testApp, MinTTL: 7200})
	if res.err == nil || res.err.Code != tokenbroker.CodeInvalidRequest {
		t.Fatalf("want 400, got %+v", res)
	}
	wantCalls(t, h.idp, "client_credentials", 1)
	h.mustToken(tokenbroker.Request{Credential: testApp, MinTTL: 1800}, tokenbroker.ActionExisting)
}

func TestForceRefreshSkipsTheCache(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.mustToken(named(testApp), tokenbroker.ActionNew)
	forced := h.mustToken(tokenbroker.Request{Credential: testApp, ForceRefresh: true}, tokenbroker.ActionRefreshed)
	if forced.AccessToken == first.AccessToken {
		t.Fatal("force_refresh returned the cached token")
	}
	wantCalls(t, h.idp, "client_credentials", 2)
}

func TestUnreachableIdPServesTheStillValidToken(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOpts{clock: clk})
	good := h.mustToken(named(testApp), tokenbroker.ActionNew)
	h.idp.Fail(fakeidp.FailStatus(503, "", ""), -1)
	clk.Advance(55 * time.Minute) // inside the threshold, not expired
	got := h.mustToken(named(testApp), tokenbroker.ActionExisting)
	if got.AccessToken != good.AccessToken {
		t.Fatal("not the still-valid token")
	}
	clk.Advance(10 * time.Minute) // expired now
	res := h.ask(named(testApp))
	if res.err == nil || res.err.Code != tokenbroker.CodeUnavailable {
		t.Fatalf("want 503 once the token expired, got %+v", res)
	}
}

func TestIdleUserCredentialLeavesMemory(t *testing.T) {
	h := newHarness(t, harnessOpts{idleTimeout: 100 * time.Millisecond})
	h.mustToken(user(testPassword), tokenbroker.ActionNew)
	testkit.Eventually(t, waitFor, func() error {
		if n := h.router.Credentials(); n != 0 {
			return notYet("%d credentials in memory", n)
		}
		return nil
	})
	// A new incarnation serves the user again, from the IdP.
	h.mustToken(user(testPassword), tokenbroker.ActionNew)
	wantCalls(t, h.idp, "password", 2)
}

func mustInt(t testing.TB, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("%q is not a number", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestCallerPastItsDeadlineGets504(t *testing.T) {
	h := newHarness(t, harnessOpts{reqTimeout: 200 * time.Millisecond})
	h.idp.Fail(fakeidp.FailHang(), 1)
	res := h.ask(named(testApp))
	if res.err == nil || res.err.Code != tokenbroker.CodeTimeout {
		t.Fatalf("want 504, got %+v", res)
	}
	// The next caller waits on the same hung call, not a new one.
	if res := h.ask(named(testApp)); res.err == nil || res.err.Code != tokenbroker.CodeTimeout {
		t.Fatalf("want 504 again, got %+v", res)
	}
	if got := h.idp.Calls(); got != 1 {
		t.Fatalf("IdP calls: %d, want 1", got)
	}
}

func TestRequestsToAGoneActorReachANewOne(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.mustToken(named(testApp), tokenbroker.ActionNew)
	v, _ := h.router.cells.load(h.router.lookup(testApp).key)
	gone := v.pid
	// The actor dies behind the Router's back, its cell still in place.
	<-h.router.opts.Engine.Stop(gone).Done()
	got := h.mustToken(tokenbroker.Request{Credential: testApp, ForceRefresh: true}, tokenbroker.ActionNew)
	if got.AccessToken == first.AccessToken {
		t.Fatal("not a new token")
	}
	v, _ = h.router.cells.load(h.router.lookup(testApp).key)
	if v.pid.Equals(gone) {
		t.Fatal("the cell still points at the gone actor")
	}
}
