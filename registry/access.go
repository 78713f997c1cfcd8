package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker/store"
)

// permissionError is a permissions violation the server reported while the
// registry was opening. It matches store.ErrNotPermitted, so that a broker
// tells an operator about a missing permission the same way whichever
// bucket lacks it, and wraps the violation (nats.ErrPermissionViolation),
// which names the subject.
type permissionError struct{ err error }

func (e *permissionError) Error() string {
	return "registry: the NATS user may not use a subject the credential registry needs: " + e.err.Error()
}

// Is makes a *permissionError match store.ErrNotPermitted besides what it
// wraps.
func (e *permissionError) Is(target error) bool { return target == store.ErrNotPermitted }

func (e *permissionError) Unwrap() error { return e.err }

// watchPermissions returns a context that is cancelled, with a
// *permissionError as its cause, as soon as the NATS server reports a
// permissions violation on one of the registry's subjects. The server drops
// a refused request and tells the client only asynchronously, so without
// this every refused operation would wait for its context to end, and then
// fail as a timeout that names nothing. stop restores nc's error handler,
// which is still called in the meantime.
func watchPermissions(ctx context.Context, nc *nats.Conn) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	prev := nc.ErrorHandler()
	inbox := nc.NewInbox()
	inbox = inbox[:strings.LastIndexByte(inbox, '.')+1]
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		if prev != nil {
			prev(c, sub, err)
		}
		if errors.Is(err, nats.ErrPermissionViolation) && ours(err.Error(), inbox) {
			cancel(&permissionError{err: err})
		}
	})
	return ctx, func() {
		nc.SetErrorHandler(prev)
		cancel(nil)
	}
}

// ours reports whether a permissions violation names a subject the registry
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

// notPermitted returns the permissions violation that ended ctx, if one did,
// and err otherwise: an operation that was waiting fails with the context's
// cancellation, which says less than the violation.
func notPermitted(ctx context.Context, err error) error {
	var perm *permissionError
	if errors.As(context.Cause(ctx), &perm) {
		return perm
	}
	return err
}

// accessProbeKey is the key the access check reads, fails to write and
// watches. It cannot be a credential's name ("=" is in none), so nothing of
// a credential is touched, and List and Watch would skip it.
const accessProbeKey = "tokenbroker=access-check"

// checkAccess does, harmlessly, each kind of operation on the bucket that
// the registry does later, so that a NATS user lacking a permission fails
// Open rather than the first `credential put`, or a broker's watch: a read
// of a key that no entry has; a compare-and-set write that cannot succeed
// (no key ever reaches that revision), so nothing is written; a scan, as
// List and Rekey run, and a watch, as Watch runs, both of that one key.
func (r *Registry) checkAccess(ctx context.Context) error {
	if _, err := r.kv.Get(ctx, accessProbeKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("registry: read bucket %s: %w", r.bucket, err)
	}
	_, err := r.kv.Update(ctx, accessProbeKey, nil, math.MaxInt64)
	switch {
	case err == nil:
		// Never: the revision does not exist. Remove what was written.
		_ = r.kv.Purge(ctx, accessProbeKey)
	case !casFailed(err):
		return fmt.Errorf("registry: write bucket %s: %w", r.bucket, err)
	}
	if err := r.scanKeys(ctx, accessProbeKey, func(scanned) error { return nil }); err != nil {
		return fmt.Errorf("registry: read bucket %s: %w", r.bucket, err)
	}
	w, err := r.kv.Watch(ctx, accessProbeKey, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("registry: watch bucket %s: %w", r.bucket, err)
	}
	stopWatcher(w)
	return nil
}
