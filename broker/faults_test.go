package broker_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// errorOf returns the error code and body of a refused request, failing the
// test on a token.
func errorOf(t *testing.T, e *env, body string) (string, tokenbroker.ErrorReply) {
	t.Helper()
	msg := e.request(t, body)
	code := msg.Header.Get(micro.ErrorCodeHeader)
	var er tokenbroker.ErrorReply
	if code == "" || json.Unmarshal(msg.Data, &er) != nil || er.Error == "" {
		t.Fatalf("want an error, got %s (code %q)", msg.Data, code)
	}
	return code, er
}

func TestGarbageFromTheIdPIsA502AndNothingIsCached(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	for _, f := range []fakeidp.Failure{
		fakeidp.FailHTML(200), fakeidp.FailTruncated(), fakeidp.FailMissingAccessToken(),
		fakeidp.FailLifetime("0"), fakeidp.FailLifetime("-60"), fakeidp.FailLifetime("9999999999"),
		fakeidp.Fail200WithError(),
	} {
		t.Run(f.String(), func(t *testing.T) {
			before := e.idp.Calls()
			e.idp.Fail(f, 1)
			code, er := errorOf(t, e, `{"credential":"app","force_refresh":true}`)
			if code != "502" || er.Error != "server_error" {
				t.Fatalf("%s: got %s %+v", f, code, er)
			}
			// Garbage is not retried, and nothing of it was cached.
			if got := e.idp.Calls() - before; got != 1 {
				t.Fatalf("%d IdP calls for one garbage answer", got)
			}
			r := decodeReply(t, e.request(t, `{"credential":"app","force_refresh":true}`))
			if !e.idp.Valid(r.AccessToken) {
				t.Fatal("the next token is not one the IdP issued")
			}
		})
	}
}

func TestUnreachableIdPIsRetriedWithBackoffThenFailsFast(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	e.idp.Fail(fakeidp.FailStatus(503, "", ""), -1)
	began := time.Now()
	code, er := errorOf(t, e, `{"credential":"app"}`)
	if code != "503" || er.Error != "temporarily_unavailable" {
		t.Fatalf("got %s %+v", code, er)
	}
	if got := e.idp.Calls(); got != 3 {
		t.Fatalf("IdP calls %d, want 3 attempts", got)
	}
	t.Logf("first 503 after %s", time.Since(began))
	// Two more failures open the endpoint's breaker; after that callers
	// get a 503 without the IdP being asked at all.
	errorOf(t, e, `{"credential":"app"}`)
	calls := e.idp.Calls()
	code, er = errorOf(t, e, `{"credential":"app"}`)
	if code != "503" || e.idp.Calls() != calls {
		t.Fatalf("breaker open: got %s %+v after %d more IdP calls", code, er, e.idp.Calls()-calls)
	}
}

func TestRetryAfterIsHonouredBeforeTheNextAttempt(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	e.idp.Fail(fakeidp.FailRetryAfter(429, 1), 1)
	began := time.Now()
	r := decodeReply(t, e.request(t, `{"credential":"app"}`))
	if waited := time.Since(began); waited < time.Second {
		t.Fatalf("answered after %s, before the IdP's Retry-After of 1s", waited)
	}
	if r.Action != tokenbroker.ActionNew || e.idp.Calls() != 2 {
		t.Fatalf("reply %+v after %d IdP calls", r, e.idp.Calls())
	}
}

func TestStillValidTokenIsServedWhileTheIdPIsDown(t *testing.T) {
	e := start(t, 4*time.Second, 2*time.Second)
	first := decodeReply(t, e.request(t, `{"credential":"app"}`))
	e.idp.Fail(fakeidp.FailStatus(503, "", ""), -1)
	// Past the threshold, until it expires, the token keeps being served
	// while the background refresh keeps failing.
	deadline := time.Unix(mustUnix(t, first.ExpiresOn), 0)
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		msg := e.request(t, `{"credential":"app"}`)
		if msg.Header.Get(micro.ErrorCodeHeader) != "" {
			if !time.Now().After(deadline.Add(-time.Second)) {
				t.Fatalf("refused %s before the token expired at %s", msg.Data, deadline)
			}
			if code := msg.Header.Get(micro.ErrorCodeHeader); code != "503" {
				t.Fatalf("after expiry: %s %s", code, msg.Data)
			}
			break
		}
		r := decodeReply(t, msg)
		if r.AccessToken != first.AccessToken {
			t.Fatal("another token while the IdP is down")
		}
		if time.Now().After(deadline.Add(2 * time.Second)) {
			t.Fatalf("still served %+v after expiry", r)
		}
		<-poll.C
	}
	if e.idp.Calls() < 2 {
		t.Fatalf("the background refresh did not try (%d IdP calls)", e.idp.Calls())
	}
}

func TestRevokedRefreshTokenInTheBackgroundPublishesOneFailedEvent(t *testing.T) {
	e := start(t, 4*time.Second, 2*time.Second)
	failed, err := e.nc.SubscribeSync("token.failed.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	userReq := `{"username":"` + user + `","password":"` + password + `"}`
	first := decodeReply(t, e.request(t, userReq))
	e.idp.RevokeRefreshTokens()
	msg, err := failed.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no token.failed event: %v", err)
	}
	var ev tokenbroker.FailedEvent
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.CredentialID != first.CredentialID || ev.Error != "invalid_grant" {
		t.Fatalf("event %s", msg.Data)
	}
	if strings.Contains(string(msg.Data), password) || strings.Contains(string(msg.Data), user) {
		t.Fatal("the failed event carries a secret")
	}
	// The next request brings the password: a fresh grant, no new event.
	next := decodeReply(t, e.request(t, userReq))
	if next.AccessToken == first.AccessToken && next.Action != tokenbroker.ActionExisting {
		t.Fatalf("next %+v", next)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := failed.Pending(); n != 0 {
		t.Fatalf("%d more token.failed events", n)
	}
	if got := e.idp.CallsFor("refresh_token"); got != 1 {
		t.Fatalf("refresh_token calls %d, want 1 (no retry of a rejection)", got)
	}
}

func mustUnix(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
