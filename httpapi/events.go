package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/wire"
)

// GET /events?credential=NAME streams a named credential's token.refreshed
// and token.failed events as Server-Sent Events, for HTTP callers that
// want the pushed refreshes NATS consumers get:
//
//	event: refreshed
//	id: <event_id>
//	data: <the event's JSON, as published on NATS, on one line>
//
// A stream starts with the credential's current token, when the broker
// holds one, as a refreshed event. That is the event the broker published
// for it when this gateway still remembers it (it keeps the last few events
// of each credential it streams); otherwise one built from the cache, with
// the action "returned existing token" and the synthesized id
// "current-" + the first 32 hex digits of SHA-256(credential_id "\n"
// expires_on), stable for one token, so that a client reconnecting with it
// as Last-Event-ID while the token is unchanged is not sent it again.
//
// A request with Last-Event-ID gets the events after that one instead, when
// the gateway still remembers it; else it starts with the current token as
// above. A comment line (": keep-alive") goes out every KeepAlive so that
// proxies and clients can tell a quiet stream from a dead one.
//
// Each credential has one pair of NATS subscriptions, shared by all its
// streams, which the NATS callbacks feed without ever waiting: a stream
// that falls its buffer behind is ended with a comment saying so, and its
// client reconnects with Last-Event-ID. Streams end when the server shuts
// down.

// PathEvents serves GET /events?credential=NAME.
const PathEvents = "/events"

// Defaults of EventsOptions.
const (
	// DefaultKeepAlive is how often an idle stream gets a comment.
	DefaultKeepAlive = 15 * time.Second
	// DefaultEventsLinger is how long a credential's subscriptions and
	// remembered events outlive its last stream, so that a client that
	// reconnects soon can be replayed what it missed.
	DefaultEventsLinger = 2 * time.Minute
	// DefaultStreamBuffer is how many events a stream may fall behind by
	// before it is ended. Events come once per token, minutes apart: only
	// a client that stopped reading fills it.
	DefaultStreamBuffer = 16
	// DefaultEventsRemembered is how many events of each credential the
	// gateway keeps for Last-Event-ID: more than a stream's buffer, so
	// that a stream ended for falling behind can still be replayed.
	DefaultEventsRemembered = 32
)

// eventWriteTimeout bounds each write of a stream: a client that stops
// reading is dropped after it rather than holding its handler forever.
const eventWriteTimeout = 10 * time.Second

// Tokens is what /events needs from the broker: which named credentials
// exist and the token each holds. *actors.Router implements it. Both
// methods must be cheap, safe for concurrent use and must not block.
type Tokens interface {
	// Known reports whether name is a named credential served now.
	Known(name string) bool
	// Current returns name's current token as a refreshed event without
	// an event_id, and true; false when it holds no unexpired token.
	Current(name string) (tokenbroker.RefreshedEvent, bool)
}

// EventsOptions configure GET /events.
type EventsOptions struct {
	// Conn is the NATS connection the events are subscribed on. Required.
	Conn *nats.Conn
	// Subjects names the event subjects (SUBJECT_PREFIX).
	Subjects wire.Subjects
	// Tokens tells known credentials and their current tokens. Required.
	Tokens Tokens
	// KeepAlive is the interval of the keep-alive comment; zero means
	// DefaultKeepAlive.
	KeepAlive time.Duration
	// Linger is how long a credential's subscriptions outlive its last
	// stream; zero means DefaultEventsLinger.
	Linger time.Duration
	// Buffer is each stream's buffer, in events; zero means
	// DefaultStreamBuffer.
	Buffer int
	// Remember is how many events of each credential are kept for
	// Last-Event-ID; zero means DefaultEventsRemembered.
	Remember int
}

// The SSE event names, also the kinds of event.
const (
	kindRefreshed = "refreshed"
	kindFailed    = "failed"
)

// Fixed comments of a stream.
var (
	keepAliveFrame = []byte(": keep-alive\n\n")
	overflowFrame  = []byte(": this stream fell behind and ends here; reconnect with Last-Event-ID\n\n")
	shutdownFrame  = []byte(": the server is shutting down; reconnect with Last-Event-ID\n\n")
)

// errEventsClosed is a join after the server began shutting down.
var errEventsClosed = errors.New("httpapi: events: shutting down")

// frame is one event, encoded once for every stream that sends it.
type frame struct {
	id        string // event_id; "" when it could not be sent as an SSE id
	expiresOn string // refreshed events: to recognise the current token
	token     string // refreshed events: the access token, idem; never logged
	data      []byte // the whole SSE event, blank line included
}

// encodeFrame builds the SSE event of kind (the event name) with id and
// the JSON body, made one line: the broker's own encoding already is, and
// compacting it changes nothing.
func encodeFrame(kind, id string, body []byte) (*frame, error) {
	var b bytes.Buffer
	b.Grow(len(body) + len(kind) + len(id) + 32)
	b.WriteString("event: ")
	b.WriteString(kind)
	b.WriteByte('\n')
	// An id with a line break or NUL cannot be an SSE id; without one the
	// client keeps the last id it had, which is the best left to do.
	if id != "" && !strings.ContainsAny(id, "\r\n\x00") {
		b.WriteString("id: ")
		b.WriteString(id)
		b.WriteByte('\n')
	} else {
		id = ""
	}
	b.WriteString("data: ")
	if err := json.Compact(&b, body); err != nil {
		return nil, err
	}
	b.WriteString("\n\n")
	return &frame{id: id, data: b.Bytes()}, nil
}

// decodeFrame reads an event as published on NATS into its frame.
func decodeFrame(kind string, data []byte) (*frame, error) {
	var id, expiresOn, token string
	switch kind {
	case kindRefreshed:
		e, err := wire.DecodeRefreshed(data)
		if err != nil {
			return nil, err
		}
		id, expiresOn, token = e.EventID, e.ExpiresOn, e.AccessToken
	default:
		e, err := wire.DecodeFailed(data)
		if err != nil {
			return nil, err
		}
		id = e.EventID
	}
	f, err := encodeFrame(kind, id, data)
	if err != nil {
		return nil, err
	}
	f.expiresOn, f.token = expiresOn, token
	return f, nil
}

// currentID is the synthesized event id of a current token the gateway saw
// no event of: stable for one credential's one token, and telling nothing
// of the token itself.
func currentID(credentialID, expiresOn string) string {
	sum := sha256.Sum256([]byte(credentialID + "\n" + expiresOn))
	return "current-" + hex.EncodeToString(sum[:16])
}

// hub holds the credentials that have streams: their subscriptions, the
// events they remember and their streams. One mutex guards it all: events
// come minutes apart, and a fan-out to a thousand streams is a thousand
// non-blocking channel sends.
type hub struct {
	nc        *nats.Conn
	subjects  wire.Subjects
	tokens    Tokens
	keepAlive time.Duration
	linger    time.Duration
	buffer    int
	remember  int
	log       *slog.Logger

	mu     sync.Mutex
	topics map[string]*topic
	closed bool
	done   chan struct{} // closed by close: every stream ends
}

// topic is one credential in the hub.
type topic struct {
	name    string
	ready   chan struct{} // closed once subscribed, or failing to
	err     error         // why subscribing failed; read after ready
	subs    []*nats.Subscription
	streams map[*stream]struct{}
	ring    []*frame    // the last events, oldest first
	linger  *time.Timer // set while the topic has no stream
}

// stream is one client's stream.
type stream struct {
	ch      chan *frame
	dropped chan struct{} // closed when ch overflowed
}

func newHub(o EventsOptions, log *slog.Logger) *hub {
	if o.Conn == nil || o.Tokens == nil {
		panic("httpapi: events without a NATS connection or Tokens")
	}
	h := &hub{nc: o.Conn, subjects: o.Subjects, tokens: o.Tokens, keepAlive: o.KeepAlive, linger: o.Linger,
		buffer: o.Buffer, remember: o.Remember, log: log, topics: map[string]*topic{}, done: make(chan struct{})}
	if h.keepAlive <= 0 {
		h.keepAlive = DefaultKeepAlive
	}
	if h.linger <= 0 {
		h.linger = DefaultEventsLinger
	}
	if h.buffer <= 0 {
		h.buffer = DefaultStreamBuffer
	}
	if h.remember <= 0 {
		h.remember = DefaultEventsRemembered
	}
	return h
}

// join adds a stream to name's topic, subscribing when it is the first,
// and returns the events remembered before it. Events published after join
// returns reach the stream: the subscriptions are registered with the
// server by then.
func (h *hub) join(ctx context.Context, name string) (*topic, *stream, []*frame, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, nil, nil, errEventsClosed
	}
	t := h.topics[name]
	create := t == nil
	if create {
		t = &topic{name: name, ready: make(chan struct{}), streams: map[*stream]struct{}{}}
		h.topics[name] = t
	}
	if t.linger != nil {
		t.linger.Stop()
		t.linger = nil
	}
	s := &stream{ch: make(chan *frame, h.buffer), dropped: make(chan struct{})}
	t.streams[s] = struct{}{}
	backlog := slices.Clone(t.ring)
	h.mu.Unlock()

	if create {
		h.subscribe(t)
	}
	select {
	case <-t.ready:
	case <-ctx.Done():
		h.leave(t, s)
		return nil, nil, nil, ctx.Err()
	}
	if t.err != nil {
		h.leave(t, s)
		return nil, nil, nil, t.err
	}
	return t, s, backlog, nil
}

// subscribe subscribes t's subjects, outside the hub's lock since it waits
// for the server, and then tells t's joiners.
func (h *hub) subscribe(t *topic) {
	var (
		subs []*nats.Subscription
		err  error
	)
	for _, k := range []struct{ subject, kind string }{
		{h.subjects.Refreshed(t.name), kindRefreshed},
		{h.subjects.Failed(t.name), kindFailed},
	} {
		var sub *nats.Subscription
		if sub, err = h.nc.Subscribe(k.subject, func(m *nats.Msg) { h.deliver(t, k.kind, m.Data) }); err != nil {
			break
		}
		subs = append(subs, sub)
	}
	if err == nil {
		// The server has the subscriptions once it answered a ping after
		// them, so an event published after the stream read the current
		// token reaches the stream. Failing that (NATS is reconnecting),
		// nats.go registers them on reconnect: go on without the
		// guarantee rather than fail the stream.
		if ferr := h.nc.FlushTimeout(5 * time.Second); ferr != nil {
			h.log.Warn("events: subscriptions not confirmed by NATS", "credential_id", t.name, "err", ferr)
		}
	}
	h.mu.Lock()
	if err == nil && (h.closed || h.topics[t.name] != t) {
		// Shut down, or every stream left and the linger ran out while
		// subscribing: nobody is left to be fed.
		err = errEventsClosed
	}
	if err != nil {
		unsubscribe(subs)
		if h.topics[t.name] == t {
			delete(h.topics, t.name)
		}
		h.log.Warn("events: subscribe", "credential_id", t.name, "err", err)
	} else {
		t.subs = subs
	}
	t.err = err
	h.mu.Unlock()
	close(t.ready)
}

func unsubscribe(subs []*nats.Subscription) {
	for _, s := range subs {
		_ = s.Unsubscribe() // fails only once the connection is closed: nothing left to undo
	}
}

// deliver is the NATS callback of t's subscriptions: it remembers the event
// and hands it to every stream, never waiting for one.
func (h *hub) deliver(t *topic, kind string, data []byte) {
	f, err := decodeFrame(kind, data)
	if err != nil {
		// The error names fields, never values: the event holds a token.
		h.log.Warn("events: an event that cannot be read", "credential_id", t.name, "kind", kind, "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.topics[t.name] != t {
		return // unsubscribed since
	}
	if len(t.ring) == h.remember {
		copy(t.ring, t.ring[1:])
		t.ring[len(t.ring)-1] = f
	} else {
		t.ring = append(t.ring, f)
	}
	for s := range t.streams {
		select {
		case s.ch <- f:
		default:
			delete(t.streams, s)
			close(s.dropped)
		}
	}
}

// current returns the frame that starts a stream with ev, name's current
// token: the event the broker published for it when t still has it, else
// one built from ev with the synthesized id.
func (h *hub) current(t *topic, ev tokenbroker.RefreshedEvent) (*frame, error) {
	h.mu.Lock()
	for i := len(t.ring) - 1; i >= 0; i-- {
		if f := t.ring[i]; f.token != "" && f.token == ev.AccessToken && f.expiresOn == ev.ExpiresOn {
			h.mu.Unlock()
			return f, nil
		}
	}
	h.mu.Unlock()
	ev.EventID = currentID(ev.CredentialID, ev.ExpiresOn)
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return encodeFrame(kindRefreshed, ev.EventID, body)
}

// leave removes s from t; the last stream to leave starts t's linger,
// after which t's subscriptions and remembered events go.
func (h *hub) leave(t *topic, s *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(t.streams, s)
	if len(t.streams) > 0 || h.closed || h.topics[t.name] != t || t.linger != nil {
		return
	}
	var timer *time.Timer
	// The callback takes the lock, which is held until timer is set.
	timer = time.AfterFunc(h.linger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if t.linger != timer || len(t.streams) > 0 || h.topics[t.name] != t {
			return
		}
		delete(h.topics, t.name)
		unsubscribe(t.subs)
	})
	t.linger = timer
}

// close ends every stream and subscription; later joins fail. The server
// calls it when it begins shutting down, so that Shutdown, which waits for
// handlers, does not wait for streams that never end.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.done)
	for name, t := range h.topics {
		if t.linger != nil {
			t.linger.Stop()
		}
		unsubscribe(t.subs)
		delete(h.topics, name)
	}
}

// serveEvents is GET /events?credential=NAME.
func (h *handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	if h.events == nil {
		notFound(w)
		return
	}
	if !h.hostAllowed(w, r) {
		return
	}
	if r.Method != http.MethodGet {
		h.refused(r, http.StatusMethodNotAllowed)
		methodNotAllowed(w, http.MethodGet)
		return
	}
	names := r.URL.Query()["credential"]
	switch {
	case len(names) == 0 || names[0] == "":
		h.refuseEvents(w, r, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"name the credential to stream: %s?credential=NAME", PathEvents))
		return
	case len(names) > 1:
		h.refuseEvents(w, r, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"one credential per stream"))
		return
	}
	name := names[0]
	// Named credentials only: a username/password credential's token is
	// for whoever brings its password, which a stream does not.
	if !wire.ValidName(name) || !h.events.tokens.Known(name) {
		h.refuseEvents(w, r, tokenbroker.Errorf(tokenbroker.CodeNotFound, tokenbroker.OAuthUnknownCredential,
			"no named credential %s; %s streams named credentials only", quote(name), PathEvents))
		return
	}
	t, s, backlog, err := h.events.join(r.Context(), name)
	if err != nil {
		if r.Context().Err() == nil {
			h.refuseEvents(w, r, tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable,
				"cannot stream events now; retry later"))
		}
		return
	}
	defer h.events.leave(t, s)

	// What the stream starts with: the events after Last-Event-ID when
	// they are remembered, else the current token, unless the client has
	// it already.
	var (
		first []*frame
		skip  string // the current token's event, should it also come from NATS
		token bool   // a token is handed over at once
	)
	last := r.Header.Get("Last-Event-ID")
	if i := slices.IndexFunc(backlog, func(f *frame) bool { return f.id == last }); last != "" && i >= 0 {
		first = backlog[i+1:]
	} else if ev, ok := h.events.tokens.Current(name); ok {
		f, err := h.events.current(t, ev)
		if err != nil {
			h.log.Warn("events: encode the current token", "credential_id", name, "err", err)
		} else if f.id != last {
			first, skip, token = append(first, f), f.id, true
		}
	}
	for _, f := range first {
		if f.token != "" {
			token = true
		}
	}
	rec := tokenbroker.AuditRecord{Time: time.Now(), CredentialID: name, Caller: r.RemoteAddr,
		Transport: tokenbroker.TransportHTTP, Outcome: "ok"}
	if token {
		rec.Source, rec.Action = tokenbroker.SourceCache, tokenbroker.ActionExisting
	}
	h.audit.Audit(rec)

	rc := http.NewResponseController(w)
	// A stream outlives the server's ReadTimeout, whose expiry would
	// cancel the request, and its WriteTimeout: each write gets its own
	// deadline instead. Not every writer supports deadlines (a test's
	// recorder does not): without them, the stream still works.
	_ = rc.SetReadDeadline(time.Time{})
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		_, err := w.Write(b)
		return err == nil
	}
	flush := func() bool { return rc.Flush() == nil }

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no") // nginx would otherwise hold the events back
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	for _, f := range first {
		if !write(f.data) {
			return
		}
	}
	// At once, even with nothing to send, so the client knows it is
	// subscribed.
	if !flush() {
		return
	}

	tick := time.NewTicker(h.events.keepAlive)
	defer tick.Stop()
	for {
		var b []byte
		select {
		case f := <-s.ch:
			if f.id != "" && f.id == skip {
				skip = ""
				continue
			}
			b = f.data
		case <-tick.C:
			b = keepAliveFrame
		case <-s.dropped:
			_ = write(overflowFrame) && flush()
			return
		case <-h.events.done:
			_ = write(shutdownFrame) && flush()
			return
		case <-r.Context().Done():
			return
		}
		if !write(b) || !flush() {
			return
		}
	}
}

// refuseEvents answers an /events request the gateway refuses, and records
// it as the other refusals are. Not counted as a token request in the
// metrics: no token was asked for.
func (h *handler) refuseEvents(w http.ResponseWriter, r *http.Request, e *tokenbroker.Error) {
	st := status(e)
	h.refused(r, st)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, st, tokenbroker.EncodeError(e))
}

// quote quotes a name from a query for an error message, cut short so that
// a huge one does not make a huge answer.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	b, _ := json.Marshal(s)
	return string(b)
}
