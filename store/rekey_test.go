package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/store"
)

// TestRekeyFinishesARotation: after Rekey, every record the previous key
// opened is under the current key, except the ones drop chose, which are
// gone; so the current key alone opens the bucket. A record another writer
// changed between Rekey's read and its write keeps that write.
func TestRekeyFinishesARotation(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	ctx := ctxT(t)
	keyA, keyB := master(0xA), master(0xB)
	a := open(t, js, store.Options{Keys: keys(t, keyA)})
	for _, id := range []string{"crm", "erp", "u-0123abcd", "raced"} {
		if _, err := a.Put(ctx, record(id)); err != nil {
			t.Fatal(err)
		}
	}
	rotated := open(t, connectJS(t, srv.ClientURL()), store.Options{Keys: keys(t, keyB, keyA)})
	if _, err := rotated.Put(ctx, record("already-new")); err != nil {
		t.Fatal(err)
	}
	newer := record("raced")
	newer.AccessToken = "written-by-a-broker-still-on-key-A"
	undo := store.SetBeforeRekeyWrite(func(id string) {
		if id == "raced" {
			if _, err := a.Put(ctx, newer); err != nil {
				t.Error(err)
			}
		}
	})
	defer undo()
	kv := rawKV(t, js, store.DefaultBucket)
	before, err := kv.Get(ctx, "already-new")
	if err != nil {
		t.Fatal(err)
	}

	done, err := rotated.Rekey(ctx, func(id string) bool { return strings.HasPrefix(id, "u-") })
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	if done != (store.Rekeyed{Rewritten: 2, Dropped: 1, Changed: 1}) {
		t.Fatalf("Rekey did %+v, want 2 rewritten, 1 dropped, 1 changed", done)
	}
	kidOf := func(id string) string {
		e, err := kv.Get(ctx, id)
		if err != nil {
			t.Fatalf("raw Get %s: %v", id, err)
		}
		return envelopeOf(t, e.Value())["kid"].(string)
	}
	for _, id := range []string{"crm", "erp", "already-new"} {
		if kid := kidOf(id); kid != store.KeyID(keyB) {
			t.Errorf("%s under key id %s, want %s", id, kid, store.KeyID(keyB))
		}
	}
	if after, err := kv.Get(ctx, "already-new"); err != nil || after.Revision() != before.Revision() {
		t.Errorf("a record already under the current key was rewritten: %v", err)
	}
	if _, err := kv.Get(ctx, "u-0123abcd"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the dropped record: err = %v, want it deleted", err)
	}
	got, err := rotated.Get(ctx, "raced")
	if err != nil || got.AccessToken != newer.AccessToken {
		t.Fatalf("the record written during Rekey: %v, %v; want the concurrent write kept", got, err)
	}

	// A broker on key A still runs, so "raced" is under A: a second Rekey
	// takes it. Then B alone opens the bucket, with nothing to warn about.
	undo()
	if done, err := rotated.Rekey(ctx, nil); err != nil || done != (store.Rekeyed{Rewritten: 1}) {
		t.Fatalf("second Rekey: %+v, %v", done, err)
	}
	logs := &testkit.LogBuffer{}
	b, err := store.Open(ctx, connectJS(t, srv.ClientURL()), store.Options{Keys: keys(t, keyB), Logger: logs.Logger()})
	if err != nil {
		t.Fatalf("Open with the new key alone: %v", err)
	}
	if l := logs.String(); l != "" {
		t.Fatalf("Open logged:\n%s", l)
	}
	for _, id := range []string{"crm", "erp", "raced"} {
		if _, err := b.Get(ctx, id); err != nil {
			t.Fatalf("Get %s with the new key alone: %v", id, err)
		}
	}
	sameRecord(t, mustGet(t, b, "crm"), record("crm"))
}

func mustGet(t *testing.T, s *store.Store, id string) *store.Record {
	t.Helper()
	r, err := s.Get(ctxT(t), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return r
}
