package messaging_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/wire"
)

// stub answers like a broker would: from the handler for "sync", from
// another goroutine (as an actor does) for everything else.
type stub struct{}

func (stub) Serve(req tokenbroker.Request, rep tokenbroker.Replier) {
	if req.Credential == "sync" {
		rep.Respond(tokenbroker.ActionExisting, []byte(`{"accesstoken":"sync"}`))
		return
	}
	go func() {
		if req.Credential == "missing" {
			rep.Fail(tokenbroker.Errorf(404, "unknown_credential", "no credential named %q", req.Credential))
			return
		}
		rep.Respond(tokenbroker.ActionNew, []byte(`{"accesstoken":"async"}`))
	}()
}

func startService(t *testing.T) (*nats.Conn, *messaging.Service) {
	t.Helper()
	s := natstest.StartServer(t)
	nc := natstest.Connect(t, s)
	svc, err := messaging.NewService(nc, wire.Subjects{Prefix: "token"}, stub{}, messaging.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return natstest.Connect(t, s), svc
}

func TestServiceAnswersWithMicroErrorHeaders(t *testing.T) {
	caller, svc := startService(t)
	tests := []struct {
		name     string
		body     string
		wantCode string
		wantBody string
	}{
		{"cache hit answered in the handler", `{"credential":"sync"}`, "", `{"accesstoken":"sync"}`},
		{"answer from another goroutine", `{"credential":"app"}`, "", `{"accesstoken":"async"}`},
		{"error from another goroutine", `{"credential":"missing"}`, "404", `"error":"unknown_credential"`},
		{"malformed JSON", `{"credential":`, "400", `"error":"invalid_request"`},
		{"wrong type", `{"credential":42}`, "400", `field \"credential\" must be a string`},
		{"both kinds", `{"credential":"a","username":"u","password":"p"}`, "400", `not both`},
		{"oversized", `{"credential":"` + strings.Repeat("a", tokenbroker.MaxRequestBytes) + `"}`, "413", `over the limit`},
		{"invalid UTF-8", "{\"credential\":\"\xff\"}", "400", `UTF-8`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := caller.Request("token.request", []byte(tc.body), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.Header.Get(micro.ErrorCodeHeader); got != tc.wantCode {
				t.Fatalf("error code header %q, want %q (body %s)", got, tc.wantCode, msg.Data)
			}
			if tc.wantCode != "" && msg.Header.Get(micro.ErrorHeader) == "" {
				t.Fatal("no Nats-Service-Error header")
			}
			if !strings.Contains(string(msg.Data), tc.wantBody) {
				t.Fatalf("body %s does not contain %s", msg.Data, tc.wantBody)
			}
		})
	}
	if got := svc.Counts().Requests; got != uint64(len(tests)) {
		t.Fatalf("%d requests counted, want %d", got, len(tests))
	}
	// micro counts a request once its handler has returned, which may be
	// after the reply was received.
	testkit.Eventually(t, 5*time.Second, func() error {
		stats := svc.Stats()
		if len(stats.Endpoints) != 2 || stats.Endpoints[0].NumRequests != len(tests) {
			return fmt.Errorf("micro stats: %+v", stats.Endpoints)
		}
		return nil
	})
}

func TestServiceRegistersAsMicroService(t *testing.T) {
	caller, _ := startService(t)
	msg, err := caller.Request("$SRV.INFO.tokenbroker", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != wire.ServiceName || len(info.Endpoints) != 2 {
		t.Fatalf("info %+v", info)
	}
	for i, subject := range []string{"token.request", "token.request.*"} {
		if ep := info.Endpoints[i]; ep.Subject != subject || ep.QueueGroup != wire.QueueGroup {
			t.Fatalf("endpoint %d: %+v, want %s in queue group %s", i, ep, subject, wire.QueueGroup)
		}
	}
}

func TestPublisherSendsEventsWithMsgID(t *testing.T) {
	s := natstest.StartServer(t)
	nc := natstest.Connect(t, s)
	sub, err := nc.SubscribeSync("tb.refreshed.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := messaging.NewPublisher(natstest.Connect(t, s), wire.Subjects{Prefix: "tb"}, nil, nil)
	p.PublishRefreshed(tokenbroker.RefreshedEvent{EventID: "e-1", CredentialID: "app", AccessToken: "tok", TokenType: "Bearer",
		ExpiresOn: "1795870800", ExpiresIn: 3599, Action: tokenbroker.ActionRefreshed, RefreshedAt: time.Unix(1795867200, 0).UTC()})
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "tb.refreshed.app" || msg.Header.Get(nats.MsgIdHdr) != "e-1" {
		t.Fatalf("subject %q, Nats-Msg-Id %q", msg.Subject, msg.Header.Get(nats.MsgIdHdr))
	}
	want := `{"event_id":"e-1","credential_id":"app","accesstoken":"tok","token_type":"Bearer","expires_on":"1795870800","expires_in":3599,"action":"refreshed existing token","refreshed_at":"2026-11-28T12:00:00Z"}`
	if string(msg.Data) != want {
		t.Fatalf("event\n got %s\nwant %s", msg.Data, want)
	}
}

type throttled struct{}

func (throttled) Serve(_ tokenbroker.Request, rep tokenbroker.Replier) {
	go rep.Fail(&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "slow down", RetryAfter: 7})
}

func TestThrottledErrorsCarryRetryAfter(t *testing.T) {
	s := natstest.StartServer(t)
	svc, err := messaging.NewService(natstest.Connect(t, s), wire.Subjects{}, throttled{}, messaging.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	msg, err := natstest.Connect(t, s).Request("token.request", []byte(`{"credential":"x"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Retry-After") != "7" || msg.Header.Get(micro.ErrorCodeHeader) != "503" {
		t.Fatalf("headers %v", msg.Header)
	}
	if want := `{"error":"temporarily_unavailable","error_description":"slow down","retry_after":7}`; string(msg.Data) != want {
		t.Fatalf("body %s", msg.Data)
	}
}

// fastStub is an AppendService: "hit" is answered into the handler's
// buffer, "late" refused from another goroutine, as an actor does, and
// anything else refused at once.
type fastStub struct{ stub }

func (f fastStub) ServeAppend(dst []byte, req *tokenbroker.Request, rep tokenbroker.Replier) ([]byte, bool) {
	switch req.Credential {
	case "hit":
		return append(dst, `{"accesstoken":"hit"}`...), true
	case "late":
		go rep.Fail(tokenbroker.Errorf(401, "invalid_grant", "refused by the identity provider"))
	default:
		rep.Fail(tokenbroker.Errorf(404, "unknown_credential", "no such credential"))
	}
	return dst, false
}

// Every error counts, however late it is answered: micro's own NumErrors
// misses those answered after the handler returned.
func TestServiceCountsEveryError(t *testing.T) {
	s := natstest.StartServer(t)
	svc, err := messaging.NewService(natstest.Connect(t, s), wire.Subjects{}, fastStub{},
		messaging.ServiceOptions{Status: func() any { return map[string]int{"credentials": 3} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	caller := natstest.Connect(t, s)
	ask := func(body, wantCode, wantBody string) {
		t.Helper()
		msg, err := caller.Request("token.request", []byte(body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.Header.Get(micro.ErrorCodeHeader); got != wantCode || !strings.Contains(string(msg.Data), wantBody) {
			t.Fatalf("%s: code %q body %s, want code %q and %s", body, got, msg.Data, wantCode, wantBody)
		}
	}
	for range 3 {
		ask(`{"credential":"late"}`, "401", `"invalid_grant"`)
		ask(`{"credential":"hit"}`, "", `"hit"`)
	}
	ask(`{"credential":"gone"}`, "404", `"unknown_credential"`)
	ask(`{"credential":`, "400", `"invalid_request"`)
	ask(`{"credential":"hit"}`, "", `"hit"`)

	if got, want := svc.Counts(), (messaging.Counts{Requests: 9, Errors: 5}); got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
	msg, err := caller.Request("$SRV.STATS.tokenbroker", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stats micro.Stats
	if err := json.Unmarshal(msg.Data, &stats); err != nil || len(stats.Endpoints) != 2 {
		t.Fatalf("stats %s: %v", msg.Data, err)
	}
	var data struct {
		messaging.Counts
		Credentials int `json:"credentials"`
	}
	if err := json.Unmarshal(stats.Endpoints[0].Data, &data); err != nil {
		t.Fatalf("endpoint data %s: %v", stats.Endpoints[0].Data, err)
	}
	if data.Errors != 5 || data.Requests != 9 || data.Credentials != 3 {
		t.Fatalf("endpoint data %s: want 9 requests, 5 errors and the status's fields", stats.Endpoints[0].Data)
	}
}
