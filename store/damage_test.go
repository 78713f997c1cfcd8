package store_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/store"
)

// prompt bounds what must not wait on a timeout: the bug it guards against
// waited 15 seconds.
const prompt = 5 * time.Second

// envelopeOf returns the fields of a stored value.
func envelopeOf(t *testing.T, value []byte) map[string]any {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(value, &env); err != nil {
		t.Fatalf("stored value is not an envelope: %v", err)
	}
	return env
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flipCiphertext returns value with one bit of its ciphertext flipped.
func flipCiphertext(t *testing.T, value []byte) []byte {
	t.Helper()
	env := envelopeOf(t, value)
	c, err := base64.StdEncoding.DecodeString(env["c"].(string))
	if err != nil {
		t.Fatal(err)
	}
	c[len(c)/2] ^= 0x10
	env["c"] = base64.StdEncoding.EncodeToString(c)
	return marshal(t, env)
}

// damageKeyID returns value with one digit of its key id changed, as a
// flipped bit on disk might ('0' and '1' differ in one bit).
func damageKeyID(t *testing.T, value []byte) []byte {
	t.Helper()
	env := envelopeOf(t, value)
	kid := []byte(env["kid"].(string))
	if kid[3] == '0' {
		kid[3] = '1'
	} else {
		kid[3] = '0'
	}
	env["kid"] = string(kid)
	return marshal(t, env)
}

// TestOneUnreadableRecordCostsOnlyItself: records that cannot be read
// among readable ones, whether damaged or under a key that is not
// configured, do not stop Open; each is logged by credential id, without a
// secret, and Get reports it as an error of its own, so that its credential
// is fetched again. Only a bucket where no record is readable and some are
// under another key means a wrong key.
func TestOneUnreadableRecordCostsOnlyItself(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	ctx := ctxT(t)
	mine, other := keys(t, master(1)), keys(t, master(2))
	// Both open the empty bucket; then each writes.
	s := open(t, js, store.Options{Keys: mine})
	o := open(t, connectJS(t, srv.ClientURL()), store.Options{Keys: other})
	for _, id := range []string{"good-1", "good-2", "flipped", "kid-damaged"} {
		if _, err := s.Put(ctx, record(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.Put(ctx, record("other-key")); err != nil {
		t.Fatal(err)
	}
	kv := rawKV(t, js, store.DefaultBucket)
	for id, damage := range map[string]func(*testing.T, []byte) []byte{"flipped": flipCiphertext, "kid-damaged": damageKeyID} {
		e, err := kv.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, id, damage(t, e.Value())); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(ctx, "garbage", []byte("\x00\xffnot an envelope")); err != nil {
		t.Fatal(err)
	}

	logs := &testkit.LogBuffer{}
	began := time.Now()
	s2, err := store.Open(ctx, connectJS(t, srv.ClientURL()), store.Options{Keys: mine, Logger: logs.Logger()})
	if err != nil {
		t.Fatalf("Open with one damaged record among good ones: %v", err)
	}
	if took := time.Since(began); took > prompt {
		t.Fatalf("Open took %v", took)
	}
	for _, id := range []string{"good-1", "good-2"} {
		got, err := s2.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		sameRecord(t, got, record(id))
	}
	// A damaged key id still names the key: the ciphertext authenticates.
	got, err := s2.Get(ctx, "kid-damaged")
	if err != nil {
		t.Fatalf("Get of a record whose key id lost a bit: %v", err)
	}
	sameRecord(t, got, record("kid-damaged"))
	for id, want := range map[string]error{"flipped": store.ErrCorrupt, "garbage": store.ErrCorrupt, "other-key": store.ErrWrongKey} {
		if _, err := s2.Get(ctx, id); !errors.Is(err, want) {
			t.Errorf("Get %s: err = %v, want %v", id, err, want)
		}
	}
	l := logs.String()
	for _, id := range []string{"flipped", "garbage", "other-key"} {
		if !strings.Contains(l, "credential_id="+id) {
			t.Errorf("the log does not name the unreadable record %s:\n%s", id, l)
		}
	}
	for _, id := range []string{"good-1", "kid-damaged"} {
		if strings.Contains(l, "credential_id="+id) {
			t.Errorf("the log names the readable record %s:\n%s", id, l)
		}
	}
	for _, secret := range []string{secretAccess, secretRefresh, string(secretVerifier)} {
		if strings.Contains(l, secret) {
			t.Fatalf("the log holds a secret:\n%s", l)
		}
	}

	// The other key reads only its own record: for it the bucket is not
	// all another key's, so it opens too, and the operator of that broker
	// learns from its log which records it cannot read.
	if _, err := store.Open(ctx, connectJS(t, srv.ClientURL()), store.Options{Keys: other}); err != nil {
		t.Fatalf("Open with a key that reads one record: %v", err)
	}
	// A key that reads none, with records under other keys: refused.
	_, err = store.Open(ctx, connectJS(t, srv.ClientURL()), store.Options{Keys: keys(t, master(3))})
	if !errors.Is(err, store.ErrWrongKey) || !strings.Contains(err.Error(), store.KeyID(master(1))) {
		t.Fatalf("Open with a key that reads nothing: %v", err)
	}
}

// TestRecordDamagedOnDiskIsSkipped damages one record in the JetStream
// files, as a flipped bit on disk would: the server can no longer read it
// back, and counts it pending without ever delivering it, which left a KV
// watcher waiting for the end of the initial values until its context
// ended. Open and Records must not wait on it; the damaged record reads as
// absent.
func TestRecordDamagedOnDiskIsSkipped(t *testing.T) {
	for _, damaged := range []string{"first", "middle", "last"} {
		t.Run(damaged, func(t *testing.T) {
			dir := t.TempDir()
			srv := natstest.StartServer(t, natstest.JetStream(dir))
			ctx := ctxT(t)
			k := keys(t, master(1))
			js := connectJS(t, srv.ClientURL())
			s := open(t, js, store.Options{Keys: k})
			ids := []string{"first", "middle", "last"}
			for _, id := range ids {
				if _, err := s.Put(ctx, record(id)); err != nil {
					t.Fatal(err)
				}
			}
			e, err := rawKV(t, js, store.DefaultBucket).Get(ctx, damaged)
			if err != nil {
				t.Fatal(err)
			}
			srv.Shutdown()
			srv.WaitForShutdown()
			natstest.FlipOnDisk(t, dir, e.Value())

			srv = natstest.StartServer(t, natstest.JetStream(dir))
			logs := &testkit.LogBuffer{}
			began := time.Now()
			s, err = store.Open(ctx, connectJS(t, srv.ClientURL()), store.Options{Keys: k, Logger: logs.Logger()})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			got, err := s.Records(ctx)
			if err != nil {
				t.Fatalf("Records: %v", err)
			}
			if took := time.Since(began); took > prompt {
				t.Fatalf("Open and Records took %v", took)
			}
			want := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == damaged })
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("Records = %v, want %v", got, want)
			}
			for _, id := range want {
				r, err := s.Get(ctx, id)
				if err != nil {
					t.Fatalf("Get %s: %v", id, err)
				}
				sameRecord(t, r, record(id))
			}
			if _, err := s.Get(ctx, damaged); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Get of the damaged record: err = %v, want ErrNotFound", err)
			}
			if !strings.Contains(logs.String(), "cannot read back") {
				t.Fatalf("the damage is not logged:\n%s", logs.String())
			}
		})
	}
}
