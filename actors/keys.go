package actors

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"sync"

	"github.com/tokenbroker/tokenbroker"
)

// Keyring derives the broker's keyed hashes from one master key: the opaque
// credential_id of a username, and the verifier of a password. Both are
// HMAC-SHA256 under subkeys derived with HKDF, so neither a credential_id nor
// a verifier reveals anything without the key, and the key never leaves the
// process.
type Keyring struct {
	// Keyed hash states, reset and reused: hmac.New on every request was
	// most of the cost of a username's cache hit.
	ids       sync.Pool
	verifiers sync.Pool
}

// Verifier is the keyed hash of a password. The broker keeps it instead of
// the password to decide whether a request may be served from cache.
type Verifier [sha256.Size]byte

// Equal compares two verifiers in constant time.
func (v Verifier) Equal(o Verifier) bool { return subtle.ConstantTimeCompare(v[:], o[:]) == 1 }

// NewKeyring derives a Keyring from master, which must be 32 bytes. A nil
// master draws a random one: credential ids then change at every start,
// which is harmless until state is kept across restarts.
func NewKeyring(master []byte) (*Keyring, error) {
	if master == nil {
		master = make([]byte, 32)
		if _, err := rand.Read(master); err != nil {
			return nil, fmt.Errorf("actors: draw key: %w", err)
		}
	}
	if len(master) != 32 {
		return nil, fmt.Errorf("actors: key must be 32 bytes, got %d", len(master))
	}
	idKey, err := hkdf.Key(sha256.New, master, nil, "tokenbroker credential-id v1", 32)
	if err != nil {
		return nil, err
	}
	verifierKey, err := hkdf.Key(sha256.New, master, nil, "tokenbroker password-verifier v1", 32)
	if err != nil {
		return nil, err
	}
	k := &Keyring{}
	k.ids.New = func() any { return &keyedHash{h: hmac.New(sha256.New, idKey)} }
	k.verifiers.New = func() any { return &keyedHash{h: hmac.New(sha256.New, verifierKey)} }
	return k, nil
}

// keyedHash is a pooled HMAC state with a buffer to assemble its input in,
// since hash.Hash takes only bytes and converting each string allocates.
type keyedHash struct {
	h   hash.Hash
	buf []byte
}

// sum returns the HMAC of a, a zero byte and b, and clears what it held.
func (k *keyedHash) sum(a, b string, out []byte) []byte {
	k.buf = append(append(append(k.buf[:0], a...), 0), b...)
	k.h.Reset()
	k.h.Write(k.buf)
	out = k.h.Sum(out)
	clear(k.buf)
	k.h.Reset()
	return out
}

// UserCredentialID returns the credential_id of username under profile: "u-"
// and 32 hex digits, a valid NATS subject token that reveals nothing of the
// username.
func (k *Keyring) UserCredentialID(profile, username string) string {
	m := k.ids.Get().(*keyedHash)
	var sum [sha256.Size]byte
	m.sum(profile, username, sum[:0])
	k.ids.Put(m)
	var id [2 + 32]byte
	id[0], id[1] = 'u', '-'
	hex.Encode(id[2:], sum[:16])
	return string(id[:])
}

// Verifier returns the verifier of password for credentialID. Binding the id
// in means equal passwords of two users have unrelated verifiers.
func (k *Keyring) Verifier(credentialID string, password tokenbroker.Secret) Verifier {
	m := k.verifiers.Get().(*keyedHash)
	var v Verifier
	m.sum(credentialID, password.Reveal(), v[:0]) // leaves nothing of the password behind
	k.verifiers.Put(m)
	return v
}
