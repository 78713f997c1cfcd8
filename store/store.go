// Package store keeps the broker's durable token state in a NATS JetStream
// key-value bucket, shared by every broker on the cluster, and hands out
// leases so that exactly one broker at a time talks to the identity
// provider for a credential.
//
// Each credential's Record is one key (the credential id) in the tokens
// bucket. Its secrets never reach the bucket in clear: the value is an
// envelope holding the id of the key that encrypted it, a nonce and the
// AES-256-GCM ciphertext of the record, bound to the bucket and credential
// id. Keys can rotate: records written under an older key stay readable
// while it is listed among the previous keys, Rekey rewrites them under the
// current one, and a store whose keys match none of the records refuses to
// open rather than overwrite them. A record that cannot be read (damaged,
// or under a key that is not configured while others are readable) costs
// only its own credential: it is logged, skipped and treated as absent.
//
// Leases live in a second bucket whose entries expire on their own (the
// bucket's max age), so a broker that dies holding one is replaced within
// the lease TTL. JetStream's compare-and-set on the last revision of a key
// gives both the records' optimistic concurrency (Update) and the leases'
// mutual exclusion (Acquire, Renew, Release).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// Defaults of Options.
const (
	// DefaultBucket is the default name of the tokens bucket.
	DefaultBucket = "tokenbroker_tokens"
	// DefaultLeaseBucket is the default name of the lease bucket.
	DefaultLeaseBucket = "tokenbroker_leases"
	// DefaultLeaseTTL is the default lease TTL: long enough for a token
	// request to a slow IdP, short enough that a dead broker's credentials
	// are taken over quickly.
	DefaultLeaseTTL = 15 * time.Second
)

// Errors. Compare with errors.Is; the returned errors wrap them with the
// operation and credential id (an opaque id, never a secret).
var (
	// ErrNotFound means no record is stored for the credential.
	ErrNotFound = errors.New("store: record not found")
	// ErrWrongKey means a record was encrypted with a key that is not among
	// the configured Keys. The record is left as it is.
	ErrWrongKey = errors.New("store: record encrypted with another key")
	// ErrCorrupt means a stored value is not a record this code can read:
	// not an envelope, an unknown envelope version, or a ciphertext that
	// fails authentication under the key its key id names.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrConflict means Update lost a compare-and-set: the record changed
	// (or appeared) since the revision the caller read.
	ErrConflict = errors.New("store: record changed concurrently")
	// ErrInvalidID means a credential id cannot be a key of the bucket.
	ErrInvalidID = errors.New("store: invalid credential id")
)

// Record is a credential's durable token state. AccessToken, TokenType,
// RefreshToken, Expiry, Lifetime, Verifier and ObtainedAt are encrypted at
// rest; CredentialID is the bucket key and Revision comes from the bucket.
//
// String, GoString and LogValue print no secret, so a Record in a log line
// or an error is safe.
type Record struct {
	// CredentialID is the credential's id, the key of the record in the
	// bucket: a named credential's name or a "u-<hex>" user id.
	CredentialID string
	// Token is the access token, its type, expiry and lifetime. The zero
	// Expiry means the IdP gave no expiry; Lifetime is kept to schedule
	// refreshes relative to it.
	tokenbroker.Token
	// RefreshToken is the refresh token, "" when the IdP granted none.
	RefreshToken string
	// Verifier is, for a username/password credential, the keyed hash of
	// the password that obtained the token (never the password itself), so
	// a request can be served from the stored token only with the same
	// password. It is nil for named credentials.
	Verifier []byte
	// ObtainedAt is when the token was obtained from the IdP.
	ObtainedAt time.Time
	// Revision is the bucket revision the record was read at or written as.
	// It is not part of the stored value; pass it to Update.
	Revision uint64
}

// String describes r without its secrets.
func (r Record) String() string {
	return fmt.Sprintf("store.Record{CredentialID: %q, Expiry: %s, Revision: %d}",
		r.CredentialID, r.Expiry.Format(time.RFC3339), r.Revision)
}

// GoString is String, so %#v prints no secret either.
func (r Record) GoString() string { return r.String() }

// LogValue implements slog.LogValuer without the secrets.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("credential_id", r.CredentialID),
		slog.Time("expiry", r.Expiry),
		slog.Uint64("revision", r.Revision),
	)
}

// recordJSON is the plaintext of a stored record. The credential id is not
// in it: the GCM additional data binds the ciphertext to the id instead.
type recordJSON struct {
	AccessToken  string        `json:"access_token"`
	TokenType    string        `json:"token_type,omitempty"`
	RefreshToken string        `json:"refresh_token,omitempty"`
	Expiry       time.Time     `json:"expiry"`
	Lifetime     time.Duration `json:"lifetime_ns,omitempty"`
	RefreshAt    *time.Time    `json:"refresh_at,omitempty"` // the IdP's refresh_in; nil when it gave none
	Verifier     []byte        `json:"verifier,omitempty"`
	ObtainedAt   time.Time     `json:"obtained_at"`
}

// Options configures Open.
type Options struct {
	// Bucket is the key-value bucket of the records; default
	// DefaultBucket.
	Bucket string
	// LeaseBucket is the key-value bucket of the leases; default
	// DefaultLeaseBucket.
	LeaseBucket string
	// Replicas is the number of replicas of both buckets, at most the
	// number of JetStream servers: 1 (the default) on a single server, 3 on
	// a three-node cluster so that losing a node loses nothing.
	Replicas int
	// LeaseTTL is how long a lease lives after it was acquired or last
	// renewed; default DefaultLeaseTTL. It is the lease bucket's max age, so
	// all brokers sharing the bucket should use the same value: the last
	// one to open sets it for everyone.
	LeaseTTL time.Duration
	// Keys encrypts and decrypts the records. Required.
	Keys *Keys
	// Logger receives what Open and Rekey skip and why: records that
	// cannot be read, by credential id, never with a secret. nil discards.
	Logger *slog.Logger
}

// Store is the durable token state in a JetStream key-value bucket. It is
// safe for concurrent use, and any number of Stores (in one process or in
// several brokers) may share the buckets.
type Store struct {
	keys     *Keys
	bucket   string
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	leases   jetstream.KeyValue
	leaseTTL time.Duration
	log      *slog.Logger
}

// Open creates the buckets, or binds to them and updates their
// configuration, checks that the NATS user may do everything the store
// does, and then runs CheckKeys, so that a store whose keys cannot read the
// existing records is never returned. The tokens bucket keeps one revision
// per key (an old revision would hold an old refresh token); the lease
// bucket's entries expire LeaseTTL after their last write.
//
// A subject the NATS server refuses fails Open at once with an error that
// matches ErrNotPermitted and names the subject, however long ctx allows:
// the server drops a refused request without an answer, so Open listens for
// the violation on the connection (its error handler is chained while Open
// runs, then restored).
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if o.Keys == nil {
		return nil, errNoKeys
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.LeaseBucket == "" {
		o.LeaseBucket = DefaultLeaseBucket
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Bucket == o.LeaseBucket {
		return nil, fmt.Errorf("store: bucket and lease bucket are both %q", o.Bucket)
	}
	ctx, stop := WatchPermissions(ctx, js.Conn(), ErrNotPermitted.Error())
	defer stop()
	s, err := open(ctx, js, o)
	// A refusal counts even when it failed nothing Open waited for, such as
	// the deletion of a scan's consumer.
	if err = NotPermitted(ctx, err); err != nil {
		return nil, err
	}
	return s, nil
}

func open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "tokenbroker: encrypted token state, one key per credential",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open bucket %s: %w", o.Bucket, err)
	}
	// The lease TTL is the bucket's max age rather than a per-key TTL:
	// every write (Create on acquire, Update on renew) restarts a message's
	// age, so renewing extends the lease. A per-key TTL (KeyTTL) can only be
	// set by Create, and an Update would write a message without one that
	// never expires.
	leases, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.LeaseBucket,
		Description: "tokenbroker: which broker may call the identity provider for a credential",
		History:     1,
		TTL:         o.LeaseTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open lease bucket %s: %w", o.LeaseBucket, err)
	}
	for _, b := range []jetstream.KeyValue{kv, leases} {
		if err := CheckAccess(ctx, b, "store"); err != nil {
			return nil, err
		}
	}
	s := &Store{keys: o.Keys, bucket: o.Bucket, js: js, kv: kv, leases: leases, leaseTTL: o.LeaseTTL, log: o.Logger}
	if err := s.CheckKeys(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Bucket returns the name of the tokens bucket.
func (s *Store) Bucket() string { return s.bucket }

// LeaseTTL returns how long a lease lives without renewal.
func (s *Store) LeaseTTL() time.Duration { return s.leaseTTL }

// CheckKeys reads every stored record and fails, with an error wrapping
// ErrWrongKey that names the key ids the records need, when there are
// records encrypted with keys that are not among the store's and none that
// the store can read: the operator has set the wrong TOKENBROKER_KEY, and
// starting anyway would make the broker fetch new tokens and overwrite those
// records, losing refresh tokens for good.
//
// Records that cannot be read while others can are one credential's loss
// each, not a wrong key: a damaged value, or one under a key that is not
// configured (left over from a rotation). CheckKeys logs each of them, by
// credential id, and the broker treats them as absent: Get reports them,
// and their credentials are fetched again. So does a record the NATS server
// itself cannot read back (damaged on disk): the server skips it and
// reports it missing, which CheckKeys logs as a count.
//
// CheckKeys only reads.
func (s *Store) CheckKeys(ctx context.Context) error {
	var total, readable int
	unknown := map[string]int{} // key id -> records encrypted with it
	var skipped []string        // credential ids of unreadable records
	undelivered, err := s.scan(ctx, false, func(e scanned) error {
		total++
		r, err := s.decode(e.key, e.value, e.rev)
		if err == nil {
			r.clear()
			readable++
			return nil
		}
		if env, derr := decodeEnvelope(e.value); derr == nil && errors.Is(err, ErrWrongKey) {
			unknown[env.KID]++
		}
		if len(skipped) < maxLoggedSkips {
			s.log.Warn("a stored record cannot be read; its credential is fetched again when needed",
				"bucket", s.bucket, "credential_id", e.key, "revision", e.rev, "err", err)
		}
		skipped = append(skipped, e.key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: check keys of bucket %s: %w", s.bucket, err)
	}
	if len(unknown) > 0 && readable == 0 {
		ids := slices.Sorted(maps.Keys(unknown))
		n := 0
		for _, c := range unknown {
			n += c
		}
		what := "key id " + ids[0]
		if len(ids) > 1 {
			what = "key ids " + strings.Join(ids, ", ")
		}
		return &wrongKeyError{msg: fmt.Sprintf(
			"store: %d of %d records in bucket %s are encrypted with %s, which TOKENBROKER_KEY (key id %s) does not match; refusing to start (the records are left untouched)",
			n, total, s.bucket, what, strings.Join(s.keys.IDs(), ", "))}
	}
	if len(skipped) > 0 {
		s.log.Warn("stored records that cannot be read are treated as absent",
			"bucket", s.bucket, "unreadable", len(skipped), "readable", readable,
			"other_key_ids", strings.Join(slices.Sorted(maps.Keys(unknown)), ","))
	}
	if undelivered > 0 {
		s.log.Warn("the NATS server holds stored records it cannot read back (damaged on disk?); their credentials are fetched again when needed",
			"bucket", s.bucket, "records", undelivered)
	}
	return nil
}

// maxLoggedSkips bounds the lines CheckKeys logs for unreadable records, one
// each; a summary line counts them all.
const maxLoggedSkips = 20

// Get returns the stored record of credentialID. It returns ErrNotFound when
// there is none (or it was deleted), ErrWrongKey when it was encrypted with
// another key, and ErrCorrupt when the stored value cannot be read.
func (s *Store) Get(ctx context.Context, credentialID string) (*Record, error) {
	if err := checkID(credentialID); err != nil {
		return nil, err
	}
	e, err := s.kv.Get(ctx, credentialID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: get %s: %w", credentialID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", credentialID, err)
	}
	r, err := s.decode(credentialID, e.Value(), e.Revision())
	if err != nil {
		return nil, fmt.Errorf("store: get %s (revision %d): %w", credentialID, e.Revision(), err)
	}
	return r, nil
}

// Put stores r, encrypted with the current key, whatever is stored now, and
// returns its new revision. r itself is not modified. Use Update where a
// concurrent write must not be overwritten.
func (s *Store) Put(ctx context.Context, r *Record) (rev uint64, err error) {
	// Under a traced request or refresh, the write is a span of its own.
	if tracing.Enabled() {
		var span trace.Span
		if ctx, span = tracing.StartChild(ctx, tracing.SpanStorePut, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(tracing.Credential.String(r.CredentialID), attribute.String("tokenbroker.store.bucket", s.bucket))); span != nil {
			defer func() { endPut(span, rev, err) }()
		}
	}
	value, err := s.encode(r)
	if err != nil {
		return 0, err
	}
	rev, err = s.kv.Put(ctx, r.CredentialID, value)
	if err != nil {
		return 0, fmt.Errorf("store: put %s: %w", r.CredentialID, err)
	}
	return rev, nil
}

// endPut ends a write's span with its revision or its failure, named
// without the error's text: the record's contents stay out of traces.
func endPut(span trace.Span, rev uint64, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "store write failed")
	} else {
		span.SetAttributes(attribute.Int64("tokenbroker.store.revision", int64(rev)))
	}
	span.End()
}

// Update stores r only if the record is still at lastRevision, and returns
// the new revision; otherwise it returns ErrConflict and stores nothing. A
// lastRevision of 0 means "only if no record exists" (a deleted record
// counts as none). r itself is not modified.
func (s *Store) Update(ctx context.Context, r *Record, lastRevision uint64) (uint64, error) {
	value, err := s.encode(r)
	if err != nil {
		return 0, err
	}
	var rev uint64
	if lastRevision == 0 {
		// Create, unlike Update with revision 0, also succeeds over a
		// delete marker.
		rev, err = s.kv.Create(ctx, r.CredentialID, value)
	} else {
		rev, err = s.kv.Update(ctx, r.CredentialID, value, lastRevision)
	}
	if casFailed(err) {
		return 0, fmt.Errorf("store: update %s at revision %d: %w", r.CredentialID, lastRevision, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("store: update %s: %w", r.CredentialID, err)
	}
	return rev, nil
}

// Delete removes the record of credentialID. Deleting a missing record is
// not an error. With one revision kept per key, the delete marker replaces
// the encrypted value in the bucket.
func (s *Store) Delete(ctx context.Context, credentialID string) error {
	if err := checkID(credentialID); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, credentialID); err != nil {
		return fmt.Errorf("store: delete %s: %w", credentialID, err)
	}
	return nil
}

// Records returns the ids of the stored credentials, for warming up at
// start-up. The order is the bucket's, not sorted. It reads headers only, so
// it includes records that cannot be decrypted; Get tells those apart.
func (s *Store) Records(ctx context.Context) ([]string, error) {
	var ids []string
	if _, err := s.scan(ctx, true, func(e scanned) error {
		ids = append(ids, e.key)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: list records: %w", err)
	}
	return ids, nil
}

// Watch delivers the record of credentialID as written by any broker:
// first the current record, if there is one, and then every later write, in
// order. Delivering the current record first means a caller that watches
// after a Get cannot miss a write in between; compare Revision to skip what
// it already has. Deletions, and writes that cannot be decrypted (see Get),
// are not delivered. The channel is closed when ctx ends or the connection
// closes.
func (s *Store) Watch(ctx context.Context, credentialID string) (<-chan *Record, error) {
	if err := checkID(credentialID); err != nil {
		return nil, err
	}
	return s.watch(ctx, credentialID)
}

// WatchAll is Watch for every credential: the current records and then
// every write.
func (s *Store) WatchAll(ctx context.Context) (<-chan *Record, error) {
	return s.watch(ctx, jetstream.AllKeys)
}

func (s *Store) watch(ctx context.Context, keys string) (<-chan *Record, error) {
	w, err := s.kv.Watch(ctx, keys, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("store: watch %s: %w", keys, err)
	}
	out := make(chan *Record)
	go func() {
		defer close(out)
		defer stopWatcher(w)
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue // the end of the current values; updates follow
				}
				r, err := s.decode(e.Key(), e.Value(), e.Revision())
				if err != nil {
					continue
				}
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// stopWatcher stops w and drains its channel until the client closes it:
// the client's delivery goroutine may be blocked sending to a full channel
// and would otherwise never exit.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	for range w.Updates() {
	}
}

// encode checks r and returns its encrypted envelope.
func (s *Store) encode(r *Record) ([]byte, error) {
	if r == nil {
		return nil, errors.New("store: nil record")
	}
	if err := checkID(r.CredentialID); err != nil {
		return nil, err
	}
	var refreshAt *time.Time
	if !r.RefreshAt.IsZero() {
		refreshAt = &r.RefreshAt
	}
	pt, err := json.Marshal(recordJSON{
		RefreshAt:    refreshAt,
		AccessToken:  r.AccessToken,
		TokenType:    r.TokenType,
		RefreshToken: r.RefreshToken,
		Expiry:       r.Expiry,
		Lifetime:     r.Lifetime,
		Verifier:     r.Verifier,
		ObtainedAt:   r.ObtainedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("store: encode %s: %w", r.CredentialID, err)
	}
	// Clearing the plaintext is best effort: the strings in r, and any
	// buffer encoding/json used internally, stay until the GC reuses them.
	defer clear(pt)
	value, err := s.keys.seal(s.bucket, r.CredentialID, pt)
	if err != nil {
		return nil, err
	}
	return value, nil
}

// decode decrypts a stored value into a Record.
func (s *Store) decode(credentialID string, value []byte, rev uint64) (*Record, error) {
	r, _, err := s.decodeKey(credentialID, value, rev)
	return r, err
}

// decodeKey is decode that also returns the index of the key that opened
// the record: 0 for the current key, more for a previous one.
func (s *Store) decodeKey(credentialID string, value []byte, rev uint64) (*Record, int, error) {
	pt, key, err := s.keys.open(s.bucket, credentialID, value)
	if err != nil {
		return nil, 0, err
	}
	defer clear(pt)
	var j recordJSON
	if err := json.Unmarshal(pt, &j); err != nil {
		// Not %v of err: a JSON error can quote the plaintext.
		return nil, 0, fmt.Errorf("%w: undecodable plaintext", ErrCorrupt)
	}
	return &Record{
		CredentialID: credentialID,
		Token:        tokenbroker.Token{AccessToken: j.AccessToken, TokenType: j.TokenType, Expiry: j.Expiry, Lifetime: j.Lifetime, RefreshAt: deref(j.RefreshAt)},
		RefreshToken: j.RefreshToken,
		Verifier:     j.Verifier,
		ObtainedAt:   j.ObtainedAt,
		Revision:     rev,
	}, key, nil
}

// clear drops r's references to its secrets, for records read only to be
// checked or re-encrypted. Strings cannot be wiped in Go; this lets the
// garbage collector have them sooner.
func (r *Record) clear() {
	r.AccessToken, r.RefreshToken = "", ""
	clear(r.Verifier)
	r.Verifier = nil
}

// casFailed reports whether err is a lost compare-and-set: the key exists,
// or is at another revision. The client maps most of these to ErrKeyExists
// or ErrKeyRevisionMismatch, but not all (Create over a delete marker
// returns the server's error as is), and a replicated stream reports the
// conflict with another error code than a single replica does.
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

// checkID rejects ids that are not valid bucket keys before the client
// does, with an error that names the problem. Credential ids are
// [A-Za-z0-9_-] names or "u-<hex>"; NATS keys also allow "=", "/" and
// non-leading, non-trailing dots.
func checkID(id string) error {
	if id == "" || id[0] == '.' || id[len(id)-1] == '.' {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-/_=.", c) >= 0) {
			return fmt.Errorf("%w: %q", ErrInvalidID, id)
		}
	}
	return nil
}

// deref is the time p points to, or the zero time.
func deref(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return *p
}
