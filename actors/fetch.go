package actors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/store"
)

// fetchJob is one acquisition of a token, run in a goroutine of its own. It
// holds copies of everything it needs and never touches the actor: it
// reports back with a fetchDone.
//
// With a store, the job first takes the credential's lease, so that across
// all brokers exactly one calls the IdP. A broker that finds the lease held
// waits for the holder's record instead; the holder, once it has the lease,
// looks in the store first, in case another broker refreshed just before.
// A new token is written to the store before anyone is answered with it,
// so a crash at any point loses no usable refresh token.
type fetchJob struct {
	f        *fetch
	id       string // credential_id
	user     bool
	spec     *Spec
	client   TokenClient
	ctx      context.Context
	username string
	password tokenbroker.Secret
	rt       tokenbroker.Secret // the refresh token held when the job started
	verifier Verifier           // the verifier of the token held when the job started
	expiry   time.Time          // of the token held when the job started; zero for none
	rev      uint64             // store revision of the token held when the job started
	store    *store.Store
	owner    string
	log      *slog.Logger
	now      func() time.Time
}

func (j *fetchJob) run() fetchDone {
	began := time.Now()
	d := j.obtain()
	d.f, d.after = j.f, time.Since(began)
	return d
}

func (j *fetchJob) obtain() fetchDone {
	if j.store == nil {
		tok, err := j.call()
		return fetchDone{tok: tok, err: err}
	}
	for {
		lease, err := j.store.Acquire(j.ctx, j.id, j.owner)
		var held *store.LeaseHeldError
		switch {
		case errors.As(err, &held):
			if rec := j.awaitHolder(held); rec != nil {
				return fetchDone{rec: rec}
			}
			if err := j.ctx.Err(); err != nil {
				return fetchDone{err: err}
			}
			continue // the holder died: its lease has expired
		case err != nil:
			// The store is out of reach: serve callers all the same. Without
			// the lease another broker may call the IdP too; that is the price
			// of staying available.
			j.log.Warn("token store unavailable; calling the identity provider without a lease", "err", err)
			tok, err := j.call()
			return fetchDone{tok: tok, err: err}
		}
		return j.withLease(lease)
	}
}

// withLease gets the token while holding the credential's lease.
func (j *fetchJob) withLease(lease *store.Lease) fetchDone {
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = lease.Release(ctx)
	}()
	if rec, err := j.store.Get(j.ctx, j.id); err == nil && j.acceptable(rec) {
		return fetchDone{rec: rec} // another broker refreshed it just before
	}
	stop := j.keepRenewing(lease)
	tok, err := j.call()
	stop()
	if err != nil {
		return fetchDone{err: err}
	}
	rev, perr := j.store.Put(j.ctx, j.record(tok))
	if perr != nil {
		j.log.Warn("could not store the new token; it is served from memory only", "err", perr)
	}
	return fetchDone{tok: tok, rev: rev}
}

// keepRenewing renews the lease while the IdP call runs, which with retries
// may outlast one lease TTL.
func (j *fetchJob) keepRenewing(lease *store.Lease) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(j.store.LeaseTTL() / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-j.ctx.Done():
				return
			case <-tick.C:
				if err := lease.Renew(j.ctx); err != nil {
					j.log.Warn("lost the credential's lease during an IdP call", "err", err)
					return
				}
			}
		}
	}()
	return func() { close(done); <-ended }
}

// awaitHolder waits for the broker holding the lease to store its token,
// for at most what is left of its lease. It returns nil when the lease ran
// out first, or the job's context ended.
func (j *fetchJob) awaitHolder(held *store.LeaseHeldError) *store.Record {
	wait := held.ExpiresIn + 500*time.Millisecond
	if wait < time.Second {
		wait = time.Second
	}
	ctx, cancel := context.WithTimeout(j.ctx, wait)
	defer cancel()
	updates, err := j.store.Watch(ctx, j.id)
	if err != nil {
		return nil
	}
	for rec := range updates {
		if j.acceptable(rec) {
			return rec
		}
	}
	return nil
}

// acceptable reports whether a stored record can stand for the token this
// job would get: newer than the one held, not expired, and for a user
// obtained with the same password.
func (j *fetchJob) acceptable(rec *store.Record) bool {
	if rec == nil || rec.AccessToken == "" || rec.Revision <= j.rev {
		return false
	}
	if !rec.Expiry.After(j.now()) || !rec.Expiry.After(j.expiry) {
		return false
	}
	if j.user {
		var v Verifier
		return len(rec.Verifier) == len(v) && Verifier(rec.Verifier).Equal(j.f.verifier)
	}
	return true
}

// record is what the store keeps of tok: the newest refresh token, and for
// a user the verifier of the password that obtained it.
func (j *fetchJob) record(tok *oauth.Token) *store.Record {
	rec := &store.Record{CredentialID: j.id, Token: tok.Token, RefreshToken: tok.RefreshToken, ObtainedAt: j.now()}
	if rec.RefreshToken == "" && j.f.grant == grantRefresh {
		rec.RefreshToken = j.rt.Reveal() // the IdP did not rotate it
	}
	if j.user {
		v := j.verifier
		if j.f.grant != grantRefresh {
			v = j.f.verifier
		}
		rec.Verifier = v[:]
	}
	return rec
}

// call makes the IdP call itself.
func (j *fetchJob) call() (*oauth.Token, error) {
	ep := j.spec.Endpoint
	switch j.f.grant {
	case grantRefresh:
		return j.client.Refresh(j.ctx, ep, j.rt)
	case GrantClientCredentials:
		return j.client.ClientCredentials(j.ctx, ep)
	case GrantClientAssertion:
		return j.client.ClientAssertion(j.ctx, ep, j.spec.Assertion)
	default:
		return j.client.Password(j.ctx, ep, j.username, j.password)
	}
}

// tokenOf turns a stored record back into a token.
func tokenOf(rec *store.Record) *oauth.Token {
	return &oauth.Token{Token: rec.Token, RefreshToken: rec.RefreshToken}
}
