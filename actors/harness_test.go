package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/anthdm/hollywood/actor"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/oauth"
)

const (
	testUser     = "alice@contoso.example"
	testPassword = "correct horse battery staple"
	testClient   = "11111111-2222-3333-4444-555555555555"
	testApp      = "app"
	testSecret   = "app-secret-value"
	testResource = "https://resource.example"
	waitFor      = 10 * time.Second
)

// harness is a Router over a fake IdP, with the events it publishes.
type harness struct {
	t      testing.TB
	idp    *fakeidp.Server
	router *Router
	events *events
	clock  *clock.Fake // nil: real time
}

type harnessOpts struct {
	clock       *clock.Fake
	lifetime    time.Duration
	threshold   time.Duration
	idleTimeout time.Duration
	reqTimeout  time.Duration
	idp         []fakeidp.Option
	auditor     tokenbroker.Auditor
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	if o.lifetime == 0 {
		o.lifetime = time.Hour
	}
	if o.threshold == 0 {
		o.threshold = 10 * time.Minute
	}
	idpOpts := append([]fakeidp.Option{
		fakeidp.WithLifetime(o.lifetime),
		fakeidp.WithUser(testUser, testPassword),
		fakeidp.WithClient(testClient, ""),
		fakeidp.WithClient(testApp, testSecret),
	}, o.idp...)
	client := oauth.NewClient(nil, 5*time.Second)
	now := time.Now
	if o.clock != nil {
		idpOpts = append(idpOpts, fakeidp.WithClock(o.clock.Now))
		client.SetClock(o.clock.Now)
		now = o.clock.Now
	}
	idp, err := fakeidp.Start(idpOpts...)
	if err != nil {
		t.Fatalf("fake IdP: %v", err)
	}
	t.Cleanup(idp.Close)
	engine, err := actor.NewEngine(actor.NewEngineConfig())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewKeyring(nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvents()
	r, err := NewRouter(Options{
		Engine:    engine,
		Client:    client,
		Publisher: ev,
		Keyring:   keys,
		Default: &Spec{
			Name: "default", Grant: GrantPassword, RefreshThreshold: o.threshold,
			Endpoint: oauth.Endpoint{TokenURL: idp.V1TokenURL(), ClientID: testClient, Resource: testResource},
		},
		Named: []Spec{{
			Name: testApp, Grant: GrantClientCredentials, RefreshThreshold: o.threshold, KeepWarm: true,
			Endpoint: oauth.Endpoint{TokenURL: idp.V2TokenURL(), ClientID: testApp, ClientSecret: testSecret, Scope: testResource + "/.default"},
		}},
		IdleTimeout:    o.idleTimeout,
		Auditor:        o.auditor,
		RequestTimeout: o.reqTimeout,
		Now:            now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Errorf("stop router: %v", err)
		}
	})
	return &harness{t: t, idp: idp, router: r, events: ev, clock: o.clock}
}

// result is what a caller got.
type result struct {
	action string
	reply  tokenbroker.Reply
	err    *tokenbroker.Error
}

// replier records one answer on a channel.
type replier struct {
	ch chan result
}

func newReplier() *replier { return &replier{ch: make(chan result, 1)} }

func (r *replier) Respond(action string, body []byte) {
	var rep tokenbroker.Reply
	if err := json.Unmarshal(body, &rep); err != nil {
		r.ch <- result{err: &tokenbroker.Error{Code: -1, Description: "bad reply JSON: " + err.Error()}}
		return
	}
	r.ch <- result{action: action, reply: rep}
}

func (r *replier) Fail(err *tokenbroker.Error) { r.ch <- result{err: err} }

func (r *replier) wait(t testing.TB) result {
	t.Helper()
	select {
	case res := <-r.ch:
		select {
		case extra := <-r.ch:
			t.Fatalf("a second answer to one request: %+v", extra)
		default:
		}
		return res
	case <-time.After(waitFor):
		t.Fatal("no answer in time")
		return result{}
	}
}

func (h *harness) ask(req tokenbroker.Request) result {
	h.t.Helper()
	rep := newReplier()
	h.router.Serve(req, rep)
	return rep.wait(h.t)
}

// mustToken asks and fails the test unless a token with action comes back.
func (h *harness) mustToken(req tokenbroker.Request, action string) tokenbroker.Reply {
	h.t.Helper()
	res := h.ask(req)
	if res.err != nil {
		h.t.Fatalf("want %q, got error %v", action, res.err)
	}
	if res.action != action || res.reply.Action != action {
		h.t.Fatalf("want action %q, got %q (reply says %q)", action, res.action, res.reply.Action)
	}
	if res.reply.AccessToken == "" {
		h.t.Fatal("empty access token")
	}
	return res.reply
}

func user(password string) tokenbroker.Request {
	return tokenbroker.Request{Username: testUser, Password: tokenbroker.Secret(password)}
}

func named(name string) tokenbroker.Request { return tokenbroker.Request{Credential: name} }

// events records what the Router publishes.
type events struct {
	refreshed chan tokenbroker.RefreshedEvent
	failed    chan tokenbroker.FailedEvent
}

func newEvents() *events {
	return &events{refreshed: make(chan tokenbroker.RefreshedEvent, 1024), failed: make(chan tokenbroker.FailedEvent, 1024)}
}

func (e *events) PublishRefreshed(ev tokenbroker.RefreshedEvent) { e.refreshed <- ev }
func (e *events) PublishFailed(ev tokenbroker.FailedEvent)       { e.failed <- ev }

func (e *events) nextRefreshed(t testing.TB) tokenbroker.RefreshedEvent {
	t.Helper()
	select {
	case ev := <-e.refreshed:
		return ev
	case <-time.After(waitFor):
		t.Fatal("no token.refreshed event in time")
		return tokenbroker.RefreshedEvent{}
	}
}

func (e *events) nextFailed(t testing.TB) tokenbroker.FailedEvent {
	t.Helper()
	select {
	case ev := <-e.failed:
		return ev
	case <-time.After(waitFor):
		t.Fatal("no token.failed event in time")
		return tokenbroker.FailedEvent{}
	}
}

func wantCalls(t testing.TB, idp *fakeidp.Server, grant string, want int64) {
	t.Helper()
	if got := idp.CallsFor(grant); got != want {
		t.Fatalf("IdP %s calls: got %d, want %d", grant, got, want)
	}
}

var errNotYet = errors.New("not yet")

func notYet(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNotYet}, args...)...)
}
