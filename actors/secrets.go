package actors

import (
	"slices"
	"sync/atomic"

	"github.com/tokenbroker/tokenbroker"
)

// Secrets are a credential's client secret and, for a named password
// credential, its service account's password, as their files hold them
// now. Each is one value, or two during a rotation (the file's two lines):
// the first is used, and when the IdP refuses it the other is tried once
// and, if it works, preferred from then on.
//
// A Spec points to its Secrets and every job reads them when it calls the
// IdP, so a rotated secret file takes effect at the next call of every
// credential that uses it (all the users of the default profile, say)
// without a message to any actor. Safe for concurrent use.
type Secrets struct {
	client   atomic.Pointer[[]tokenbroker.Secret]
	password atomic.Pointer[[]tokenbroker.Secret]
}

// NewSecrets returns Secrets holding the given values; zero values are
// left out.
func NewSecrets(clientSecret, nextClientSecret, password, nextPassword tokenbroker.Secret) *Secrets {
	s := &Secrets{}
	s.Set(clientSecret, nextClientSecret, password, nextPassword)
	return s
}

// Set replaces the values. Values the same as held, in either order, keep
// the order in which they are tried, so re-reading an unchanged file does
// not undo what a refusal taught.
func (s *Secrets) Set(clientSecret, nextClientSecret, password, nextPassword tokenbroker.Secret) {
	setList(&s.client, clientSecret, nextClientSecret)
	setList(&s.password, password, nextPassword)
}

func setList(p *atomic.Pointer[[]tokenbroker.Secret], first, next tokenbroker.Secret) {
	var l []tokenbroker.Secret
	for _, v := range []tokenbroker.Secret{first, next} {
		if !v.IsZero() && !slices.Contains(l, v) {
			l = append(l, v)
		}
	}
	if old := p.Load(); old != nil && sameSet(*old, l) {
		return
	}
	p.Store(&l)
}

func sameSet(a, b []tokenbroker.Secret) bool {
	if len(a) != len(b) {
		return false
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}

// clients returns the client secrets in the order to try them, and the
// list itself for prefer.
func (s *Secrets) clients() *[]tokenbroker.Secret { return s.client.Load() }

func (s *Secrets) passwords() *[]tokenbroker.Secret { return s.password.Load() }

// prefer puts v first in the list l was read as, unless the list has been
// replaced since (a file re-read), which then knows better.
func prefer(p *atomic.Pointer[[]tokenbroker.Secret], l *[]tokenbroker.Secret, v tokenbroker.Secret) {
	next := []tokenbroker.Secret{v}
	for _, o := range *l {
		if o != v {
			next = append(next, o)
		}
	}
	p.CompareAndSwap(l, &next)
}
