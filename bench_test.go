package tokenbroker_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Hot-path benchmarks: what one cache hit costs before and after the
// Router, without NATS. Run with
//
//	go test -run '^$' -bench . -benchmem ./ ./actors ./messaging
//
// and see BENCHMARKS.md for the results and the end-to-end numbers.

// benchToken is a realistic access token: Azure AD's are JWTs of 1-2 KB;
// the fake IdP's about 400 bytes.
var benchToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9." +
	"eyJhdWQiOiJodHRwczovL3Jlc291cmNlLmV4YW1wbGUiLCJpc3MiOiJodHRwczovL3N0cy53aW5kb3dzLm5ldC9kZW1vLXRlbmFudC8iLCJpYXQiOjE3MDAwMDAwMDAsIm5iZiI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwLCJhcHBpZCI6ImJlbmNoIiwidGlkIjoiZGVtby10ZW5hbnQiLCJzdWIiOiJiZW5jaCIsInZlciI6IjEuMCJ9." +
	"c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2lnbmF0dXJl"

func BenchmarkDecodeRequest(b *testing.B) {
	bodies := []struct {
		name string
		body []byte
	}{
		{"named", []byte(`{"credential":"crm-prod"}`)},
		{"user", []byte(`{"username":"alice@contoso.example","password":"correct horse battery staple"}`)},
	}
	for _, bb := range bodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				if _, err := tokenbroker.DecodeRequest(bb.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCachedReplyAppend is the cache hit's reply: the pre-encoded
// reply completed with expires_in. "fresh-buffer" allocates the output as
// the Router does today; "reused-buffer" is the floor.
func BenchmarkCachedReplyAppend(b *testing.B) {
	now := time.Now()
	c := tokenbroker.NewCachedReply("crm-prod", &tokenbroker.Token{AccessToken: benchToken, TokenType: "Bearer", Expiry: now.Add(time.Hour)})
	b.Run("fresh-buffer", func(b *testing.B) {
		b.ReportAllocs()
		var out []byte
		for b.Loop() {
			out = c.AppendTo(make([]byte, 0, c.Len()), tokenbroker.ActionExisting, now)
		}
		b.SetBytes(int64(len(out)))
	})
	b.Run("reused-buffer", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, c.Len())
		for b.Loop() {
			buf = c.AppendTo(buf[:0], tokenbroker.ActionExisting, now)
		}
		b.SetBytes(int64(len(buf)))
	})
}

// BenchmarkNewReplyMarshal is the slow path, for contrast: a reply built and
// JSON-encoded per request, as the actor answers callers that waited.
func BenchmarkNewReplyMarshal(b *testing.B) {
	now := time.Now()
	exp := now.Add(time.Hour)
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		var err error
		out, err = json.Marshal(tokenbroker.NewReply("crm-prod", &tokenbroker.Token{AccessToken: benchToken, TokenType: "Bearer", Expiry: exp}, tokenbroker.ActionExisting, now))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(out)))
}
