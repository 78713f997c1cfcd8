package broker_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/store"
)

// A caller chooses its request's reply subject, and NATS does not check it
// against the caller's permissions. Aimed at the broker's own subjects, a
// reply would publish a token to another credential's consumers, forge a
// failure, overwrite a stored record in clear, stall a lease or reach the
// JetStream API. None of these may be answered, nor cost an IdP call.
func TestRepliesGoOnlyToInboxes(t *testing.T) {
	env := brokertest.Start(t, brokertest.Options{Adjust: func(cfg *config.Config, _ *fakeidp.Server) {
		cfg.Key = bytes.Repeat([]byte{7}, config.KeySize)
		cfg.DataDir = t.TempDir()
	}})
	nc, err := nats.Connect(env.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ask := func(req tokenbroker.Request) *nats.Msg {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"credential": req.Credential})
		msg, err := nc.Request("token.request", body, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	ask(tokenbroker.Request{Credential: brokertest.App}) // warm: no refresh or store write during the attack
	calls := env.IdP.Calls()

	// Whatever lands on the broker's own subjects during the attack is a
	// reply that should not have been sent.
	leaked := make(chan *nats.Msg, 64)
	for _, s := range []string{"token.refreshed.>", "token.failed.>", "$KV.>", "$JS.API.>", "token.request"} {
		if _, err := nc.ChanSubscribe(s, leaked); err != nil {
			t.Fatal(err)
		}
	}
	app := []byte(`{"credential":"` + brokertest.App + `"}`)
	wrongPassword := []byte(`{"username":"` + brokertest.User + `","password":"guess"}`)
	attacks := []struct {
		reply string
		body  []byte
	}{
		{"token.refreshed." + brokertest.App, app},
		{"token.failed." + brokertest.App, app},
		{"$KV." + store.DefaultBucket + "." + brokertest.App, app},
		{"$KV." + store.DefaultLeaseBucket + "." + brokertest.App, app},
		{"$JS.API.STREAM.DELETE.KV_" + store.DefaultBucket, app},
		{"token.request", app},
		{"_INBOXES.x", app}, // looks like an inbox, is not under _INBOX.
		{"", app},
		{"", wrongPassword}, // no reply subject: no IdP call either
	}
	for _, a := range attacks {
		if err := nc.PublishMsg(&nats.Msg{Subject: "token.request", Reply: a.reply, Data: a.body}); err != nil {
			t.Fatal(err)
		}
	}
	// The broker handles requests in order on one subscription, and what it
	// publishes reaches this connection in order: once the next request is
	// answered, every attack was handled.
	ask(tokenbroker.Request{Credential: brokertest.App})
	for len(leaked) > 0 {
		m := <-leaked
		// token.request carries the requests themselves; a reply there
		// would carry a token or an error.
		if m.Subject != "token.request" || bytes.Contains(m.Data, []byte(`"accesstoken"`)) || bytes.Contains(m.Data, []byte(`"error"`)) {
			t.Fatalf("the broker published on %s: %.80s", m.Subject, m.Data)
		}
	}
	if got := env.IdP.Calls(); got != calls {
		t.Fatalf("%d IdP calls during the attack, want none", got-calls)
	}
	if got := env.Broker.Service().Counts().Dropped; got != uint64(len(attacks)) {
		t.Fatalf("%d requests dropped, want %d", got, len(attacks))
	}
}

// A caller using its own inbox prefix is answered once REPLY_PREFIXES
// lists it, and only then.
func TestCustomInboxPrefixNeedsReplyPrefixes(t *testing.T) {
	for _, allowed := range []bool{false, true} {
		env := brokertest.Start(t, brokertest.Options{Adjust: func(cfg *config.Config, _ *fakeidp.Server) {
			if allowed {
				cfg.ReplyPrefixes = []string{"_INBOX.", "_INBOX_crm"}
			}
		}})
		nc, err := nats.Connect(env.Broker.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		inbox, err := nc.SubscribeSync("_INBOX_crm.1")
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(`{"credential":"` + brokertest.App + `"}`)
		if err := nc.PublishRequest("token.request", "_INBOX_crm.1", body); err != nil {
			t.Fatal(err)
		}
		// Requests are handled in order: once this one is answered, the
		// one before it was answered or dropped.
		if _, err := nc.Request("token.request", body, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		n, _, _ := inbox.Pending()
		dropped := env.Broker.Service().Counts().Dropped
		switch {
		case allowed && (n != 1 || dropped != 0):
			t.Fatalf("listed prefix: %d replies, %d dropped; want 1 and 0", n, dropped)
		case !allowed && (n != 0 || dropped != 1):
			t.Fatalf("unlisted prefix: %d replies, %d dropped; want 0 and 1", n, dropped)
		}
		nc.Close()
	}
}
