package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// keySize is the size of a master key: the 32 bytes of TOKENBROKER_KEY.
const keySize = 32

// Key derivation labels. Changing one makes every stored record unreadable,
// so they carry a version to bump deliberately.
const (
	encryptionInfo = "tokenbroker state v1"
	keyIDMessage   = "tokenbroker key-id v1"
)

// Keys holds the encryption keys of the store: the current key, which
// encrypts every write, and any previous keys, which only decrypt. Each key
// is known by a short key id stored in clear beside each record, so that a
// rotated key can still read old records and a wrong key is recognised
// before anything is decrypted.
//
// A Keys is immutable and safe for concurrent use.
type Keys struct {
	keys []aeadKey // keys[0] is the current key
}

// aeadKey is one derived encryption key.
type aeadKey struct {
	id   string
	aead cipher.AEAD
}

// NewKeys derives the store's keys from 32-byte master keys: current
// encrypts and decrypts, previous (older keys being rotated out) only
// decrypt. The master is the same TOKENBROKER_KEY that the actors use for
// keyed hashes, so the AES-256-GCM key is derived from it with HKDF-SHA256
// (info "tokenbroker state v1") and the master itself never encrypts.
//
// The key id of a master is the first 8 bytes, in hex, of
// HMAC-SHA256(master, "tokenbroker key-id v1"): one-way, so it names the key
// without revealing anything of it. Neither master is retained.
func NewKeys(current []byte, previous ...[]byte) (*Keys, error) {
	k := &Keys{}
	for i, master := range append([][]byte{current}, previous...) {
		if len(master) != keySize {
			what := "current key"
			if i > 0 {
				what = fmt.Sprintf("previous key %d", i)
			}
			return nil, fmt.Errorf("store: %s must be %d bytes, got %d", what, keySize, len(master))
		}
		id := KeyID(master)
		if slices.ContainsFunc(k.keys, func(a aeadKey) bool { return a.id == id }) {
			continue // the same key given twice (for example current also listed as previous)
		}
		enc, err := hkdf.Key(sha256.New, master, nil, encryptionInfo, keySize)
		if err != nil {
			return nil, fmt.Errorf("store: derive key: %w", err)
		}
		block, err := aes.NewCipher(enc)
		clear(enc) // the cipher keeps its own expanded copy
		if err != nil {
			return nil, fmt.Errorf("store: new cipher: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("store: new GCM: %w", err)
		}
		k.keys = append(k.keys, aeadKey{id: id, aead: aead})
	}
	return k, nil
}

// KeyID returns the key id of a master key: 16 hex digits, the first 8
// bytes of HMAC-SHA256(master, "tokenbroker key-id v1"). Operators can
// compare it with the key id in a start-up error to tell which key wrote
// the records.
func KeyID(master []byte) string {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(keyIDMessage))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// ID returns the key id of the current key.
func (k *Keys) ID() string { return k.keys[0].id }

// IDs returns the key ids of all keys, the current one first.
func (k *Keys) IDs() []string {
	ids := make([]string, len(k.keys))
	for i, a := range k.keys {
		ids[i] = a.id
	}
	return ids
}

// envelopeVersion is the only envelope version this code writes and reads.
const envelopeVersion = 1

// maxEnvelope bounds what decodeEnvelope parses: a token record is a few
// kilobytes, and a bigger value is not one of ours.
const maxEnvelope = 1 << 20

// envelope is the stored form of a record: the format version, the id of
// the key that encrypted it, the GCM nonce and the ciphertext (with its
// tag). Nothing in it is secret. []byte fields encode as standard base64.
type envelope struct {
	V   int    `json:"v"`
	KID string `json:"kid"`
	N   []byte `json:"n"`
	C   []byte `json:"c"`
}

// decodeEnvelope parses and checks a stored value. Every failure wraps
// ErrCorrupt: the value is not an envelope this code can open.
func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) > maxEnvelope {
		return e, fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(b))
	}
	if err := json.Unmarshal(b, &e); err != nil {
		// The JSON error quotes at most a token of the input, and the input
		// is an envelope, which holds nothing secret in clear.
		return e, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch {
	case e.V != envelopeVersion:
		return e, fmt.Errorf("%w: envelope version %d, want %d", ErrCorrupt, e.V, envelopeVersion)
	case !validKeyID(e.KID):
		return e, fmt.Errorf("%w: malformed key id", ErrCorrupt)
	case len(e.N) != 12:
		return e, fmt.Errorf("%w: nonce of %d bytes", ErrCorrupt, len(e.N))
	case len(e.C) < 16:
		return e, fmt.Errorf("%w: ciphertext of %d bytes", ErrCorrupt, len(e.C))
	}
	return e, nil
}

// validKeyID reports whether s has the shape of a key id: 16 lowercase hex
// digits.
func validKeyID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// aad binds a ciphertext to where it is stored: a record copied to another
// credential id or another bucket fails authentication instead of handing
// one credential's token to another.
func aad(bucket, credentialID string) []byte {
	return []byte(bucket + "\x00" + credentialID)
}

// seal encrypts plaintext for credentialID in bucket with the current key
// and returns the envelope to store.
func (k *Keys) seal(bucket, credentialID string, plaintext []byte) ([]byte, error) {
	cur := k.keys[0]
	nonce := make([]byte, cur.aead.NonceSize())
	// A random 96-bit nonce per write: with far fewer than 2^32 writes per
	// key the chance of a repeat is negligible.
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("store: draw nonce: %w", err)
	}
	ct := cur.aead.Seal(nil, nonce, plaintext, aad(bucket, credentialID))
	return json.Marshal(envelope{V: envelopeVersion, KID: cur.id, N: nonce, C: ct})
}

// open decrypts a stored value of credentialID in bucket and returns the
// plaintext and the index of the key that opened it (0 is the current key,
// higher ones are previous keys). It returns ErrWrongKey when no key has the
// envelope's key id, and ErrCorrupt when the value is not an envelope or
// fails authentication. The caller must clear the returned plaintext.
func (k *Keys) open(bucket, credentialID string, value []byte) ([]byte, int, error) {
	e, err := decodeEnvelope(value)
	if err != nil {
		return nil, 0, err
	}
	i := k.keyFor(e.KID)
	if i < 0 {
		return nil, 0, &wrongKeyError{msg: fmt.Sprintf("record is encrypted with key id %s, not with any of the configured keys (%s)",
			e.KID, strings.Join(k.IDs(), ", "))}
	}
	pt, err := k.keys[i].aead.Open(nil, e.N, e.C, aad(bucket, credentialID))
	if err != nil {
		// The key id matched, so this is not a wrong key (short of a
		// 64-bit collision) but a damaged or misplaced value.
		return nil, 0, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return pt, i, nil
}

// keyFor returns the index of the key that kid names, or -1. A kid that
// differs from a key's id in one hex digit names that key too: the key id
// is not authenticated, so a damaged digit (a flipped bit on disk) must not
// make a record look like another key's, which would count toward refusing
// to start. The ciphertext still has to authenticate under the key, and two
// distinct keys' ids agree in 15 of 16 digits with a chance of about 1e-17.
func (k *Keys) keyFor(kid string) int {
	for i, a := range k.keys {
		if a.id == kid {
			return i
		}
	}
	for i, a := range k.keys {
		if oneDigitApart(a.id, kid) {
			return i
		}
	}
	return -1
}

// oneDigitApart reports whether a and b have the same length and differ in
// exactly one position.
func oneDigitApart(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	diff := 0
	for i := range len(a) {
		if a[i] != b[i] {
			diff++
		}
	}
	return diff == 1
}

// wrongKeyError carries a message of its own and matches ErrWrongKey, so the
// message need not repeat the sentinel's.
type wrongKeyError struct{ msg string }

func (e *wrongKeyError) Error() string { return e.msg }
func (e *wrongKeyError) Unwrap() error { return ErrWrongKey }

// errNoKeys is returned by Open when Options.Keys is nil.
var errNoKeys = errors.New("store: Options.Keys is required")
