package store_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/store"
)

// Distinctive secrets, so that finding them in raw bytes means a leak.
const (
	secretAccess  = "AT-sentinel-4f1d2c9e-access-token-value"
	secretRefresh = "RT-sentinel-8a7b6c5d-refresh-token-value"
)

var secretVerifier = []byte("VERIFIER-sentinel-0123456789abcdef")

// master returns a 32-byte master key filled with b.
func master(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func keys(t testing.TB, current []byte, previous ...[]byte) *store.Keys {
	t.Helper()
	k, err := store.NewKeys(current, previous...)
	if err != nil {
		t.Fatalf("NewKeys: %v", err)
	}
	return k
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connectJS opens a new connection (a separate client, as another broker
// would have) and returns its JetStream context.
func connectJS(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

func open(t testing.TB, js jetstream.JetStream, o store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(ctxT(t), js, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// eventually calls f until it succeeds or timeout passes. It is for

// record returns the test record of id. Its times are fixed so that two
// calls build equal records.
func record(id string) *store.Record {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	return &store.Record{
		CredentialID: id,
		Token:        tokenbroker.Token{AccessToken: secretAccess, TokenType: "Bearer", Expiry: now.Add(time.Hour), Lifetime: time.Hour},
		RefreshToken: secretRefresh,
		Verifier:     secretVerifier,
		ObtainedAt:   now,
	}
}

func sameRecord(t testing.TB, got, want *store.Record) {
	t.Helper()
	if got.CredentialID != want.CredentialID || got.AccessToken != want.AccessToken ||
		got.TokenType != want.TokenType || got.RefreshToken != want.RefreshToken ||
		!got.Expiry.Equal(want.Expiry) || got.Lifetime != want.Lifetime ||
		!bytes.Equal(got.Verifier, want.Verifier) || !got.ObtainedAt.Equal(want.ObtainedAt) {
		// Fields printed one by one: Record's own String hides the secrets.
		t.Fatalf("record mismatch:\n got %q %q %q %q %v %v %x %v\nwant %q %q %q %q %v %v %x %v",
			got.CredentialID, got.AccessToken, got.TokenType, got.RefreshToken, got.Expiry, got.Lifetime, got.Verifier, got.ObtainedAt,
			want.CredentialID, want.AccessToken, want.TokenType, want.RefreshToken, want.Expiry, want.Lifetime, want.Verifier, want.ObtainedAt)
	}
}

// rawKV binds to a bucket with the plain JetStream API, below the store.
func rawKV(t testing.TB, js jetstream.JetStream, bucket string) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(ctxT(t), bucket)
	if err != nil {
		t.Fatalf("bind %s: %v", bucket, err)
	}
	return kv
}

func TestRecordRoundTrip(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	s := open(t, js, store.Options{Keys: keys(t, master(1))})
	ctx := ctxT(t)

	if _, err := s.Get(ctx, "crm-prod"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get missing: err = %v, want ErrNotFound", err)
	}

	want := record("crm-prod")
	rev, err := s.Put(ctx, want)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := s.Get(ctx, "crm-prod")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	sameRecord(t, got, want)
	if got.Revision != rev {
		t.Fatalf("Revision = %d, want %d", got.Revision, rev)
	}

	// A named credential has no verifier and maybe no refresh token.
	bare := &store.Record{CredentialID: "u-0123abcd", Token: tokenbroker.Token{AccessToken: "x", Expiry: time.Unix(1526704330, 0)}}
	if _, err := s.Put(ctx, bare); err != nil {
		t.Fatalf("Put bare: %v", err)
	}
	got, err = s.Get(ctx, "u-0123abcd")
	if err != nil {
		t.Fatalf("Get bare: %v", err)
	}
	sameRecord(t, got, bare)
	if got.Verifier != nil {
		t.Fatalf("Verifier = %x, want nil", got.Verifier)
	}

	ids, err := s.Records(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("Records = %v, %v; want 2 ids", ids, err)
	}
}

func TestUpdateDelete(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	s := open(t, js, store.Options{Keys: keys(t, master(1))})
	ctx := ctxT(t)

	r := record("crm")
	rev1, err := s.Update(ctx, r, 0)
	if err != nil {
		t.Fatalf("Update(0) of a new record: %v", err)
	}
	if _, err := s.Update(ctx, r, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update(0) of an existing record: err = %v, want ErrConflict", err)
	}
	r.AccessToken = "second"
	rev2, err := s.Update(ctx, r, rev1)
	if err != nil {
		t.Fatalf("Update(rev1): %v", err)
	}
	// Another writer saw rev1 too; its write must fail, not overwrite.
	r.AccessToken = "stale writer"
	if _, err := s.Update(ctx, r, rev1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update with a stale revision: err = %v, want ErrConflict", err)
	}
	got, err := s.Get(ctx, "crm")
	if err != nil || got.AccessToken != "second" || got.Revision != rev2 {
		t.Fatalf("after conflict: %v %v; want the rev2 write", got, err)
	}

	if err := s.Delete(ctx, "crm"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, "crm"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "never-stored"); err != nil {
		t.Fatalf("Delete of a missing record: %v", err)
	}
	// A deleted record counts as none for Update(0).
	if _, err := s.Update(ctx, r, 0); err != nil {
		t.Fatalf("Update(0) after Delete: %v", err)
	}
	ids, err := s.Records(ctx)
	if err != nil || len(ids) != 1 || ids[0] != "crm" {
		t.Fatalf("Records = %v, %v; want [crm]", ids, err)
	}

	for _, id := range []string{"", "a b", "a.", ".a", "a*", "a>"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, store.ErrInvalidID) {
			t.Errorf("Get(%q): err = %v, want ErrInvalidID", id, err)
		}
	}
}

func TestRawValueHoldsNoSecret(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	k := keys(t, master(1))
	s := open(t, js, store.Options{Keys: k})
	ctx := ctxT(t)

	if _, err := s.Put(ctx, record("u-feedface")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	e, err := rawKV(t, js, store.DefaultBucket).Get(ctx, "u-feedface")
	if err != nil {
		t.Fatalf("raw Get: %v", err)
	}
	raw := e.Value()
	for _, secret := range [][]byte{[]byte(secretAccess), []byte(secretRefresh), secretVerifier} {
		for _, form := range []string{
			string(secret),
			base64.StdEncoding.EncodeToString(secret),
			base64.RawURLEncoding.EncodeToString(secret),
			hex.EncodeToString(secret),
		} {
			if bytes.Contains(raw, []byte(form)) {
				t.Errorf("raw value contains a secret (%.12s...): %s", form, raw)
			}
		}
	}
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("raw value is not JSON: %v", err)
	}
	if env["kid"] != k.ID() || env["v"] != float64(1) {
		t.Fatalf("envelope = %s; want v 1 and kid %s", raw, k.ID())
	}
	if !bytes.Contains(raw, []byte(store.KeyID(master(1)))) {
		t.Fatalf("raw value does not name the key id %s: %s", store.KeyID(master(1)), raw)
	}

	// The same record written twice encrypts differently (fresh nonce).
	if _, err := s.Put(ctx, record("u-feedface")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	e2, _ := rawKV(t, js, store.DefaultBucket).Get(ctx, "u-feedface")
	if bytes.Equal(e2.Value(), raw) {
		t.Fatal("two writes of one record have the same ciphertext")
	}
}

func TestRecordNeverPrintsSecrets(t *testing.T) {
	r := record("crm")
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s", r, r, r, r),
		fmt.Sprintf("%v %+v %#v", *r, *r, *r),
	} {
		if strings.Contains(s, secretAccess) || strings.Contains(s, secretRefresh) || strings.Contains(s, string(secretVerifier)) {
			t.Fatalf("formatted record shows a secret: %s", s)
		}
		if !strings.Contains(s, "crm") {
			t.Fatalf("formatted record does not name the credential: %s", s)
		}
	}
}

func TestWrongKeyRefusesAndLeavesRecords(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	ctx := ctxT(t)
	a := open(t, js, store.Options{Keys: keys(t, master(0xA))})
	for _, id := range []string{"one", "two"} {
		if _, err := a.Put(ctx, record(id)); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	kv := rawKV(t, js, store.DefaultBucket)
	before := map[string]jetstream.KeyValueEntry{}
	for _, id := range []string{"one", "two"} {
		e, err := kv.Get(ctx, id)
		if err != nil {
			t.Fatalf("raw Get: %v", err)
		}
		before[id] = e
	}

	// Another broker started with another key: from another connection.
	js2 := connectJS(t, srv.ClientURL())
	_, err := store.Open(ctx, js2, store.Options{Keys: keys(t, master(0xB))})
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Open with a wrong key: err = %v, want ErrWrongKey", err)
	}
	msg := err.Error()
	for _, want := range []string{store.KeyID(master(0xA)), store.DefaultBucket, "refusing to start", "left untouched", "2 of 2 records"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, secretAccess) {
		t.Errorf("error shows a secret: %s", msg)
	}

	for _, id := range []string{"one", "two"} {
		e, err := kv.Get(ctx, id)
		if err != nil {
			t.Fatalf("raw Get after refused Open: %v", err)
		}
		if e.Revision() != before[id].Revision() || !bytes.Equal(e.Value(), before[id].Value()) {
			t.Fatalf("record %s changed: revision %d -> %d", id, before[id].Revision(), e.Revision())
		}
	}
	// The right key still reads them.
	got, err := a.Get(ctx, "one")
	if err != nil {
		t.Fatalf("Get with the right key: %v", err)
	}
	sameRecord(t, got, record("one"))
}

func TestKeyRotation(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	ctx := ctxT(t)
	keyA, keyB := master(0xA), master(0xB)

	a := open(t, js, store.Options{Keys: keys(t, keyA)})
	if _, err := a.Put(ctx, record("old")); err != nil {
		t.Fatalf("Put: %v", err)
	}

	rotated := keys(t, keyB, keyA)
	if rotated.ID() != store.KeyID(keyB) || len(rotated.IDs()) != 2 {
		t.Fatalf("rotated keys: ID %s, IDs %v", rotated.ID(), rotated.IDs())
	}
	b := open(t, js, store.Options{Keys: rotated})
	got, err := b.Get(ctx, "old")
	if err != nil {
		t.Fatalf("Get of a key-A record with keys (B, A): %v", err)
	}
	sameRecord(t, got, record("old"))

	// Writes now use B, including a rewrite of the old record.
	for _, id := range []string{"old", "new"} {
		if _, err := b.Put(ctx, record(id)); err != nil {
			t.Fatalf("Put: %v", err)
		}
		e, err := rawKV(t, js, store.DefaultBucket).Get(ctx, id)
		if err != nil {
			t.Fatalf("raw Get: %v", err)
		}
		var env struct{ KID string }
		if err := json.Unmarshal(e.Value(), &env); err != nil || env.KID != store.KeyID(keyB) {
			t.Fatalf("%s written with key id %q (%v), want %s", id, env.KID, err, store.KeyID(keyB))
		}
	}

	// The store that only knows A no longer reads the rewritten record.
	if _, err := a.Get(ctx, "new"); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Get with key A of a key-B record: err = %v, want ErrWrongKey", err)
	}
	if _, err := store.Open(ctx, js, store.Options{Keys: keys(t, keyA)}); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Open with only the old key: err = %v, want ErrWrongKey", err)
	}
	// Once every record is rewritten, B alone is enough.
	open(t, js, store.Options{Keys: keys(t, keyB)})
}

func TestNewKeysRejectsBadKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		current []byte
		prev    [][]byte
	}{
		{"nil", nil, nil},
		{"short", make([]byte, 31), nil},
		{"long", make([]byte, 33), nil},
		{"short previous", master(1), [][]byte{make([]byte, 16)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := store.NewKeys(tc.current, tc.prev...); err == nil {
				t.Fatal("NewKeys accepted a key of the wrong size")
			}
		})
	}
	if _, err := store.Open(t.Context(), nil, store.Options{}); err == nil {
		t.Fatal("Open without Keys succeeded")
	}
}

func TestPersistsAcrossServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv := natstest.StartServer(t, natstest.JetStream(dir))
	ctx := ctxT(t)
	{
		nc := natstest.Connect(t, srv)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		s := open(t, js, store.Options{Keys: keys(t, master(1))})
		if _, err := s.Put(ctx, record("crm")); err != nil {
			t.Fatalf("Put: %v", err)
		}
		nc.Close()
	}
	srv.Shutdown()
	srv.WaitForShutdown()

	srv2 := natstest.StartServer(t, natstest.JetStream(dir))
	js := connectJS(t, srv2.ClientURL())
	s := open(t, js, store.Options{Keys: keys(t, master(1))})
	got, err := s.Get(ctx, "crm")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	sameRecord(t, got, record("crm"))
}

// recv waits for the next record on ch.
func recv(t testing.TB, ch <-chan *store.Record) *store.Record {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no record from watch within 10s")
	}
	return nil
}

func TestWatchSeesOtherBrokersWrites(t *testing.T) {
	srv := natstest.StartJetStream(t)
	k := keys(t, master(1))
	mine := open(t, connectJS(t, srv.ClientURL()), store.Options{Keys: k})
	other := open(t, connectJS(t, srv.ClientURL()), store.Options{Keys: k})
	ctx := ctxT(t)

	rev1, err := other.Put(ctx, record("crm"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, err := mine.Watch(wctx, "crm")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if r := recv(t, ch); r.Revision != rev1 || r.AccessToken != secretAccess {
		t.Fatalf("first watched record: revision %d, want the current one %d", r.Revision, rev1)
	}

	// Writes to other credentials and deletions are not delivered; the next
	// write to crm is.
	if _, err := other.Put(ctx, record("unrelated")); err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	next := record("crm")
	next.AccessToken = "refreshed-by-the-other-broker"
	rev2, err := other.Put(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if r := recv(t, ch); r.Revision != rev2 || r.AccessToken != next.AccessToken || r.CredentialID != "crm" {
		t.Fatalf("watched update: %v, want revision %d", r, rev2)
	}

	all, err := mine.WatchAll(wctx)
	if err != nil {
		t.Fatalf("WatchAll: %v", err)
	}
	seen := map[string]bool{}
	for range 2 {
		seen[recv(t, all).CredentialID] = true
	}
	if !seen["crm"] || !seen["unrelated"] {
		t.Fatalf("WatchAll delivered %v, want crm and unrelated", seen)
	}

	cancel()
	for _, c := range []<-chan *store.Record{ch, all} {
		select {
		case _, ok := <-c:
			for ok {
				_, ok = <-c
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

func TestCorruptValues(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	s := open(t, js, store.Options{Keys: keys(t, master(1))})
	ctx := ctxT(t)
	kv := rawKV(t, js, store.DefaultBucket)

	if _, err := s.Put(ctx, record("good")); err != nil {
		t.Fatal(err)
	}
	good, err := kv.Get(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	flipped := func() []byte {
		var env map[string]any
		_ = json.Unmarshal(good.Value(), &env)
		c, _ := base64.StdEncoding.DecodeString(env["c"].(string))
		c[0] ^= 1
		env["c"] = base64.StdEncoding.EncodeToString(c)
		b, _ := json.Marshal(env)
		return b
	}()

	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"garbage", []byte("\x00\xffnot an envelope at all")},
		{"empty JSON", []byte("{}")},
		{"future version", []byte(`{"v":2,"kid":"0011223344556677","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA=="}`)},
		{"short nonce", []byte(`{"v":1,"kid":"` + store.KeyID(master(1)) + `","n":"AAAA","c":"AAAAAAAAAAAAAAAAAAAAAA=="}`)},
		{"flipped ciphertext", flipped},
		// Another credential's valid envelope: the additional data binds
		// it to "good", so it does not open as "moved".
		{"moved", good.Value()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := kv.Put(ctx, "moved", tc.value); err != nil {
				t.Fatal(err)
			}
			_, err := s.Get(ctx, "moved")
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Get: err = %v, want ErrCorrupt", err)
			}
		})
	}
	// A corrupt record is not a key problem: opening still works.
	open(t, js, store.Options{Keys: keys(t, master(1))})
}

func TestLeases(t *testing.T) {
	srv := natstest.StartJetStream(t)
	ctx := ctxT(t)
	k := keys(t, master(1))
	o := store.Options{Keys: k, LeaseTTL: time.Minute} // expiry is TestLeaseExpires's
	b1 := open(t, connectJS(t, srv.ClientURL()), o)
	b2 := open(t, connectJS(t, srv.ClientURL()), o)

	l1, err := b1.Acquire(ctx, "crm", "broker-1")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if l1.Owner() != "broker-1" || l1.CredentialID() != "crm" {
		t.Fatalf("lease %s/%s", l1.CredentialID(), l1.Owner())
	}
	_, err = b2.Acquire(ctx, "crm", "broker-2")
	var held *store.LeaseHeldError
	if !errors.Is(err, store.ErrLeaseHeld) || !errors.As(err, &held) {
		t.Fatalf("second Acquire: err = %v, want a LeaseHeldError", err)
	}
	if held.Owner != "broker-1" || held.CredentialID != "crm" || held.ExpiresIn <= 0 || held.ExpiresIn > time.Minute {
		t.Fatalf("held = %+v", held)
	}
	// Leases are per credential.
	other, err := b2.Acquire(ctx, "erp", "broker-2")
	if err != nil {
		t.Fatalf("Acquire of another credential: %v", err)
	}

	rev := l1.Revision()
	if err := l1.Renew(ctx); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if l1.Revision() <= rev {
		t.Fatalf("Renew kept revision %d", rev)
	}

	if err := l1.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if err := l1.Renew(ctx); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Renew after Release: err = %v, want ErrLeaseLost", err)
	}
	l2, err := b2.Acquire(ctx, "crm", "broker-2")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if _, err := b1.Acquire(ctx, "crm", "broker-1"); !errors.As(err, &held) || held.Owner != "broker-2" {
		t.Fatalf("Acquire while broker-2 holds it: err = %v", err)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestLeaseExpiresAndStaleHolderCannotTouchIt(t *testing.T) {
	srv := natstest.StartJetStream(t)
	ctx := ctxT(t)
	o := store.Options{Keys: keys(t, master(1)), LeaseTTL: time.Second}
	b1 := open(t, connectJS(t, srv.ClientURL()), o)
	b2 := open(t, connectJS(t, srv.ClientURL()), o)

	// broker-1 takes the lease and "dies": never renews, never releases.
	stale, err := b1.Acquire(ctx, "crm", "broker-1")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	var l2 *store.Lease
	testkit.Eventually(t, 10*time.Second, func() error {
		l, err := b2.Acquire(ctx, "crm", "broker-2")
		if err != nil {
			var held *store.LeaseHeldError
			if !errors.As(err, &held) || held.Owner != "broker-1" {
				t.Fatalf("Acquire while broker-1 holds it: %v", err)
			}
			return err
		}
		l2 = l
		return nil
	})

	// The stale holder can neither renew nor release broker-2's lease.
	if err := stale.Renew(ctx); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale Renew: err = %v, want ErrLeaseLost", err)
	}
	if err := stale.Release(ctx); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale Release: err = %v, want ErrLeaseLost", err)
	}
	_, err = b1.Acquire(ctx, "crm", "broker-3")
	var held *store.LeaseHeldError
	if !errors.As(err, &held) || held.Owner != "broker-2" {
		t.Fatalf("after the stale Release, Acquire: err = %v, want held by broker-2", err)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestThreeNodeClusterSurvivesANode(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	js := connectJS(t, natstest.ClientURLs(nodes...))
	ctx := ctxT(t)
	s := open(t, js, store.Options{Keys: keys(t, master(1)), Replicas: 3})

	if _, err := s.Put(ctx, record("crm")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	// Shut down the node that leads the tokens stream: the hardest of the
	// three to lose.
	str, err := js.Stream(ctx, "KV_"+store.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("stream replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	var down *server.Server
	for _, n := range nodes {
		if n.Name() == info.Cluster.Leader {
			down = n
		}
	}
	if down == nil {
		t.Fatalf("no node named %q", info.Cluster.Leader)
	}
	down.Shutdown()
	down.WaitForShutdown()

	attempt := func(f func(context.Context) error) func() error {
		return func() error {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return f(actx)
		}
	}
	testkit.Eventually(t, 15*time.Second, attempt(func(ctx context.Context) error {
		got, err := s.Get(ctx, "crm")
		if err == nil {
			sameRecord(t, got, record("crm"))
		}
		return err
	}))
	next := record("crm")
	next.AccessToken = "written-with-one-node-down"
	var rev uint64
	testkit.Eventually(t, 15*time.Second, attempt(func(ctx context.Context) (err error) {
		rev, err = s.Put(ctx, next)
		return err
	}))
	// KV reads are direct gets that any replica may answer, so one that
	// lags behind the new leader can still show the old revision for a
	// moment after a failover.
	testkit.Eventually(t, 15*time.Second, attempt(func(ctx context.Context) error {
		got, err := s.Get(ctx, "crm")
		if err == nil && (got.AccessToken != next.AccessToken || got.Revision != rev) {
			err = fmt.Errorf("revision %d, want %d", got.Revision, rev)
		}
		return err
	}))
	// Leases keep working too.
	l, err := s.Acquire(ctx, "crm", "broker-1")
	if err != nil {
		t.Fatalf("Acquire with a node down: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}
