package broker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

func withHTTP(c *config.Config, _ *fakeidp.Server) { c.HTTPAddr = "127.0.0.1:0" }

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// The original helper's clients post {"username","password"} and read
// accesstoken, expires_on and action; they must keep working unchanged,
// and share the token (and the IdP call) with NATS callers.
func TestHTTPGatewayServesTheOriginalHelpersClients(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute, withHTTP)
	url := "http://" + e.broker.HTTPAddr() + "/requesttoken"

	code, body := post(t, url, `{"username":"`+user+`","password":"`+password+`"}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"accesstoken", "expires_on", "action"} {
		if _, ok := fields[k]; !ok {
			t.Fatalf("reply lacks %q: %s", k, body)
		}
	}
	if _, isString := fields["expires_on"].(string); !isString || fields["action"] != tokenbroker.ActionNew {
		t.Fatalf("reply %s", body)
	}
	if !bytes.HasPrefix(body, []byte(`{"accesstoken":`)) {
		t.Fatalf("accesstoken is not the first field: %s", body)
	}

	// The same user over NATS gets the same token from cache.
	r := decodeReply(t, e.request(t, `{"username":"`+user+`","password":"`+password+`"}`))
	if r.AccessToken != fields["accesstoken"] || r.Action != tokenbroker.ActionExisting {
		t.Fatalf("NATS after HTTP: %+v", r)
	}

	code, body = post(t, url, `{"username":"`+user+`","password":"nope"}`)
	var er tokenbroker.ErrorReply
	if code != http.StatusUnauthorized || json.Unmarshal(body, &er) != nil || er.Error != "invalid_grant" {
		t.Fatalf("wrong password: %d %s", code, body)
	}
	if got := e.idp.Calls(); got != 2 {
		t.Fatalf("IdP calls %d, want 2", got)
	}

	resp, err := http.Get("http://" + e.broker.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tokenbroker_requests_total{action="retrieved new token",outcome="ok",transport="http"} 1`,
		`tokenbroker_requests_total{action="returned existing token",outcome="ok",transport="nats"} 1`,
		`tokenbroker_requests_total{action="",outcome="401",transport="http"} 1`,
		`tokenbroker_idp_calls_total{grant="password",outcome="ok"} 1`,
		`tokenbroker_idp_calls_total{grant="password",outcome="rejected"} 1`,
		`tokenbroker_events_published_total{kind="refreshed"} 1`,
		`tokenbroker_credentials 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(metrics), user) {
		t.Fatal("a username is in the metrics")
	}
	assertNoSecrets(t, e.logs.String(), "nope", r.AccessToken)
}

func TestReadyzFollowsTheNATSConnection(t *testing.T) {
	ns := natstest.StartServer(t)
	e := start(t, time.Hour, 10*time.Minute, withHTTP, func(c *config.Config, _ *fakeidp.Server) { c.NATSURL = ns.ClientURL() })
	readyz := "http://" + e.broker.HTTPAddr() + "/readyz"
	status := func() int {
		resp, err := http.Get(readyz)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusOK {
		t.Fatalf("readyz %d while connected", got)
	}
	ns.Shutdown()
	testkit.Until(t, 10*time.Second, "/readyz unready", func() bool { return status() == http.StatusServiceUnavailable })
	resp, err := http.Get("http://" + e.broker.HTTPAddr() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}
