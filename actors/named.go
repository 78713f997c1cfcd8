package actors

import (
	"context"
	"errors"
	"slices"

	"github.com/google/uuid"

	"github.com/tokenbroker/tokenbroker"
)

// namedSet is the named credentials a Router serves, replaced whole when
// one is added, changed or removed, so that a cache hit reads it with one
// atomic load and no lock. Changes are rare (an operator's put, a reload),
// hits are not.
type namedSet struct {
	byName map[string]*namedCredential
	order  []string // the order credentials were added in, for Status
}

// lookup returns the named credential called name, or nil.
func (r *Router) lookup(name string) *namedCredential { return r.named.Load().byName[name] }

// Named returns the specs of the named credentials served now, in the order
// they were added.
func (r *Router) Named() []Spec {
	set := r.named.Load()
	out := make([]Spec, 0, len(set.order))
	for _, name := range set.order {
		out = append(out, *set.byName[name].spec)
	}
	return out
}

// Put adds the named credential s, or replaces the one of its name. A
// replaced credential keeps its token when it still asks the same IdP for
// the same client, scope and user (a rotated certificate, a new threshold),
// and drops it (and its stored copy) otherwise, since the token then
// answers a question no longer asked. Requests see the change at once; the
// actor, if the credential is in memory, with its next message.
func (r *Router) Put(s Spec) error {
	if s.Name == "" {
		return errors.New("actors: a named credential needs a name")
	}
	sp := &s
	r.namedMu.Lock()
	old := r.named.Load()
	prev := old.byName[s.Name]
	next := &namedSet{byName: make(map[string]*namedCredential, len(old.byName)+1), order: old.order}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	n := &namedCredential{spec: sp}
	if prev != nil {
		n.key = prev.key
	} else {
		n.key = namedKey(r.nextNamed)
		r.nextNamed++
		next.order = append(slices.Clip(old.order), s.Name)
	}
	next.byName[s.Name] = n
	r.named.Store(next)
	r.namedMu.Unlock()
	if prev != nil {
		r.tell(n.key, respec{spec: sp, reset: !sameIdentity(prev.spec, sp)})
	}
	return nil
}

// Remove stops serving the named credential name: requests for it get a
// 404 from now on, and its actor, if in memory, answers its waiters so and
// stops. With final, the credential is gone for good rather than moved
// (the registry's rm, a reload that drops it): its stored token is deleted
// and <prefix>.failed.<name> tells its consumers, even when a removal that
// was not final stopped it already. It reports whether there was such a
// credential.
func (r *Router) Remove(ctx context.Context, name string, final bool) bool {
	r.namedMu.Lock()
	old := r.named.Load()
	prev := old.byName[name]
	if prev == nil {
		r.namedMu.Unlock()
		if final {
			r.forget(ctx, name) // stopped already, by a removal that was not final
		}
		return false
	}
	next := &namedSet{byName: make(map[string]*namedCredential, len(old.byName)), order: make([]string, 0, len(old.order))}
	for k, v := range old.byName {
		if k != name {
			next.byName[k] = v
		}
	}
	for _, k := range old.order {
		if k != name {
			next.order = append(next.order, k)
		}
	}
	r.named.Store(next)
	r.namedMu.Unlock()
	r.tell(prev.key, removed{})
	if final {
		r.forget(ctx, name)
	}
	return true
}

// forget deletes a removed credential's stored token and tells its
// consumers it is gone.
func (r *Router) forget(ctx context.Context, name string) {
	{
		if st := r.opts.Store; st != nil {
			if err := st.Delete(ctx, name); err != nil {
				r.deps.log.Warn("could not delete the stored token of a removed credential", "credential_id", name, "err", err)
			}
		}
		r.opts.Publisher.PublishFailed(tokenbroker.FailedEvent{
			EventID: uuid.NewString(), CredentialID: name, Error: tokenbroker.OAuthUnknownCredential,
			Description: "the credential was removed; ask an operator for another", At: r.deps.now().UTC(),
		})
	}
}

// tell sends m to the actor of key, if one is in memory and not leaving.
func (r *Router) tell(key cellKey, m any) {
	c, ok := r.cells.load(key)
	if !ok {
		return
	}
	c.mu.RLock()
	if !c.retired {
		r.opts.Engine.Send(c.pid, m)
	}
	c.mu.RUnlock()
}

// sameIdentity reports whether a token got with spec a answers what spec b
// asks: the same token endpoint, client, audience, grant and user.
func sameIdentity(a, b *Spec) bool {
	ea, eb := a.Endpoint, b.Endpoint
	return ea.TokenURL == eb.TokenURL && ea.ClientID == eb.ClientID && ea.Resource == eb.Resource &&
		ea.Scope == eb.Scope && a.Grant == b.Grant && a.Username == b.Username
}

// removedCredential is the answer to requests for a credential removed
// while they waited.
func removedCredential(name string) *tokenbroker.Error {
	return tokenbroker.Errorf(tokenbroker.CodeNotFound, tokenbroker.OAuthUnknownCredential, "no credential named %s", quote(name))
}
