package messaging_test

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/wire"
)

// prompt bounds a start-up that must fail at once: the bug it guards
// against took 15 seconds.
const prompt = 5 * time.Second

func newStateKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// withCRM adds the named credential crm-prod, at idp, to cfg.
func withCRM(cfg *config.Config, idp *fakeidp.Server) *config.Config {
	cfg.Credentials = secCredentials(idp)
	return cfg
}

// askCRM asks for crm-prod as the example config's caller.
func askCRM(t *testing.T, url string) tokenbroker.Reply {
	t.Helper()
	caller := connectAs(t, url, "caller", secCallerPassword, nil)
	msg, err := caller.Request("token.request", []byte(`{"credential":"crm-prod"}`), 10*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var reply tokenbroker.Reply
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.AccessToken == "" {
		t.Fatalf("reply %s (%v)", msg.Data, err)
	}
	return reply
}

// TestExampleConfigKeepsDurableState: with the shipped example config and
// TOKENBROKER_KEY, the broker starts, stores the token it got, and after a
// restart serves it from the store without asking the IdP again, and nothing
// it does is refused.
func TestExampleConfigKeepsDurableState(t *testing.T) {
	setExamplePasswords(t)
	loadExampleConfig(t)
	idp := startSecIdP(t)
	key, dataDir := newStateKey(t), t.TempDir()
	durable := func() *config.Config {
		cfg := withCRM(exampleBrokerConfig(exampleNATSConfig, "broker", secBrokerPassword), idp)
		cfg.Key, cfg.DataDir = key, dataDir
		return cfg
	}
	logs := &testkit.LogBuffer{}

	first := brokertest.StartBroker(t, durable(), broker.Options{Logger: logs.Logger()})
	got := askCRM(t, first.ClientURL())
	if n := idp.Calls(); n != 1 {
		t.Fatalf("IdP calls %d, want 1", n)
	}
	if err := first.Conn().LastError(); err != nil {
		t.Fatalf("broker connection: %v", err)
	}
	if err := brokertest.Stop(first); err != nil {
		t.Fatal(err)
	}

	second := brokertest.StartBroker(t, durable(), broker.Options{Logger: logs.Logger()})
	assertRestored(t, second, got, askCRM(t, second.ClientURL()), idp, logs)
	assertNoSecretIn(t, logs.String(), secBrokerPassword, secCallerPassword, secClientSecret, got.AccessToken)
}

// brokerJetStreamPermissions returns the broker user's JetStream
// permissions in the example config: what it publishes for the token state,
// and its inbox subscription.
func brokerJetStreamPermissions(t *testing.T) (publish, subscribe []string) {
	t.Helper()
	for _, u := range loadExampleConfig(t).Users {
		if u.Username != "broker" {
			continue
		}
		for _, p := range u.Permissions.Publish.Allow {
			if !strings.HasPrefix(p, "token.") {
				publish = append(publish, p)
			}
		}
		for _, s := range u.Permissions.Subscribe.Allow {
			if strings.HasPrefix(s, broker.InboxPrefix) {
				subscribe = append(subscribe, s)
			}
		}
	}
	if len(publish) < 10 || len(subscribe) != 1 {
		t.Fatalf("the example's broker has JetStream publish %q and subscribe %q", publish, subscribe)
	}
	return publish, subscribe
}

// quoted finds quoted strings, such as the subject a permissions violation
// names.
var quoted = regexp.MustCompile(`"([^"]+)"`)

// TestExampleConfigWithoutAJetStreamPermissionFailsPromptly takes away each
// JetStream permission of the example's broker user in turn: the broker
// must stop at start-up, at once, naming a refused subject that the missing
// permission covers, instead of waiting out a timeout that names nothing,
// or starting and then stalling every request.
func TestExampleConfigWithoutAJetStreamPermissionFailsPromptly(t *testing.T) {
	setExamplePasswords(t)
	idp := startSecIdP(t)
	publish, subscribe := brokerJetStreamPermissions(t)

	type removal struct{ publish, subscribe string }
	var removals []removal
	for _, p := range publish {
		// Only a watch that falls far behind asks for flow control, which
		// no start-up can provoke; the permission is there for it.
		if strings.HasPrefix(p, "$JS.FC.") {
			continue
		}
		removals = append(removals, removal{publish: p})
	}
	for _, s := range subscribe {
		removals = append(removals, removal{subscribe: s})
	}
	for _, r := range removals {
		missing := r.publish + r.subscribe
		t.Run(missing, func(t *testing.T) {
			example := loadExampleConfig(t)
			for _, u := range example.Users {
				if u.Username == "broker" {
					u.Permissions.Publish.Allow = without(u.Permissions.Publish.Allow, r.publish)
					u.Permissions.Subscribe.Allow = without(u.Permissions.Subscribe.Allow, r.subscribe)
				}
			}
			// A fresh JetStream, so that creating the buckets is needed.
			dir := t.TempDir()
			s := natstest.StartServer(t, func(o *server.Options) {
				example.Host, example.Port, example.NoLog, example.NoSigs = o.Host, o.Port, o.NoLog, o.NoSigs
				*o = *example
				o.JetStream, o.StoreDir = true, dir
			})
			cfg := withCRM(exampleBrokerConfig("", "broker", secBrokerPassword), idp)
			cfg.NATSURL, cfg.Key = s.ClientURL(), newStateKey(t)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}

			began := time.Now()
			err := startRefused(t, cfg)
			took := time.Since(began)
			if !errors.Is(err, store.ErrNotPermitted) || !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("start without %s: %v", missing, err)
			}
			// The violation comes last, after the broker's explanation.
			all := quoted.FindAllStringSubmatch(err.Error(), -1)
			if len(all) == 0 || !subjectMatches(missing, all[len(all)-1][1]) {
				t.Fatalf("the error does not name a subject of %s: %v", missing, err)
			}
			if took > prompt {
				t.Fatalf("the refusal took %v, want it within %v", took, prompt)
			}
			assertNoSecretIn(t, err.Error(), secBrokerPassword)
		})
	}
}

// without returns list without s.
func without(list []string, s string) []string {
	var out []string
	for _, e := range list {
		if e != s {
			out = append(out, e)
		}
	}
	return out
}

// subjectMatches reports whether subject falls under pattern, a NATS
// subject with * and > wildcards.
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}

// assertRestored checks a broker restarted on durable state: it answered
// again with got, the token stored before the restart, and made no new IdP
// call, and nothing was refused to it (the embedded server logs every
// refusal; the broker logs nats.go's).
func assertRestored(t *testing.T, b *broker.Broker, got, again tokenbroker.Reply, idp *fakeidp.Server, logs *testkit.LogBuffer) {
	t.Helper()
	if again.AccessToken != got.AccessToken || again.Action != tokenbroker.ActionExisting {
		t.Fatalf("after the restart: action %q, same token %v; want the stored token", again.Action, again.AccessToken == got.AccessToken)
	}
	if n := idp.Calls(); n != 1 {
		t.Fatalf("IdP calls %d after the restart, want still 1", n)
	}
	if err := b.Conn().LastError(); err != nil {
		t.Fatalf("broker connection: %v", err)
	}
	if l := logs.String(); strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Fatalf("something was refused:\n%s", l)
	}
}

// TestExampleConfigLetsTheAdminPutACredential: with the shipped example
// config, the admin user puts a credential through a broker, which stores
// it in its registry with nothing refused, and a caller gets its token.
func TestExampleConfigLetsTheAdminPutACredential(t *testing.T) {
	setExamplePasswords(t)
	idp := startSecIdP(t)
	cfg := exampleBrokerConfig(exampleNATSConfig, "broker", secBrokerPassword)
	cfg.Key, cfg.DataDir = newStateKey(t), t.TempDir()
	b := brokertest.StartBroker(t, cfg, broker.Options{})

	admin := connectAs(t, b.ClientURL(), "admin", secAdminPassword, nil)
	crm := config.Credential{Name: secCredential, Grant: config.GrantClientCredentials, TokenEndpoint: idp.V2TokenURL(),
		ClientID: secClientID, ClientSecret: tokenbroker.Secret(secClientSecret), Scope: secScope, KeepWarm: true}
	body, err := json.Marshal(wire.AdminPutRequest{Credentials: []wire.Credential{crm.Wire()}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := admin.Request(wire.Subjects{}.AdminCredentialPut(), body, 10*time.Second)
	if err != nil {
		t.Fatalf("put as admin: %v", err)
	}
	if e := wire.DecodeError(msg); e != nil {
		t.Fatalf("put as admin: %v", e)
	}
	askCRM(t, b.ClientURL())
	if err := b.Conn().LastError(); err != nil {
		t.Fatalf("broker connection: %v", err)
	}
}
