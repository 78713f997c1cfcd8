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
	out [sha256.Size]byte // Sum's destination: a caller's array would escape through hash.Hash
}

// sum returns the HMAC of a, a zero byte and b, and clears what it held.
func sum[A ~string | ~[]byte](k *keyedHash, a A, b string) (out [sha256.Size]byte) {
	k.buf = append(append(append(k.buf[:0], a...), 0), b...)
	k.h.Reset()
	k.h.Write(k.buf)
	out = [sha256.Size]byte(k.h.Sum(k.out[:0]))
	clear(k.buf)
	clear(k.out[:])
	k.h.Reset()
	return out
}

// userKey is a username's keyed hash, cut to 128 bits: the key of its cell
// in the Router and, in hex, its credential_id. Fixed-size and computed
// without allocating, so that a cache hit needs no string for it.
type userKey [16]byte

// userKey returns the userKey of username under profile.
func (k *Keyring) userKey(profile, username string) userKey {
	m := k.ids.Get().(*keyedHash)
	full := sum(m, profile, username)
	k.ids.Put(m)
	return userKey(full[:16])
}

// userIDLen is the length of a user's credential_id.
const userIDLen = 2 + 2*len(userKey{})

// appendID appends u's credential_id, "u-" and 32 hex digits, to dst.
func (u userKey) appendID(dst []byte) []byte {
	dst = append(dst, 'u', '-')
	return hex.AppendEncode(dst, u[:])
}

// id returns u's credential_id.
func (u userKey) id() string {
	var b [userIDLen]byte
	return string(u.appendID(b[:0]))
}

// UserCredentialID returns the credential_id of username under profile: "u-"
// and 32 hex digits, a valid NATS subject token that reveals nothing of the
// username.
func (k *Keyring) UserCredentialID(profile, username string) string {
	return k.userKey(profile, username).id()
}

// Verifier returns the verifier of password for credentialID. Binding the id
// in means equal passwords of two users have unrelated verifiers.
func (k *Keyring) Verifier(credentialID string, password tokenbroker.Secret) Verifier {
	return verifier(k, credentialID, password)
}

// userVerifier is Verifier for the credential of u, without building its id
// as a string.
func (k *Keyring) userVerifier(u userKey, password tokenbroker.Secret) Verifier {
	var b [userIDLen]byte
	return verifier(k, u.appendID(b[:0]), password)
}

func verifier[ID ~string | ~[]byte](k *Keyring, credentialID ID, password tokenbroker.Secret) Verifier {
	m := k.verifiers.Get().(*keyedHash)
	v := Verifier(sum(m, credentialID, password.Reveal())) // leaves nothing of the password behind
	k.verifiers.Put(m)
	return v
}
