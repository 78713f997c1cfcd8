package actors

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/tokenbroker/tokenbroker"
)

// Keyring derives the broker's keyed hashes from one master key: the opaque
// credential_id of a username, and the verifier of a password. Both are
// HMAC-SHA256 under subkeys derived with HKDF, so neither a credential_id nor
// a verifier reveals anything without the key, and the key never leaves the
// process.
type Keyring struct {
	idKey       []byte
	verifierKey []byte
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
	return &Keyring{idKey: idKey, verifierKey: verifierKey}, nil
}

// UserCredentialID returns the credential_id of username under profile: "u-"
// and 32 hex digits, a valid NATS subject token that reveals nothing of the
// username.
func (k *Keyring) UserCredentialID(profile, username string) string {
	m := hmac.New(sha256.New, k.idKey)
	m.Write([]byte(profile))
	m.Write([]byte{0})
	m.Write([]byte(username))
	return "u-" + hex.EncodeToString(m.Sum(nil)[:16])
}

// Verifier returns the verifier of password for credentialID. Binding the id
// in means equal passwords of two users have unrelated verifiers.
func (k *Keyring) Verifier(credentialID string, password tokenbroker.Secret) Verifier {
	m := hmac.New(sha256.New, k.verifierKey)
	m.Write([]byte(credentialID))
	m.Write([]byte{0})
	m.Write([]byte(password.Reveal()))
	var v Verifier
	m.Sum(v[:0])
	return v
}
