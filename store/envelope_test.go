package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tokenbroker/tokenbroker"
)

// FuzzOpen feeds arbitrary stored values to the envelope decoder and the
// decryption behind Get: whatever is in the bucket, the result is a record
// or ErrCorrupt or ErrWrongKey, never a panic.
func FuzzOpen(f *testing.F) {
	keys, err := NewKeys(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		f.Fatal(err)
	}
	s := &Store{keys: keys, bucket: "b"}
	good, err := s.encode(&Record{CredentialID: "c", Token: tokenbroker.Token{AccessToken: "t"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("{}"))
	f.Add([]byte(`{"v":1,"kid":"0011223344556677","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA=="}`))
	f.Add([]byte(`{"v":1,"kid":"` + keys.ID() + `","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA=="}`))
	f.Add([]byte("null"))
	f.Add([]byte{0xff, 0x00})
	f.Fuzz(func(t *testing.T, value []byte) {
		if _, err := decodeEnvelope(value); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decodeEnvelope: %v does not wrap ErrCorrupt", err)
		}
		r, err := s.decode("c", value, 7)
		switch {
		case err == nil:
			if r.CredentialID != "c" || r.Revision != 7 {
				t.Fatalf("decoded %v", r)
			}
		case !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey):
			t.Fatalf("decode: %v is neither ErrCorrupt nor ErrWrongKey", err)
		}
	})
}

func TestKeyIDShape(t *testing.T) {
	id := KeyID(bytes.Repeat([]byte{1}, 32))
	if !validKeyID(id) {
		t.Fatalf("KeyID %q is not 16 hex digits", id)
	}
	if id == KeyID(bytes.Repeat([]byte{2}, 32)) {
		t.Fatal("two keys share a key id")
	}
}
