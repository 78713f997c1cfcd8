package oauth

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
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

// referenceDecode is the decode tokenJSON replaced, kept as the reference it
// must match: the body into a map of raw values, then each field on its own
// with encoding/json and no shortcut.
func referenceDecode(body []byte) (tokenJSON, string) {
	var t tokenJSON
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return t, notAnObject(body, err)
	}
	if m == nil {
		return t, "body is JSON null, not an object"
	}
	str := func(key string) jsonString {
		raw, ok := m[key]
		if !ok {
			return jsonString{}
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return jsonString{bad: true}
		}
		return jsonString{s: s}
	}
	secs := func(key string) jsonSeconds {
		raw, ok := m[key]
		if !ok || string(raw) == "null" {
			return jsonSeconds{}
		}
		text := string(raw)
		if raw[0] == '"' {
			if json.Unmarshal(raw, &text) != nil {
				return jsonSeconds{bad: true}
			}
			if text = strings.TrimSpace(text); text == "" {
				return jsonSeconds{}
			}
		}
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return jsonSeconds{v: n, set: true}
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
			return jsonSeconds{bad: true}
		}
		return jsonSeconds{v: int64(f), set: true}
	}
	t.AccessToken, t.TokenType, t.RefreshToken = str("access_token"), str("token_type"), str("refresh_token")
	t.ExpiresIn, t.ExpiresOn, t.ExtExpiresIn = secs("expires_in"), secs("expires_on"), secs("ext_expires_in")
	t.Resource, t.Error, t.ErrorDescription = str("resource"), str("error"), str("error_description")
	t.ErrorURI, t.TraceID, t.CorrelationID = str("error_uri"), str("trace_id"), str("correlation_id")
	if raw, ok := m["scope"]; ok {
		var s string
		var list []string
		if json.Unmarshal(raw, &s) == nil {
			t.Scope = jsonScope(s)
		} else if json.Unmarshal(raw, &list) == nil {
			t.Scope = jsonScope(strings.Join(list, " "))
		}
	}
	var codes []json.RawMessage
	if json.Unmarshal(m["error_codes"], &codes) == nil {
		for _, raw := range codes {
			var n int64
			if json.Unmarshal(raw, &n) == nil && n >= 0 && n <= math.MaxInt32 {
				t.ErrorCodes.codes = append(t.ErrorCodes.codes, int(n))
			}
		}
	}
	return t, ""
}

// foldsOntoField reports whether body is an object with a key that is a
// field's name in another case: encoding/json gives such a key to the field,
// the map-based reference does not.
func foldsOntoField(body []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	fields := reflect.TypeFor[tokenJSON]()
	for key := range m {
		for i := range fields.NumField() {
			name := fields.Field(i).Tag.Get("json")
			if key != name && strings.EqualFold(key, name) {
				return true
			}
		}
	}
	return false
}

// FuzzTokenJSONMatchesReference holds the one-pass decode equal to the
// field-by-field reference on any body: the same reason when it is not an
// object, else the same value, wrong type or absence in every field. The
// seeds cover repeated keys, escapes, nulls and odd types.
func FuzzTokenJSONMatchesReference(f *testing.F) {
	now := fixedNow.Unix()
	for _, seed := range []string{
		goodV2,
		aadsts50126,
		fmt.Sprintf(`{"token_type":"Bearer","scope":"user_impersonation","expires_in":"3599","ext_expires_in":"3599","expires_on":"%d","resource":"https://r","access_token":"AT","refresh_token":"RT"}`, now+3599),
		`{"access_token":"A\u0054","expires_in":" 36\u00300 ","expires_on":"\u0020","ext_expires_in":"x"}`,
		`{"access\u005ftoken":"AT","expires_in":3600.9,"expires_on":-0,"ext_expires_in":1e3}`,
		`{"access_token":1,"access_token":"AT","expires_in":"1","expires_in":true}`,
		`{"access_token":null,"token_type":{},"refresh_token":[],"expires_in":null,"expires_on":""}`,
		`{"scope":["a",null,"b"],"resource":5,"error":"","error_codes":[null,1.5,"2",-1,2147483648,50126]}`,
		`{"scope":["a",1],"error":{"x":1},"error_codes":{},"trace_id":["t"]}`,
		"{\"access_token\":\"\xff\xfe\",\"expires_in\":\"3600\xff\"}",
		`{"Access_Token":"AT","expires_in":60}`,
		`{"nested":{"access_token":"no"},"list":[1,{"error":"no"}],"access_token":"yes"}`,
		`null`, ` null `, `[]`, `"AT"`, `3600`, `true`, `{}`, ``, ` `, `{"a":`, `{"a":1}x`, `{"a" 1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if foldsOntoField(body) {
			return
		}
		var got tokenJSON
		why := got.decode(body)
		want, wantWhy := referenceDecode(body)
		if why != wantWhy {
			t.Fatalf("decode(%q) reason %q, reference %q", body, why, wantWhy)
		}
		if why == "" && !reflect.DeepEqual(got, want) {
			t.Fatalf("decode(%q)\n got %+v\nwant %+v", body, got, want)
		}
	})
}

// TestKeysInAnotherCase pins the one way the one-pass decode differs from
// the map it replaced: encoding/json gives a key in another case to the
// field of that name, so an IdP that capitalises its keys is still read.
func TestKeysInAnotherCase(t *testing.T) {
	tok, err := parseTokenResponse(200, "application/json", []byte(`{"Access_Token":"AT","EXPIRES_IN":60}`), fixedNow)
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if tok.AccessToken != "AT" || tok.Lifetime != time.Minute {
		t.Errorf("token %v, access token %q; want AT for 1m", tok, tok.AccessToken)
	}
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
