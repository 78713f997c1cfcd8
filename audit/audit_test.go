package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/wire"
)

// at is a record time with nanoseconds, so that a writer that rounds or
// drops them is caught.
var at = time.Date(2026, 11, 28, 12, 30, 45, 123456789, time.UTC)

// hit is a cache hit as the Router records it.
func hit() tokenbroker.AuditRecord {
	return tokenbroker.AuditRecord{Time: at, CredentialID: "crm-prod", Caller: "ACME/svc-crm",
		Transport: tokenbroker.TransportNATS, Outcome: "ok", Source: tokenbroker.SourceCache,
		Action: tokenbroker.ActionExisting}
}

func stop(t *testing.T, s *audit.Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// lines decodes every JSON log line with msg "audit".
func lines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		if m["msg"] == "audit" {
			recs = append(recs, m)
		}
	}
	return recs
}

func TestLogLineHoldsEveryField(t *testing.T) {
	var buf testkit.LogBuffer
	s := audit.New(audit.Options{Logger: buf.JSONLogger()})
	s.Audit(hit())
	fail := tokenbroker.AuditRecord{Time: at.Add(time.Second), Caller: "", Transport: tokenbroker.TransportHTTP, Outcome: "415"}
	s.Audit(fail)
	stop(t, s)

	recs := lines(t, buf.String())
	if len(recs) != 2 {
		t.Fatalf("%d audit lines, want 2:\n%s", len(recs), buf.String())
	}
	want := map[string]any{"time": at.Format(time.RFC3339Nano), "level": "INFO", "msg": "audit",
		"credential_id": "crm-prod", "caller": "ACME/svc-crm", "transport": "nats", "outcome": "ok",
		"source": "cache", "action": "returned existing token"}
	if !maps.Equal(recs[0], want) {
		t.Errorf("cache hit line:\n got %v\nwant %v", recs[0], want)
	}
	want = map[string]any{"time": at.Add(time.Second).Format(time.RFC3339Nano), "level": "INFO", "msg": "audit",
		"credential_id": "", "caller": audit.UnknownCaller, "transport": "http", "outcome": "415",
		"source": "", "action": ""}
	if !maps.Equal(recs[1], want) {
		t.Errorf("refusal line:\n got %v\nwant %v", recs[1], want)
	}
}

// The writer keeps the handlers it formatted a line's attributes with; a
// line must still hold its own record's values, whether its handler was
// kept, made anew, or made again after the cache was cleared.
func TestLogLinesKeepTheirOwnValues(t *testing.T) {
	var buf testkit.LogBuffer
	s := audit.New(audit.Options{Logger: buf.JSONLogger()})
	var want []string
	for i := range 2500 {
		rec := hit()
		// Back and forth between a few credentials, and now and then
		// one never seen, beyond what the writer keeps.
		rec.CredentialID = fmt.Sprint("c", i%3)
		if i%2 == 1 {
			rec.CredentialID = fmt.Sprint("new", i)
		}
		rec.Outcome = fmt.Sprint(i % 5)
		rec.Caller = fmt.Sprint("10.0.0.1:", i)
		want = append(want, rec.CredentialID+" "+rec.Outcome+" "+rec.Caller)
		s.Audit(rec)
	}
	stop(t, s)
	recs := lines(t, buf.String())
	if len(recs) != len(want) {
		t.Fatalf("%d lines for %d records", len(recs), len(want))
	}
	for i, r := range recs {
		if got := fmt.Sprint(r["credential_id"], " ", r["outcome"], " ", r["caller"]); got != want[i] {
			t.Fatalf("line %d: %s, want %s", i, got, want[i])
		}
	}
}

// The text handler (LOG_FORMAT=text) gets the same line: the sink writes
// through whatever handler the broker's logger has.
func TestLogLineFollowsTheLogFormat(t *testing.T) {
	var buf testkit.LogBuffer
	s := audit.New(audit.Options{Logger: buf.Logger()})
	s.Audit(hit())
	stop(t, s)
	got := strings.TrimSpace(buf.String())
	for _, part := range []string{"level=INFO", "msg=audit", "credential_id=crm-prod", "caller=ACME/svc-crm",
		"transport=nats", "outcome=ok", "source=cache", `action="returned existing token"`} {
		if !strings.Contains(got, part) {
			t.Errorf("no %s in %q", part, got)
		}
	}
	if strings.Count(got, "\n") != 0 {
		t.Errorf("more than one line: %q", got)
	}
}

// A logger that does not log Info writes no audit lines, and the sink
// does not build them.
func TestLogLineRespectsTheLevel(t *testing.T) {
	var buf testkit.LogBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := audit.New(audit.Options{Logger: log})
	s.Audit(hit())
	stop(t, s)
	if buf.String() != "" {
		t.Fatalf("wrote at level warn: %s", buf.String())
	}
}

// document waits for the next message on sub and decodes it.
func document(t *testing.T, sub *nats.Subscription) (string, map[string]any) {
	t.Helper()
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no audit document: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg.Data, &m); err != nil {
		t.Fatalf("document is not JSON: %v\n%s", err, msg.Data)
	}
	return msg.Subject, m
}

func TestNATSDocumentHoldsEveryField(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	// The auditor is another client, as a stream or a consumer would be.
	reader := natstest.Connect(t, ns)
	sub, err := reader.SubscribeSync("acme.audit.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Flush(); err != nil {
		t.Fatal(err)
	}
	var buf testkit.LogBuffer
	s := audit.New(audit.Options{Logger: buf.JSONLogger(), Conn: nc, Subjects: wire.Subjects{Prefix: "acme"}})
	user := tokenbroker.AuditRecord{Time: at, CredentialID: "u-0123456789abcdef0123456789abcdef", Caller: "10.0.0.7:51234",
		Transport: tokenbroker.TransportHTTP, Outcome: "ok", Source: tokenbroker.SourceIdP, Action: tokenbroker.ActionNew}
	s.Audit(hit())
	s.Audit(user)
	s.Audit(tokenbroker.AuditRecord{Time: at, Transport: tokenbroker.TransportNATS, Outcome: "400"})
	stop(t, s)

	tests := []struct {
		subject string
		want    map[string]any
	}{
		{"acme.audit.crm-prod", map[string]any{"time": "2026-11-28T12:30:45.123456789Z", "credential_id": "crm-prod",
			"caller": "ACME/svc-crm", "transport": "nats", "outcome": "ok", "source": "cache", "action": "returned existing token"}},
		{"acme.audit.u-0123456789abcdef0123456789abcdef", map[string]any{"time": "2026-11-28T12:30:45.123456789Z",
			"credential_id": "u-0123456789abcdef0123456789abcdef", "caller": "10.0.0.7:51234", "transport": "http",
			"outcome": "ok", "source": "idp", "action": "retrieved new token"}},
		{"acme.audit._none", map[string]any{"time": "2026-11-28T12:30:45.123456789Z", "credential_id": "",
			"caller": "unknown", "transport": "nats", "outcome": "400", "source": "", "action": ""}},
	}
	for _, tc := range tests {
		subj, got := document(t, sub)
		if subj != tc.subject || !maps.Equal(got, tc.want) {
			t.Errorf("on %s:\n got %v\nwant %v on %s", subj, got, tc.want, tc.subject)
		}
	}
	// AUDIT=nats also writes the log line.
	if n := len(lines(t, buf.String())); n != 3 {
		t.Errorf("%d audit log lines, want 3", n)
	}
}

// An id that cannot be one subject token must not add tokens or wildcards
// to the subject: it goes to _none, and the document still says what it was.
func TestOddCredentialIDGoesToNone(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	sub, err := nc.SubscribeSync("token.audit.>")
	if err != nil {
		t.Fatal(err)
	}
	s := audit.New(audit.Options{Conn: nc})
	for _, id := range []string{"crm.prod", "a b", "*", ">", strings.Repeat("x", 65)} {
		rec := hit()
		rec.CredentialID = id
		s.Audit(rec)
	}
	stop(t, s)
	for _, id := range []string{"crm.prod", "a b", "*", ">", strings.Repeat("x", 65)} {
		subj, got := document(t, sub)
		if subj != "token.audit."+audit.NoCredential || got["credential_id"] != id {
			t.Errorf("id %q: on %s with credential_id %v", id, subj, got["credential_id"])
		}
	}
}

// gate is a log writer that blocks until released, so that a test holds
// the sink's writer still.
type gate struct {
	entered chan struct{}
	release chan struct{}
	buf     testkit.LogBuffer
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (g *gate) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	return g.buf.Write(p)
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	g := newGate()
	m := metrics.New()
	s := audit.New(audit.Options{Logger: slog.New(slog.NewJSONHandler(g, nil)), Buffer: 2, Metrics: m})
	rec := hit()
	s.Audit(rec)
	<-g.entered // the writer holds the first record, blocked in the log
	for i := range 5 {
		rec.Outcome = fmt.Sprint(i)
		s.Audit(rec) // two fit in the queue, three do not
	}
	if d := s.Dropped(); d != 3 {
		t.Fatalf("Dropped = %d, want 3", d)
	}
	if got := droppedMetric(t, m); got != 3 {
		t.Fatalf("tokenbroker_audit_dropped_total = %v, want 3", got)
	}
	close(g.release)
	stop(t, s)
	recs := lines(t, g.buf.String())
	if len(recs) != 3 || recs[0]["outcome"] != "ok" || recs[1]["outcome"] != "0" || recs[2]["outcome"] != "1" {
		t.Fatalf("written: %v", recs)
	}
	// The gap is told, once, with its size.
	if !strings.Contains(g.buf.String(), `"msg":"audit records dropped: the audit queue was full; the trail has gaps","dropped":3,"dropped_total":3`) {
		t.Fatalf("no warning of the drops:\n%s", g.buf.String())
	}
}

// droppedMetric reads tokenbroker_audit_dropped_total from m's registry,
// as a scrape would.
func droppedMetric(t *testing.T, m *metrics.Metrics) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tokenbroker_audit_dropped_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no tokenbroker_audit_dropped_total in the registry")
	return 0
}

func TestStopDrainsTheQueue(t *testing.T) {
	g := newGate()
	s := audit.New(audit.Options{Logger: slog.New(slog.NewJSONHandler(g, nil)), Buffer: 100})
	const n = 50
	for i := range n {
		rec := hit()
		rec.Outcome = fmt.Sprint(i)
		s.Audit(rec)
	}
	<-g.entered
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- s.Stop(ctx)
	}()
	// Stop waits for the records queued before it.
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned with the writer blocked: %v", err)
	default:
	}
	close(g.release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	recs := lines(t, g.buf.String())
	if len(recs) != n {
		t.Fatalf("%d of %d records written", len(recs), n)
	}
	for i, r := range recs {
		if r["outcome"] != fmt.Sprint(i) {
			t.Fatalf("record %d has outcome %v: out of order", i, r["outcome"])
		}
	}
	// After Stop, records are dropped and counted, never written.
	s.Audit(hit())
	if s.Dropped() != 1 {
		t.Fatalf("Dropped after Stop = %d, want 1", s.Dropped())
	}
}

// Records queued when Stop is called are written even when the writer sees
// the stop before them. Which it sees first is the scheduler's choice, so
// the test stops many sinks whose writer has not run yet: on one P, a new
// goroutine waits until the test blocks, in Stop, by when both the records
// and the stop are there.
func TestStopWritesWhatWasQueuedBeforeIt(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for i := range 50 {
		var buf testkit.LogBuffer
		s := audit.New(audit.Options{Logger: buf.JSONLogger()})
		for range 10 {
			s.Audit(hit())
		}
		stop(t, s)
		if n := len(lines(t, buf.String())); n != 10 {
			t.Fatalf("sink %d: %d of 10 records written", i, n)
		}
	}
}

// Stop is bounded by its context even when the writer cannot write.
func TestStopGivesUpWithItsContext(t *testing.T) {
	g := newGate()
	defer close(g.release)
	s := audit.New(audit.Options{Logger: slog.New(slog.NewJSONHandler(g, nil))})
	s.Audit(hit())
	s.Audit(hit())
	<-g.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 records unwritten") {
		t.Fatalf("Stop = %v, want the unwritten record and the context's error", err)
	}
}

func TestAuditDoesNotAllocate(t *testing.T) {
	s := audit.New(audit.Options{Logger: slog.New(slog.DiscardHandler), Metrics: metrics.New()})
	defer stop(t, s)
	var a tokenbroker.Auditor = s // as the Router calls it
	rec := hit()
	if n := testing.AllocsPerRun(1000, func() { a.Audit(rec) }); n != 0 {
		t.Fatalf("Audit allocates %v times", n)
	}
	// Nor when the queue is full and the record is dropped.
	full := audit.New(audit.Options{Buffer: 1, Metrics: metrics.New()})
	_ = full.Stop(context.Background()) // stopped: every record is a drop
	a = full
	if n := testing.AllocsPerRun(1000, func() { a.Audit(rec) }); n != 0 {
		t.Fatalf("a dropped Audit allocates %v times", n)
	}
}

// odd is caller text with everything JSON makes hard: quotes, backslashes,
// control characters, a line break that could forge a second log line,
// bytes that are not UTF-8, and the separators JavaScript does not allow in
// strings.
var odd = []string{
	`ACME/"quoted" user`,
	`back\slash\`,
	"new\nline {\"msg\":\"audit\",\"outcome\":\"ok\"}",
	"tab\tcr\rnul\x00bell\x07esc\x1bdel\x7f",
	"latin-1 \xe9t\xe9 and a lone \xff",
	"line\u2028para\u2029sep",
	"emoji 🔑 and ünïcödé",
	"</script><script>alert(1)</script>",
	"",
}

func TestAppendJSONRoundTripsOddText(t *testing.T) {
	for _, caller := range odd {
		rec := hit()
		rec.Caller, rec.CredentialID, rec.Action = caller, caller, caller
		doc := audit.AppendJSON(nil, &rec)
		if !json.Valid(doc) {
			t.Errorf("caller %q: not JSON: %s", caller, doc)
			continue
		}
		var got struct {
			Caller       string `json:"caller"`
			CredentialID string `json:"credential_id"`
			Action       string `json:"action"`
		}
		if err := json.Unmarshal(doc, &got); err != nil {
			t.Fatal(err)
		}
		want := strings.ToValidUTF8(caller, "\uFFFD")
		wantCaller := want
		if caller == "" {
			wantCaller = audit.UnknownCaller
		}
		if got.Caller != wantCaller || got.CredentialID != want || got.Action != want {
			t.Errorf("caller %q came back as %q, %q, %q", caller, got.Caller, got.CredentialID, got.Action)
		}
		if strings.ContainsAny(string(doc), "\n\r\u2028\u2029") {
			t.Errorf("caller %q: the document holds a raw line break: %q", caller, doc)
		}
	}
}

// Odd text in a caller cannot forge or split an audit line: each record is
// one line, and each line decodes to the record it came from.
func TestOddCallerStaysInItsLogLine(t *testing.T) {
	var buf testkit.LogBuffer
	s := audit.New(audit.Options{Logger: buf.JSONLogger()})
	for _, caller := range odd {
		rec := hit()
		rec.Caller = caller
		s.Audit(rec)
	}
	stop(t, s)
	if n := strings.Count(buf.String(), "\n"); n != len(odd) {
		t.Fatalf("%d lines for %d records:\n%s", n, len(odd), buf.String())
	}
	recs := lines(t, buf.String())
	if len(recs) != len(odd) {
		t.Fatalf("%d audit lines, want %d", len(recs), len(odd))
	}
	for i, r := range recs {
		want := strings.ToValidUTF8(odd[i], "\uFFFD")
		if odd[i] == "" {
			want = audit.UnknownCaller
		}
		if r["caller"] != want || r["outcome"] != "ok" {
			t.Errorf("record %d: caller %q, outcome %v", i, r["caller"], r["outcome"])
		}
	}
}

// The records a password caller's answers make — as the Router makes them,
// from a realistic request — hold nothing of the password, the username or
// the token, in the log or on NATS. The sink writes only a record's fields;
// this guards against it ever writing more, such as a whole Request.
func TestNoSecretInOutput(t *testing.T) {
	const (
		username = "alice.wonder@contoso.onmicrosoft.com"
		password = "Tr0ub4dor&3-correct-horse"
		token    = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJl"
	)
	req := tokenbroker.Request{Username: username, Password: tokenbroker.Secret(password),
		Transport: tokenbroker.TransportHTTP, Caller: "192.0.2.10:40312"}
	id := "u-5f2b9c0e4d6a8b1c3e5f7a9b0c2d4e6f" // a keyed hash, as the Router derives it
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	sub, err := nc.SubscribeSync("token.audit.>")
	if err != nil {
		t.Fatal(err)
	}
	var buf testkit.LogBuffer
	s := audit.New(audit.Options{Logger: buf.JSONLogger(), Conn: nc})
	outcomes := []tokenbroker.AuditRecord{
		{Outcome: "ok", Source: tokenbroker.SourceIdP, Action: tokenbroker.ActionNew},
		{Outcome: "ok", Source: tokenbroker.SourceCache, Action: tokenbroker.ActionExisting},
		{Outcome: "ok", Source: tokenbroker.SourceStore, Action: tokenbroker.ActionRefreshed},
		{Outcome: "401"}, {Outcome: "429"}, {Outcome: "504"},
	}
	for _, o := range outcomes {
		o.Time, o.CredentialID, o.Caller, o.Transport = time.Now(), id, req.Caller, req.Transport
		s.Audit(o)
	}
	stop(t, s)
	var out strings.Builder
	out.WriteString(buf.String())
	for range outcomes {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no audit document: %v", err)
		}
		out.Write(msg.Data)
		out.WriteString(msg.Subject)
	}
	for _, secret := range []string{username, "alice.wonder", password, token, token[:20]} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("audit output holds %q:\n%s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), id) || strings.Count(buf.String(), `"msg":"audit"`) != len(outcomes) {
		t.Fatalf("the records are not all there:\n%s", out.String())
	}
}

// Records on NATS and in the log come out in the order given, for one
// credential: an auditor reading the stream sees answers in order.
func TestOrderIsKept(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	sub, err := nc.SubscribeSync("token.audit.crm-prod")
	if err != nil {
		t.Fatal(err)
	}
	s := audit.New(audit.Options{Conn: nc})
	var want []string
	for i := range 200 {
		rec := hit()
		rec.Time = at.Add(time.Duration(i))
		want = append(want, rec.Time.Format(time.RFC3339Nano))
		s.Audit(rec)
	}
	stop(t, s)
	var got []string
	for range want {
		_, m := document(t, sub)
		got = append(got, m["time"].(string))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("out of order:\n got %v\nwant %v", got, want)
	}
}
