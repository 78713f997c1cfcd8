package broker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

const (
	user     = brokertest.User
	password = brokertest.Password
	clientID = brokertest.PublicClient
	app      = brokertest.App
	secret   = brokertest.AppSecret
	resource = brokertest.Resource
)

type env struct {
	idp    *fakeidp.Server
	broker *broker.Broker
	nc     *nats.Conn
	logs   *testkit.LogBuffer
}

func start(t *testing.T, lifetime, threshold time.Duration, adjust ...func(*config.Config, *fakeidp.Server)) *env {
	t.Helper()
	e := brokertest.Start(t, brokertest.Options{
		Lifetime: lifetime, Threshold: threshold, Logs: newLogSink(),
		IdP: []fakeidp.Option{fakeidp.WithRecordIssued()},
		Adjust: func(c *config.Config, idp *fakeidp.Server) {
			for _, f := range adjust {
				f(c, idp)
			}
		},
	})
	suite.addIdP(e.IdP)
	nc, err := nats.Connect(e.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &env{idp: e.IdP, broker: e.Broker, nc: nc, logs: e.Logs}
}

func (e *env) request(t *testing.T, body string) *nats.Msg {
	t.Helper()
	msg, err := e.nc.Request("token.request", []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", body, err)
	}
	return msg
}

func decodeReply(t *testing.T, msg *nats.Msg) tokenbroker.Reply {
	t.Helper()
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("error %s: %s", code, msg.Data)
	}
	var r tokenbroker.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply %s: %v", msg.Data, err)
	}
	return r
}

// assertNoSecrets fails if any secret or token of the test shows in the logs.
func assertNoSecrets(t *testing.T, logs string, extra ...string) {
	t.Helper()
	for _, s := range append([]string{password, secret, user}, extra...) {
		if s != "" && strings.Contains(logs, s) {
			t.Fatalf("logs contain a secret (%.6s...):\n%s", s, logs)
		}
	}
}

func TestFiveHundredSimultaneousFirstRequestsOverNATS(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	const n = 500
	body := []byte(`{"username":"` + user + `","password":"` + password + `"}`)
	inbox := nats.NewInbox()
	replies := make(chan *nats.Msg, n)
	sub, err := e.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	release := e.idp.Hold()
	for i := 0; i < n; i++ {
		if err := e.nc.PublishRequest("token.request", inbox+"."+string(rune('a'+i%26))+strings.Repeat("x", i/26), body); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Every request reached the broker while the IdP holds the first call.
	testkit.Until(t, 10*time.Second, "every request at the broker", func() bool { return e.broker.Service().Stats().Endpoints[0].NumRequests == n })
	release()
	token := sameToken(t, replies, n, tokenbroker.ActionNew)
	if got := e.idp.Calls(); got != 1 {
		t.Fatalf("IdP calls: %d, want 1", got)
	}
	assertNoSecrets(t, e.logs.String(), token)
}

func TestProactiveRefreshIsPublishedOverNATS(t *testing.T) {
	e := start(t, 3*time.Second, time.Second)
	sub, err := e.nc.SubscribeSync("token.refreshed." + app)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	first := decodeReply(t, e.request(t, `{"credential":"app"}`))
	var events []tokenbroker.RefreshedEvent
	for len(events) < 2 {
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for event %d: %v", len(events)+1, err)
		}
		var ev tokenbroker.RefreshedEvent
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if msg.Header.Get(nats.MsgIdHdr) != ev.EventID || ev.EventID == "" {
			t.Fatalf("Nats-Msg-Id %q, event_id %q", msg.Header.Get(nats.MsgIdHdr), ev.EventID)
		}
		events = append(events, ev)
	}
	if events[0].AccessToken != first.AccessToken || events[0].Action != tokenbroker.ActionNew {
		t.Fatalf("first event %+v", events[0])
	}
	if events[1].Action != tokenbroker.ActionRefreshed || events[1].AccessToken == first.AccessToken {
		t.Fatalf("refresh event %+v", events[1])
	}
	next := decodeReply(t, e.request(t, `{"credential":"app"}`))
	if next.AccessToken != events[1].AccessToken || next.Action != tokenbroker.ActionExisting {
		t.Fatalf("after the refresh: %+v", next)
	}
	assertNoSecrets(t, e.logs.String(), first.AccessToken, next.AccessToken)
}

func TestErrorsCarryMicroHeaders(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	tests := []struct {
		name, body, code, oauth string
	}{
		{"IdP rejects the password", `{"username":"` + user + `","password":"wrong-password"}`, "401", "invalid_grant"},
		{"unknown named credential", `{"credential":"nope"}`, "404", "unknown_credential"},
		{"malformed request", `{"username":`, "400", "invalid_request"},
		{"min_ttl of the wrong type", `{"credential":"app","min_ttl":"10"}`, "400", "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := e.request(t, tc.body)
			if got := msg.Header.Get(micro.ErrorCodeHeader); got != tc.code {
				t.Fatalf("code %q, want %s (%s)", got, tc.code, msg.Data)
			}
			var er tokenbroker.ErrorReply
			if err := json.Unmarshal(msg.Data, &er); err != nil || er.Error != tc.oauth || er.Description == "" {
				t.Fatalf("body %s", msg.Data)
			}
			if want := strings.NewReplacer("\r\n", " ").Replace(er.Description); msg.Header.Get(micro.ErrorHeader) != want {
				t.Fatalf("Nats-Service-Error %q differs from error_description %q", msg.Header.Get(micro.ErrorHeader), er.Description)
			}
		})
	}
	assertNoSecrets(t, e.logs.String(), "wrong-password")
}

func TestShutdownAnswersRequestsInFlight(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	release := e.idp.Hold()
	reply := make(chan *nats.Msg, 1)
	sub, err := e.nc.ChanSubscribe(e.nc.NewRespInbox(), reply)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.PublishRequest("token.request", sub.Subject, []byte(`{"credential":"app"}`)); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 10*time.Second, "the IdP call in flight", func() bool { return e.idp.Calls() == 1 })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.broker.Shutdown(ctx)
	}()
	release()
	select {
	case msg := <-reply:
		if r := decodeReply(t, msg); r.AccessToken == "" {
			t.Fatal("empty token")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight was not answered")
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// sameToken reads n replies and fails unless all carry one token (and, when
// action is set, that action): a herd answered by one IdP call.
func sameToken(t *testing.T, replies <-chan *nats.Msg, n int, action string) string {
	t.Helper()
	var token string
	for i := 0; i < n; i++ {
		select {
		case msg := <-replies:
			r := decodeReply(t, msg)
			if action != "" && r.Action != action {
				t.Fatalf("reply %d: action %q, want %q", i, r.Action, action)
			}
			if token == "" {
				token = r.AccessToken
			} else if r.AccessToken != token {
				t.Fatalf("reply %d: another token", i)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d replies", i, n)
		}
	}
	return token
}
