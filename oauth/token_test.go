package oauth

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzPlainStringMatchesJSON holds the shortcut for plain strings equal to
// encoding/json on every JSON string it accepts. Its seeds run with the
// suite; `go test -fuzz FuzzPlainStringMatchesJSON ./oauth` explores more.
func FuzzPlainStringMatchesJSON(f *testing.F) {
	for _, s := range []string{`"eyJ0eXAi.eyJhdWQi.c2ln"`, `""`, `"a\"b"`, `"\u00e9"`, `"é"`, "\"\xff\xfe\"",
		`"tab\there"`, `"a\\b"`, `"\/"`, `3600`, `null`, `"`, `"unterminated`, ` "spaced" `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		if json.Unmarshal(raw, &want) != nil || !json.Valid(raw) {
			return // the shortcut only ever sees valid JSON values
		}
		if got, ok := plainString(raw); ok && got != want {
			t.Fatalf("plainString(%q) = %q, encoding/json %q", raw, got, want)
		}
	})
}

// BenchmarkParseTokenResponse reads an Azure AD v1 token response with an
// access token of a user token's typical size.
func BenchmarkParseTokenResponse(b *testing.B) {
	token := "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + strings.Repeat("eyJhdWQiOiJodHRwczovL2V4YW1wbGUifQ", 40) + ".c2ln"
	body := []byte(`{"token_type":"Bearer","scope":"user_impersonation","expires_in":"3599","ext_expires_in":"3599","expires_on":"1795870800","not_before":"1795867200","resource":"https://resource.example","access_token":"` + token + `","refresh_token":"0.AAAA` + strings.Repeat("r", 800) + `"}`)
	now := time.Unix(1795867201, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseTokenResponse(200, "application/json", body, now); err != nil {
			b.Fatal(err)
		}
	}
}
