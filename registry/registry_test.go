package registry_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/registry"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Distinctive secrets, so that finding one in raw bytes or a log means a
// leak.
const (
	secretClient     = "CS-sentinel-7e3a91c4-client-secret"
	secretNextClient = "CS-sentinel-2b8d5f60-next-client-secret"
	secretPassword   = "PW-sentinel-c04f9e12-password"
	secretNextPass   = "PW-sentinel-5a6b7c8d-next-password"
	secretKeyPEM     = "-----BEGIN PRIVATE KEY-----\nPK-sentinel-93e1a7b2\n-----END PRIVATE KEY-----\n"
)

var secrets = []string{secretClient, secretNextClient, secretPassword, secretNextPass, secretKeyPEM, "PK-sentinel-93e1a7b2"}

// wait bounds every wait for something that should happen at once.
const wait = 5 * time.Second

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
func connectJS(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
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

func open(t testing.TB, js jetstream.JetStream, o registry.Options) *registry.Registry {
	t.Helper()
	r, err := registry.Open(ctxT(t), js, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// rawKV binds to the bucket with the plain JetStream API, below the
// registry.
func rawKV(t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(ctxT(t), registry.DefaultBucket)
	if err != nil {
		t.Fatalf("bind %s: %v", registry.DefaultBucket, err)
	}
	return kv
}

// credential returns a test credential named name, with every kind of
// secret.
func credential(name string) wire.Credential {
	threshold := int64(120)
	return wire.Credential{
		Name:             name,
		TokenEndpoint:    "https://idp.example/oauth2/token",
		ClientID:         "client-" + name,
		Grant:            "password",
		Scope:            "api.read",
		Username:         "svc-" + name,
		RefreshThreshold: &threshold,
		KeepWarm:         true,
		ClientSecret:     secretClient,
		NextClientSecret: secretNextClient,
		Password:         secretPassword,
		NextPassword:     secretNextPass,
		CertificatePEM:   "-----BEGIN CERTIFICATE-----\nnot secret\n-----END CERTIFICATE-----\n",
		PrivateKeyPEM:    secretKeyPEM,
	}
}

// sameCredential fails t unless got equals want, printing the fields by
// name only: the values are secrets.
func sameCredential(t testing.TB, got, want wire.Credential) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("credential %s does not come back as it was put", want.Name)
	}
}

// names returns the credentials' names of entries.
func names(entries []registry.Entry) []string {
	var n []string
	for _, e := range entries {
		n = append(n, e.Credential.Name)
	}
	return n
}

// next returns the next update on ch, failing t if none comes within wait
// or ch is closed.
func next(t testing.TB, ch <-chan registry.Update) registry.Update {
	t.Helper()
	select {
	case u, ok := <-ch:
		if !ok {
			t.Fatal("the watch ended")
		}
		return u
	case <-time.After(wait):
		t.Fatalf("no update within %v", wait)
	}
	panic("unreachable")
}

// nextPut returns the next update, failing t unless it puts name.
func nextPut(t testing.TB, ch <-chan registry.Update, name string) *registry.Entry {
	t.Helper()
	u := next(t, ch)
	if u.Name != name || u.Entry == nil || u.Entry.Credential.Name != name {
		t.Fatalf("update %q (entry %v), want a put of %s", u.Name, u.Entry, name)
	}
	return u.Entry
}

// nextMarker fails t unless the next update is the end of the initial
// values.
func nextMarker(t testing.TB, ch <-chan registry.Update) {
	t.Helper()
	if u := next(t, ch); u != (registry.Update{}) {
		t.Fatalf("update %q (entry %v), want the end of the initial values", u.Name, u.Entry)
	}
}

// noSecretIn fails t if s holds any of the test secrets.
func noSecretIn(t testing.TB, what, s string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Fatalf("%s holds a secret:\n%s", what, s)
		}
	}
}

func TestPutGetListDelete(t *testing.T) {
	srv := natstest.StartJetStream(t)
	r := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: keys(t, master(1))})
	ctx := ctxT(t)

	if _, err := r.Get(ctx, "crm"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get of a missing credential: err = %v, want ErrNotFound", err)
	}
	if got, err := r.List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("List of an empty registry = %v, %v", names(got), err)
	}

	before := time.Now()
	// Put out of order: List sorts.
	if _, err := r.Put(ctx, credential("erp"), "bob"); err != nil {
		t.Fatalf("Put erp: %v", err)
	}
	rev, err := r.Put(ctx, credential("crm"), "alice")
	if err != nil {
		t.Fatalf("Put crm: %v", err)
	}
	after := time.Now()
	e, err := r.Get(ctx, "crm")
	if err != nil {
		t.Fatalf("Get crm: %v", err)
	}
	sameCredential(t, e.Credential, credential("crm"))
	if e.UpdatedBy != "alice" || e.Revision != rev || e.UpdatedAt.Before(before.Add(-time.Second)) || e.UpdatedAt.After(after.Add(time.Second)) {
		t.Fatalf("Get crm = %v, want updated by alice between %v and %v at revision %d", e, before, after, rev)
	}

	list, err := r.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Equal(names(list), []string{"crm", "erp"}) {
		t.Fatalf("List = %v, want [crm erp]", names(list))
	}
	sameCredential(t, list[1].Credential, credential("erp"))
	if list[1].UpdatedBy != "bob" || list[0].Revision != rev {
		t.Fatalf("List = %v", list)
	}

	// A put replaces.
	changed := credential("crm")
	changed.ClientSecret, changed.Scope = secretNextClient, "api.write"
	rev2, err := r.Put(ctx, changed, "carol")
	if err != nil || rev2 <= rev {
		t.Fatalf("second Put crm: revision %d after %d, %v", rev2, rev, err)
	}
	if e, err := r.Get(ctx, "crm"); err != nil || e.UpdatedBy != "carol" || e.Revision != rev2 {
		t.Fatalf("Get after the second put: %v, %v", e, err)
	} else {
		sameCredential(t, e.Credential, changed)
	}

	if err := r.Delete(ctx, "crm"); err != nil {
		t.Fatalf("Delete crm: %v", err)
	}
	if _, err := r.Get(ctx, "crm"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := r.Delete(ctx, "crm"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second Delete: err = %v, want ErrNotFound", err)
	}
	if err := r.Delete(ctx, "never-was"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Delete of a missing credential: err = %v, want ErrNotFound", err)
	}
	if list, err := r.List(ctx); err != nil || !slices.Equal(names(list), []string{"erp"}) {
		t.Fatalf("List after Delete = %v, %v", names(list), err)
	}
	// The bucket keeps one revision per key, so an old secret does not
	// linger in the history.
	status, err := rawKV(t, connectJS(t, srv.ClientURL())).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.History() != 1 {
		t.Fatalf("the bucket keeps %d revisions per key, want 1", status.History())
	}
}

// TestBucketHoldsNoSecret reads what the server stores, below the client's
// KV API, and what an Entry prints: no secret in clear anywhere.
func TestBucketHoldsNoSecret(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	r := open(t, js, registry.Options{Keys: keys(t, master(1))})
	ctx := ctxT(t)
	if _, err := r.Put(ctx, credential("crm"), "alice"); err != nil {
		t.Fatal(err)
	}

	stream, err := js.Stream(ctx, "KV_"+registry.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, "$KV."+registry.DefaultBucket+".crm")
	if err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf("%s %v %s", m.Data, m.Header, m.Subject)
	noSecretIn(t, "the stored message", raw)
	var env struct {
		KID string `json:"kid"`
		C   []byte `json:"c"`
	}
	if err := json.Unmarshal(m.Data, &env); err != nil {
		t.Fatalf("the stored value is not an envelope: %v", err)
	}
	if env.KID != store.KeyID(master(1)) {
		t.Fatalf("key id %q, want %q", env.KID, store.KeyID(master(1)))
	}
	for _, secret := range secrets {
		if bytes.Contains(env.C, []byte(secret)) {
			t.Fatal("the ciphertext holds a secret in clear")
		}
	}
	// Nor in base64, should a field be stored encoded rather than sealed.
	for _, secret := range secrets {
		if strings.Contains(string(m.Data), base64.StdEncoding.EncodeToString([]byte(secret))) {
			t.Fatal("the stored value holds a secret in base64")
		}
	}

	e, err := r.Get(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.LogBuffer{}
	logs.Logger().Info("entry", "entry", e, "value", *e)
	printed := fmt.Sprintf("%v %+v %#v %s %v %+v", e, e, e, *e, *e, registry.Update{Name: "crm", Entry: e})
	noSecretIn(t, "a printed Entry", printed+logs.String())
	if !strings.Contains(printed, "crm") {
		t.Fatalf("a printed Entry does not name its credential: %s", printed)
	}
}

// TestWatchSeesEveryBrokersChanges: a watch delivers the current entries,
// the end of them, and then the puts and deletes of another Registry on
// the bucket, as another broker's would be, each at once.
func TestWatchSeesEveryBrokersChanges(t *testing.T) {
	srv := natstest.StartJetStream(t)
	k := keys(t, master(1))
	r := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: k})
	ctx := ctxT(t)
	for _, name := range []string{"erp", "crm"} {
		if _, err := r.Put(ctx, credential(name), "alice"); err != nil {
			t.Fatal(err)
		}
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r.Watch(wctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	// The initial values come in the order they were written.
	sameCredential(t, nextPut(t, ch, "erp").Credential, credential("erp"))
	nextPut(t, ch, "crm")
	nextMarker(t, ch)

	other := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: k})
	rev, err := other.Put(ctx, credential("billing"), "bob")
	if err != nil {
		t.Fatal(err)
	}
	e := nextPut(t, ch, "billing")
	if e.Revision != rev || e.UpdatedBy != "bob" {
		t.Fatalf("the watched put: %v, want revision %d by bob", e, rev)
	}
	sameCredential(t, e.Credential, credential("billing"))
	if err := other.Delete(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	if u := next(t, ch); u.Name != "crm" || u.Entry != nil {
		t.Fatalf("update %q (entry %v), want the removal of crm", u.Name, u.Entry)
	}

	cancel()
	deadline := time.After(wait)
	for {
		select {
		case u, ok := <-ch:
			if !ok {
				return
			}
			t.Fatalf("update %q after the watch's context ended", u.Name)
		case <-deadline:
			t.Fatalf("the watch's channel is still open %v after its context ended", wait)
		}
	}
}

// TestWatchOfAnEmptyRegistry ends its initial values at once.
func TestWatchOfAnEmptyRegistry(t *testing.T) {
	srv := natstest.StartJetStream(t)
	r := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: keys(t, master(1))})
	ctx := ctxT(t)
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nextMarker(t, ch)
	if _, err := r.Put(ctx, credential("crm"), "alice"); err != nil {
		t.Fatal(err)
	}
	nextPut(t, ch, "crm")
}

// damage functions change a sealed value the way a fault would.

// flipCiphertext returns value with one bit of its ciphertext flipped.
func flipCiphertext(t *testing.T, value []byte) []byte {
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
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// damageKeyID returns value with one digit of its key id changed, as a
// flipped bit would ('0' and '1' differ in one bit).
func damageKeyID(t *testing.T, value []byte) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(value, &env); err != nil {
		t.Fatal(err)
	}
	kid := []byte(env["kid"].(string))
	if kid[3] == '0' {
		kid[3] = '1'
	} else {
		kid[3] = '0'
	}
	env["kid"] = string(kid)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnreadableEntriesCostOnlyThemselves: entries written under another
// key, damaged, or not envelopes at all are left out of List and Watch and
// logged by name, without a secret, and the others are served; Get tells a
// wrong key from damage, and a damaged entry under the right key is never
// taken for another key's. Such an entry can still be deleted.
func TestUnreadableEntriesCostOnlyThemselves(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	ctx := ctxT(t)
	mine := keys(t, master(1))
	r := open(t, js, registry.Options{Keys: mine})
	o := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: keys(t, master(2))})
	for _, name := range []string{"good-1", "flipped", "kid-damaged", "good-2"} {
		if _, err := r.Put(ctx, credential(name), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.Put(ctx, credential("other-key"), "mallory"); err != nil {
		t.Fatal(err)
	}
	kv := rawKV(t, js)
	for name, damage := range map[string]func(*testing.T, []byte) []byte{"flipped": flipCiphertext, "kid-damaged": damageKeyID} {
		e, err := kv.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, name, damage(t, e.Value())); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(ctx, "garbage", []byte("\x00\xffnot an envelope")); err != nil {
		t.Fatal(err)
	}
	// A good value under a key that is no credential's name.
	good, err := kv.Get(ctx, "good-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "not.a.name", good.Value()); err != nil {
		t.Fatal(err)
	}
	// A good value moved to another name does not open there.
	if _, err := kv.Put(ctx, "moved", good.Value()); err != nil {
		t.Fatal(err)
	}

	logs := &testkit.LogBuffer{}
	r2 := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: mine, Logger: logs.Logger()})
	readable := []string{"good-1", "good-2", "kid-damaged"}
	list, err := r2.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Equal(names(list), readable) {
		t.Fatalf("List = %v, want %v", names(list), readable)
	}
	// A damaged key id still names the key: the ciphertext authenticates.
	e, err := r2.Get(ctx, "kid-damaged")
	if err != nil {
		t.Fatalf("Get of an entry whose key id lost a bit: %v", err)
	}
	sameCredential(t, e.Credential, credential("kid-damaged"))
	for name, want := range map[string]error{"flipped": store.ErrCorrupt, "garbage": store.ErrCorrupt, "moved": store.ErrCorrupt, "other-key": store.ErrWrongKey} {
		_, err := r2.Get(ctx, name)
		if !errors.Is(err, want) {
			t.Errorf("Get %s: err = %v, want %v", name, err, want)
		}
		if want == store.ErrCorrupt && errors.Is(err, store.ErrWrongKey) {
			t.Errorf("Get of the damaged %s reports a wrong key: %v", name, err)
		}
		if err != nil {
			noSecretIn(t, "an error", err.Error())
		}
	}

	ctxW, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r2.Watch(ctxW)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	for _, name := range []string{"good-1", "good-2", "kid-damaged"} { // in revision order: kid-damaged was written again
		nextPut(t, ch, name)
	}
	nextMarker(t, ch)
	// A change that cannot be read is skipped, and the watch goes on.
	if _, err := o.Put(ctx, credential("other-live"), "mallory"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, credential("good-3"), "alice"); err != nil {
		t.Fatal(err)
	}
	nextPut(t, ch, "good-3")
	// An unreadable entry can be removed, and its removal is watched.
	if err := r.Delete(ctx, "other-key"); err != nil {
		t.Fatalf("Delete of an entry under another key: %v", err)
	}
	if u := next(t, ch); u.Name != "other-key" || u.Entry != nil {
		t.Fatalf("update %q (entry %v), want the removal of other-key", u.Name, u.Entry)
	}

	l := logs.String()
	for _, name := range []string{"flipped", "garbage", "moved", "other-key", "other-live"} {
		if !strings.Contains(l, "name="+name+" ") {
			t.Errorf("the log does not name the unreadable entry %s:\n%s", name, l)
		}
	}
	if !strings.Contains(l, "key=not.a.name ") {
		t.Errorf("the log does not name the key that is no name:\n%s", l)
	}
	for _, name := range []string{"good-1", "good-2", "good-3", "kid-damaged"} {
		if strings.Contains(l, "name="+name+" ") {
			t.Errorf("the log names the readable entry %s:\n%s", name, l)
		}
	}
	noSecretIn(t, "the log", l)
}

// TestEntryDamagedOnDiskDoesNotHoldUpTheRegistry damages one entry in the
// JetStream files, as a flipped bit on disk would: the server can no
// longer read it back and counts it pending without ever delivering it. A
// KV watcher would wait for it until its context ended; List and the end
// of Watch's initial values must not.
func TestEntryDamagedOnDiskDoesNotHoldUpTheRegistry(t *testing.T) {
	for _, damaged := range []string{"first", "middle", "last"} {
		t.Run(damaged, func(t *testing.T) {
			dir := t.TempDir()
			srv := natstest.StartServer(t, natstest.JetStream(dir))
			ctx := ctxT(t)
			k := keys(t, master(1))
			js := connectJS(t, srv.ClientURL())
			r := open(t, js, registry.Options{Keys: k})
			all := []string{"first", "middle", "last"}
			for _, name := range all {
				if _, err := r.Put(ctx, credential(name), "alice"); err != nil {
					t.Fatal(err)
				}
			}
			e, err := rawKV(t, js).Get(ctx, damaged)
			if err != nil {
				t.Fatal(err)
			}
			srv.Shutdown()
			srv.WaitForShutdown()
			natstest.FlipOnDisk(t, dir, e.Value())

			srv = natstest.StartServer(t, natstest.JetStream(dir))
			logs := &testkit.LogBuffer{}
			began := time.Now()
			r, err = registry.Open(ctx, connectJS(t, srv.ClientURL()), registry.Options{Keys: k, Logger: logs.Logger()})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			list, err := r.List(ctx)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			want := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == damaged })
			slices.Sort(want)
			if !slices.Equal(names(list), want) {
				t.Fatalf("List = %v, want %v", names(list), want)
			}
			ch, err := r.Watch(ctx)
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			var got []string
			for u := next(t, ch); u != (registry.Update{}); u = next(t, ch) {
				got = append(got, u.Name)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("Watch's initial values = %v, want %v", got, want)
			}
			if took := time.Since(began); took > wait {
				t.Fatalf("Open, List and Watch's initial values took %v", took)
			}
			if !strings.Contains(logs.String(), "cannot read back") {
				t.Fatalf("the damage is not logged:\n%s", logs.String())
			}
		})
	}
}

// TestRekeyFinishesARotation: after Rekey every entry the previous key
// opened is under the current key, with who wrote it and when unchanged,
// so the current key alone reads the registry. An entry another broker
// wrote between Rekey's read and its write keeps that write, and an entry
// no key opens is left alone.
func TestRekeyFinishesARotation(t *testing.T) {
	srv := natstest.StartJetStream(t)
	js := connectJS(t, srv.ClientURL())
	ctx := ctxT(t)
	keyA, keyB, keyC := master(0xA), master(0xB), master(0xC)
	a := open(t, js, registry.Options{Keys: keys(t, keyA)})
	for _, name := range []string{"crm", "erp", "raced"} {
		if _, err := a.Put(ctx, credential(name), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	foreign := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: keys(t, keyC)})
	if _, err := foreign.Put(ctx, credential("foreign"), "mallory"); err != nil {
		t.Fatal(err)
	}
	rotated := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: keys(t, keyB, keyA)})
	if _, err := rotated.Put(ctx, credential("already-new"), "bob"); err != nil {
		t.Fatal(err)
	}
	before, err := rotated.Get(ctx, "crm")
	if err != nil {
		t.Fatalf("Get of an entry under the previous key: %v", err)
	}
	kv := rawKV(t, js)
	revOf := func(name string) uint64 {
		e, err := kv.Get(ctx, name)
		if err != nil {
			t.Fatalf("raw Get %s: %v", name, err)
		}
		return e.Revision()
	}
	kidOf := func(name string) string {
		e, err := kv.Get(ctx, name)
		if err != nil {
			t.Fatalf("raw Get %s: %v", name, err)
		}
		var env struct {
			KID string `json:"kid"`
		}
		if err := json.Unmarshal(e.Value(), &env); err != nil {
			t.Fatal(err)
		}
		return env.KID
	}
	alreadyNew, foreignRev := revOf("already-new"), revOf("foreign")
	newer := credential("raced")
	newer.ClientID = "written-by-a-broker-still-on-key-A"
	undo := registry.SetBeforeRekeyWrite(func(name string) {
		if name == "raced" {
			if _, err := a.Put(ctx, newer, "alice"); err != nil {
				t.Error(err)
			}
		}
	})
	n, err := rotated.Rekey(ctx)
	undo()
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	if n != 2 {
		t.Fatalf("Rekey rewrote %d entries, want 2 (crm, erp)", n)
	}
	for _, name := range []string{"crm", "erp", "already-new"} {
		if kid := kidOf(name); kid != store.KeyID(keyB) {
			t.Errorf("%s under key id %s, want %s", name, kid, store.KeyID(keyB))
		}
	}
	if revOf("already-new") != alreadyNew || revOf("foreign") != foreignRev || kidOf("foreign") != store.KeyID(keyC) {
		t.Error("Rekey rewrote an entry under the current key, or one it cannot open")
	}
	if kidOf("raced") != store.KeyID(keyA) {
		t.Error("the entry written during Rekey was overwritten")
	}
	if e, err := rotated.Get(ctx, "raced"); err != nil || e.Credential.ClientID != newer.ClientID {
		t.Fatalf("the entry written during Rekey: %v, %v; want the concurrent write kept", e, err)
	}

	// The current key alone reads what Rekey rewrote, as it was.
	onlyB := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: keys(t, keyB)})
	after, err := onlyB.Get(ctx, "crm")
	if err != nil {
		t.Fatalf("Get with the current key alone: %v", err)
	}
	sameCredential(t, after.Credential, before.Credential)
	if !after.UpdatedAt.Equal(before.UpdatedAt) || after.UpdatedBy != before.UpdatedBy {
		t.Fatalf("Rekey changed who wrote crm and when: %v, was %v", after, before)
	}

	// Once the broker on key A is gone, a second Rekey finishes the job,
	// and a third finds nothing to do.
	if n, err := rotated.Rekey(ctx); err != nil || n != 1 {
		t.Fatalf("second Rekey: %d, %v; want 1 (raced)", n, err)
	}
	if n, err := rotated.Rekey(ctx); err != nil || n != 0 {
		t.Fatalf("third Rekey: %d, %v; want 0", n, err)
	}
	if list, err := onlyB.List(ctx); err != nil || !slices.Equal(names(list), []string{"already-new", "crm", "erp", "raced"}) {
		t.Fatalf("List with the current key alone = %v, %v", names(list), err)
	}
}

// TestInvalidNamesAreRefused: what cannot be a credential's name never
// reaches the bucket, including NATS key syntax that no name has.
func TestInvalidNamesAreRefused(t *testing.T) {
	srv := natstest.StartJetStream(t)
	r := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: keys(t, master(1))})
	ctx := ctxT(t)
	for _, name := range []string{"", "a.b", "a b", "*", ">", "crm.>", "a/b", "a=b", "tokenbroker=access-check", "crm\n", "ü", strings.Repeat("x", 65)} {
		if _, err := r.Put(ctx, credential(name), "alice"); !errors.Is(err, registry.ErrInvalidName) {
			t.Errorf("Put %q: err = %v, want ErrInvalidName", name, err)
		}
		if _, err := r.Get(ctx, name); !errors.Is(err, registry.ErrInvalidName) {
			t.Errorf("Get %q: err = %v, want ErrInvalidName", name, err)
		}
		if err := r.Delete(ctx, name); !errors.Is(err, registry.ErrInvalidName) {
			t.Errorf("Delete %q: err = %v, want ErrInvalidName", name, err)
		}
	}
	if _, err := r.Put(ctx, credential(strings.Repeat("x", 64)), "alice"); err != nil {
		t.Errorf("Put of a 64-character name: %v", err)
	}
	list, err := r.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v; want only the valid name", names(list), err)
	}
}

func TestOpenNeedsKeys(t *testing.T) {
	srv := natstest.StartJetStream(t)
	if _, err := registry.Open(ctxT(t), connectJS(t, srv.ClientURL()), registry.Options{}); err == nil {
		t.Fatal("Open without keys succeeded")
	}
}

// TestOpenWithoutAPermissionFailsPromptly takes away permissions the
// registry needs: Open must fail at once with store.ErrNotPermitted, naming
// the refused subject, rather than wait out its context.
func TestOpenWithoutAPermissionFailsPromptly(t *testing.T) {
	for _, deny := range []struct{ publish, subscribe string }{
		{publish: "$KV." + registry.DefaultBucket + ".>"},
		{publish: "$JS.API.CONSUMER.>"},
		{publish: "$JS.API.STREAM.CREATE.>"},
		{subscribe: "_INBOX.>"},
	} {
		t.Run(deny.publish+deny.subscribe, func(t *testing.T) {
			perms := &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{">"}},
				Subscribe: &server.SubjectPermission{Allow: []string{">"}},
			}
			if deny.publish != "" {
				perms.Publish.Deny = []string{deny.publish}
			}
			if deny.subscribe != "" {
				perms.Subscribe.Deny = []string{deny.subscribe}
			}
			srv := natstest.StartJetStream(t, func(o *server.Options) {
				o.Users = []*server.User{
					{Username: "broker", Password: "broker-pw", Permissions: perms},
					{Username: "admin", Password: "admin-pw"},
				}
			})
			missing := deny.publish + deny.subscribe
			if deny.publish != "$JS.API.STREAM.CREATE.>" {
				// The bucket exists, created by a user who may.
				open(t, connectJS(t, srv.ClientURL(), nats.UserInfo("admin", "admin-pw")), registry.Options{Keys: keys(t, master(1))})
			}
			quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}) // the violations are expected
			js := connectJS(t, srv.ClientURL(), nats.UserInfo("broker", "broker-pw"), quiet)
			began := time.Now()
			_, err := registry.Open(ctxT(t), js, registry.Options{Keys: keys(t, master(1)), Logger: slog.New(slog.DiscardHandler)})
			took := time.Since(began)
			if !errors.Is(err, store.ErrNotPermitted) || !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("Open without %s: err = %v, want ErrNotPermitted", missing, err)
			}
			if !strings.Contains(err.Error(), `"`+strings.TrimSuffix(missing, ">")) {
				t.Fatalf("the error does not name a subject under %s: %v", missing, err)
			}
			if took > wait {
				t.Fatalf("the refusal took %v", took)
			}
		})
	}
}

// TestWatchStartedDuringWritesMissesNoneAndRepeatsNone starts a watch while
// another broker writes: every write shows, among the initial values or
// the changes, and none twice.
func TestWatchStartedDuringWritesMissesNoneAndRepeatsNone(t *testing.T) {
	srv := natstest.StartJetStream(t)
	k := keys(t, master(1))
	r := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: k})
	writer := open(t, connectJS(t, srv.ClientURL()), registry.Options{Keys: k})
	ctx := ctxT(t)
	const n = 200
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if i == n/4 {
				close(started)
			}
			if _, err := writer.Put(ctx, credential(fmt.Sprintf("w-%03d", i)), "bob"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	<-started
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	names := map[string]bool{}
	for len(names) < n {
		u := next(t, ch)
		if u == (registry.Update{}) {
			continue
		}
		if u.Entry == nil || seen[u.Entry.Revision] {
			t.Fatalf("update %q (entry %v): a removal, or a revision delivered twice", u.Name, u.Entry)
		}
		seen[u.Entry.Revision] = true
		names[u.Name] = true
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
