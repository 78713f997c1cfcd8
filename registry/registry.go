// Package registry keeps the named credentials that operators manage while
// the brokers run (`tokenbroker credential put`, `rm`), in a NATS JetStream
// key-value bucket that every broker watches. It exists so that adding,
// changing or removing a credential needs no edit of TOKENBROKER_CONFIG and
// no restart: one broker writes the bucket, and every broker of the cluster
// learns of it from its watch.
//
// Each credential is one key, its name, holding a wire.Credential with its
// secrets (client secrets, passwords, private keys), who wrote it and
// when. The secrets never reach the bucket in clear: the value is the token
// state's envelope (store.Keys.Seal), AES-256-GCM under TOKENBROKER_KEY and
// bound to the bucket and the name, so the registry rotates with the same
// key as the token state and a value copied to another name does not open.
// An entry that cannot be read (damaged, or written under a key this broker
// does not have) costs only itself: it is logged by name and skipped, and
// the other credentials are served.
//
// Deletions stay in the bucket as delete markers, rather than purges, so
// that a broker watching the bucket sees a removal as an event of its own.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/wire"
)

// DefaultBucket is the default name of the registry's bucket.
const DefaultBucket = "tokenbroker_credentials"

// Errors. Compare with errors.Is; the returned errors wrap them with the
// operation and the credential's name (never a secret). A value that
// cannot be read fails with store.ErrWrongKey or store.ErrCorrupt, and
// Open fails with store.ErrNotPermitted when the NATS user may not use the
// bucket.
var (
	// ErrNotFound means the registry holds no credential of that name.
	ErrNotFound = errors.New("registry: credential not found")
	// ErrInvalidName means a name is not a credential name
	// (wire.ValidName): 1 to 64 of A-Z a-z 0-9 _ -.
	ErrInvalidName = errors.New("registry: invalid credential name")
)

// Options configures Open.
type Options struct {
	// Bucket is the key-value bucket of the credentials; default
	// DefaultBucket.
	Bucket string
	// Replicas is the number of replicas of the bucket, at most the number
	// of JetStream servers: 1 (the default) on a single server, 3 on a
	// three-node cluster.
	Replicas int
	// Keys encrypts and decrypts the entries. Required: without a key the
	// registry's secrets would be in clear.
	Keys *store.Keys
	// Logger receives the entries that cannot be read and are skipped, by
	// name, never with a secret. nil discards.
	Logger *slog.Logger
}

// Registry is the credential registry in a JetStream key-value bucket. It
// is safe for concurrent use, and any number of Registries (in one process
// or in several brokers) may share the bucket.
type Registry struct {
	keys   *store.Keys
	bucket string
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	log    *slog.Logger
}

// Entry is a credential as the registry holds it.
//
// Credential holds secrets in clear: an Entry must not be logged field by
// field. String, GoString and LogValue print only its name and metadata.
type Entry struct {
	Credential wire.Credential
	// UpdatedAt is when the entry was written, by the writer's clock.
	UpdatedAt time.Time
	// UpdatedBy says who wrote it, as the writer named them (an operator's
	// NATS user, a broker's name).
	UpdatedBy string
	// Revision is the bucket revision the entry was read at or written as.
	// It is not part of the stored value.
	Revision uint64
}

// String describes e without its secrets.
func (e Entry) String() string {
	return fmt.Sprintf("registry.Entry{Name: %q, UpdatedAt: %s, UpdatedBy: %q, Revision: %d}",
		e.Credential.Name, e.UpdatedAt.Format(time.RFC3339), e.UpdatedBy, e.Revision)
}

// GoString is String, so %#v prints no secret either.
func (e Entry) GoString() string { return e.String() }

// LogValue implements slog.LogValuer without the secrets.
func (e Entry) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", e.Credential.Name),
		slog.Time("updated_at", e.UpdatedAt),
		slog.String("updated_by", e.UpdatedBy),
		slog.Uint64("revision", e.Revision),
	)
}

// entryJSON is the plaintext of a stored entry. The name is also the key,
// and the GCM additional data binds the ciphertext to it, so a value moved
// to another key does not open; Credential.Name is kept inside all the same,
// so that the plaintext is the credential as it was put.
type entryJSON struct {
	Credential wire.Credential `json:"credential"`
	UpdatedAt  time.Time       `json:"updated_at"`
	UpdatedBy  string          `json:"updated_by,omitempty"`
}

// Open creates the bucket, or binds to it and updates its configuration,
// and checks that the NATS user may do everything the registry does: read
// and write the bucket and run a consumer on it. The bucket keeps one
// revision per key, since an old revision would keep an old secret, and a
// deletion leaves a delete marker for the watchers.
//
// A subject the NATS server refuses fails Open at once with an error that
// matches store.ErrNotPermitted (and nats.ErrPermissionViolation) and names
// the subject: the server drops a refused request without an answer, so
// Open listens for the violation on the connection (its error handler is
// chained while Open runs, then restored).
//
// Open does not read the entries: one under another key costs only itself
// (List and Watch log it), unlike the token state, where a wrong key would
// lose every refresh token.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Registry, error) {
	if o.Keys == nil {
		return nil, errors.New("registry: Options.Keys is required")
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, stop := store.WatchPermissions(ctx, js.Conn(), "registry: the NATS user may not use a subject the credential registry needs")
	defer stop()
	r, err := open(ctx, js, o)
	// A refusal counts even when it failed nothing Open waited for, such as
	// the deletion of the access check's consumer.
	if err = store.NotPermitted(ctx, err); err != nil {
		return nil, err
	}
	return r, nil
}

func open(ctx context.Context, js jetstream.JetStream, o Options) (*Registry, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "tokenbroker: named credentials managed at run time, encrypted, one key per name",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("registry: open bucket %s: %w", o.Bucket, err)
	}
	r := &Registry{keys: o.Keys, bucket: o.Bucket, js: js, kv: kv, log: o.Logger}
	if err := r.checkAccess(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Bucket returns the name of the registry's bucket.
func (r *Registry) Bucket() string { return r.bucket }

// Put stores c, encrypted with the current key, as the entry of c.Name,
// whatever is stored there now, recording by (who asked) and the time, and
// returns the entry's new revision. Put checks only the name; whether c is
// a credential a broker can serve is the caller's to check.
func (r *Registry) Put(ctx context.Context, c wire.Credential, by string) (uint64, error) {
	if err := checkName(c.Name); err != nil {
		return 0, err
	}
	pt, err := json.Marshal(entryJSON{Credential: c, UpdatedAt: time.Now().UTC(), UpdatedBy: by})
	if err != nil {
		// A wire.Credential always encodes; this is not reached, and the
		// error of encoding/json quotes no value of a string field.
		return 0, fmt.Errorf("registry: encode %s: %w", c.Name, err)
	}
	// Best effort: the strings of c, and any buffer encoding/json used,
	// stay until the garbage collector reuses them.
	defer clear(pt)
	value, err := r.keys.Seal(r.bucket, c.Name, pt)
	if err != nil {
		return 0, fmt.Errorf("registry: put %s: %w", c.Name, err)
	}
	rev, err := r.kv.Put(ctx, c.Name, value)
	if err != nil {
		return 0, fmt.Errorf("registry: put %s: %w", c.Name, err)
	}
	return rev, nil
}

// Delete removes the entry of name, leaving a delete marker that watchers
// see. It returns ErrNotFound when there is none; an entry that cannot be
// read is removed like any other, which is how an operator gets rid of one.
func (r *Registry) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := r.kv.Get(ctx, name); errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("registry: delete %s: %w", name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("registry: delete %s: %w", name, err)
	}
	// Unconditional rather than a compare-and-set on the revision just
	// read: removing a credential means removing whatever is there, even if
	// another broker wrote it in between.
	if err := r.kv.Delete(ctx, name); err != nil {
		return fmt.Errorf("registry: delete %s: %w", name, err)
	}
	return nil
}

// Get returns the entry of name. It returns ErrNotFound when there is none
// (or it was deleted), store.ErrWrongKey when it was written under a key
// this Registry does not have, and store.ErrCorrupt when the stored value
// cannot be read.
func (r *Registry) Get(ctx context.Context, name string) (*Entry, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	e, err := r.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("registry: get %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: get %s: %w", name, err)
	}
	entry, _, err := r.decode(name, e.Value(), e.Revision())
	if err != nil {
		return nil, fmt.Errorf("registry: get %s (revision %d): %w", name, e.Revision(), err)
	}
	return entry, nil
}

// List returns every entry, sorted by name. Entries that cannot be read
// are left out and logged by name: one damaged or foreign value must not
// hide the others.
func (r *Registry) List(ctx context.Context) ([]Entry, error) {
	var entries []Entry
	if err := r.scan(ctx, func(s scanned) error {
		if e := r.readable(s.key, s.value, s.rev); e != nil {
			entries = append(entries, *e)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Credential.Name, b.Credential.Name) })
	return entries, nil
}

// beforeRekeyWrite, when set by a test, runs before each of Rekey's writes,
// to write in between the way a concurrent broker would.
var beforeRekeyWrite func(name string)

// Rekey finishes a key rotation for the registry: it seals again under the
// current key every entry that only a previous key opens, so that once it
// has run (and the token state's store.Rekey too) the previous keys can be
// removed. It returns how many entries it rewrote. The plaintext is sealed
// as it was, so UpdatedAt and UpdatedBy keep saying who last changed the
// credential rather than when it was rekeyed.
//
// Each rewrite is a compare-and-set on the revision Rekey read: an entry
// written by someone else in the meantime, under whichever key, is left as
// written. Entries already under the current key, and entries no key
// opens, are left alone. The error is the first failure; the others are
// tried all the same, and a later Rekey tries the failed ones again.
func (r *Registry) Rekey(ctx context.Context) (int, error) {
	var rewritten int
	var first error
	err := r.scan(ctx, func(s scanned) error {
		if !wire.ValidName(s.key) {
			return nil
		}
		pt, previous, err := r.keys.Open(r.bucket, s.key, s.value)
		if err != nil || !previous {
			clear(pt)
			return nil // under the current key already, or unreadable: List and Watch report those
		}
		value, err := r.keys.Seal(r.bucket, s.key, pt)
		clear(pt)
		if beforeRekeyWrite != nil {
			beforeRekeyWrite(s.key)
		}
		if err == nil {
			_, err = r.kv.Update(ctx, s.key, value, s.rev)
		}
		switch {
		case err == nil:
			rewritten++
		case casFailed(err):
			// Written since it was read: the newer write stands.
		case first == nil:
			first = fmt.Errorf("%s: %w", s.key, err)
		}
		return nil
	})
	if err != nil {
		return rewritten, fmt.Errorf("registry: rekey bucket %s: %w", r.bucket, err)
	}
	if first != nil {
		return rewritten, fmt.Errorf("registry: rekey bucket %s: %w", r.bucket, first)
	}
	return rewritten, nil
}

// decode decrypts a stored value of name into an Entry, and says whether a
// previous key opened it.
func (r *Registry) decode(name string, value []byte, rev uint64) (*Entry, bool, error) {
	pt, previous, err := r.keys.Open(r.bucket, name, value)
	if err != nil {
		return nil, false, err
	}
	defer clear(pt)
	var j entryJSON
	if err := json.Unmarshal(pt, &j); err != nil {
		// Not %v of err: a JSON error can quote the plaintext.
		return nil, false, fmt.Errorf("%w: undecodable plaintext", store.ErrCorrupt)
	}
	if j.Credential.Name != name {
		// Cannot happen short of a writer other than Put: the additional
		// data binds the value to name.
		return nil, false, fmt.Errorf("%w: the entry names another credential", store.ErrCorrupt)
	}
	return &Entry{Credential: j.Credential, UpdatedAt: j.UpdatedAt, UpdatedBy: j.UpdatedBy, Revision: rev}, previous, nil
}

// readable decodes a value met while listing or watching, or logs, by name
// only, why it cannot and returns nil.
func (r *Registry) readable(key string, value []byte, rev uint64) *Entry {
	if !wire.ValidName(key) {
		r.log.Warn("the credential registry holds a key that is not a credential name; skipped",
			"bucket", r.bucket, "key", key, "revision", rev)
		return nil
	}
	e, _, err := r.decode(key, value, rev)
	if err != nil {
		r.log.Warn("a credential in the registry cannot be read; skipped",
			"bucket", r.bucket, "name", key, "revision", rev, "err", err)
		return nil
	}
	return e
}

// checkName rejects what cannot be a credential's name before the bucket
// sees it: NATS keys allow more ("." , "/", "="), which no credential name
// has.
func checkName(name string) error {
	if !wire.ValidName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return nil
}

// casFailed reports whether err is a lost compare-and-set: the key is at
// another revision. The client maps most of these to ErrKeyExists or
// ErrKeyRevisionMismatch, but a replicated stream reports the conflict with
// another error code than a single replica does.
func casFailed(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
