package actors

import (
	"strconv"

	"github.com/tokenbroker/tokenbroker"
)

// Known reports whether name is a named credential the Router serves now.
// The HTTP gateway's /events asks it to tell an unknown credential (404)
// from one that merely holds no token yet.
func (r *Router) Known(name string) bool { return r.lookup(name) != nil }

// Current returns the token the named credential name holds now, as the
// refreshed event that a stream of its events starts with, and true; or
// false when name is not a named credential, holds no token or holds an
// expired one. Username/password credentials are never offered: their
// tokens belong to whoever brings the password.
//
// The event has no event_id (the caller gives it one) and the action of a
// cache hit, since that is what handing over a held token is. Its
// refreshed_at is when the IdP issued the token (expiry less lifetime),
// as near as the snapshot tells.
//
// It reads the published snapshot as a cache hit does: no lock, no message
// to the actor, so it never blocks; and it does not stamp the snapshot as
// used, since a stream watching a credential is not a caller asking for it.
// The event holds the access token: never log it.
func (r *Router) Current(name string) (tokenbroker.RefreshedEvent, bool) {
	n := r.lookup(name)
	if n == nil {
		return tokenbroker.RefreshedEvent{}, false
	}
	s := r.cells.snapshot(n.key)
	now := r.deps.now()
	if s == nil || !now.Before(s.tok.Expiry) {
		return tokenbroker.RefreshedEvent{}, false
	}
	issued := now
	if s.tok.Lifetime > 0 {
		issued = s.tok.Expiry.Add(-s.tok.Lifetime)
	}
	return tokenbroker.RefreshedEvent{
		CredentialID: s.id,
		AccessToken:  s.tok.AccessToken,
		TokenType:    s.tok.TokenType,
		ExpiresOn:    strconv.FormatInt(s.tok.Expiry.Unix(), 10),
		ExpiresIn:    s.tok.ExpiresIn(now),
		Action:       tokenbroker.ActionExisting,
		RefreshedAt:  issued.UTC(),
	}, true
}
