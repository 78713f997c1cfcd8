package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/wire"
)

// publisher sends events as the broker does, through wire.
type publisher struct {
	t  *testing.T
	nc *nats.Conn
	s  wire.Subjects
}

func (p publisher) refreshed(id, token string) tokenbroker.RefreshedEvent {
	p.t.Helper()
	ev := tokenbroker.RefreshedEvent{EventID: "e-" + token, CredentialID: id, AccessToken: token, TokenType: "Bearer",
		ExpiresOn: "1795870800", ExpiresIn: 3599, Action: tokenbroker.ActionRefreshed, RefreshedAt: time.Unix(1795867200, 0).UTC()}
	msg, err := wire.EncodeRefreshed(p.s, ev)
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(msg)
	return ev
}

func (p publisher) failed(id string) tokenbroker.FailedEvent {
	p.t.Helper()
	ev := tokenbroker.FailedEvent{EventID: "f-" + id, CredentialID: id, Error: tokenbroker.OAuthInvalidGrant,
		Description: "AADSTS70008: the refresh token has expired", At: time.Unix(1795867200, 0).UTC()}
	msg, err := wire.EncodeFailed(p.s, ev)
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(msg)
	return ev
}

func (p publisher) send(msg *nats.Msg) {
	p.t.Helper()
	if err := p.nc.PublishMsg(msg); err != nil {
		p.t.Fatal(err)
	}
	if err := p.nc.Flush(); err != nil {
		p.t.Fatal(err)
	}
}

func next(t *testing.T, events <-chan client.Event) client.Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(waitFor):
		t.Fatal("no event")
		return client.Event{}
	}
}

func TestWatchOneCredential(t *testing.T) {
	s := natstest.StartServer(t)
	pub := publisher{t, natstest.Connect(t, s), wire.Subjects{Prefix: "tb"}}
	c := client.New(natstest.Connect(t, s), client.WithSubjectPrefix("tb"))
	refreshed, failed := make(chan client.Event, 16), make(chan client.Event, 16)
	w, err := c.Watch(ctxFor(t), "app", func(ev client.Event) {
		if ev.Failed != nil {
			failed <- ev
		} else {
			refreshed <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	pub.refreshed("other", "tok-other")
	want := pub.refreshed("app", "tok-1")
	ev := next(t, refreshed)
	if ev.Err != nil || ev.Refreshed == nil || *ev.Refreshed != want || ev.Subject != "tb.refreshed.app" || ev.CredentialID() != "app" {
		t.Fatalf("refreshed event: %+v", ev)
	}
	if back, err := wire.DecodeRefreshed(ev.Data); err != nil || back != want {
		t.Fatalf("Data is not the event as published: %s", ev.Data)
	}

	wantFail := pub.failed("app")
	ev = next(t, failed)
	if ev.Err != nil || ev.Failed == nil || *ev.Failed != wantFail || ev.Refreshed != nil || ev.Subject != "tb.failed.app" || ev.CredentialID() != "app" {
		t.Fatalf("failed event: %+v", ev)
	}

	// An event that cannot be read is delivered with its error, not dropped.
	pub.send(&nats.Msg{Subject: "tb.refreshed.app", Data: []byte(`<html>`)})
	ev = next(t, refreshed)
	if ev.Err == nil || ev.Refreshed != nil || ev.Failed != nil || string(ev.Data) != `<html>` || ev.CredentialID() != "" {
		t.Fatalf("unreadable event: %+v", ev)
	}

	// One publisher's messages on one subscription arrive in order, so had
	// the other credential's event been delivered it would be here by now.
	pub.refreshed("app", "tok-2")
	if ev = next(t, refreshed); ev.Refreshed == nil || ev.Refreshed.AccessToken != "tok-2" {
		t.Fatalf("want tok-2 (and never tok-other), got %+v", ev)
	}
}

func TestWatchEveryCredential(t *testing.T) {
	s := natstest.StartServer(t)
	pub := publisher{t, natstest.Connect(t, s), wire.Subjects{}}
	events := make(chan client.Event, 16)
	w, err := client.New(natstest.Connect(t, s)).Watch(ctxFor(t), "", func(ev client.Event) { events <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pub.refreshed("a", "tok-a")
	pub.refreshed("b", "tok-b")
	pub.failed("c")
	got := map[string]bool{}
	for range 3 {
		got[next(t, events).CredentialID()] = true
	}
	if !got["a"] || !got["b"] || !got["c"] {
		t.Fatalf("events of %v, want a, b and c", got)
	}
}

func TestWatchClose(t *testing.T) {
	s := natstest.StartServer(t)
	pub := publisher{t, natstest.Connect(t, s), wire.Subjects{}}
	nc := natstest.Connect(t, s)
	var calls atomic.Int64
	var watcher atomic.Pointer[client.Watcher]
	closedFromFn := make(chan error, 1)
	w, err := client.New(nc).Watch(ctxFor(t), "app", func(ev client.Event) {
		calls.Add(1)
		// Close from fn neither deadlocks nor lets another event through.
		closedFromFn <- watcher.Load().Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	watcher.Store(w)
	pub.refreshed("app", "tok-1")
	select {
	case err := <-closedFromFn:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("fn not called")
	}
	if n := nc.NumSubscriptions(); n != 0 {
		t.Fatalf("%d subscriptions left after Close", n)
	}
	// A subscriber that sees an event published after Close; the
	// Watcher's fn must not have.
	seen := make(chan struct{}, 1)
	if _, err := nc.Subscribe("token.refreshed.app", func(*nats.Msg) { seen <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	pub.refreshed("app", "tok-2")
	<-seen
	if n := calls.Load(); n != 1 {
		t.Fatalf("fn called %d times, want once", n)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWatchEndsWithItsContext(t *testing.T) {
	s := natstest.StartServer(t)
	nc := natstest.Connect(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.New(nc).Watch(ctx, "app", func(client.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	if n := nc.NumSubscriptions(); n != 2 {
		t.Fatalf("%d subscriptions, want 2 (refreshed and failed)", n)
	}
	cancel()
	testkit.Until(t, waitFor, "the subscriptions to end", func() bool { return nc.NumSubscriptions() == 0 })
	if err := w.Close(); err != nil {
		t.Fatalf("Close after the context ended: %v", err)
	}
}

func TestWatchErrors(t *testing.T) {
	s := natstest.StartServer(t)
	nc := natstest.Connect(t, s)
	c := client.New(nc)
	for _, id := range []string{"a.b", "*", ">", "a b"} {
		if _, err := c.Watch(ctxFor(t), id, func(client.Event) {}); tokenbroker.ErrorCode(err) != tokenbroker.CodeInvalidRequest {
			t.Errorf("Watch(%q): %v, want a 400", id, err)
		}
	}
	if n := nc.NumSubscriptions(); n != 0 {
		t.Fatalf("%d subscriptions after refused watches", n)
	}
	if _, err := c.Watch(ctxFor(t), "app", nil); err == nil {
		t.Error("Watch with no function")
	}
	nc.Close()
	_, err := c.Watch(ctxFor(t), "app", func(client.Event) {})
	var nr *client.NoReplyError
	if !errors.As(err, &nr) || nr.Broker.Code != tokenbroker.CodeUnavailable || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("Watch on a closed connection: %v", err)
	}
}

// TestWatchBroker: a real broker's refresh ahead of expiry reaches a
// Watcher, with a token the IdP issued.
func TestWatchBroker(t *testing.T) {
	e := start(t, 4*time.Second, 2*time.Second)
	c := client.New(e.nc)
	events := make(chan client.Event, 16)
	w, err := c.Watch(ctxFor(t), app, func(ev client.Event) { events <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rep, err := c.Token(ctxFor(t), tokenbroker.Request{Credential: app})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev := next(t, events)
		if ev.Refreshed == nil {
			t.Fatalf("event %+v", ev)
		}
		if ev.Refreshed.AccessToken == rep.AccessToken {
			continue // the event of the token just returned
		}
		if !e.idp.Valid(ev.Refreshed.AccessToken) || ev.CredentialID() != app || ev.Refreshed.Action != tokenbroker.ActionRefreshed {
			t.Fatalf("refreshed event %+v", ev.Refreshed)
		}
		return
	}
}
