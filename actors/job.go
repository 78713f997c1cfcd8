package actors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// job is one acquisition of a token: how it is obtained, what the callers
// it answers are told, and, copied when it starts, everything it needs. It
// runs in a goroutine of its own, never touches the actor, and reports back
// with a jobDone, which carries the job's seq rather than the job: the
// actor keeps the job it waits for, and an inbox may keep a message
// longer than its handling.
//
// With a store, the job first takes the credential's lease, so that across
// all brokers exactly one calls the IdP. A broker that finds the lease held
// waits for the holder's record instead; the holder, once it has the lease,
// looks in the store first, in case another broker refreshed just before.
// A new token is written to the store before anyone is answered with it,
// so a crash at any point loses no usable refresh token.
type job struct {
	seq uint64 // its number among the actor's jobs, which its report carries
	gen uint64 // the credential's declaration it runs for (see credential.gen)
	// ctx ends when the Router stops or the credential is removed: a
	// removed credential's job must not store the token it was getting.
	ctx        context.Context
	grant      Grant
	action     string
	verifier   Verifier // user credentials: the verifier of the password it uses
	background bool     // started by the refresh timer, not by a caller
	claims     string   // the caller's claims challenge, "" for none
	// given, for GrantDeviceCode, are the tokens of a user's sign-in,
	// stored and installed as if the IdP had just sent them; onDone is
	// told once they are (or are not). See Router.Login.
	given  *oauth.Token
	onDone func(error)

	id       string // credential_id
	user     bool
	spec     *Spec
	username string
	rt       tokenbroker.Secret // the refresh token held when the job started
	held     Verifier           // the verifier of the token held when the job started
	expiry   time.Time          // of the token held when the job started; zero for none
	rev      uint64             // store revision of the token held when the job started
	d        *deps
	log      *slog.Logger
	// parent is the trace of the caller the job was started for, whose
	// span the job's spans hang under; nil for none (see startTrace).
	parent *tracing.Request
}

// run obtains the token, using password for a password grant. The password
// lives in this goroutine only, for the call.
func (j *job) run(password tokenbroker.Secret) jobDone {
	began := time.Now()
	endTrace := j.startTrace()
	d := j.obtain(password)
	d.seq, d.took = j.seq, time.Since(began)
	endTrace(&d)
	return d
}

func (j *job) obtain(password tokenbroker.Secret) jobDone {
	st := j.d.store
	if st == nil {
		tok, err := j.call(password)
		return jobDone{tok: tok, err: err}
	}
	for {
		lease, err := st.Acquire(j.ctx, j.id, j.d.owner)
		var held *store.LeaseHeldError
		switch {
		case errors.As(err, &held):
			if rec := j.awaitHolder(held); rec != nil {
				return jobDone{rec: rec}
			}
			if err := j.ctx.Err(); err != nil {
				return jobDone{err: err}
			}
			continue // the holder died: its lease has expired
		case err != nil:
			// The store is out of reach: serve callers all the same. Without
			// the lease another broker may call the IdP too; that is the price
			// of staying available.
			j.log.Warn("token store unavailable; calling the identity provider without a lease", "err", err)
			tok, err := j.call(password)
			return jobDone{tok: tok, err: err}
		}
		return j.withLease(lease, password)
	}
}

// withLease gets the token while holding the credential's lease.
func (j *job) withLease(lease *store.Lease, password tokenbroker.Secret) jobDone {
	st := j.d.store
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = lease.Release(ctx)
	}()
	if rec, err := st.Get(j.ctx, j.id); err == nil && j.acceptable(rec) {
		return jobDone{rec: rec} // another broker refreshed it just before
	}
	stop := j.keepRenewing(lease)
	tok, err := j.call(password)
	stop()
	if err != nil {
		return jobDone{err: err}
	}
	rev, perr := st.Put(j.ctx, j.record(tok))
	if perr != nil {
		j.log.Warn("could not store the new token; it is served from memory only", "err", perr)
	}
	return jobDone{tok: tok, rev: rev}
}

// keepRenewing renews the lease while the IdP call runs: the call, retries
// included, is bounded by IDP_TIMEOUT, which may be longer than LEASE_TTL.
func (j *job) keepRenewing(lease *store.Lease) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(j.d.store.LeaseTTL() / 3)
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
func (j *job) awaitHolder(held *store.LeaseHeldError) *store.Record {
	wait := max(held.ExpiresIn+500*time.Millisecond, time.Second)
	ctx, cancel := context.WithTimeout(j.ctx, wait)
	defer cancel()
	updates, err := j.d.store.Watch(ctx, j.id)
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
func (j *job) acceptable(rec *store.Record) bool {
	if rec == nil || rec.AccessToken == "" || rec.Revision <= j.rev || j.claims != "" || j.given != nil {
		// A claims challenge is met only by a token asked for with it, and
		// a user's fresh sign-in replaces whatever was stored.
		return false
	}
	if !rec.Expiry.After(j.d.now()) || !rec.Expiry.After(j.expiry) {
		return false
	}
	if j.user {
		var v Verifier
		return len(rec.Verifier) == len(v) && Verifier(rec.Verifier).Equal(j.verifier)
	}
	return true
}

// record is what the store keeps of tok: the newest refresh token, and for
// a user the verifier of the password that obtained it.
func (j *job) record(tok *oauth.Token) *store.Record {
	rec := &store.Record{CredentialID: j.id, Token: tok.Token, RefreshToken: tok.RefreshToken, ObtainedAt: j.d.now()}
	if rec.RefreshToken == "" && j.grant == grantRefresh {
		rec.RefreshToken = j.rt.Reveal() // the IdP did not rotate it
	}
	if j.user {
		v := j.held
		if j.grant != grantRefresh {
			v = j.verifier
		}
		rec.Verifier = v[:]
	}
	return rec
}

// call makes the IdP call itself, with the credential's secrets as they
// are now.
func (j *job) call(password tokenbroker.Secret) (*oauth.Token, error) {
	client, ctx := j.d.client, j.ctx
	ep := j.spec.Endpoint
	claims, err := oauth.MergeClaims(j.claims, j.spec.Capabilities)
	if err != nil { // the Router checked it: a backstop
		return nil, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest, "%s", err)
	}
	ep.Claims = claims
	if j.grant == GrantDeviceCode {
		if j.given != nil {
			return j.given, nil
		}
		// No refresh token, and none stored by another broker (the lease
		// holder looked): only a person can get one.
		return nil, loginNeeded(j.id)
	}
	if j.grant == GrantClientAssertion {
		if j.spec.AssertionFile != "" {
			return client.FederatedAssertion(ctx, ep, j.spec.AssertionFile)
		}
		return client.ClientAssertion(ctx, ep, j.spec.Assertion)
	}
	return j.withClientSecret(ep, func(ep oauth.Endpoint) (*oauth.Token, error) {
		switch j.grant {
		case grantRefresh:
			return client.Refresh(ctx, ep, j.rt)
		case GrantClientCredentials:
			return client.ClientCredentials(ctx, ep)
		}
		if j.user {
			return client.Password(ctx, ep, j.username, password)
		}
		return j.withOwnPassword(func(pw tokenbroker.Secret) (*oauth.Token, error) {
			return client.Password(ctx, ep, j.username, pw)
		})
	})
}

// withClientSecret runs do with the credential's client secret, and when
// the IdP refuses it as invalid_client with the secret file's other one,
// which is then preferred: during a rotation the file holds the old and
// the new secret, and only the IdP knows which it takes now.
func (j *job) withClientSecret(ep oauth.Endpoint, do func(ep oauth.Endpoint) (*oauth.Token, error)) (*oauth.Token, error) {
	sec := j.spec.Secrets
	if sec == nil {
		return do(ep)
	}
	l := sec.clients()
	if l == nil || len(*l) == 0 {
		return do(ep) // a public client
	}
	return tryEach(*l, tokenbroker.OAuthInvalidClient, func(v tokenbroker.Secret) (*oauth.Token, error) {
		ep.ClientSecret = v
		return do(ep)
	}, func(v tokenbroker.Secret) {
		j.log.Warn("the IdP refused the first client secret of the file and took the second; it is used from now on")
		prefer(&sec.client, l, v)
	})
}

// withOwnPassword is withClientSecret for a named password credential's
// own password, which the IdP refuses as invalid_grant.
func (j *job) withOwnPassword(do func(pw tokenbroker.Secret) (*oauth.Token, error)) (*oauth.Token, error) {
	sec := j.spec.Secrets
	if sec == nil {
		return do(j.spec.Password)
	}
	l := sec.passwords()
	if l == nil || len(*l) == 0 {
		return do(j.spec.Password)
	}
	return tryEach(*l, tokenbroker.OAuthInvalidGrant, do, func(v tokenbroker.Secret) {
		j.log.Warn("the IdP refused the first password of the file and took the second; it is used from now on")
		prefer(&sec.password, l, v)
	})
}

// tryEach calls do with vals[0], and when the IdP refuses it with the
// OAuth error refused, once with vals[1]; worked is told when vals[1] did.
func tryEach(vals []tokenbroker.Secret, refused string, do func(tokenbroker.Secret) (*oauth.Token, error), worked func(tokenbroker.Secret)) (*oauth.Token, error) {
	tok, err := do(vals[0])
	if err == nil || len(vals) < 2 {
		return tok, err
	}
	if e := oauth.Classify(err); e.Code != tokenbroker.CodeRejected || e.OAuth != refused {
		return tok, err
	}
	tok, err = do(vals[1])
	if err == nil {
		worked(vals[1])
	}
	return tok, err
}
