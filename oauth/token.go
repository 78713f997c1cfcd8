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

// tokenJSON is a token endpoint's answer as sent: the fields of a token
// (RFC 6749 5.1, with Azure AD's extras) and of an error (5.2), decoded in one
// pass. No field's type can fail the decode: each records a value of the
// wrong type instead, so that parseTokenResponse can name the field a token
// depends on (never its value, which may be a secret), while the
// informational fields and every field of an error body take what they can
// and ignore the rest. Keys match as encoding/json matches a struct's: the
// exact name, else the name in another case.
type tokenJSON struct {
	AccessToken  jsonString  `json:"access_token"`
	TokenType    jsonString  `json:"token_type"`
	RefreshToken jsonString  `json:"refresh_token"`
	ExpiresIn    jsonSeconds `json:"expires_in"`
	ExpiresOn    jsonSeconds `json:"expires_on"`
	ExtExpiresIn jsonSeconds `json:"ext_expires_in"`
	RefreshIn    jsonSeconds `json:"refresh_in"`
	Scope        jsonScope   `json:"scope"`
	Resource     jsonString  `json:"resource"`

	Error            jsonString     `json:"error"`
	ErrorDescription jsonString     `json:"error_description"`
	ErrorURI         jsonString     `json:"error_uri"`
	TraceID          jsonString     `json:"trace_id"`
	CorrelationID    jsonString     `json:"correlation_id"`
	ErrorCodes       jsonErrorCodes `json:"error_codes"`
}

// decode parses body, a whole response body, into t. The reason it returns
// when body is not one JSON object says what is wrong without quoting it.
func (t *tokenJSON) decode(body []byte) (why string) {
	if err := json.Unmarshal(body, t); err != nil {
		return notAnObject(body, err)
	}
	// A body that decoded into a struct without error is an object or the
	// literal null, which leaves t untouched.
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	if i < len(body) && body[i] == 'n' {
		return "body is JSON null, not an object"
	}
	return ""
}

// notAnObject says why body, on which encoding/json failed with err, is not
// a JSON object, without quoting it.
func notAnObject(body []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return "empty body"
	case strings.Contains(err.Error(), "unexpected end of JSON input"):
		return "body is not valid JSON (truncated)"
	case errors.As(err, &se):
		return fmt.Sprintf("body is not valid JSON (syntax error at byte %d)", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("body is JSON %s, not an object", te.Value)
	default:
		return "body is not valid JSON (truncated)"
	}
}

// wrongType returns the name of the first field a token depends on whose
// value had the wrong type, "" when none had. The order is fixed, so that the
// error does not depend on the order of the keys.
func (t *tokenJSON) wrongType() string {
	switch {
	case t.AccessToken.bad:
		return "access_token"
	case t.TokenType.bad:
		return "token_type"
	case t.RefreshToken.bad:
		return "refresh_token"
	case t.ExpiresIn.bad:
		return "expires_in"
	case t.ExpiresOn.bad:
		return "expires_on"
	}
	return ""
}

// retrieveError is the IdP's error as t holds it, read leniently: an error
// body with odd types is still the IdP's error, with the fields it could
// read.
func (t *tokenJSON) retrieveError(status int) *RetrieveError {
	return &RetrieveError{
		StatusCode:    status,
		ErrorCode:     t.Error.s,
		Description:   t.ErrorDescription.s,
		ErrorURI:      t.ErrorURI.s,
		ErrorCodes:    t.ErrorCodes.codes,
		TraceID:       t.TraceID.s,
		CorrelationID: t.CorrelationID.s,
	}
}

// jsonString is a string field. null means absent (""); any other type
// leaves it "" and sets bad, for the caller to decide whether that matters.
type jsonString struct {
	s   string
	bad bool
}

func (s *jsonString) UnmarshalJSON(b []byte) error {
	*s = jsonString{} // a repeated key is decoded again: the last one wins
	if v, ok := plainString(b); ok {
		s.s = v
		return nil
	}
	if json.Unmarshal(b, &s.s) != nil {
		*s = jsonString{bad: true}
	}
	return nil
}

// plainString returns the value of raw, a JSON string from a body already
// validated as a whole, when it holds no escapes and valid UTF-8, as nearly
// every token does: it is then the bytes between the quotes. A second pass
// of encoding/json over an access token of a few kilobytes was the largest
// cost of reading a token response. Anything else is left to encoding/json.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// jsonSeconds is a count of seconds sent as a JSON number or, as Azure AD v1
// does, as a string ("3599"). null and "" mean absent; anything else that is
// not a finite number of seconds sets bad.
type jsonSeconds struct {
	v        int64
	set, bad bool
}

func (s *jsonSeconds) UnmarshalJSON(b []byte) error {
	*s = jsonSeconds{}
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	text := b
	if len(b) > 1 && b[0] == '"' {
		// Unquote by hand when there is no escape: a nested encoding/json
		// call for each of v1's three lifetimes cost more than the rest of
		// the decode.
		if text = b[1 : len(b)-1]; bytes.IndexByte(text, '\\') >= 0 {
			var str string
			if err := json.Unmarshal(b, &str); err != nil {
				s.bad = true
				return nil
			}
			text = []byte(str)
		}
		if text = bytes.TrimSpace(text); len(text) == 0 {
			return nil
		}
	}
	if n, err := strconv.ParseInt(string(text), 10, 64); err == nil {
		s.v, s.set = n, true
		return nil
	}
	// Some IdPs send 3600.0; accept a finite number that fits, truncated.
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
		s.bad = true
		return nil
	}
	s.v, s.set = int64(f), true
	return nil
}

// jsonScope is scope as a space-separated string: RFC 6749 sends a string,
// a few IdPs an array. Any other type leaves it "".
type jsonScope string

func (s *jsonScope) UnmarshalJSON(b []byte) error {
	*s = ""
	if v, ok := plainString(b); ok {
		*s = jsonScope(v)
		return nil
	}
	var str string
	if json.Unmarshal(b, &str) == nil {
		*s = jsonScope(str)
		return nil
	}
	var list []string
	if json.Unmarshal(b, &list) == nil {
		*s = jsonScope(strings.Join(list, " "))
	}
	return nil
}

// jsonErrorCodes is Azure AD's error_codes: the whole numbers of an array
// that fit an int and are not negative; anything else is skipped.
type jsonErrorCodes struct {
	codes []int
}

func (c *jsonErrorCodes) UnmarshalJSON(b []byte) error {
	*c = jsonErrorCodes{}
	var raws []json.RawMessage
	if json.Unmarshal(b, &raws) != nil {
		return nil
	}
	for _, raw := range raws {
		var n int64
		if json.Unmarshal(raw, &n) == nil && n >= 0 && n <= math.MaxInt32 {
			c.codes = append(c.codes, int(n))
		}
	}
	return nil
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
	var tj tokenJSON
	if why := tj.decode(body); why != "" {
		return nil, bad("%s; content type %s", why, mediaType(contentType))
	}
	if tj.Error.s != "" {
		return nil, tj.retrieveError(status)
	}
	if name := tj.wrongType(); name != "" {
		return nil, bad("field %q has the wrong type", name)
	}
	t := Token{
		Token:        tokenbroker.Token{AccessToken: tj.AccessToken.s, TokenType: tj.TokenType.s},
		RefreshToken: tj.RefreshToken.s,
		Scope:        string(tj.Scope),
		Resource:     tj.Resource.s,
	}
	expiresIn, expiresOn, extExpiresIn := tj.ExpiresIn, tj.ExpiresOn, tj.ExtExpiresIn

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
	// Azure AD's refresh_in: when it wants the token refreshed, ahead of
	// its expiry (it sends it for long-lived tokens). Past the expiry it
	// means nothing, and is dropped rather than trusted.
	if ri := tj.RefreshIn; ri.set && ri.v > 0 && ri.v < int64(t.Lifetime/time.Second) {
		t.RefreshAt = now.Add(time.Duration(ri.v) * time.Second)
	}
	return &t, nil
}
