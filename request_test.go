package tokenbroker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name string
		body string
		want tokenbroker.Request
		code int    // 0: valid
		says string // in the error description
	}{
		{name: "username and password", body: `{"username":"u@x","password":"p"}`, want: tokenbroker.Request{Username: "u@x", Password: "p"}},
		{name: "named credential with options", body: `{"credential":"crm","force_refresh":true,"min_ttl":300}`, want: tokenbroker.Request{Credential: "crm", ForceRefresh: true, MinTTL: 300}},
		{name: "unknown fields are ignored", body: `{"credential":"crm","client":"v1"}`, want: tokenbroker.Request{Credential: "crm"}},
		{name: "empty", body: ``, code: 400, says: "empty request"},
		{name: "white space", body: " \n", code: 400, says: "empty request"},
		{name: "not an object", body: `["crm"]`, code: 400, says: "expected a JSON object"},
		{name: "truncated", body: `{"credential":"crm"`, code: 400, says: "malformed JSON"},
		{name: "trailing garbage", body: `{"credential":"crm"} x`, code: 400, says: "malformed JSON"},
		{name: "wrong type", body: `{"credential":7}`, code: 400, says: `field "credential" must be a string`},
		{name: "min_ttl as string", body: `{"credential":"c","min_ttl":"60"}`, code: 400, says: `"min_ttl" must be a whole number`},
		{name: "min_ttl fractional", body: `{"credential":"c","min_ttl":1.5}`, code: 400, says: `"min_ttl" must be a whole number`},
		{name: "force_refresh as string", body: `{"credential":"c","force_refresh":"yes"}`, code: 400, says: `"force_refresh" must be true or false`},
		{name: "neither", body: `{}`, code: 400, says: "missing username and password, or credential"},
		{name: "both", body: `{"credential":"c","username":"u","password":"p"}`, code: 400, says: "not both"},
		{name: "username without password", body: `{"username":"u"}`, code: 400, says: "missing password"},
		{name: "password without username", body: `{"password":"p"}`, code: 400, says: "password given without username"},
		{name: "password with credential", body: `{"credential":"c","password":"p"}`, code: 400, says: "password goes with username"},
		{name: "negative min_ttl", body: `{"credential":"c","min_ttl":-1}`, code: 400, says: "min_ttl must be between"},
		{name: "absurd min_ttl", body: `{"credential":"c","min_ttl":31536000}`, code: 400, says: "min_ttl must be between"},
		{name: "huge field", body: `{"credential":"` + strings.Repeat("c", tokenbroker.MaxFieldBytes+1) + `"}`, code: 400, says: "over 4096 bytes"},
		{name: "invalid UTF-8", body: "{\"username\":\"\xc3\x28\",\"password\":\"p\"}", code: 400, says: "UTF-8"},
		{name: "oversized", body: `{"credential":"` + strings.Repeat("c", tokenbroker.MaxRequestBytes) + `"}`, code: 413, says: "over the limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tokenbroker.DecodeRequest([]byte(tc.body))
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			var e *tokenbroker.Error
			if !errors.As(err, &e) || e.Code != tc.code || e.OAuth != "invalid_request" || !strings.Contains(e.Description, tc.says) {
				t.Fatalf("got %v, want %d containing %q", err, tc.code, tc.says)
			}
			if got != (tokenbroker.Request{}) {
				t.Fatalf("a refused request decoded to %+v", got)
			}
		})
	}
}

func TestDecodeErrorsNeverEchoThePassword(t *testing.T) {
	for _, body := range []string{
		`{"username":"u","password":"hunter2-secret","min_ttl":"x"}`,
		`{"username":"u","password":"hunter2-secret","credential":"c"}`,
		`{"username":"u","password":"hunter2-secret"`,
	} {
		_, err := tokenbroker.DecodeRequest([]byte(body))
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("%s: %v", body, err)
		}
	}
}

// A refusal names what is wrong, never what was sent: a 60 KB value in the
// wrong place once came back twice (description and header), a 120 KB
// answer to a 60 KB request. Every field, and the document itself, gets a
// value of each kind it does not take, padded to 60 KB.
func TestDecodeErrorsStaySmall(t *testing.T) {
	const size = 60 << 10
	pad := strings.Repeat("7", size)
	values := map[string]string{
		"a string":   `"` + pad + `"`,
		"a number":   pad,        // out of int64's range
		"a fraction": "1." + pad, // not a whole number
		"an array":   `[` + strings.Repeat("1,", size/2) + `1]`,
		"an object":  `{"x":"` + pad + `"}`,
		"a boolean":  `true` + strings.Repeat(" ", size), // a boolean with room to spare
	}
	wrong := map[string][]string{
		"username":      {"a number", "a fraction", "an array", "an object", "a boolean"},
		"password":      {"a number", "a fraction", "an array", "an object", "a boolean"},
		"credential":    {"a number", "a fraction", "an array", "an object", "a boolean"},
		"force_refresh": {"a string", "a number", "a fraction", "an array", "an object"},
		"min_ttl":       {"a string", "a number", "a fraction", "an array", "an object", "a boolean"},
	}
	check := func(t *testing.T, body, says string) {
		t.Helper()
		if len(body) > tokenbroker.MaxRequestBytes {
			t.Fatalf("the test's body is %d bytes, over the limit: it would test the 413 instead", len(body))
		}
		_, err := tokenbroker.DecodeRequest([]byte(body))
		var e *tokenbroker.Error
		if !errors.As(err, &e) || e.Code != 400 {
			t.Fatalf("got %v, want a 400", err)
		}
		if reply := tokenbroker.EncodeError(e); len(reply) > 512 || !strings.Contains(string(reply), says) {
			t.Fatalf("a %d-byte request got a %d-byte reply, want under 512 bytes naming %s: %.300s", len(body), len(reply), says, reply)
		}
	}
	for field, kinds := range wrong {
		for _, kind := range kinds {
			t.Run(field+" as "+kind, func(t *testing.T) {
				check(t, `{"`+field+`":`+values[kind]+`}`, `\"`+field+`\"`)
			})
		}
	}
	for kind, v := range values {
		if kind == "an object" {
			continue
		}
		t.Run("document as "+kind, func(t *testing.T) { check(t, v, "expected a JSON object") })
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"username":"u@x","password":"p"}`, `{"credential":"crm","force_refresh":true,"min_ttl":300}`,
		`{}`, `[]`, `null`, `{"min_ttl":1e400}`, `{"username":"\ud800","password":"p"}`, "\xff", `{"credential":"a","credential":"b"}`,
		`{"credential":"c","min_ttl":` + strings.Repeat("9", 400) + `}`, `{"min_ttl":1.` + strings.Repeat("5", 400) + `}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := tokenbroker.DecodeRequest(data)
		if err != nil {
			var e *tokenbroker.Error
			if !errors.As(err, &e) || (e.Code != 400 && e.Code != 413) {
				t.Fatalf("error %v is not a 400 or 413", err)
			}
			// Fixed words and numbers only: a description that grows with
			// the input quotes it.
			if len(e.Description) > 160 {
				t.Fatalf("a %d-byte request got a %d-byte description: %.200s", len(data), len(e.Description), e.Description)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded request does not validate: %v", err)
		}
		if r.IsPassword() == (r.Credential != "") {
			t.Fatalf("decoded request is neither or both kinds: %+v", r)
		}
	})
}

func TestCachedReplyMatchesTheEncodedReply(t *testing.T) {
	expiry := time.Unix(1795870800, 0)
	now := expiry.Add(-1234500 * time.Millisecond)
	c := tokenbroker.NewCachedReply("u-0123", &tokenbroker.Token{AccessToken: `tok"en\with<chars>`, TokenType: "Bearer", Expiry: expiry})
	want, _ := json.Marshal(tokenbroker.NewReply("u-0123", &tokenbroker.Token{AccessToken: `tok"en\with<chars>`, TokenType: "Bearer", Expiry: expiry}, tokenbroker.ActionExisting, now))
	if got := c.AppendTo(nil, tokenbroker.ActionExisting, now); string(got) != string(want) {
		t.Fatalf("cached reply\n got %s\nwant %s", got, want)
	}
	if got := c.AppendTo(nil, tokenbroker.ActionExisting, expiry.Add(time.Hour)); !strings.Contains(string(got), `"expires_in":0,`) {
		t.Fatalf("an expired token's expires_in must be 0: %s", got)
	}
	if n := len(c.AppendTo(nil, tokenbroker.ActionExisting, now)); n > c.Len() {
		t.Fatalf("Len %d under the encoded length %d", c.Len(), n)
	}
	// Body: the same bytes within a second, the next second's a second on.
	// The first caller of a second gets a body of its own; the second
	// caller's is kept, and shared with the rest of the second.
	first, second := c.Body(tokenbroker.ActionExisting, now), c.Body(tokenbroker.ActionExisting, now.Add(100*time.Millisecond))
	if string(first) != string(want) || string(second) != string(want) || &c.Body(tokenbroker.ActionExisting, now.Add(200*time.Millisecond))[0] != &second[0] {
		t.Fatal("Body does not share the second's reply")
	}
	next := c.Body(tokenbroker.ActionExisting, now.Add(time.Second))
	if want, _ := json.Marshal(tokenbroker.NewReply("u-0123", &tokenbroker.Token{AccessToken: `tok"en\with<chars>`, TokenType: "Bearer", Expiry: expiry}, tokenbroker.ActionExisting, now.Add(time.Second))); string(next) != string(want) {
		t.Fatalf("next second: %s", next)
	}
}

// Every action, and a token type JSON must escape, come out of the cached
// reply exactly as encoding/json writes the Reply.
func TestCachedReplyCarriesEveryAction(t *testing.T) {
	tok := &tokenbroker.Token{AccessToken: "eyJ0.eyJ1.sig", TokenType: `pop"<&>`, Expiry: time.Unix(1795870800, 0)}
	now := tok.Expiry.Add(-time.Hour)
	c := tokenbroker.NewCachedReply("crm-prod", tok)
	for _, action := range []string{tokenbroker.ActionNew, tokenbroker.ActionExisting, tokenbroker.ActionRefreshed, tokenbroker.ActionReplacedExpired} {
		want, _ := json.Marshal(tokenbroker.NewReply("crm-prod", tok, action, now))
		if got := c.AppendTo(nil, action, now); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", action, got, want)
		}
		if got := c.Body(action, now); string(got) != string(want) {
			t.Errorf("%s: Body\n got %s\nwant %s", action, got, want)
		}
		if n := len(want); n > c.Len() {
			t.Errorf("%s: Len %d under the encoded length %d", action, c.Len(), n)
		}
	}
	// A body kept for one action is never handed out for another.
	c.Body(tokenbroker.ActionNew, now)
	c.Body(tokenbroker.ActionNew, now)
	if got := c.Body(tokenbroker.ActionExisting, now); !strings.Contains(string(got), tokenbroker.ActionExisting) {
		t.Errorf("Body for another action within the second: %s", got)
	}
}

func TestReplyKeepsTheOriginalFieldsFirst(t *testing.T) {
	b, _ := json.Marshal(tokenbroker.NewReply("c", &tokenbroker.Token{AccessToken: "t", TokenType: "Bearer", Expiry: time.Unix(100, 0)}, tokenbroker.ActionNew, time.Unix(40, 0)))
	want := `{"accesstoken":"t","expires_on":"100","action":"retrieved new token","token_type":"Bearer","expires_in":60,"credential_id":"c"}`
	if string(b) != want {
		t.Fatalf("got %s", b)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := tokenbroker.Secret("hunter2")
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "password", s, "req", tokenbroker.Request{Username: "u", Password: s})
	j, _ := json.Marshal(struct{ P tokenbroker.Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), buf.String(), string(j),
		fmt.Sprintf("%+v", tokenbroker.Request{Password: s})} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Fatal("Reveal")
	}
}

// The hand-written fast path must accept exactly what encoding/json
// accepts, with the same result, or step aside.
func FuzzDecodeFastMatchesJSON(f *testing.F) {
	for _, seed := range []string{
		`{"username":"u@x","password":"p"}`, `{"credential":"crm","force_refresh":true,"min_ttl":300}`,
		`{"Credential":"crm"}`, `{"credential":"a","credential":"b"}`, `{"x":1,"credential":"c"}`,
		`{"min_ttl":-0}`, `{"min_ttl":007}`, `{"credential":"\u00e9"}`, ` { } `, `{"credential":null}`,
		`{"min_ttl":9223372036854775807}`, `{"force_refresh":false,"credential":"c"}`, `{"a":"b",}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := tokenbroker.DecodeFastForTest(data)
		if !ok {
			return
		}
		var slow tokenbroker.Request
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", data, err)
		}
		if fast != slow {
			t.Fatalf("%q: fast %+v, encoding/json %+v", data, fast, slow)
		}
	})
}

func TestCachedReplySharesTheAccessToken(t *testing.T) {
	c := tokenbroker.NewCachedReply("app", &tokenbroker.Token{AccessToken: "eyJ0.eyJ1.sig", TokenType: "Bearer", Expiry: time.Unix(100, 0)})
	if got := c.AccessToken("eyJ0.eyJ1.sig"); got != "eyJ0.eyJ1.sig" {
		t.Fatalf("got %q", got)
	}
	// A token the JSON encoding changes is returned as given.
	c = tokenbroker.NewCachedReply("app", &tokenbroker.Token{AccessToken: `a"b`, TokenType: "Bearer", Expiry: time.Unix(100, 0)})
	if got := c.AccessToken(`a"b`); got != `a"b` {
		t.Fatalf("got %q", got)
	}
}

func TestBodyMatchesAppendTo(t *testing.T) {
	expiry := time.Unix(1795870800, 0)
	now := expiry.Add(-99500 * time.Millisecond)
	c := tokenbroker.NewCachedReply("app", &tokenbroker.Token{AccessToken: "eyJ0.eyJ1.sig", TokenType: "Bearer", Expiry: expiry})
	want := c.AppendTo(nil, tokenbroker.ActionExisting, now)
	for i := 0; i < 3; i++ { // the first builds it, the second keeps it, the third shares it
		if got := c.Body(tokenbroker.ActionExisting, now.Add(time.Duration(i)*100*time.Millisecond)); string(got) != string(want) {
			t.Fatalf("call %d: %s", i, got)
		}
	}
	if got := c.Body(tokenbroker.ActionExisting, now.Add(time.Second)); string(got) != string(c.AppendTo(nil, tokenbroker.ActionExisting, now.Add(time.Second))) {
		t.Fatalf("next second: %s", got)
	}
	buf := make([]byte, 0, 1024)
	if allocs := testing.AllocsPerRun(100, func() { c.AppendTo(buf[:0], tokenbroker.ActionExisting, now) }); allocs != 0 {
		t.Fatalf("%v allocations with a reused buffer", allocs)
	}
}

func TestDecodeNamedRequest(t *testing.T) {
	for _, tc := range []struct {
		body string
		want tokenbroker.Request // zero Credential: refused with 400
	}{
		{"", tokenbroker.Request{Credential: "crm-prod"}},
		{"  \n", tokenbroker.Request{Credential: "crm-prod"}},
		{"{}", tokenbroker.Request{Credential: "crm-prod"}},
		{`{"force_refresh":true,"min_ttl":300}`, tokenbroker.Request{Credential: "crm-prod", ForceRefresh: true, MinTTL: 300}},
		{`{"credential":"crm-prod"}`, tokenbroker.Request{Credential: "crm-prod"}},
		{`{"credential":"other"}`, tokenbroker.Request{}},
		{`{"username":"u@x","password":"p"}`, tokenbroker.Request{}},
		{`{"password":"p"}`, tokenbroker.Request{}},
		{`{"min_ttl":-1}`, tokenbroker.Request{}},
		{`{"credential":`, tokenbroker.Request{}},
		{`[]`, tokenbroker.Request{}},
	} {
		got, err := tokenbroker.DecodeNamedRequest([]byte(tc.body), "crm-prod")
		switch {
		case tc.want.Credential == "" && (err == nil || tokenbroker.ErrorCode(err) != tokenbroker.CodeInvalidRequest):
			t.Errorf("%q: %+v, %v; want a 400", tc.body, got, err)
		case tc.want.Credential != "" && (err != nil || got != tc.want):
			t.Errorf("%q: %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
	if _, err := tokenbroker.DecodeNamedRequest(make([]byte, tokenbroker.MaxRequestBytes+1), "c"); tokenbroker.ErrorCode(err) != tokenbroker.CodeTooLarge {
		t.Errorf("oversized body: %v, want a 413", err)
	}
}
