package store

// Seal and Open lend the token state's envelopes to other buckets that keep
// secrets, such as the credential registry, so that every secret the
// brokers store is encrypted the same way, under the same TOKENBROKER_KEY,
// rotates with it, and is bound to where it is stored.

// Seal encrypts plaintext with the current key for key in bucket and
// returns the envelope to store as the key's value: the key id, a random
// nonce and the AES-256-GCM ciphertext, which authenticates bucket and key
// as additional data, so that a value copied to another key or bucket fails
// to open rather than reading as that key's. Nothing of plaintext is in
// the envelope in clear; the caller still owns plaintext and should clear
// it once sealed.
func (k *Keys) Seal(bucket, key string, plaintext []byte) ([]byte, error) {
	return k.seal(bucket, key, plaintext)
}

// Open decrypts value, stored as key in bucket, and returns its plaintext
// and whether a previous key (rather than the current one) opened it: such
// a value should be sealed again under the current key before the previous
// key is retired. It returns an error matching ErrWrongKey when none of the
// keys has the envelope's key id, and ErrCorrupt when value is not an
// envelope or fails authentication (damaged, or stored under another key or
// bucket than it was sealed for). Errors name key ids and what is wrong,
// never any plaintext. The caller owns the plaintext and should clear it
// after use.
func (k *Keys) Open(bucket, key string, value []byte) (plaintext []byte, usedPrevious bool, err error) {
	pt, i, err := k.open(bucket, key, value)
	if err != nil {
		return nil, false, err
	}
	return pt, i > 0, nil
}
