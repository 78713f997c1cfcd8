package broker_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/store"
)

// TestKeyRotationFinishes rotates TOKENBROKER_KEY from A to B the way the
// README says: one start with B and TOKENBROKER_PREVIOUS_KEY=A, then starts
// with B alone. The start with both keys rewrites every record under B (and
// drops the user's, whose credential id follows the key), so the start
// with B alone has nothing to warn about and serves the named credential's
// stored token with no IdP call. Before, records stayed under A until each
// token was refreshed, so A could never be removed.
func TestKeyRotationFinishes(t *testing.T) {
	idp, keyA, keyB, dir := newIdP(t), newKey(t), newKey(t), t.TempDir()

	onA := startBroker(t, durableConfig(idp, keyA, dir, ""), newLogSink(), 0)
	named := ask(t, onA.ClientURL(), `{"credential":"app"}`)
	userOnA := ask(t, onA.ClientURL(), userRequest)
	if err := brokertest.Stop(onA); err != nil {
		t.Fatal(err)
	}

	rotating := durableConfig(idp, keyB, dir, "")
	rotating.PreviousKey = keyA
	logs := newLogSink()
	both := startBroker(t, rotating, logs, 0)
	raw := rawRecords(t, both.ClientURL())
	if _, ok := raw[userOnA.CredentialID]; ok {
		t.Fatal("the user's record under the old key is still stored")
	}
	for id, e := range raw {
		var env struct{ KID string }
		if err := json.Unmarshal(e.Value(), &env); err != nil || env.KID != store.KeyID(keyB) {
			t.Fatalf("record %s is under key id %q, want %s", id, env.KID, store.KeyID(keyB))
		}
	}
	if got := ask(t, both.ClientURL(), `{"credential":"app"}`); got.AccessToken != named.AccessToken || got.Action != tokenbroker.ActionExisting {
		t.Fatalf("app with both keys: %s, same token %v", got.Action, got.AccessToken == named.AccessToken)
	}
	userOnB := ask(t, both.ClientURL(), userRequest) // a new credential id: one IdP call
	if !strings.Contains(logs.String(), "key rotation finished") {
		t.Fatalf("the start with both keys does not say the rotation finished:\n%s", logs.String())
	}
	if err := brokertest.Stop(both); err != nil {
		t.Fatal(err)
	}
	calls := idp.Calls()

	logs = newLogSink()
	onB := startBroker(t, durableConfig(idp, keyB, dir, ""), logs, 0)
	if got := ask(t, onB.ClientURL(), `{"credential":"app"}`); got.AccessToken != named.AccessToken || got.Action != tokenbroker.ActionExisting {
		t.Fatalf("app with the new key alone: %s, same token %v", got.Action, got.AccessToken == named.AccessToken)
	}
	if got := ask(t, onB.ClientURL(), userRequest); got.AccessToken != userOnB.AccessToken || got.Action != tokenbroker.ActionExisting {
		t.Fatalf("user with the new key alone: %s, same token %v", got.Action, got.AccessToken == userOnB.AccessToken)
	}
	if n := idp.Calls() - calls; n != 0 {
		t.Fatalf("%d IdP calls with the new key alone, want 0", n)
	}
	if l := logs.String(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
		t.Fatalf("the start with the new key alone warned:\n%s", l)
	}
}
