package broker_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
)

// prompt bounds a start-up that must not wait on a timeout: the bug it
// guards against waited 15 seconds and then gave up.
const prompt = 5 * time.Second

// app2 is a second named credential beside the fixture's app.
const app2 = "app2"

// twoNamed is durableConfig with app2 as well.
func twoNamed(idp *fakeidp.Server, key []byte, dataDir, natsURL string) *config.Config {
	cfg := durableConfig(idp, key, dataDir, natsURL)
	c := cfg.Credentials[0]
	c.Name = app2
	cfg.Credentials = append(cfg.Credentials, c)
	return cfg
}

// stored is what a first broker left in the store: a token for app, app2
// and the fixture's user, one IdP call each.
type stored struct {
	app, app2, user tokenbroker.Reply
	raw             map[string]jetstream.KeyValueEntry
}

func storeThree(t *testing.T, idp *fakeidp.Server, cfg *config.Config) stored {
	t.Helper()
	b := startBroker(t, cfg, newLogSink(), 0)
	s := stored{
		app:  ask(t, b.ClientURL(), `{"credential":"app"}`),
		app2: ask(t, b.ClientURL(), `{"credential":"app2"}`),
		user: ask(t, b.ClientURL(), userRequest),
	}
	s.raw = rawRecords(t, b.ClientURL())
	if n := idp.Calls(); n != 3 || len(s.raw) != 3 {
		t.Fatalf("%d IdP calls and %d records, want 3 of each", n, len(s.raw))
	}
	if err := brokertest.Stop(b); err != nil {
		t.Fatal(err)
	}
	return s
}

// assertOneCredentialLost checks a broker restarted over s with app2's
// record damaged: app and the user come from the store, app2 from the IdP,
// with one call.
func assertOneCredentialLost(t *testing.T, idp *fakeidp.Server, url string, s stored) {
	t.Helper()
	calls := idp.Calls()
	if got := ask(t, url, `{"credential":"app"}`); got.AccessToken != s.app.AccessToken || got.Action != tokenbroker.ActionExisting {
		t.Fatalf("app: %s, same token %v; want the stored token", got.Action, got.AccessToken == s.app.AccessToken)
	}
	if got := ask(t, url, userRequest); got.AccessToken != s.user.AccessToken || got.Action != tokenbroker.ActionExisting {
		t.Fatalf("user: %s, same token %v; want the stored token", got.Action, got.AccessToken == s.user.AccessToken)
	}
	if n := idp.Calls() - calls; n != 0 {
		t.Fatalf("%d IdP calls for the intact records, want 0", n)
	}
	got := ask(t, url, `{"credential":"app2"}`)
	if got.AccessToken == "" || got.AccessToken == s.app2.AccessToken || got.Action != tokenbroker.ActionNew {
		t.Fatalf("app2: %s, same token %v; want a new token", got.Action, got.AccessToken == s.app2.AccessToken)
	}
	if n := idp.Calls() - calls; n != 1 {
		t.Fatalf("%d IdP calls for the damaged record, want 1", n)
	}
}

// TestRecordDamagedOnDiskCostsOnlyItsCredential flips one bit of one record
// in the embedded server's files, as a failing disk might. The server can
// no longer read that record back, which used to hold start-up for 15
// seconds in the key check and then stop it, leaving deleting DATA_DIR,
// and every refresh token with it, as the only way back.
//
// (The new token for the damaged credential is stored, but nats-server
// 2.15 fails to remove the unreadable message it replaces and never
// acknowledges the write: that one write waits out the client's 5 s.)
func TestRecordDamagedOnDiskCostsOnlyItsCredential(t *testing.T) {
	idp, key, dir := newIdP(t), newKey(t), t.TempDir()
	s := storeThree(t, idp, twoNamed(idp, key, dir, ""))
	natstest.FlipOnDisk(t, dir, s.raw[app2].Value())

	logs := newLogSink()
	began := time.Now()
	b := startBroker(t, twoNamed(idp, key, dir, ""), logs, 0)
	if took := time.Since(began); took > prompt {
		t.Fatalf("start-up took %v", took)
	}
	assertOneCredentialLost(t, idp, b.ClientURL(), s)
	if !strings.Contains(logs.String(), "cannot read back") {
		t.Fatalf("the damage is not logged:\n%s", logs.String())
	}
}

// TestUnreadableRecordInTheBucketCostsOnlyItsCredential writes a value no
// key opens into the bucket itself, among good ones: its key id is garbled
// beyond recognition and its ciphertext damaged. That used to read as a
// record of another key and stop start-up as a wrong TOKENBROKER_KEY; now
// the broker starts, logs the record by credential id, and fetches that
// credential again. (A wrong key is one that opens no record at all:
// TestWrongKeyStopsStartUpAndLeavesRecordsAlone.)
func TestUnreadableRecordInTheBucketCostsOnlyItsCredential(t *testing.T) {
	ns := natstest.StartJetStream(t)
	idp, key := newIdP(t), newKey(t)
	s := storeThree(t, idp, twoNamed(idp, key, "", ns.ClientURL()))
	putRaw(t, ns.ClientURL(), app2, garble(t, s.raw[app2].Value()))

	logs := newLogSink()
	began := time.Now()
	b := startBroker(t, twoNamed(idp, key, "", ns.ClientURL()), logs, 0)
	if took := time.Since(began); took > prompt {
		t.Fatalf("start-up took %v", took)
	}
	assertOneCredentialLost(t, idp, b.ClientURL(), s)
	if !strings.Contains(logs.String(), "credential_id="+app2) {
		t.Fatalf("the damaged record is not named in the log:\n%s", logs.String())
	}
}

// garble returns a stored value with a key id that is no key's and one bit
// of its ciphertext flipped.
func garble(t *testing.T, value []byte) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(value, &env); err != nil {
		t.Fatal(err)
	}
	c, err := base64.StdEncoding.DecodeString(env["c"].(string))
	if err != nil {
		t.Fatal(err)
	}
	c[len(c)/2] ^= 0x10
	env["c"] = base64.StdEncoding.EncodeToString(c)
	env["kid"] = "0123456789abcdef"
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// putRaw writes value as the record of id, below the store.
func putRaw(t *testing.T, url, id string, value []byte) {
	t.Helper()
	kv, ctx := tokenBucket(t, url)
	if _, err := kv.Put(ctx, id, value); err != nil {
		t.Fatal(err)
	}
}
