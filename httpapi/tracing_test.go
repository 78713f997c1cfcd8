package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/internal/spantest"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// serveTraced sends one /requesttoken request with the caller's
// traceparent through h and returns the status.
func serveTraced(h http.Handler, contentType, body string, caller spantest.Caller) int {
	req := httptest.NewRequest(http.MethodPost, "http://localhost/requesttoken", strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("traceparent", caller.Traceparent())
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req) // the span has ended when it returns
	return rr.Code
}

func TestRequestTokenHonoursTraceparent(t *testing.T) {
	rec := spantest.Start(t)
	traced := make(chan bool, 1)
	svc := &stub{serve: func(req tokenbroker.Request, rep tokenbroker.Replier) {
		traced <- tracing.Of(rep) != nil
		switch req.Credential {
		case "hit":
			rep.Respond(tokenbroker.ActionExisting, replyBody(t, tokenbroker.ActionExisting))
		case "down":
			go rep.Fail(tokenbroker.Errorf(503, tokenbroker.OAuthTemporarilyUnavailable, "the IdP is down"))
		default:
			go rep.Respond(tokenbroker.ActionNew, replyBody(t, tokenbroker.ActionNew))
		}
	}}
	h := httpapi.NewHandler(httpapi.Options{Service: svc})

	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		attrs                   map[string]string
		errorStatus             bool
	}{
		{"user, answered later", "application/json", helperRequest, 200,
			map[string]string{"tokenbroker.cache": "miss", "tokenbroker.credential": "u-3f9a1c0e", "http.response.status_code": "200", "tokenbroker.transport": "http"}, false},
		{"named, cache hit", "application/json", `{"credential":"hit"}`, 200,
			map[string]string{"tokenbroker.cache": "hit", "tokenbroker.credential": "hit", "url.path": "/requesttoken"}, false},
		{"IdP down", "application/json", `{"credential":"down"}`, 503,
			map[string]string{"tokenbroker.outcome": "503", "tokenbroker.error": "temporarily_unavailable", "http.response.status_code": "503"}, true},
		{"not JSON", "text/plain", helperRequest, 415,
			map[string]string{"tokenbroker.outcome": "415", "http.response.status_code": "415"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caller := spantest.NewCaller(t)
			if got := serveTraced(h, tc.contentType, tc.body, caller); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if tc.status != 415 && !<-traced {
				t.Error("the Service did not find the request's trace on its replier")
			}
			spans := rec.InTrace(caller.TraceID())
			if len(spans) != 1 {
				t.Fatalf("%d spans in the caller's trace, want 1:%s", len(spans), spantest.Describe(rec.Spans()))
			}
			s := spans[0]
			if s.Name != tracing.SpanRequest || s.SpanKind != trace.SpanKindServer || s.Parent.SpanID() != caller.SpanID() {
				t.Errorf("span:%s", spantest.Describe(spans))
			}
			for key, want := range tc.attrs {
				if got := spantest.AttrString(s, attribute.Key(key)); got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
			if (s.Status.Code == codes.Error) != tc.errorStatus {
				t.Errorf("status %v", s.Status)
			}
		})
	}
	all := spantest.Everything(rec.Spans())
	for _, secret := range []string{testUser, testPassword, testToken} {
		if strings.Contains(all, secret) {
			t.Errorf("%.6s... in the spans", secret)
		}
	}
}

// Off, the Service gets an untraced replier and nothing is recorded.
func TestRequestTokenUntracedWhenOff(t *testing.T) {
	if tracing.Enabled() {
		t.Fatal("tracing on")
	}
	traced := make(chan bool, 1)
	h := httpapi.NewHandler(httpapi.Options{Service: &stub{serve: func(_ tokenbroker.Request, rep tokenbroker.Replier) {
		_, ok := rep.(tracing.Traced)
		traced <- ok && rep.(tracing.Traced).Trace() != nil
		rep.Respond(tokenbroker.ActionExisting, replyBody(t, tokenbroker.ActionExisting))
	}}})
	if got := serveTraced(h, "application/json", `{"credential":"hit"}`, spantest.NewCaller(t)); got != 200 {
		t.Fatalf("status %d", got)
	}
	if <-traced {
		t.Error("a trace with tracing off")
	}
}
