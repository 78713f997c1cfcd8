package broker_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
)

// auditEnv is a broker with the HTTP gateway on an external NATS server,
// under the subject prefix "acme", and an auditor's subscription to every
// audit subject. The server outlives the broker, so that a test can stop
// the broker, which writes the whole trail before it returns, and then
// count what arrived.
type auditEnv struct {
	*env
	sub    *nats.Subscription
	reader *nats.Conn
}

func startAudited(t *testing.T, mode string) *auditEnv {
	t.Helper()
	ns := natstest.StartServer(t)
	reader := natstest.Connect(t, ns)
	sub, err := reader.SubscribeSync("acme.audit.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Flush(); err != nil {
		t.Fatal(err)
	}
	e := start(t, time.Hour, 10*time.Minute, withHTTP, func(c *config.Config, _ *fakeidp.Server) {
		c.NATSURL, c.SubjectPrefix, c.Audit = ns.ClientURL(), "acme", mode
	})
	return &auditEnv{env: e, sub: sub, reader: reader}
}

// traffic sends a little of everything and returns the password caller's
// credential_id: a token from the IdP and then from the cache over NATS, a
// cache hit over HTTP, a named credential, and refusals by the Router (an
// unknown credential), the NATS service (bad JSON) and the gateway (a form
// post).
func (e *auditEnv) traffic(t *testing.T) (userID string, answers int) {
	t.Helper()
	ask := func(body string) *nats.Msg {
		t.Helper()
		msg, err := e.nc.Request("acme.request", []byte(body), 10*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", body, err)
		}
		return msg
	}
	pw := `{"username":"` + user + `","password":"` + password + `"}`
	userID = decodeReply(t, ask(pw)).CredentialID
	decodeReply(t, ask(pw))
	decodeReply(t, ask(`{"credential":"`+app+`"}`))
	if code := ask(`{"credential":"nope"}`).Header.Get("Nats-Service-Error-Code"); code != "404" {
		t.Fatalf("unknown credential: code %q", code)
	}
	if code := ask(`{"username":`).Header.Get("Nats-Service-Error-Code"); code != "400" {
		t.Fatalf("bad JSON: code %q", code)
	}
	url := "http://" + e.broker.HTTPAddr() + "/requesttoken"
	if code, body := post(t, url, pw); code != http.StatusOK {
		t.Fatalf("HTTP: status %d: %s", code, body)
	}
	resp, err := http.Post(url, "text/plain", strings.NewReader(pw))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("form post: status %d", resp.StatusCode)
	}
	return userID, 7
}

// documents stops the broker, which writes the whole trail, and returns
// every audit document that arrived.
func (e *auditEnv) documents(t *testing.T) (subjects []string, docs []map[string]string) {
	t.Helper()
	if err := brokertest.Stop(e.broker); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The broker flushed its connection: the server has every document,
	// and a round trip of the reader's own delivers them before it ends.
	if err := e.reader.Flush(); err != nil {
		t.Fatal(err)
	}
	n, _, err := e.sub.Pending()
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		msg, err := e.sub.NextMsg(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]string
		if err := json.Unmarshal(msg.Data, &doc); err != nil {
			t.Fatalf("audit document %s: %v", msg.Data, err)
		}
		subjects, docs = append(subjects, msg.Subject), append(docs, doc)
	}
	return subjects, docs
}

func auditLines(logs string) int { return strings.Count(logs, " msg=audit ") }

func TestAuditTrailOnNATS(t *testing.T) {
	e := startAudited(t, config.AuditNATS)
	userID, n := e.traffic(t)
	subjects, docs := e.documents(t)
	if len(docs) != n {
		t.Fatalf("%d audit documents for %d answers: %v", len(docs), n, docs)
	}

	// Which record is which: the answers came one after another, but a
	// record may be written just after its reply was sent, so the order is
	// not asserted.
	type key struct{ subject, credential, transport, outcome, source, action string }
	got, named := map[key]int{}, 0
	for i, d := range docs {
		if len(d) != 7 {
			t.Errorf("document %v has other fields than the seven", d)
		}
		if ts, err := time.Parse(time.RFC3339Nano, d["time"]); err != nil || time.Since(ts) > time.Minute {
			t.Errorf("time %q: %v", d["time"], err)
		}
		switch d["transport"] {
		case tokenbroker.TransportNATS:
			if d["caller"] != "unknown" { // no service import here
				t.Errorf("NATS caller %q, want unknown", d["caller"])
			}
		case tokenbroker.TransportHTTP:
			if !strings.HasPrefix(d["caller"], "127.0.0.1:") {
				t.Errorf("HTTP caller %q, want the client's address", d["caller"])
			}
		}
		if d["credential_id"] == app {
			// Its token was fetched at start or on this request: where it
			// came from is not this test's business.
			if subjects[i] != "acme.audit."+app || d["transport"] != "nats" || d["outcome"] != "ok" || d["source"] == "" || d["action"] == "" {
				t.Errorf("record of %s on %s: %v", app, subjects[i], d)
			}
			named++
			continue
		}
		got[key{subjects[i], d["credential_id"], d["transport"], d["outcome"], d["source"], d["action"]}]++
	}
	if named != 1 {
		t.Errorf("%d records of %s, want 1", named, app)
	}
	want := map[key]int{
		{"acme.audit." + userID, userID, "nats", "ok", "idp", tokenbroker.ActionNew}:        1,
		{"acme.audit." + userID, userID, "nats", "ok", "cache", tokenbroker.ActionExisting}: 1,
		{"acme.audit." + userID, userID, "http", "ok", "cache", tokenbroker.ActionExisting}: 1,
		{"acme.audit._none", "", "nats", "404", "", ""}:                                     1,
		{"acme.audit._none", "", "nats", "400", "", ""}:                                     1,
		{"acme.audit._none", "", "http", "415", "", ""}:                                     1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%d records %+v, want %d", got[k], k, v)
		}
		delete(got, k)
	}
	for k, v := range got {
		t.Errorf("unexpected record %+v (%d)", k, v)
	}

	// The same records are in the log, and nothing secret is in either.
	logs := e.logs.String()
	if auditLines(logs) != n {
		t.Errorf("%d audit log lines for %d answers", auditLines(logs), n)
	}
	all, _ := json.Marshal(docs)
	assertNoSecrets(t, logs+string(all), e.idp.IssuedTokens()...)
}

func TestAuditTrailInTheLogOnly(t *testing.T) {
	e := startAudited(t, config.AuditLog)
	_, n := e.traffic(t)
	if _, docs := e.documents(t); len(docs) != 0 {
		t.Fatalf("AUDIT=log published %v", docs)
	}
	if got := auditLines(e.logs.String()); got != n {
		t.Fatalf("%d audit log lines for %d answers", got, n)
	}
}

func TestAuditOff(t *testing.T) {
	e := startAudited(t, config.AuditOff)
	e.traffic(t)
	if _, docs := e.documents(t); len(docs) != 0 {
		t.Fatalf("AUDIT=off published %v", docs)
	}
	if got := auditLines(e.logs.String()); got != 0 {
		t.Fatalf("AUDIT=off wrote %d audit log lines", got)
	}
}
