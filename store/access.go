package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotPermitted means the NATS server refused the store a subject it needs
// (a publish or a subscription), as NATS permissions do. The error names the
// subject; it also matches nats.ErrPermissionViolation.
var ErrNotPermitted = errors.New("store: the NATS user may not use a subject the token state needs")

// permissionError is a permissions violation the server reported while a
// bucket was opening; what says whose (ErrNotPermitted's message for the
// store's own).
type permissionError struct {
	what string
	err  error
}

func (e *permissionError) Error() string { return e.what + ": " + e.err.Error() }

// Is makes a *permissionError match ErrNotPermitted besides what it wraps,
// so that a broker tells an operator about a missing permission the same
// way whichever bucket lacks it.
func (e *permissionError) Is(target error) bool { return target == ErrNotPermitted }

func (e *permissionError) Unwrap() error { return e.err }

// WatchPermissions returns a context that is cancelled, with an error that
// starts with what and matches ErrNotPermitted as its cause, as soon as the
// NATS server reports a permissions violation on one of the subjects a
// JetStream bucket uses. The server drops a refused request and tells the
// client only asynchronously, so without this every refused operation
// would wait for its context to end, and then fail as a timeout that names
// nothing. stop restores nc's error handler, which is still called in the
// meantime. NotPermitted reads the cause back. The store uses it, and the
// credential registry for its own bucket.
func WatchPermissions(ctx context.Context, nc *nats.Conn, what string) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	prev := nc.ErrorHandler()
	inbox := nc.NewInbox()
	inbox = inbox[:strings.LastIndexByte(inbox, '.')+1]
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		if prev != nil {
			prev(c, sub, err)
		}
		if errors.Is(err, nats.ErrPermissionViolation) && ours(err.Error(), inbox) {
			cancel(&permissionError{what: what, err: err})
		}
	})
	return ctx, func() {
		nc.SetErrorHandler(prev)
		cancel(nil)
	}
}

// ours reports whether a permissions violation names a subject a bucket
// uses: the JetStream API, a KV bucket, or an inbox of the connection
// (where JetStream answers and a watch is delivered), rather than one of
// whatever else shares the connection.
func ours(violation, inbox string) bool {
	for _, s := range []string{`"$JS.`, `"$KV.`, `"` + inbox} {
		if strings.Contains(violation, s) {
			return true
		}
	}
	return false
}

// NotPermitted returns the permissions violation that ended ctx (a
// WatchPermissions context), if one did, and err otherwise: an operation
// that was waiting fails with the context's cancellation, which says less
// than the violation.
func NotPermitted(ctx context.Context, err error) error {
	var perm *permissionError
	if errors.As(context.Cause(ctx), &perm) {
		return perm
	}
	return err
}

// accessProbeKey is the key the access check reads and fails to write. It
// cannot be a credential id ("=" is in no name and in no user id), so the
// read finds nothing and nothing of a credential is touched.
const accessProbeKey = "tokenbroker=access-check"

// CheckAccess does, harmlessly, each kind of operation on a bucket that the
// store (or, for its own bucket, the credential registry) does later, so
// that a NATS user lacking a permission fails Open rather than stalling the
// first request that needs it: a read of a key that no record has, and a
// compare-and-set write that cannot succeed (no key ever reaches that
// revision), so nothing is written. what prefixes its errors. The store's
// CheckKeys then runs a consumer on the tokens bucket, as Watch and the
// scans do.
func CheckAccess(ctx context.Context, kv jetstream.KeyValue, what string) error {
	err := untilLeader(ctx, func() error {
		_, err := kv.Get(ctx, accessProbeKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: read bucket %s: %w", what, kv.Bucket(), err)
	}
	err = untilLeader(ctx, func() error {
		_, err := kv.Update(ctx, accessProbeKey, nil, math.MaxInt64)
		switch {
		case err == nil:
			// Never: the revision does not exist. Remove what was written.
			_ = kv.Purge(ctx, accessProbeKey)
			return nil
		case casFailed(err):
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: write bucket %s: %w", what, kv.Bucket(), err)
	}
	return nil
}

// untilLeader runs op again while it fails for want of a responder, until
// ctx ends: a bucket just created on a cluster has no stream leader for a
// moment (an election), and its requests then find nobody to answer them.
func untilLeader(ctx context.Context, op func() error) error {
	wait := 20 * time.Millisecond
	for {
		err := op()
		if !errors.Is(err, nats.ErrNoResponders) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}
