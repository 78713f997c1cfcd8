package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Rekeyed counts what Rekey did.
type Rekeyed struct {
	// Rewritten records were readable only with a previous key and are now
	// encrypted with the current one.
	Rewritten int
	// Dropped records were readable only with a previous key and deleted,
	// as the drop function asked.
	Dropped int
	// Changed records were written by someone else between Rekey's read
	// and its write, and left as they were written.
	Changed int
	// Failed records could not be rewritten or deleted (the error says
	// why); a later Rekey tries them again.
	Failed int
}

// rekeyWorkers is how many records Rekey writes at once: one write waits a
// round trip to the server, and a rotation may have many records to do.
const rekeyWorkers = 8

// beforeRekeyWrite, when set by a test, runs before each of Rekey's writes,
// to write in between the way a concurrent broker would.
var beforeRekeyWrite func(credentialID string)

// Rekey finishes a key rotation: it rewrites under the current key every
// record that only a previous key can open, so that once it has run the
// previous keys can be removed. Records for which drop returns true are
// deleted instead: a username's credential id derives from the key, so
// under a new key nobody asks for the old id again. Records already under
// the current key, and records no key can open, are left alone.
//
// Each rewrite and deletion is a compare-and-set on the revision Rekey read,
// so a record that another broker wrote in the meantime (a refreshed token,
// under whichever key) is never overwritten: it counts as Changed.
//
// Rekey returns what it did; the error is the first failure, with Failed
// counting them all. Credential ids may be logged, secrets never are.
func (s *Store) Rekey(ctx context.Context, drop func(credentialID string) bool) (Rekeyed, error) {
	var (
		mu    sync.Mutex
		done  Rekeyed
		first error
	)
	count := func(n *int, err error) {
		mu.Lock()
		defer mu.Unlock()
		*n++
		if err != nil && first == nil {
			first = err
		}
	}
	work := make(chan *Record)
	var wg sync.WaitGroup
	for range rekeyWorkers {
		wg.Go(func() {
			for r := range work {
				s.rekeyOne(ctx, r, drop != nil && drop(r.CredentialID), &done, count)
				r.clear()
			}
		})
	}
	_, err := s.scan(ctx, false, func(e scanned) error {
		r, key, err := s.decodeKey(e.key, e.value, e.rev)
		if err != nil || key == 0 {
			return nil // under the current key already, or unreadable: CheckKeys reports those
		}
		select {
		case work <- r:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(work)
	wg.Wait()
	if err != nil {
		return done, fmt.Errorf("store: rekey bucket %s: %w", s.bucket, err)
	}
	if first != nil {
		return done, fmt.Errorf("store: rekey bucket %s: %d records failed, the first: %w", s.bucket, done.Failed, first)
	}
	return done, nil
}

// rekeyOne rewrites or drops r, read at r.Revision, and counts the outcome.
func (s *Store) rekeyOne(ctx context.Context, r *Record, drop bool, done *Rekeyed, count func(*int, error)) {
	if beforeRekeyWrite != nil {
		beforeRekeyWrite(r.CredentialID)
	}
	var err error
	if drop {
		err = s.kv.Delete(ctx, r.CredentialID, jetstream.LastRevision(r.Revision))
		if casFailed(err) {
			err = ErrConflict
		}
	} else {
		_, err = s.Update(ctx, r, r.Revision)
	}
	switch {
	case err == nil && drop:
		count(&done.Dropped, nil)
	case err == nil:
		count(&done.Rewritten, nil)
	case errors.Is(err, ErrConflict):
		count(&done.Changed, nil)
	default:
		count(&done.Failed, fmt.Errorf("%s: %w", r.CredentialID, err))
	}
}
