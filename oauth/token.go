package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokenbroker/tokenbroker"
)

// MaxLifetime bounds the lifetime a token response may grant. No IdP issues
// access tokens valid for a year; a larger value is a unit mistake or garbage,
// and caching such a token would serve it long after it stopped working.
const MaxLifetime = 365 * 24 * time.Hour

// MaxClockSkew is how far expires_on may disagree with now+expires_in before
// the Client stops trusting expires_on. See Token.Expiry.
const MaxClockSkew = 5 * time.Minute

// Token is an access token as the IdP granted it. It holds secrets in clear:
// its String, GoString and LogValue methods redact them, but the fields do
// not, so never log a field.
type Token struct {
	// Token is the access token, its type, expiry and lifetime: the shape
	// the broker holds and serves. A Client's Token always has a non-empty
	// AccessToken; TokenType is the token_type the IdP sent, "Bearer" when
	// it sent none (and for any casing of it, as RFC 6750 headers want).
	// Expiry comes from expires_on when the IdP sent it and it agrees with
	// now+expires_in within MaxClockSkew (expires_on is exact, while
	// expires_in is relative to when the IdP issued the token, some network
	// time ago); when they disagree by more, the clocks of the IdP and of
	// this host disagree, and since callers compare Expiry with the local
	// clock, Expiry is the local receipt time plus expires_in. It is never
	// zero: a token whose expiry is unknown is an unusable response, not a
	// token that never expires. Lifetime is expires_in as sent, or, when
	// only expires_on was sent, the time from receipt to expires_on, in
	// whole seconds: always positive and at most MaxLifetime.
	tokenbroker.Token
	// RefreshToken is the refresh_token the IdP issued, "" when it issued
	// none (client_credentials, a v2 request without offline_access, or an
	// IdP that does not rotate). After a refresh with no new refresh token
	// the caller keeps using its old one.
	RefreshToken string
	// ExtExpiresIn is Azure AD's ext_expires_in: how long, from receipt, the
	// token stays accepted by resources during an Azure AD outage. 0 when
	// absent or unparsable.
	ExtExpiresIn time.Duration
	// Scope is the granted scope as sent (space separated), "" when absent.
	Scope string
	// Resource is Azure AD v1's resource as sent, "" when absent.
	Resource string
}

// String implements fmt.Stringer without the access or refresh token, so a
// Token that slips into a log line or an error shows no secret.
func (t *Token) String() string {
	if t == nil {
		return "<nil>"
	}
	return fmt.Sprintf("oauth.Token{TokenType:%s Expiry:%s Lifetime:%s HasRefreshToken:%t}",
		t.TokenType, t.Expiry.Format(time.RFC3339), t.Lifetime, t.RefreshToken != "")
}

// GoString implements fmt.GoStringer like String, so %#v is safe too.
func (t *Token) GoString() string { return t.String() }

// LogValue implements slog.LogValuer without the access or refresh token.
func (t *Token) LogValue() slog.Value {
	if t == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("token_type", t.TokenType),
		slog.Time("expiry", t.Expiry),
		slog.Duration("lifetime", t.Lifetime),
		slog.Bool("has_refresh_token", t.RefreshToken != ""),
	)
}

// jsonSeconds is a count of seconds sent as a JSON number or, as Azure AD v1
// does, as a string ("3599"). null and "" mean absent.
type jsonSeconds struct {
	v   int64
	set bool
}

func (s *jsonSeconds) UnmarshalJSON(b []byte) error {
	*s = jsonSeconds{}
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	text := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		text = strings.TrimSpace(text)
		if text == "" {
			return nil
		}
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		s.v, s.set = n, true
		return nil
	}
	// Some IdPs send 3600.0; accept a finite number that fits, truncated.
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
		return fmt.Errorf("not a number of seconds")
	}
	s.v, s.set = int64(f), true
	return nil
}

// field decodes the raw value of key into v. A wrong type is reported by
// name only: the value may be a secret.
func field(m map[string]json.RawMessage, key string, v any) error {
	raw, ok := m[key]
	if !ok {
		return nil
	}
	if sp, ok := v.(*string); ok {
		if s, ok := plainString(raw); ok {
			*sp = s
			return nil
		}
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("field %q has the wrong type", key)
	}
	return nil
}

// optionalString decodes key as a string, ignoring any other type: for the
// informational fields whose absence would not make a token unusable.
func optionalString(m map[string]json.RawMessage, key string) string {
	var s string
	_ = field(m, key, &s)
	return s
}

// plainString returns the value of raw, a JSON string from a body already
// validated as a whole, when it holds no escapes and valid UTF-8, as nearly
// every token does: it is then the bytes between the quotes. A second pass
// of encoding/json over an access token of a few kilobytes was the largest
// cost of reading a token response. Anything else is left to encoding/json.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// decodeObject parses body as one JSON object. The error says what is wrong
// without quoting the body.
func decodeObject(body []byte) (map[string]json.RawMessage, string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case len(bytes.TrimSpace(body)) == 0:
			return nil, "empty body"
		case strings.Contains(err.Error(), "unexpected end of JSON input"):
			return nil, "body is not valid JSON (truncated)"
		case errors.As(err, &se):
			return nil, fmt.Sprintf("body is not valid JSON (syntax error at byte %d)", se.Offset)
		case errors.As(err, &te):
			return nil, fmt.Sprintf("body is JSON %s, not an object", te.Value)
		default:
			return nil, "body is not valid JSON (truncated)"
		}
	}
	if m == nil { // the literal null
		return nil, "body is JSON null, not an object"
	}
	return m, ""
}

// retrieveErrorFrom fills a RetrieveError from a decoded error body, leniently:
// an error body with odd types is still the IdP's error.
func retrieveErrorFrom(status int, m map[string]json.RawMessage) *RetrieveError {
	e := &RetrieveError{StatusCode: status}
	if m == nil {
		return e
	}
	e.ErrorCode = optionalString(m, "error")
	e.Description = optionalString(m, "error_description")
	e.ErrorURI = optionalString(m, "error_uri")
	e.TraceID = optionalString(m, "trace_id")
	e.CorrelationID = optionalString(m, "correlation_id")
	var codes []json.RawMessage
	if json.Unmarshal(m["error_codes"], &codes) == nil {
		for _, raw := range codes {
			var n int64
			if json.Unmarshal(raw, &n) == nil && n >= 0 && n <= math.MaxInt32 {
				e.ErrorCodes = append(e.ErrorCodes, int(n))
			}
		}
	}
	return e
}

// mediaType returns the media type of a Content-Type header, without
// parameters and bounded in length, safe to put in an error.
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt == "" {
		if contentType == "" {
			return "none"
		}
		return "unparsable"
	}
	if len(mt) > 64 {
		mt = mt[:64]
	}
	return strconv.Quote(mt)
}

// parseTokenResponse turns a 2xx token response received at now into a
// Token. It returns a *RetrieveError when the body carries an error field,
// a *ResponseError when it is not a usable token.
func parseTokenResponse(status int, contentType string, body []byte, now time.Time) (*Token, error) {
	bad := func(format string, args ...any) error {
		return &ResponseError{StatusCode: status, Reason: fmt.Sprintf(format, args...)}
	}
	m, why := decodeObject(body)
	if why != "" {
		return nil, bad("%s; content type %s", why, mediaType(contentType))
	}
	if e := optionalString(m, "error"); e != "" {
		return nil, retrieveErrorFrom(status, m)
	}
	var (
		t                    Token
		expiresIn, expiresOn jsonSeconds
		extExpiresIn         jsonSeconds
	)
	for _, f := range []struct {
		key string
		v   any
	}{
		{"access_token", &t.AccessToken},
		{"token_type", &t.TokenType},
		{"refresh_token", &t.RefreshToken},
		{"expires_in", &expiresIn},
		{"expires_on", &expiresOn},
	} {
		if err := field(m, f.key, f.v); err != nil {
			return nil, bad("%v", err)
		}
	}
	// Informational fields: a wrong type there does not spoil the token.
	_ = field(m, "ext_expires_in", &extExpiresIn)
	t.Resource = optionalString(m, "resource")
	t.Scope = scopeString(m["scope"])

	if t.AccessToken == "" {
		return nil, bad("no access_token")
	}
	switch {
	case t.TokenType == "", strings.EqualFold(t.TokenType, "bearer"):
		t.TokenType = "Bearer"
	}

	const maxSeconds = int64(MaxLifetime / time.Second)
	saneIn := expiresIn.set && expiresIn.v > 0 && expiresIn.v <= maxSeconds
	var onLeft int64 // seconds from now to expires_on
	saneOn := false
	if expiresOn.set && expiresOn.v > 0 && expiresOn.v < math.MaxInt64/2 {
		onLeft = expiresOn.v - now.Unix()
		saneOn = onLeft > 0 && onLeft <= maxSeconds
	}
	switch {
	case !expiresIn.set && !expiresOn.set:
		return nil, bad("no expires_in or expires_on: the token's lifetime is unknown")
	case expiresIn.set && !saneIn:
		return nil, bad("expires_in %d is not between 1 and %d seconds", expiresIn.v, maxSeconds)
	case saneIn:
		t.Lifetime = time.Duration(expiresIn.v) * time.Second
		t.Expiry = now.Add(t.Lifetime)
		if saneOn {
			on := time.Unix(expiresOn.v, 0)
			if d := on.Sub(t.Expiry); d >= -MaxClockSkew && d <= MaxClockSkew {
				t.Expiry = on
			}
		}
	case saneOn:
		t.Lifetime = time.Duration(onLeft) * time.Second
		t.Expiry = time.Unix(expiresOn.v, 0)
	default:
		return nil, bad("expires_on is not between now and %d seconds from now", maxSeconds)
	}
	if extExpiresIn.set && extExpiresIn.v > 0 && extExpiresIn.v <= maxSeconds {
		t.ExtExpiresIn = time.Duration(extExpiresIn.v) * time.Second
	}
	return &t, nil
}

// scopeString returns scope as a space-separated string: RFC 6749 sends a
// string, a few IdPs an array.
func scopeString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return strings.Join(list, " ")
	}
	return ""
}
