package actors

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthdm/hollywood/actor"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// fakeHost is a Router stand-in that records what an actor asks of it.
type fakeHost struct {
	published chan *snapshot
	retired   chan *cell
}

func (h *fakeHost) publish(_ *cell, s *snapshot) { h.published <- s }
func (h *fakeHost) retire(c *cell)               { h.retired <- c }
func (h *fakeHost) redispatch(*getToken)         { panic("no retired actor in these tests") }

// scriptedClient answers client_credentials calls with err when set, else
// a one-hour token, and counts the calls.
type scriptedClient struct {
	calls atomic.Int64
	err   atomic.Pointer[error]
	now   func() time.Time
}

func (c *scriptedClient) ClientCredentials(context.Context, oauth.Endpoint) (*oauth.Token, error) {
	c.calls.Add(1)
	if err := c.err.Load(); err != nil {
		return nil, *err
	}
	return &oauth.Token{Token: tokenbroker.Token{AccessToken: "at-" + time.Now().String(), TokenType: "Bearer",
		Expiry: c.now().Add(time.Hour), Lifetime: time.Hour}}, nil
}

func (c *scriptedClient) Password(context.Context, oauth.Endpoint, string, tokenbroker.Secret) (*oauth.Token, error) {
	panic("not a password credential")
}

func (c *scriptedClient) Refresh(context.Context, oauth.Endpoint, tokenbroker.Secret) (*oauth.Token, error) {
	panic("no refresh token issued")
}

func (c *scriptedClient) ClientAssertion(context.Context, oauth.Endpoint, *oauth.AssertionSigner) (*oauth.Token, error) {
	panic("not a certificate credential")
}

func (c *scriptedClient) FederatedAssertion(context.Context, oauth.Endpoint, string) (*oauth.Token, error) {
	panic("not a federated credential")
}

// TestActorAlone runs one credential actor with no Router: its host and
// its token endpoint are fakes, so what it asks of each is seen.
func TestActorAlone(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	host := &fakeHost{published: make(chan *snapshot, 4), retired: make(chan *cell, 1)}
	client := &scriptedClient{now: clk.Now}
	ev := newEvents()
	engine, err := actor.NewEngine(actor.NewEngineConfig())
	if err != nil {
		t.Fatal(err)
	}
	d := &deps{host: host, client: client, publisher: ev, log: slog.New(slog.DiscardHandler),
		idle: time.Hour, ctx: context.Background(), now: clk.Now}
	spec := &Spec{Name: testApp, Grant: GrantClientCredentials, RefreshThreshold: 10 * time.Minute}
	c := &cell{key: namedKey(0), id: testApp}
	c.pid = engine.Spawn(newCredential(d, c, spec), kind, actor.WithID(testApp))
	t.Cleanup(func() { <-engine.Poison(c.pid).Done() })
	var p pending
	ask := func(req tokenbroker.Request) result {
		t.Helper()
		rep := newReplier()
		p.add()
		engine.Send(c.pid, &getToken{req: req, rep: rep, pending: &p, key: c.key, id: c.id, spec: spec,
			deadline: time.Now().Add(waitFor)})
		return rep.wait(t)
	}
	published := func() *snapshot {
		t.Helper()
		select {
		case s := <-host.published:
			return s
		case <-time.After(waitFor):
			t.Fatal("the actor published no snapshot")
			return nil
		}
	}

	// A cold credential: one IdP call, the token published for cache hits
	// and pushed to consumers, the caller told it is new.
	first := ask(named(testApp))
	if first.err != nil || first.action != tokenbroker.ActionNew {
		t.Fatalf("first request: %+v", first)
	}
	s := published()
	if s == nil || s.tok.AccessToken != first.reply.AccessToken || !s.serves(&tokenbroker.Request{}, &Verifier{}, clk.Now()) {
		t.Fatalf("published snapshot %+v does not serve the token the caller got", s)
	}
	if got := ev.nextRefreshed(t); got.AccessToken != first.reply.AccessToken || got.Action != tokenbroker.ActionNew {
		t.Fatalf("refreshed event %+v", got)
	}

	// A request the snapshot could have answered, reaching the actor all
	// the same (a hit raced with it): answered from the token, no call.
	if again := ask(named(testApp)); again.action != tokenbroker.ActionExisting || again.reply.AccessToken != first.reply.AccessToken {
		t.Fatalf("second request: %+v", again)
	}
	if n := client.calls.Load(); n != 1 {
		t.Fatalf("%d IdP calls, want 1", n)
	}

	// Inside the threshold, with the IdP down: the still-valid token
	// serves, and no new snapshot is published.
	clk.Advance(55 * time.Minute)
	down := error(&oauth.TransportError{URL: "https://idp.example/token", Err: context.DeadlineExceeded})
	client.err.Store(&down)
	if stale := ask(named(testApp)); stale.action != tokenbroker.ActionExisting || stale.reply.AccessToken != first.reply.AccessToken {
		t.Fatalf("IdP down inside the threshold: %+v", stale)
	}
	// A forced refresh is not answered with the token it wants replaced.
	if forced := ask(tokenbroker.Request{Credential: testApp, ForceRefresh: true}); forced.err == nil || forced.err.Code != tokenbroker.CodeUnavailable {
		t.Fatalf("forced refresh with the IdP down: %+v", forced)
	}
	select {
	case s := <-host.published:
		t.Fatalf("a snapshot published while the IdP was down: %+v", s)
	default:
	}

	// The IdP back: the next request refreshes, and the new token is
	// published.
	client.err.Store(nil)
	refreshed := ask(named(testApp))
	if refreshed.err != nil || refreshed.action != tokenbroker.ActionRefreshed || refreshed.reply.AccessToken == first.reply.AccessToken {
		t.Fatalf("refresh after the outage: %+v", refreshed)
	}
	if s := published(); s.tok.AccessToken != refreshed.reply.AccessToken {
		t.Fatal("the refreshed token was not published")
	}
}
