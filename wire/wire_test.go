package wire_test

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/wire"
)

func TestSubjects(t *testing.T) {
	for _, tc := range []struct {
		s                                             wire.Subjects
		request, refreshed, failed, allRef, allFailed string
	}{
		{wire.Subjects{}, "token.request", "token.refreshed.app", "token.failed.app", "token.refreshed.>", "token.failed.>"},
		{wire.Subjects{Prefix: "prod.token"}, "prod.token.request", "prod.token.refreshed.app", "prod.token.failed.app", "prod.token.refreshed.>", "prod.token.failed.>"},
	} {
		got := []string{tc.s.Request(), tc.s.Refreshed("app"), tc.s.Failed("app"), tc.s.AllRefreshed(), tc.s.AllFailed()}
		want := []string{tc.request, tc.refreshed, tc.failed, tc.allRef, tc.allFailed}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("prefix %q: got %q, want %q", tc.s.Prefix, got, want)
		}
	}
}

func TestEncodeRequest(t *testing.T) {
	for _, tc := range []struct {
		req  tokenbroker.Request
		want string
	}{
		{tokenbroker.Request{Credential: "app"}, `{"credential":"app"}`},
		{tokenbroker.Request{Username: "u", Password: "p@ss\"", ForceRefresh: true, MinTTL: 60},
			`{"username":"u","password":"p@ss\"","force_refresh":true,"min_ttl":60}`},
	} {
		got := wire.EncodeRequest(tc.req)
		if string(got) != tc.want {
			t.Errorf("EncodeRequest: got %s, want %s", got, tc.want)
		}
		// The broker must read back exactly what the client meant, the
		// password in particular, which the root package's own JSON hides.
		back, err := tokenbroker.DecodeRequest(got)
		if err != nil {
			t.Fatalf("the broker refuses %s: %v", got, err)
		}
		if back != tc.req {
			t.Errorf("round trip: got %#v, want %#v", back, tc.req)
		}
	}
}

func msgOf(hdr map[string]string, body string) *nats.Msg {
	m := nats.NewMsg("_INBOX.x")
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	m.Data = []byte(body)
	return m
}

func TestDecodeReply(t *testing.T) {
	const ok = `{"accesstoken":"tok","expires_on":"1526704330","action":"retrieved new token","token_type":"Bearer","expires_in":3599,"credential_id":"x"}`
	rep, err := wire.DecodeReply(msgOf(nil, ok))
	if err != nil {
		t.Fatal(err)
	}
	want := tokenbroker.Reply{AccessToken: "tok", ExpiresOn: "1526704330", Action: tokenbroker.ActionNew, TokenType: "Bearer", ExpiresIn: 3599, CredentialID: "x"}
	if *rep != want {
		t.Fatalf("reply %+v, want %+v", *rep, want)
	}

	const (
		codeH = micro.ErrorCodeHeader
		descH = micro.ErrorHeader
	)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		body string
		want tokenbroker.Error
	}{
		{"body's words win over the header's", map[string]string{descH: "short", codeH: "401"},
			`{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`,
			tokenbroker.Error{Code: 401, OAuth: tokenbroker.OAuthInvalidClient, Description: "AADSTS7000215: Invalid client secret provided."}},
		{"header only: description from the header, OAuth from the code", map[string]string{descH: "throttled", codeH: "503"}, "",
			tokenbroker.Error{Code: 503, OAuth: tokenbroker.OAuthTemporarilyUnavailable, Description: "throttled"}},
		{"Retry-After in the body", map[string]string{codeH: "503", wire.RetryAfterHeader: "7"},
			`{"error":"temporarily_unavailable","error_description":"IdP throttling","retry_after":30}`,
			tokenbroker.Error{Code: 503, OAuth: tokenbroker.OAuthTemporarilyUnavailable, Description: "IdP throttling", RetryAfter: 30}},
		{"Retry-After in the header only", map[string]string{codeH: "503", wire.RetryAfterHeader: " 7 "},
			`{"error":"temporarily_unavailable","error_description":"IdP throttling"}`,
			tokenbroker.Error{Code: 503, OAuth: tokenbroker.OAuthTemporarilyUnavailable, Description: "IdP throttling", RetryAfter: 7}},
		{"a Retry-After that is no number of seconds", map[string]string{codeH: "503", wire.RetryAfterHeader: "Wed, 21 Oct 2015 07:28:00 GMT"}, "",
			tokenbroker.Error{Code: 503, OAuth: tokenbroker.OAuthTemporarilyUnavailable}},
		{"a code that is no number", map[string]string{codeH: "teapot", descH: "odd"}, "",
			tokenbroker.Error{Code: 500, OAuth: tokenbroker.OAuthServerError, Description: "odd"}},
		{"an error body without the headers", nil, `{"error":"invalid_request","error_description":"bad"}`,
			tokenbroker.Error{Code: 500, OAuth: tokenbroker.OAuthInvalidRequest, Description: "bad"}},
		{"not JSON", nil, `<html>`, tokenbroker.Error{Code: 502, OAuth: tokenbroker.OAuthServerError}},
		{"no accesstoken", nil, `{"expires_on":"1"}`,
			tokenbroker.Error{Code: 502, OAuth: tokenbroker.OAuthServerError, Description: "the broker's reply has no accesstoken"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := wire.DecodeReply(msgOf(tc.hdr, tc.body))
			if err == nil {
				t.Fatalf("want an error, got %+v", rep)
			}
			e, isErr := err.(*tokenbroker.Error)
			if !isErr {
				t.Fatalf("want a bare *tokenbroker.Error, got %T %v", err, err)
			}
			if tc.want.Code == 502 && tc.want.Description == "" {
				tc.want.Description = e.Description // the JSON parser's words
			}
			if *e != tc.want {
				t.Fatalf("got %#v, want %#v", *e, tc.want)
			}
		})
	}

	if e := wire.DecodeError(msgOf(nil, ok)); e != nil {
		t.Fatalf("DecodeError of a reply: %v", e)
	}
}

func TestHeaderValue(t *testing.T) {
	got := wire.HeaderValue("AADSTS50126: Error validating credentials.\r\nTrace ID: 1\nCorrelation ID: 2\rTimestamp: 3")
	if want := "AADSTS50126: Error validating credentials. Trace ID: 1 Correlation ID: 2 Timestamp: 3"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestErrorThroughMicro answers with the micro service's own error call,
// as the broker does, and checks that DecodeReply gives back the error the
// broker meant, a multi-line description and Retry-After included.
func TestErrorThroughMicro(t *testing.T) {
	s := natstest.StartServer(t)
	srv := natstest.Connect(t, s)
	sent := &tokenbroker.Error{Code: tokenbroker.CodeUnavailable, OAuth: tokenbroker.OAuthTemporarilyUnavailable,
		Description: "AADSTS90033: throttled.\r\nTrace ID: 1", RetryAfter: 12}
	svc, err := micro.AddService(srv, micro.Config{
		Name: wire.ServiceName, Version: "0.0.1", QueueGroup: wire.QueueGroup,
		Endpoint: &micro.EndpointConfig{
			Subject: wire.Subjects{}.Request(),
			Handler: micro.HandlerFunc(func(r micro.Request) {
				if _, err := tokenbroker.DecodeRequest(r.Data()); err != nil {
					e := tokenbroker.AsError(err)
					_ = r.Error(strconv.Itoa(e.Code), wire.HeaderValue(e.Description), tokenbroker.EncodeError(e))
					return
				}
				_ = r.Error(strconv.Itoa(sent.Code), wire.HeaderValue(sent.Description), tokenbroker.EncodeError(sent),
					micro.WithHeaders(micro.Headers{wire.RetryAfterHeader: {strconv.Itoa(sent.RetryAfter)}}))
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	caller := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	msg, err := caller.RequestWithContext(ctx, wire.Subjects{}.Request(), wire.EncodeRequest(tokenbroker.Request{Credential: "app"}))
	if err != nil {
		t.Fatal(err)
	}
	if h := msg.Header.Get(micro.ErrorHeader); h != "AADSTS90033: throttled. Trace ID: 1" {
		t.Fatalf("Nats-Service-Error %q", h)
	}
	_, err = wire.DecodeReply(msg)
	var got *tokenbroker.Error
	if !errors.As(err, &got) || *got != *sent {
		t.Fatalf("got %v, want %#v", err, *sent)
	}

	// A request the broker refuses comes back as its 400.
	msg, err = caller.RequestWithContext(ctx, wire.Subjects{}.Request(), wire.EncodeRequest(tokenbroker.Request{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.DecodeReply(msg); !errors.As(err, &got) || got.Code != tokenbroker.CodeInvalidRequest || got.OAuth != tokenbroker.OAuthInvalidRequest {
		t.Fatalf("empty request: %v", err)
	}
}

func TestEvents(t *testing.T) {
	s := wire.Subjects{Prefix: "tb"}
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ref := tokenbroker.RefreshedEvent{EventID: "id-1", CredentialID: "app", AccessToken: "tok", TokenType: "Bearer",
		ExpiresOn: "1795870800", ExpiresIn: 3599, Action: tokenbroker.ActionRefreshed, RefreshedAt: at}
	msg, err := wire.EncodeRefreshed(s, ref)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "tb.refreshed.app" || msg.Header.Get(nats.MsgIdHdr) != "id-1" {
		t.Fatalf("subject %q, Nats-Msg-Id %q", msg.Subject, msg.Header.Get(nats.MsgIdHdr))
	}
	if gotRef, err := wire.DecodeRefreshed(msg.Data); err != nil || gotRef != ref {
		t.Fatalf("refreshed round trip: %+v %v", gotRef, err)
	}

	fail := tokenbroker.FailedEvent{EventID: "id-2", CredentialID: "app", Error: tokenbroker.OAuthInvalidGrant, Description: "AADSTS70008", At: at}
	msg, err = wire.EncodeFailed(s, fail)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "tb.failed.app" || msg.Header.Get(nats.MsgIdHdr) != "id-2" {
		t.Fatalf("subject %q, Nats-Msg-Id %q", msg.Subject, msg.Header.Get(nats.MsgIdHdr))
	}
	if gotFail, err := wire.DecodeFailed(msg.Data); err != nil || gotFail != fail {
		t.Fatalf("failed round trip: %+v %v", gotFail, err)
	}

	// The README's example event, as a consumer in another language sees it.
	readme := `{"event_id":"6f1c","credential_id":"crm-prod","accesstoken":"eyJ0eXAi","token_type":"Bearer",
 "expires_on":"1795870800","expires_in":3599,"action":"refreshed existing token",
 "refreshed_at":"2026-11-28T12:00:00Z"}`
	if e, err := wire.DecodeRefreshed([]byte(readme)); err != nil || e.CredentialID != "crm-prod" || e.AccessToken != "eyJ0eXAi" || !e.RefreshedAt.Equal(at) {
		t.Fatalf("README event: %+v %v", e, err)
	}

	for _, bad := range []string{``, `<html>`, `[]`, `{"credential_id":"app","expires_on":"1"}`, `{"accesstoken":42}`} {
		if e, err := wire.DecodeRefreshed([]byte(bad)); err == nil {
			t.Errorf("DecodeRefreshed(%s) = %+v, want an error", bad, e)
		}
	}
	for _, bad := range []string{``, `{"credential_id":"app"}`, `{"error":1}`} {
		if e, err := wire.DecodeFailed([]byte(bad)); err == nil {
			t.Errorf("DecodeFailed(%s) = %+v, want an error", bad, e)
		}
	}

	if _, err := wire.EncodeRefreshed(s, tokenbroker.RefreshedEvent{CredentialID: "app", RefreshedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("an event that cannot be encoded encoded")
	}
}

func TestReplyPrefixesMayNotReachTheBrokersOwnSubjects(t *testing.T) {
	for _, tc := range []struct {
		prefixes []string
		want     []string // nil: refused
	}{
		{nil, []string{"_INBOX."}},
		{[]string{"_INBOX", "_INBOX_crm."}, []string{"_INBOX.", "_INBOX_crm."}},
		{[]string{""}, nil},
		{[]string{"."}, nil},
		{[]string{"$KV"}, nil},
		{[]string{"_INBOX_tokenbroker"}, nil},
		{[]string{"_INBOX_tokenbroker.x"}, nil},
		{[]string{"$JS.API"}, nil},
		{[]string{"token"}, nil},
		{[]string{"token.refreshed"}, nil},
		{[]string{"_INBOX.*"}, nil},
		{[]string{"_INBOX.>"}, nil},
		{[]string{"a b"}, nil},
		{[]string{"a..b"}, nil},
	} {
		got, err := wire.CheckReplyPrefixes(tc.prefixes, "token")
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("%q: accepted as %q", tc.prefixes, got)
		case tc.want != nil && (err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",")):
			t.Errorf("%q: got %q, %v; want %q", tc.prefixes, got, err, tc.want)
		}
	}
	if _, err := wire.CheckReplyPrefixes([]string{"tb.x"}, "tb"); err == nil {
		t.Error("a prefix under a custom subject prefix was accepted")
	}
}
