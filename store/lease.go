package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease errors. Compare with errors.Is.
var (
	// ErrLeaseHeld means another owner holds the lease; errors.As with a
	// *LeaseHeldError tells who and for how long.
	ErrLeaseHeld = errors.New("store: lease held by another owner")
	// ErrLeaseLost means the lease expired or was taken over since it was
	// acquired or last renewed: the holder must stop talking to the IdP for
	// the credential, because another broker may be doing so.
	ErrLeaseLost = errors.New("store: lease lost")
)

// LeaseHeldError is the error of an Acquire that found the lease held. It
// matches ErrLeaseHeld.
type LeaseHeldError struct {
	// CredentialID is the credential whose lease is held.
	CredentialID string
	// Owner is the holder's owner id, as it passed to Acquire.
	Owner string
	// Age is how long the holder has held the lease, by the holder's clock
	// at acquisition and ours now (zero when unknown).
	Age time.Duration
	// ExpiresIn is the most the lease lives on unless the holder renews
	// it: the lease TTL minus the time since the server stamped its last
	// write. The server removes it shortly after.
	ExpiresIn time.Duration
}

// Error describes the holder.
func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("store: lease on %s held by %s for %v (expires within %v unless renewed)",
		e.CredentialID, e.Owner, e.Age.Round(time.Millisecond), e.ExpiresIn.Round(time.Millisecond))
}

// Is makes a *LeaseHeldError match ErrLeaseHeld.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// leaseJSON is the value of a lease entry. Nothing in it is secret.
type leaseJSON struct {
	Owner      string    `json:"owner"`
	AcquiredAt time.Time `json:"acquired_at"`
}

// Lease is the right, held by one owner at a time, to call the IdP for one
// credential. It lives in the lease bucket until Release or until LeaseTTL
// passes without a Renew, so a broker that dies holding it blocks the
// credential for at most one TTL. A holder doing long work renews at a
// fraction of the TTL (a third, say) and stops when Renew fails. The server
// expires the lease on its own, without telling the holder, so a holder
// must consider it gone LeaseTTL after it began its last successful
// Acquire or Renew, error or not.
//
// A Lease is safe for concurrent use.
type Lease struct {
	s            *Store
	credentialID string
	owner        string
	acquiredAt   time.Time

	mu       sync.Mutex // guards rev and released
	rev      uint64
	released bool
}

// Acquire takes the lease on credentialID for owner (a broker's id, shown
// to the others). It returns an error wrapping ErrLeaseHeld, a
// *LeaseHeldError, when another holder has it, including owner itself
// through another Lease: leases are not reentrant.
func (s *Store) Acquire(ctx context.Context, credentialID, owner string) (*Lease, error) {
	if err := checkID(credentialID); err != nil {
		return nil, err
	}
	now := time.Now()
	value, err := json.Marshal(leaseJSON{Owner: owner, AcquiredAt: now})
	if err != nil {
		return nil, fmt.Errorf("store: acquire lease on %s: %w", credentialID, err)
	}
	// Create fails when the key exists. The holder may vanish between that
	// and reading who it is (released or expired), so try again a few
	// times before giving up on naming it.
	for range 3 {
		rev, err := s.leases.Create(ctx, credentialID, value)
		if err == nil {
			return &Lease{s: s, credentialID: credentialID, owner: owner, acquiredAt: now, rev: rev}, nil
		}
		if !casFailed(err) {
			return nil, fmt.Errorf("store: acquire lease on %s: %w", credentialID, err)
		}
		held, err := s.holder(ctx, credentialID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: acquire lease on %s: %w", credentialID, err)
		}
		return nil, held
	}
	return nil, &LeaseHeldError{CredentialID: credentialID, Owner: "(changing hands)"}
}

// holder reads the current lease on credentialID.
func (s *Store) holder(ctx context.Context, credentialID string) (*LeaseHeldError, error) {
	e, err := s.leases.Get(ctx, credentialID)
	if err != nil {
		return nil, err
	}
	held := &LeaseHeldError{CredentialID: credentialID, Owner: "(unknown)"}
	var j leaseJSON
	if json.Unmarshal(e.Value(), &j) == nil {
		held.Owner = j.Owner
		if !j.AcquiredAt.IsZero() {
			held.Age = max(time.Since(j.AcquiredAt), 0)
		}
	}
	held.ExpiresIn = max(s.leaseTTL-time.Since(e.Created()), 0)
	return held, nil
}

// CredentialID returns the credential the lease is for.
func (l *Lease) CredentialID() string { return l.credentialID }

// Owner returns the owner id the lease was acquired for.
func (l *Lease) Owner() string { return l.owner }

// Revision returns the lease entry's current revision in the lease bucket.
func (l *Lease) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Renew restarts the lease's TTL. It returns ErrLeaseLost when the lease
// expired, was released, or now belongs to someone else: the entry's
// revision is no longer the one this Lease wrote.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return fmt.Errorf("store: renew lease on %s: released: %w", l.credentialID, ErrLeaseLost)
	}
	value, err := json.Marshal(leaseJSON{Owner: l.owner, AcquiredAt: l.acquiredAt})
	if err != nil {
		return fmt.Errorf("store: renew lease on %s: %w", l.credentialID, err)
	}
	rev, err := l.s.leases.Update(ctx, l.credentialID, value, l.rev)
	if casFailed(err) {
		return fmt.Errorf("store: renew lease on %s: %w", l.credentialID, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("store: renew lease on %s: %w", l.credentialID, err)
	}
	l.rev = rev
	return nil
}

// Release gives the lease up so that another owner can acquire it at once.
// It deletes the entry only if it is still at the revision this Lease
// wrote, so a holder whose lease expired and was taken over never deletes
// the new holder's lease; it gets ErrLeaseLost instead, which it may
// ignore. Releasing a released Lease does nothing.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	err := l.s.leases.Delete(ctx, l.credentialID, jetstream.LastRevision(l.rev))
	if casFailed(err) {
		l.released = true // it is not ours any more; nothing left to release
		return fmt.Errorf("store: release lease on %s: %w", l.credentialID, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("store: release lease on %s: %w", l.credentialID, err)
	}
	l.released = true
	return nil
}
