package registry

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker/store"
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
	if err := store.CheckAccess(ctx, r.kv, "registry"); err != nil {
		return err
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
