package actors

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// recorder keeps every audit record.
type recorder struct {
	mu   sync.Mutex
	recs []tokenbroker.AuditRecord
}

func (r *recorder) Audit(rec tokenbroker.AuditRecord) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func (r *recorder) all() []tokenbroker.AuditRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tokenbroker.AuditRecord(nil), r.recs...)
}

// Every answer of the Router, cache hits included, leaves one record that
// says where the token came from, and none holds a token, a password or a
// username.
func TestEveryAnswerIsAudited(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, harnessOpts{auditor: rec})
	ask := func(req tokenbroker.Request) result {
		req.Transport, req.Caller = tokenbroker.TransportNATS, "CRM/crm-app"
		return h.ask(req)
	}
	first := ask(named(testApp))
	ask(named(testApp))
	ask(user(testPassword))
	ask(user("not the password"))
	ask(named("no-such-credential"))
	for range DefaultMaxRefusals {
		ask(user("guess"))
	}
	want := []string{
		testApp + " ok idp " + tokenbroker.ActionNew,
		testApp + " ok cache " + tokenbroker.ActionExisting,
		"u- ok idp " + tokenbroker.ActionNew,
		"u- 401  ",
		" 404  ",
	}
	for range DefaultMaxRefusals - 1 {
		want = append(want, "u- 401  ")
	}
	want = append(want, "u- 429  ")
	var recs []tokenbroker.AuditRecord
	testkit.Eventually(t, waitFor, func() error {
		if recs = rec.all(); len(recs) < len(want) {
			return notYet("%d records, want %d", len(recs), len(want))
		}
		return nil
	})
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		id := r.CredentialID
		if strings.HasPrefix(id, "u-") {
			id = "u-"
		}
		if got := fmt.Sprintf("%s %s %s %s", id, r.Outcome, r.Source, r.Action); got != want[i] {
			t.Errorf("record %d: %q, want %q", i, got, want[i])
		}
		if r.Transport != tokenbroker.TransportNATS || r.Caller != "CRM/crm-app" || r.Time.IsZero() {
			t.Errorf("record %d: transport %q caller %q time %v", i, r.Transport, r.Caller, r.Time)
		}
		all := fmt.Sprintf("%+v", r)
		for _, secret := range []string{first.reply.AccessToken, testPassword, "not the password", "guess", testUser} {
			if strings.Contains(all, secret) {
				t.Errorf("record %d holds a secret or a username: %s", i, all)
			}
		}
	}
}
