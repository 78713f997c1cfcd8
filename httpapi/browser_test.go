package httpapi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/metrics"
)

// The attacks these tests replay come from a web page in the browser of
// someone who can reach the gateway:
//
//   - DNS rebinding: attacker.example first resolves to the attacker's
//     server, which serves the page, then to 127.0.0.1. The page's fetch of
//     http://attacker.example:5000/requesttoken is same-origin for the
//     browser, so it may read the answer; only the Host header, which
//     still says attacker.example, tells the gateway.
//   - A cross-site form post: <form enctype="text/plain" method="post">
//     can send a body that is valid JSON, and needs no CORS preflight. The
//     page cannot read the answer, but the request must still not be served.

// unreadBody fails the test if the handler reads the request body: a
// refused request must be refused on its headers alone.
type unreadBody struct{ t *testing.T }

func (b unreadBody) Read([]byte) (int, error) {
	b.t.Error("the handler read the body of a request it refuses")
	return 0, io.EOF
}

// serveOnce runs one request through the handler, as arriving on
// localAddr (the connection's own address) when it is not empty.
func serveOnce(t *testing.T, o httpapi.Options, method, path, host, localAddr, contentType string, body io.Reader) response {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	req.Host = host
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if localAddr != "" {
		a, err := net.ResolveTCPAddr("tcp", localAddr)
		if err != nil {
			t.Fatal(err)
		}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, a))
	}
	rec := httptest.NewRecorder()
	httpapi.NewHandler(o).ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func TestHostCheck(t *testing.T) {
	ok := replyBody(t, tokenbroker.ActionExisting)
	tests := []struct {
		name      string
		host      string
		localAddr string   // where the request arrived; "" for none known
		allowed   []string // Options.AllowedHosts
		want      bool
	}{
		{name: "127.0.0.1 with port", host: "127.0.0.1:5000", want: true},
		{name: "127.0.0.1 without port", host: "127.0.0.1", want: true},
		{name: "another loopback address", host: "127.0.0.2:5000", want: true},
		{name: "localhost", host: "localhost:5000", want: true},
		{name: "localhost in capitals", host: "LocalHost", want: true},
		{name: "localhost, fully qualified", host: "localhost.:5000", want: true},
		{name: "[::1] with port", host: "[::1]:5000", want: true},
		{name: "[::1] without port", host: "[::1]", want: true},
		{name: "the address the request arrived on", host: "10.1.2.3:5000", localAddr: "10.1.2.3:5000", want: true},
		{name: "an allowed name", host: "tokenbroker.internal:5000", allowed: []string{"tokenbroker.internal"}, want: true},
		{name: "an allowed name, other case", host: "TokenBroker.Internal", allowed: []string{"tokenbroker.internal"}, want: true},
		{name: "an allowed name given with a port", host: "tokenbroker.internal", allowed: []string{" tokenbroker.internal:5000"}, want: true},
		{name: "an allowed IPv6 address", host: "[fd00::1]:5000", allowed: []string{"[fd00::1]"}, want: true},

		{name: "DNS rebinding", host: "attacker.example:5000", want: false},
		{name: "DNS rebinding without port", host: "attacker.example", want: false},
		{name: "DNS rebinding, a loopback-looking name", host: "127.0.0.1.attacker.example:5000", want: false},
		{name: "DNS rebinding, a localhost-looking name", host: "localhost.attacker.example", want: false},
		{name: "DNS rebinding, an allowed name's suffix", host: "evil-tokenbroker.internal", allowed: []string{"tokenbroker.internal"}, want: false},
		{name: "DNS rebinding, arriving on an address", host: "attacker.example:5000", localAddr: "10.1.2.3:5000", want: false},
		{name: "another address than the one arrived on", host: "10.9.9.9:5000", localAddr: "10.1.2.3:5000", want: false},
		{name: "the wildcard address", host: "0.0.0.0:5000", allowed: []string{"0.0.0.0:5000"}, want: false},
		{name: "no Host", host: "", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &stub{serve: answerSync(ok, tokenbroker.ActionExisting)}
			o := httpapi.Options{Service: s, Metrics: metrics.New(), AllowedHosts: tc.allowed}

			var body io.Reader = strings.NewReader(helperRequest)
			if !tc.want {
				body = unreadBody{t}
			}
			r := serveOnce(t, o, http.MethodPost, "/requesttoken", tc.host, tc.localAddr, "application/json", body)
			m := serveOnce(t, o, http.MethodGet, "/metrics", tc.host, tc.localAddr, "", nil)
			if tc.want {
				if r.status != http.StatusOK || string(r.body) != string(ok) {
					t.Errorf("/requesttoken: %d %s, want the token", r.status, r.body)
				}
				if m.status != http.StatusOK || !strings.Contains(string(m.body), "tokenbroker_requests_total") {
					t.Errorf("/metrics: %d, want the metrics", m.status)
				}
				return
			}
			for path, r := range map[string]response{"/requesttoken": r, "/metrics": m} {
				if r.status != http.StatusMisdirectedRequest {
					t.Errorf("%s: status %d, want 421; body %s", path, r.status, r.body)
				}
				checkErrorBody(t, r, "invalid_request")
				if strings.Contains(string(r.body), "tokenbroker_") {
					t.Errorf("%s: the refusal carries metrics", path)
				}
			}
			if n := s.calls.Load(); n != 0 {
				t.Errorf("Service called %d times for a refused Host", n)
			}
		})
	}
}

// TestProbesIgnoreHost checks that /healthz and /readyz answer whatever the
// Host: a probe may address the gateway by any name or address, and they
// tell nothing about tokens or credentials.
func TestProbesIgnoreHost(t *testing.T) {
	o := httpapi.Options{Service: &stub{serve: func(tokenbroker.Request, tokenbroker.Replier) {}}}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := serveOnce(t, o, http.MethodGet, path, "attacker.example", "", "", nil); r.status != http.StatusOK {
			t.Errorf("%s with a foreign Host: %d %s", path, r.status, r.body)
		}
	}
}

func TestContentTypeCheck(t *testing.T) {
	ok := replyBody(t, tokenbroker.ActionExisting)
	tests := []struct {
		contentType string
		method      string
		want        bool
	}{
		{contentType: "application/json", want: true},
		{contentType: "application/json; charset=utf-8", want: true},
		{contentType: "Application/JSON;Charset=UTF-8", want: true},
		{contentType: "application/json", method: http.MethodGet, want: true},

		// What a form or a no-CORS fetch may send across sites, none
		// of which needs a preflight.
		{contentType: "text/plain", want: false},
		{contentType: "text/plain;charset=UTF-8", want: false},
		{contentType: "application/x-www-form-urlencoded", want: false},
		{contentType: "multipart/form-data; boundary=x", want: false},
		{contentType: "text/plain", method: http.MethodGet, want: false},
		{contentType: "", want: false},
		{contentType: "application/jsonx", want: false},
		{contentType: "application/json; charset=iso-8859-1", want: false},
		{contentType: "application/json; charset", want: false},
	}
	for _, tc := range tests {
		method := tc.method
		if method == "" {
			method = http.MethodPost
		}
		t.Run(method+" "+tc.contentType, func(t *testing.T) {
			s := &stub{serve: answerSync(ok, tokenbroker.ActionExisting)}
			o := httpapi.Options{Service: s}
			var body io.Reader = strings.NewReader(helperRequest)
			if !tc.want {
				body = unreadBody{t}
			}
			r := serveOnce(t, o, method, "/requesttoken", "127.0.0.1:5000", "", tc.contentType, body)
			if tc.want {
				if r.status != http.StatusOK || string(r.body) != string(ok) {
					t.Errorf("status %d %s, want the token", r.status, r.body)
				}
				return
			}
			if r.status != http.StatusUnsupportedMediaType {
				t.Fatalf("status %d, want 415; body %s", r.status, r.body)
			}
			checkErrorBody(t, r, "invalid_request")
			if got := r.header.Get("Accept"); got != "application/json" {
				t.Errorf("Accept = %q, want application/json", got)
			}
			if got := r.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if n := s.calls.Load(); n != 0 {
				t.Errorf("Service called %d times", n)
			}
		})
	}
}

// TestBrowserAttacksOverTheWire replays both attacks against a listening
// gateway, as a browser would send them, and the original helper's client
// beside them.
func TestBrowserAttacksOverTheWire(t *testing.T) {
	ok := replyBody(t, tokenbroker.ActionExisting)
	s := &stub{serve: answerSync(ok, tokenbroker.ActionExisting)}
	url := start(t, httpapi.Options{Service: s})

	send := func(host, contentType string) response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, url+"/requesttoken", strings.NewReader(helperRequest))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, header: resp.Header, body: b}
	}

	// The rebinding page's fetch: same-origin for the browser, so it may
	// send JSON, but its Host is the attacker's name.
	port := url[strings.LastIndex(url, ":")+1:]
	if r := send("attacker.example:"+port, "application/json"); r.status != http.StatusMisdirectedRequest {
		t.Errorf("DNS rebinding: %d %s, want 421", r.status, r.body)
	}
	// The cross-site form post: a loopback Host, but text/plain.
	if r := send("", "text/plain"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("form post: %d %s, want 415", r.status, r.body)
	}
	if n := s.calls.Load(); n != 0 {
		t.Fatalf("Service called %d times by the attacks", n)
	}
	// requests.post(url, json=...) sends application/json to 127.0.0.1.
	if r := send("", "application/json"); r.status != http.StatusOK || string(r.body) != string(ok) {
		t.Errorf("the original helper's client: %d %s", r.status, r.body)
	}
}
