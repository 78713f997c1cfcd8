package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/wire"
)

// fakeTokens is the broker's side of /events: the credentials it knows
// and the token each holds, changed by the test.
type fakeTokens struct {
	mu      sync.Mutex
	known   map[string]bool
	current map[string]tokenbroker.RefreshedEvent
}

func newFakeTokens(names ...string) *fakeTokens {
	f := &fakeTokens{known: map[string]bool{}, current: map[string]tokenbroker.RefreshedEvent{}}
	for _, n := range names {
		f.known[n] = true
	}
	return f
}

func (f *fakeTokens) Known(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.known[name]
}

func (f *fakeTokens) Current(name string) (tokenbroker.RefreshedEvent, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev, ok := f.current[name]
	return ev, ok
}

func (f *fakeTokens) set(ev tokenbroker.RefreshedEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev.EventID = "" // the broker's cache knows no event id
	f.current[ev.CredentialID] = ev
}

// eventsEnv is a gateway with /events over an in-process NATS server, and
// a second connection that publishes as a broker would.
type eventsEnv struct {
	url    string
	srv    *httpapi.Server
	pub    *nats.Conn
	tokens *fakeTokens
	audit  *recorder
}

func startEvents(t *testing.T, tokens *fakeTokens, adjust func(*httpapi.EventsOptions)) *eventsEnv {
	t.Helper()
	ns := natstest.StartServer(t)
	eo := httpapi.EventsOptions{Conn: natstest.Connect(t, ns), Tokens: tokens}
	if adjust != nil {
		adjust(&eo)
	}
	audit := &recorder{}
	srv := httpapi.NewServer("127.0.0.1:0", httpapi.NewHandler(httpapi.Options{
		Service: &stub{serve: func(tokenbroker.Request, tokenbroker.Replier) { t.Error("Service called") }},
		Auditor: audit, Events: &eo,
	}), 0)
	addr, err := srv.Start("", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &eventsEnv{url: "http://" + addr, srv: srv, pub: natstest.Connect(t, ns), tokens: tokens, audit: audit}
}

// refreshed is a realistic event of credential, numbered n.
func refreshed(credential string, n int) tokenbroker.RefreshedEvent {
	return tokenbroker.RefreshedEvent{
		EventID: "6f1c2a9e-0000-4000-8000-" + strconv.Itoa(100000000000+n), CredentialID: credential,
		AccessToken: testToken + "." + strconv.Itoa(n), TokenType: "Bearer",
		ExpiresOn: strconv.Itoa(1526704330 + n), ExpiresIn: 3599, Action: tokenbroker.ActionRefreshed,
		RefreshedAt: time.Date(2026, 12, 2, 10, 0, n, 0, time.UTC),
	}
}

// publish sends e as the broker's Publisher does and returns the body.
func (e *eventsEnv) publish(t *testing.T, ev any) []byte {
	t.Helper()
	var (
		msg *nats.Msg
		err error
	)
	switch ev := ev.(type) {
	case tokenbroker.RefreshedEvent:
		msg, err = wire.EncodeRefreshed(wire.Subjects{}, ev)
	case tokenbroker.FailedEvent:
		msg, err = wire.EncodeFailed(wire.Subjects{}, ev)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := e.pub.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := e.pub.Flush(); err != nil {
		t.Fatal(err)
	}
	return msg.Data
}

// sse is one thing read from a stream: an event, or a comment.
type sse struct {
	event, id, data string
	comment         string
}

// stream is an open /events response, read by a goroutine into items;
// items is closed at the end of the stream.
type stream struct {
	resp  *http.Response
	items chan sse
}

// open starts a stream, with Last-Event-ID last when it is not empty, and
// fails the test unless the gateway answers 200.
func (e *eventsEnv) open(t *testing.T, credential, last string) *stream {
	t.Helper()
	s, status, body := e.try(t, credential, last, "")
	if status != http.StatusOK {
		t.Fatalf("GET /events?credential=%s: %d %s", credential, status, body)
	}
	return s
}

// try starts a stream; a refusal is returned as its status and body.
func (e *eventsEnv) try(t *testing.T, credential, last, host string) (*stream, int, []byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/events?credential="+credential, nil)
	if err != nil {
		t.Fatal(err)
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, body
	}
	s := &stream{resp: resp, items: make(chan sse, 1024)}
	go s.read()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return s, resp.StatusCode, nil
}

// read parses the stream as an EventSource would: fields up to a blank
// line make an event; a line starting with ':' is a comment.
func (s *stream) read() {
	defer close(s.items)
	r := bufio.NewReaderSize(s.resp.Body, 1<<20)
	var cur sse
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if cur != (sse{}) {
				s.items <- cur
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"):
			s.items <- sse{comment: strings.TrimSpace(strings.TrimPrefix(line, ":"))}
		default:
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "event":
				cur.event = v
			case "id":
				cur.id = v
			case "data":
				if cur.data != "" {
					cur.data += "\n" // a multi-line data: the test of one line fails on it
				}
				cur.data += v
			}
		}
	}
}

// next returns the stream's next event, skipping keep-alive comments, or
// fails the test after 10 seconds or at the end of the stream.
func (s *stream) next(t *testing.T) sse {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case it, ok := <-s.items:
			if !ok {
				t.Fatal("the stream ended")
			}
			if it.comment == "keep-alive" {
				continue
			}
			return it
		case <-timeout:
			t.Fatal("no event in 10s")
		}
	}
}

// end waits for the stream to end and returns what came before, failing
// the test after 10 seconds.
func (s *stream) end(t *testing.T) []sse {
	t.Helper()
	var got []sse
	timeout := time.After(10 * time.Second)
	for {
		select {
		case it, ok := <-s.items:
			if !ok {
				return got
			}
			got = append(got, it)
		case <-timeout:
			t.Fatal("the stream did not end in 10s")
		}
	}
}

// checkRefreshed asserts that it is the refreshed event whose NATS body is
// want, sent unchanged.
func checkRefreshed(t *testing.T, it sse, wantID string, want []byte) {
	t.Helper()
	if it.event != "refreshed" || it.id != wantID || it.data != string(want) {
		t.Fatalf("got event %q id %q data %.120s; want refreshed, id %q, data %.120s", it.event, it.id, it.data, wantID, want)
	}
}

func TestEventsStartWithTheCurrentTokenThenPushed(t *testing.T) {
	tokens := newFakeTokens("crm-prod")
	cur := refreshed("crm-prod", 1)
	tokens.set(cur)
	e := startEvents(t, tokens, nil)

	s := e.open(t, "crm-prod", "")
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// The broker published no event the gateway saw: the current token
	// comes with a synthesized id, stable for this token.
	first := s.next(t)
	var ev tokenbroker.RefreshedEvent
	if err := json.Unmarshal([]byte(first.data), &ev); err != nil {
		t.Fatalf("data %q: %v", first.data, err)
	}
	if first.event != "refreshed" || !strings.HasPrefix(first.id, "current-") || ev.EventID != first.id ||
		ev.AccessToken != cur.AccessToken || ev.ExpiresOn != cur.ExpiresOn || ev.CredentialID != "crm-prod" {
		t.Fatalf("first event %q id %q: %+v", first.event, first.id, ev)
	}
	if again := e.open(t, "crm-prod", "").next(t); again.id != first.id {
		t.Fatalf("the same token got ids %q and %q", first.id, again.id)
	}

	// Then what NATS brings, byte for byte: refreshed and failed.
	next := refreshed("crm-prod", 2)
	body := e.publish(t, next)
	checkRefreshed(t, s.next(t), next.EventID, body)
	failed := tokenbroker.FailedEvent{EventID: "9d0c3b1e-0000-4000-8000-000000000001", CredentialID: "crm-prod",
		Error: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided.", At: time.Now().UTC()}
	body = e.publish(t, failed)
	if it := s.next(t); it.event != "failed" || it.id != failed.EventID || it.data != string(body) {
		t.Fatalf("failed event: %+v", it)
	}
	// Another credential's events are not this stream's.
	tokens.mu.Lock()
	tokens.known["other"] = true
	tokens.mu.Unlock()
	e.publish(t, refreshed("other", 3))
	last := refreshed("crm-prod", 4)
	lastBody := e.publish(t, last)
	checkRefreshed(t, s.next(t), last.EventID, lastBody)

	// The opening is in the audit trail with its credential, as a token
	// handed over from cache.
	var opened int
	for _, rec := range e.audit.take() {
		if rec.CredentialID == "crm-prod" && rec.Outcome == "ok" && rec.Transport == tokenbroker.TransportHTTP &&
			rec.Source == tokenbroker.SourceCache && rec.Action == tokenbroker.ActionExisting && rec.Caller != "" {
			opened++
		}
	}
	if opened != 2 {
		t.Fatalf("%d audit records of streams opened with a token, want 2", opened)
	}
}

// Without a token yet, the stream starts empty, and the first token comes
// as it is published.
func TestEventsWithoutATokenYet(t *testing.T) {
	e := startEvents(t, newFakeTokens("crm-prod"), nil)
	s := e.open(t, "crm-prod", "")
	ev := refreshed("crm-prod", 1)
	body := e.publish(t, ev)
	checkRefreshed(t, s.next(t), ev.EventID, body)
}

func TestEventsLastEventIDReplays(t *testing.T) {
	tokens := newFakeTokens("crm-prod")
	e := startEvents(t, tokens, nil)
	// A stream keeps the credential subscribed while the others come and
	// go, as a client's reconnects do.
	keep := e.open(t, "crm-prod", "")
	var (
		evs    []tokenbroker.RefreshedEvent
		bodies [][]byte
	)
	for i := 1; i <= 3; i++ {
		ev := refreshed("crm-prod", i)
		evs, bodies = append(evs, ev), append(bodies, e.publish(t, ev))
		checkRefreshed(t, keep.next(t), ev.EventID, bodies[i-1])
	}
	tokens.set(evs[2])

	// After the first: the second and third, and not the current token
	// again.
	s := e.open(t, "crm-prod", evs[0].EventID)
	checkRefreshed(t, s.next(t), evs[1].EventID, bodies[1])
	checkRefreshed(t, s.next(t), evs[2].EventID, bodies[2])
	ev4 := refreshed("crm-prod", 4)
	body4 := e.publish(t, ev4)
	checkRefreshed(t, s.next(t), ev4.EventID, body4)
	tokens.set(ev4)

	// After the newest: nothing until the next event.
	s = e.open(t, "crm-prod", ev4.EventID)
	ev5 := refreshed("crm-prod", 5)
	body5 := e.publish(t, ev5)
	checkRefreshed(t, s.next(t), ev5.EventID, body5)

	// An id the gateway does not remember: the current token, which is an
	// event it does remember, so it goes out as published.
	tokens.set(ev5)
	s = e.open(t, "crm-prod", "an-id-from-long-ago")
	checkRefreshed(t, s.next(t), ev5.EventID, body5)

	// A current token it saw no event of has a synthesized id; a client
	// that got it and reconnects is not sent it again.
	tokens.set(refreshed("crm-prod", 6))
	cur := e.open(t, "crm-prod", "").next(t)
	if !strings.HasPrefix(cur.id, "current-") {
		t.Fatalf("current token without its event: id %q", cur.id)
	}
	s = e.open(t, "crm-prod", cur.id)
	ev7 := refreshed("crm-prod", 7)
	body7 := e.publish(t, ev7)
	checkRefreshed(t, s.next(t), ev7.EventID, body7)
}

func TestEventsRefusals(t *testing.T) {
	e := startEvents(t, newFakeTokens("crm-prod"), nil)
	tests := []struct {
		name, query, host string
		want              int
		oauth             string
	}{
		{"no credential", "", "", http.StatusBadRequest, tokenbroker.OAuthInvalidRequest},
		{"empty credential", "?credential=", "", http.StatusBadRequest, tokenbroker.OAuthInvalidRequest},
		{"two credentials", "?credential=crm-prod&credential=crm-prod", "", http.StatusBadRequest, tokenbroker.OAuthInvalidRequest},
		{"unknown credential", "?credential=crm-test", "", http.StatusNotFound, tokenbroker.OAuthUnknownCredential},
		// A username's credential_id is no named credential, nor is
		// anything that could not be a subject token.
		{"a username's credential id", "?credential=u-3f9a1c0e", "", http.StatusNotFound, tokenbroker.OAuthUnknownCredential},
		{"wildcard", "?credential=%3E", "", http.StatusNotFound, tokenbroker.OAuthUnknownCredential},
		{"foreign Host", "?credential=crm-prod", "attacker.example:5000", http.StatusMisdirectedRequest, tokenbroker.OAuthInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, e.url+"/events"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			checkErrorBody(t, response{status: resp.StatusCode, header: resp.Header, body: body}, tc.oauth)
			recs := e.audit.take()
			if tc.want == http.StatusMisdirectedRequest {
				if len(recs) != 0 {
					t.Fatalf("a foreign Host was recorded: %+v", recs)
				}
				return
			}
			if len(recs) != 1 || recs[0].Outcome != strconv.Itoa(tc.want) || recs[0].CredentialID != "" {
				t.Fatalf("audit records %+v", recs)
			}
		})
	}
	r := do(t, nil, http.MethodPost, e.url+"/events?credential=crm-prod", "application/json", strings.NewReader(`{}`))
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != http.MethodGet {
		t.Fatalf("POST: %d, Allow %q", r.status, r.header.Get("Allow"))
	}
	checkErrorBody(t, r, tokenbroker.OAuthInvalidRequest)
}

// A gateway without Options.Events has no /events.
func TestEventsOffWithoutOptions(t *testing.T) {
	url := start(t, httpapi.Options{Service: &stub{}})
	r := do(t, nil, http.MethodGet, url+"/events?credential=crm-prod", "", nil)
	if r.status != http.StatusNotFound {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	checkErrorBody(t, r, tokenbroker.OAuthInvalidRequest)
}

func TestEventsKeepAlive(t *testing.T) {
	e := startEvents(t, newFakeTokens("crm-prod"), func(o *httpapi.EventsOptions) { o.KeepAlive = 20 * time.Millisecond })
	s := e.open(t, "crm-prod", "")
	for range 2 {
		select {
		case it, ok := <-s.items:
			if !ok || it.comment != "keep-alive" {
				t.Fatalf("got %+v (open %v), want the keep-alive comment", it, ok)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no keep-alive in 10s")
		}
	}
}

// An event published with white space and line breaks still goes out on
// one data line, the same JSON compacted.
func TestEventsDataIsOneLine(t *testing.T) {
	e := startEvents(t, newFakeTokens("crm-prod"), nil)
	s := e.open(t, "crm-prod", "")
	ev := refreshed("crm-prod", 1)
	pretty, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.pub.Publish("token.refreshed.crm-prod", pretty); err != nil {
		t.Fatal(err)
	}
	compact, _ := json.Marshal(ev)
	checkRefreshed(t, s.next(t), ev.EventID, compact)
}

// Shutdown ends open streams, with a comment saying why, instead of waiting
// for them until its context gives up.
func TestEventsShutdownEndsStreams(t *testing.T) {
	tokens := newFakeTokens("crm-prod", "crm-test")
	tokens.set(refreshed("crm-prod", 1))
	e := startEvents(t, tokens, nil)
	var streams []*stream
	for _, name := range []string{"crm-prod", "crm-prod", "crm-test"} {
		streams = append(streams, e.open(t, name, ""))
	}
	streams[0].next(t) // surely streaming
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with open streams: %v", err)
	}
	for i, s := range streams {
		got := s.end(t)
		if len(got) == 0 || !strings.Contains(got[len(got)-1].comment, "shutting down") {
			t.Fatalf("stream %d ended with %+v", i, got)
		}
	}
}

// A client that stops reading is dropped once it is a buffer behind, with
// a comment saying so, and holds up no other stream.
func TestEventsSlowClientDoesNotHoldUpOthers(t *testing.T) {
	e := startEvents(t, newFakeTokens("crm-prod"), func(o *httpapi.EventsOptions) { o.Buffer = 2 })
	fast := e.open(t, "crm-prod", "")

	// The slow client reads the answer's head, then nothing: the kernel's
	// buffers fill, then the stream's.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(256 << 10) // fixed: no autotuning to tens of megabytes, but above a loopback segment
	if _, err := io.WriteString(conn, "GET /events?credential=crm-prod HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	slow := bufio.NewReaderSize(conn, 64<<10)
	head, err := http.ReadResponse(slow, nil)
	if err != nil || head.StatusCode != http.StatusOK {
		t.Fatalf("slow stream: %v %v", head, err)
	}

	// Megabytes of events, far more than loopback buffers hold.
	const n = 200
	big := strings.Repeat("A", 64<<10)
	// Each is published once the fast stream has the one before, so the
	// fast stream never falls behind, and the slow one only does.
	for i := range n {
		ev := refreshed("crm-prod", i)
		ev.AccessToken = big + strconv.Itoa(i)
		e.publish(t, ev)
		if it := fast.next(t); it.id != ev.EventID {
			t.Fatalf("fast stream: event %d is %+v", i, it.comment)
		}
	}

	// Now the slow client reads: some events, the comment, the end.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(head.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("slow stream, after %d bytes: %v", len(rest), err)
	}
	text := string(rest)
	got := strings.Count(text, "event: refreshed")
	if got >= n {
		t.Fatalf("the slow stream got all %d events", got)
	}
	t.Logf("the slow stream got %d events of %d before it was dropped", got, n)
	if !strings.HasSuffix(text, ": this stream fell behind and ends here; reconnect with Last-Event-ID\n\n") {
		t.Fatalf("the slow stream ended with %q", text[max(len(text)-120, 0):])
	}
}
