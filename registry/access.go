package registry

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/nats-io/nats.go/jetstream"
)

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
