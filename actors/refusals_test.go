package actors

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// A username whose sign-in the IdP refused, with no token, leaves memory
// at once: a flood of refused logins leaves nothing behind.
func TestRefusedLoginsLeaveNothingBehind(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.mustToken(named(testApp), tokenbroker.ActionNew) // a kept-warm credential stays
	const n = 50
	for i := range n {
		res := h.ask(tokenbroker.Request{Username: "nobody" + strconv.Itoa(i) + "@contoso.example", Password: "guess"})
		if res.err == nil || res.err.Code != tokenbroker.CodeRejected {
			t.Fatalf("login %d: %+v, want a 401", i, res)
		}
	}
	testkit.Eventually(t, waitFor, func() error {
		if got := h.router.Credentials(); got != 1 {
			return notYet("%d credentials in memory, want only the named one", got)
		}
		return nil
	})
	// A user with a token stays, even after a wrong password.
	h.mustToken(user(testPassword), tokenbroker.ActionNew)
	if res := h.ask(user("wrong")); res.err == nil || res.err.Code != tokenbroker.CodeRejected {
		t.Fatalf("wrong password: %+v", res)
	}
	h.mustToken(user(testPassword), tokenbroker.ActionExisting)
	if got := h.router.Credentials(); got != 2 {
		t.Fatalf("%d credentials in memory, want the named one and the user with a token", got)
	}
}

// After DefaultMaxRefusals refused sign-ins of one username within the
// window, further ones that need the IdP get a 429 without reaching it,
// while the right password on a cached token is still served; the limit
// ends with the window.
func TestRefusedLoginsAreLimitedPerUsername(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOpts{clock: clk})
	good := h.mustToken(user(testPassword), tokenbroker.ActionNew)

	// Many wrong passwords at once, and the owner's own forced refresh
	// among them: the wrong ones stop reaching the IdP after the limit,
	// so the owner's request does not wait behind all of them.
	const wrong = 40
	var wg sync.WaitGroup
	results := make([]result, wrong)
	for i := range wrong {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.ask(user("guess-" + strconv.Itoa(i)))
		}()
	}
	forced := h.ask(tokenbroker.Request{Username: testUser, Password: testPassword, ForceRefresh: true})
	wg.Wait()
	if forced.err != nil || forced.action != tokenbroker.ActionRefreshed {
		t.Fatalf("the owner's forced refresh: %+v", forced)
	}
	var refused, limited int
	for i, res := range results {
		switch {
		case res.err == nil:
			t.Fatalf("wrong password %d got a token", i)
		case res.err.Code == tokenbroker.CodeRejected:
			refused++
		case res.err.Code == tokenbroker.CodeTooMany && res.err.RetryAfter > 0 && res.err.RetryAfter <= 60:
			limited++
		default:
			t.Fatalf("wrong password %d: %+v, want a 401 or a 429 with retry_after", i, res.err)
		}
	}
	if refused != DefaultMaxRefusals || limited != wrong-DefaultMaxRefusals {
		t.Fatalf("%d refused by the IdP and %d limited, want %d and %d", refused, limited, DefaultMaxRefusals, wrong-DefaultMaxRefusals)
	}
	wantCalls(t, h.idp, "password", 1+DefaultMaxRefusals) // the first token, then the refused ones

	// The right password is still served from cache...
	if again := h.mustToken(user(testPassword), tokenbroker.ActionExisting); again.AccessToken == good.AccessToken {
		t.Fatal("the forced refresh did not replace the token")
	}
	// ...another wrong one is limited without an IdP call...
	if res := h.ask(user("one more guess")); res.err == nil || res.err.Code != tokenbroker.CodeTooMany {
		t.Fatalf("after the limit: %+v, want a 429", res)
	}
	wantCalls(t, h.idp, "password", 1+DefaultMaxRefusals)
	// ...and once the window has passed, the IdP is asked again.
	clk.Advance(DefaultRefusalWindow)
	if res := h.ask(user("a new guess")); res.err == nil || res.err.Code != tokenbroker.CodeRejected {
		t.Fatalf("after the window: %+v, want the IdP's 401", res)
	}
	wantCalls(t, h.idp, "password", 2+DefaultMaxRefusals)
}

func TestRefusalsStayBounded(t *testing.T) {
	r := newRefusals(1, time.Minute)
	now := time.Now()
	keys := newTestKeyring(t)
	for i := range maxRefusalEntries + 10 {
		r.record(keys.userKey("default", strconv.Itoa(i)), now)
	}
	if n := len(r.m); n > maxRefusalEntries {
		t.Fatalf("%d usernames remembered, bound %d", n, maxRefusalEntries)
	}
	last := keys.userKey("default", strconv.Itoa(maxRefusalEntries+9))
	if r.blocked(last, now) == 0 {
		t.Fatal("the newest refusal was dropped")
	}
	if r.blocked(last, now.Add(time.Minute)) != 0 {
		t.Fatal("a refusal outlived its window")
	}
}
