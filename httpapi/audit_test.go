package httpapi_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi"
)

// recorder is a tokenbroker.Auditor that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	recs []tokenbroker.AuditRecord
}

func (r *recorder) Audit(rec tokenbroker.AuditRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) take() []tokenbroker.AuditRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := r.recs
	r.recs = nil
	return recs
}

// The Service learns the transport and who asked, for its audit records:
// the connection's remote address, whatever the body says.
func TestRequestCarriesTransportAndCaller(t *testing.T) {
	got := make(chan tokenbroker.Request, 1)
	url := start(t, httpapi.Options{Service: &stub{serve: recordAsync(got, replyBody(t, tokenbroker.ActionNew), tokenbroker.ActionNew)}})

	// The client's own end of the connection is what the gateway must
	// report.
	local := make(chan string, 1)
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			local <- conn.LocalAddr().String()
		}
		return conn, err
	}}}
	defer c.CloseIdleConnections()
	// Transport and Caller are never decoded from the body.
	body := `{"credential":"crm-prod","Transport":"nats","Caller":"forged","transport":"nats","caller":"forged"}`
	r := do(t, c, http.MethodPost, url+"/requesttoken", "application/json", strings.NewReader(body))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	req := <-got
	if want := <-local; req.Transport != tokenbroker.TransportHTTP || req.Caller != want {
		t.Fatalf("the Service got transport %q, caller %q; want %q, %q", req.Transport, req.Caller, tokenbroker.TransportHTTP, want)
	}
}

func TestRefusalsAreAudited(t *testing.T) {
	refuse := func(tokenbroker.Request, tokenbroker.Replier) { t.Error("Service called") }
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		want        int
	}{
		{"wrong method", http.MethodPut, "application/json", helperRequest, http.StatusMethodNotAllowed},
		{"form post", http.MethodPost, "text/plain", helperRequest, http.StatusUnsupportedMediaType},
		{"no content type", http.MethodPost, "", helperRequest, http.StatusUnsupportedMediaType},
		{"too large", http.MethodPost, "application/json", `{"username":"` + strings.Repeat("a", tokenbroker.MaxRequestBytes) + `"}`, http.StatusRequestEntityTooLarge},
		{"malformed JSON", http.MethodPost, "application/json", `{"username": `, http.StatusBadRequest},
		{"empty body", http.MethodPost, "application/json", "", http.StatusBadRequest},
		{"missing password", http.MethodPost, "application/json", `{"username":"` + testUser + `"}`, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			before := time.Now()
			r := serveOnce(t, httpapi.Options{Service: &stub{serve: refuse}, Auditor: &rec},
				tc.method, "/requesttoken", "localhost", "", tc.contentType, strings.NewReader(tc.body))
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			recs := rec.take()
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1: %+v", len(recs), recs)
			}
			got := recs[0]
			want := tokenbroker.AuditRecord{Time: got.Time, Caller: "192.0.2.1:1234", // httptest's RemoteAddr
				Transport: tokenbroker.TransportHTTP, Outcome: strconv.Itoa(tc.want)}
			if got != want {
				t.Errorf("record %+v, want %+v", got, want)
			}
			if got.Time.Before(before) || got.Time.After(time.Now()) {
				t.Errorf("record time %v is not the request's", got.Time)
			}
			if strings.Contains(strings.Join([]string{got.CredentialID, got.Caller, got.Source, got.Action}, " "), testUser) {
				t.Errorf("the record holds the username: %+v", got)
			}
		})
	}
}

// The gateway records only its own refusals: the Service records the
// answers it gives, and a request for another Host is not the gateway's.
func TestOnlyOwnRefusalsAreAudited(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		host   string
		serve  func(tokenbroker.Request, tokenbroker.Replier)
		status int
	}{
		{"answered by the Service", "/requesttoken", "localhost", answerSync(replyBody(t, tokenbroker.ActionExisting), tokenbroker.ActionExisting), http.StatusOK},
		{"refused by the Service", "/requesttoken", "localhost", failWith(tokenbroker.Errorf(tokenbroker.CodeRejected, "invalid_grant", "AADSTS50126")), http.StatusUnauthorized},
		{"another Host", "/requesttoken", "attacker.example", nil, http.StatusMisdirectedRequest},
		{"probe with the wrong method", "/healthz", "localhost", nil, http.StatusMethodNotAllowed},
		{"unknown path", "/token", "localhost", nil, http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			serve := tc.serve
			if serve == nil {
				serve = func(tokenbroker.Request, tokenbroker.Replier) { t.Error("Service called") }
			}
			r := serveOnce(t, httpapi.Options{Service: &stub{serve: serve}, Auditor: &rec},
				http.MethodPost, tc.path, tc.host, "", "application/json", strings.NewReader(helperRequest))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if recs := rec.take(); len(recs) != 0 {
				t.Fatalf("the gateway recorded %+v", recs)
			}
		})
	}
}
