package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
)

// TestTokenSourceSingleFlight holds a scripted broker's answer until every
// concurrent Token caller is waiting, and checks that they share one
// request.
func TestTokenSourceSingleFlight(t *testing.T) {
	s := natstest.StartServer(t)
	responder := natstest.Connect(t, s)
	var requests atomic.Int64
	release := make(chan struct{})
	if _, err := responder.Subscribe("token.request.*", func(m *nats.Msg) {
		n := requests.Add(1)
		if n > 1 {
			<-release
		}
		exp := time.Now().Add(time.Hour).Unix()
		_ = m.Respond(fmt.Appendf(nil, `{"accesstoken":"tok-%d","expires_on":"%d","action":"retrieved new token","token_type":"Bearer","expires_in":3600,"credential_id":"cred"}`, n, exp))
	}); err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// An early expiry longer than the tokens live: every token is expired.
	src, err := New(nc).TokenSource(ctx, tokenbroker.Request{Credential: "cred"}, WithEarlyExpiry(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	const callers = 16
	var wg sync.WaitGroup
	got := make([]string, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := src.Token()
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = tok.AccessToken
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		src.mu.Lock()
		waiting := src.inflight != nil && src.inflight.waiters == callers-1
		src.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("callers did not pile up behind one request")
		}
		<-time.After(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, tok := range got {
		if tok != "tok-2" {
			t.Fatalf("caller %d got %q, want tok-2", i, tok)
		}
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("%d requests, want 2 (the first, then one shared)", n)
	}
}

// TestTokenSourceKeepsLatest: a pushed token replaces the held one only when
// it expires later, whatever order events arrive in.
func TestTokenSourceKeepsLatest(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := &TokenSource{id: "cred", now: func() time.Time { return now }, early: 30 * time.Second}
	s.tok = held{access: "a", tokenType: "Bearer", expiry: now.Add(time.Hour)}
	push := func(tok string, exp time.Time, id string) {
		s.pushed(&nats.Msg{Data: fmt.Appendf(nil, `{"credential_id":%q,"accesstoken":%q,"token_type":"Bearer","expires_on":"%d"}`, id, tok, exp.Unix())})
	}
	push("b", now.Add(2*time.Hour), "cred")
	push("old", now.Add(90*time.Minute), "cred")
	push("other", now.Add(3*time.Hour), "another")
	push("", now.Add(4*time.Hour), "cred")
	if s.tok.access != "b" {
		t.Fatalf("held %q, want b", s.tok.access)
	}
	tok, err := s.Token()
	if err != nil || tok.AccessToken != "b" || !tok.Expiry.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("Token: %+v %v", tok, err)
	}
}
