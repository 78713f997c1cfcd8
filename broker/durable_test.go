package broker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/store"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// durableConfig is the fixture's broker config against idp that keeps its
// state in JetStream under key: in dataDir with an embedded server, or on
// natsURL.
func durableConfig(idp *fakeidp.Server, key []byte, dataDir, natsURL string) *config.Config {
	cfg := brokertest.Config(idp, 10*time.Minute)
	cfg.NATSURL, cfg.DataDir, cfg.Key = natsURL, dataDir, key
	return cfg
}

func startBroker(t *testing.T, cfg *config.Config, logs *testkit.LogBuffer, leaseTTL time.Duration) *broker.Broker {
	t.Helper()
	return brokertest.StartBroker(t, cfg, broker.Options{LeaseTTL: leaseTTL, Logger: logs.Logger()})
}

func ask(t *testing.T, url, body string) tokenbroker.Reply {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg, err := nc.Request("token.request", []byte(body), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return decodeReply(t, msg)
}

func newIdP(t *testing.T) *fakeidp.Server {
	t.Helper()
	idp := brokertest.StartIdP(t, time.Hour, fakeidp.WithRecordIssued())
	suite.addIdP(idp)
	return idp
}

// tokenBucket opens the tokens bucket at url as it is stored, below the
// store, for a test to read or damage; the connection closes with t.
func tokenBucket(t *testing.T, url string) (jetstream.KeyValue, context.Context) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	kv, err := js.KeyValue(ctx, store.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv, ctx
}

// rawRecords reads the token bucket's values as stored, with their revisions.
func rawRecords(t *testing.T, url string) map[string]jetstream.KeyValueEntry {
	t.Helper()
	kv, ctx := tokenBucket(t, url)
	out := map[string]jetstream.KeyValueEntry{}
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = e
	}
	return out
}

const userRequest = `{"username":"` + user + `","password":"` + password + `"}`

func TestRestartServesStoredTokensWithoutTheIdP(t *testing.T) {
	idp, key, dir := newIdP(t), newKey(t), t.TempDir()
	logs := newLogSink()
	first := startBroker(t, durableConfig(idp, key, dir, ""), logs, 0)
	named := ask(t, first.ClientURL(), `{"credential":"app"}`)
	usr := ask(t, first.ClientURL(), userRequest)
	if idp.Calls() != 2 {
		t.Fatalf("IdP calls %d", idp.Calls())
	}

	// The records hold no token, secret or username in clear.
	raw := rawRecords(t, first.ClientURL())
	if len(raw) != 2 {
		t.Fatalf("%d records, want 2", len(raw))
	}
	for k, e := range raw {
		// Every access and refresh token the IdP issued, and every secret.
		issued := idp.IssuedTokens()
		if len(issued) != 3 { // two access tokens, the user's refresh token
			t.Fatalf("the IdP issued %d tokens, want 3", len(issued))
		}
		for _, s := range append(issued, password, secret, user) {
			if bytes.Contains(e.Value(), []byte(s)) {
				t.Fatalf("record %s holds %.12s... in clear", k, s)
			}
		}
		if !bytes.Contains(e.Value(), []byte(store.KeyID(key))) {
			t.Fatalf("record %s does not name its key id", k)
		}
	}
	brokertest.Stop(first)

	second := startBroker(t, durableConfig(idp, key, dir, ""), logs, 0)
	// The kept-warm credential is back in memory with its timer before any request.
	testkit.Until(t, 10*time.Second, "the kept-warm credential back with its timer", func() bool {
		st := second.Router().Status()
		return len(st.Named) == 1 && st.Named[0].Warm && st.Named[0].NextRefresh != nil
	})
	if got := ask(t, second.ClientURL(), `{"credential":"app"}`); got.AccessToken != named.AccessToken || got.Action != tokenbroker.ActionExisting {
		t.Fatalf("named after restart: %+v", got)
	}
	if got := ask(t, second.ClientURL(), userRequest); got.AccessToken != usr.AccessToken || got.Action != tokenbroker.ActionExisting {
		t.Fatalf("user after restart: %+v", got)
	}
	// A wrong password still does not get the stored token.
	nc, err := nats.Connect(second.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg, err := nc.Request("token.request", []byte(`{"username":"`+user+`","password":"wrong"}`), 10*time.Second)
	if err != nil || msg.Header.Get("Nats-Service-Error-Code") != "401" {
		t.Fatalf("wrong password after restart: %v %s", err, msg.Data)
	}
	if got := idp.Calls(); got != 3 {
		t.Fatalf("IdP calls %d, want 3 (2 before the restart, 1 wrong password)", got)
	}
	assertNoSecrets(t, logs.String(), named.AccessToken, usr.AccessToken)
}

func TestWrongKeyStopsStartUpAndLeavesRecordsAlone(t *testing.T) {
	idp, key, dir := newIdP(t), newKey(t), t.TempDir()
	logs := newLogSink()
	first := startBroker(t, durableConfig(idp, key, dir, ""), logs, 0)
	ask(t, first.ClientURL(), `{"credential":"app"}`)
	before := rawRecords(t, first.ClientURL())
	brokertest.Stop(first)

	_, err := broker.Start(durableConfig(idp, newKey(t), dir, ""), broker.Options{})
	if !errors.Is(err, store.ErrWrongKey) || !strings.Contains(err.Error(), "TOKENBROKER_KEY") || !strings.Contains(err.Error(), store.KeyID(key)) {
		t.Fatalf("start with another key: %v", err)
	}

	again := startBroker(t, durableConfig(idp, key, dir, ""), logs, 0)
	after := rawRecords(t, again.ClientURL())
	for k, e := range before {
		if a, ok := after[k]; !ok || a.Revision() != e.Revision() || !bytes.Equal(a.Value(), e.Value()) {
			t.Fatalf("record %s changed", k)
		}
	}
}

// brokers starts n brokers sharing one NATS server and one key.
func brokers(t *testing.T, n int, idp *fakeidp.Server, url string, leaseTTL time.Duration) []*broker.Broker {
	t.Helper()
	key := newKey(t)
	var bs []*broker.Broker
	for i := 0; i < n; i++ {
		bs = append(bs, startBroker(t, durableConfig(idp, key, "", url), newLogSink(), leaseTTL))
	}
	return bs
}

func TestColdHerdAcrossBrokersMakesOneIdPCallAndOneEvent(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d brokers", n), func(t *testing.T) {
			ns := natstest.StartJetStream(t)
			idp := newIdP(t)
			bs := brokers(t, n, idp, ns.ClientURL(), 0)
			nc := natstest.Connect(t, ns)
			events, err := nc.SubscribeSync("token.refreshed.>")
			if err != nil {
				t.Fatal(err)
			}
			const requests = 300
			replies := make(chan *nats.Msg, requests)
			inbox := nats.NewInbox()
			sub, err := nc.ChanSubscribe(inbox+".>", replies)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			release := idp.Hold()
			for i := 0; i < requests; i++ {
				if err := nc.PublishRequest("token.request", fmt.Sprintf("%s.%d", inbox, i), []byte(userRequest)); err != nil {
					t.Fatal(err)
				}
			}
			// Wait until every request reached a broker before the IdP answers.
			testkit.Until(t, 10*time.Second, "every request at a broker", func() bool {
				total := 0
				for _, b := range bs {
					total += b.Service().Stats().Endpoints[0].NumRequests
				}
				return total == requests
			})
			release()
			sameToken(t, replies, requests, "")
			if got := idp.Calls(); got != 1 {
				t.Fatalf("IdP calls %d, want 1", got)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := events.Pending(); got != 1 {
				t.Fatalf("%d token.refreshed events, want 1", got)
			}
			for i, b := range bs {
				if b.Service().Stats().Endpoints[0].NumRequests == 0 {
					t.Logf("broker %d got no request (the queue group chose)", i)
				}
			}
		})
	}
}

// replier collects one answer from a Router directly.
type replier chan tokenbroker.Reply

func (r replier) Respond(_ string, body []byte) {
	var rep tokenbroker.Reply
	_ = json.Unmarshal(body, &rep)
	r <- rep
}
func (r replier) Fail(e *tokenbroker.Error) { r <- tokenbroker.Reply{Action: "error: " + e.Error()} }

func TestBrokerDyingMidRefreshIsReplacedAfterTheLease(t *testing.T) {
	ns := natstest.StartJetStream(t)
	idp := newIdP(t)
	bs := brokers(t, 2, idp, ns.ClientURL(), time.Second)
	a, b := bs[0], bs[1]
	req := tokenbroker.Request{Credential: app}

	release := idp.Hold()
	var once sync.Once
	defer once.Do(release)
	fromA := make(replier, 1)
	a.Router().Serve(req, fromA)
	testkit.Until(t, 10*time.Second, "the IdP call of broker A", func() bool { return idp.Calls() == 1 }) // A holds the lease and waits on the IdP
	// A dies: its connection goes, so it can neither store a token nor
	// release the lease.
	a.Conn().Close()
	fromB := make(replier, 1)
	b.Router().Serve(req, fromB)
	once.Do(release)
	select {
	case r := <-fromB:
		if r.AccessToken == "" || !idp.Valid(r.AccessToken) {
			t.Fatalf("B: %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("B never answered")
	}
	if got := idp.Calls(); got != 2 {
		t.Fatalf("IdP calls %d, want 2 (A's lost one and B's)", got)
	}
}

func TestLosingOneNATSNodeOfThreeLosesNoToken(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	urls := natstest.ClientURLs(nodes...)
	idp := newIdP(t)
	key := newKey(t)
	cfg := durableConfig(idp, key, "", urls)
	cfg.StateReplicas = 3
	startBroker(t, cfg, newLogSink(), 0)
	first := ask(t, urls, `{"credential":"app"}`)
	usr := ask(t, urls, userRequest)

	nodes[0].Shutdown()
	rest := natstest.ClientURLs(nodes[1:]...)
	// A broker connected to the lost node reconnects to another (within
	// its reconnect wait); until then a caller may meet no responder.
	caller, err := nats.Connect(rest)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	var answer *nats.Msg
	testkit.Until(t, 10*time.Second, "an answer on the remaining nodes", func() bool {
		answer, err = caller.Request("token.request", []byte(`{"credential":"app"}`), 5*time.Second)
		return err == nil
	})
	if got := decodeReply(t, answer); got.AccessToken != first.AccessToken {
		t.Fatalf("after losing a node: %+v", got)
	}
	// The two remaining nodes still hold both records. (Reading them back
	// through the store is covered by the store's own cluster test; opening
	// a store here would wait for a new meta leader.)
	js, err := jetstream.New(caller)
	if err != nil {
		t.Fatal(err)
	}
	stored := func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, store.DefaultBucket)
		if err != nil {
			return err
		}
		e, err := kv.Get(ctx, id)
		if err == nil && len(e.Value()) == 0 {
			err = errors.New("empty record")
		}
		return err
	}
	// JetStream may first elect a new meta leader: allow it 30 seconds.
	testkit.Eventually(t, 30*time.Second, func() error {
		if err := errors.Join(stored(first.CredentialID), stored(usr.CredentialID)); err != nil {
			return fmt.Errorf("records after losing a node: %w", err)
		}
		return nil
	})
	if got := ask(t, rest, userRequest); got.AccessToken != usr.AccessToken {
		t.Fatalf("user after losing a node: %+v", got)
	}
	if calls := idp.Calls(); calls != 2 {
		t.Fatalf("IdP calls %d, want 2", calls)
	}
}
