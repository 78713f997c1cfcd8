package tokenbroker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxRequestBytes bounds a token request on every transport. A real request
// is well under 1 KiB; anything near this limit is abuse or a bug.
const MaxRequestBytes = 64 << 10

// MaxMinTTL bounds min_ttl. No IdP issues tokens valid for more than a day,
// so a larger min_ttl could never be met and would only force IdP calls.
const MaxMinTTL = 24 * 60 * 60

// MaxFieldBytes bounds each string field, so a request cannot make the broker
// hash or hold large values. Azure AD's own limits are far lower.
const MaxFieldBytes = 4 << 10

// Request is what a caller asks for, on token.request or POST /requesttoken.
// Exactly one of Username (with Password) or Credential is set.
type Request struct {
	// Username and Password are the original helper's pass-through request,
	// served with the default profile and the password grant.
	Username string `json:"username,omitempty"`
	Password Secret `json:"password,omitempty"`
	// Credential names a credential declared in TOKENBROKER_CONFIG.
	Credential string `json:"credential,omitempty"`
	// ForceRefresh skips the cache: for a caller whose cached token got a 401.
	ForceRefresh bool `json:"force_refresh,omitempty"`
	// MinTTL, in seconds, is how long the returned token must stay valid at
	// least. Zero means the credential's refresh threshold alone decides.
	MinTTL int64 `json:"min_ttl,omitempty"`
	// Claims is a claims challenge a resource returned in its
	// WWW-Authenticate header (continuous access evaluation): the JSON
	// object, or its base64 as the header carries it. It skips the cache:
	// the IdP is asked with it, and the new token cached and returned.
	Claims string `json:"claims,omitempty"`

	// Transport and Caller are set by the transport that received the
	// request, for the audit trail (see AuditRecord); never decoded from
	// the body.
	Transport string `json:"-"`
	Caller    string `json:"-"`
}

// IsPassword reports whether r is a username/password request.
func (r *Request) IsPassword() bool { return r.Username != "" }

// DecodeRequest parses and validates a request body. Every failure is an
// *Error with code 400 (413 when data is over MaxRequestBytes) whose
// description says what is wrong, without echoing any value of the request.
func DecodeRequest(data []byte) (Request, error) {
	if len(data) <= MaxRequestBytes && len(bytes.TrimSpace(data)) == 0 {
		return Request{}, Errorf(CodeInvalidRequest, OAuthInvalidRequest, "empty request: send a JSON object with username and password, or credential")
	}
	r, err := parse(data)
	if err != nil {
		return Request{}, err
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// DecodeNamedRequest parses and validates the body of a request sent on
// the subject of the named credential name (token.request.<name>). The body
// may be empty or {}, or carry force_refresh and min_ttl; a credential in
// it must be name, and username/password requests go to token.request
// only. The errors are DecodeRequest's.
func DecodeNamedRequest(data []byte, name string) (Request, error) {
	var r Request
	if len(data) > MaxRequestBytes || len(bytes.TrimSpace(data)) > 0 {
		var err error
		if r, err = parse(data); err != nil {
			return Request{}, err
		}
	}
	switch {
	case r.Username != "" || r.Password != "":
		return Request{}, Errorf(CodeInvalidRequest, OAuthInvalidRequest,
			"username/password requests go to the shared request subject, not to a credential's own")
	case r.Credential != "" && r.Credential != name:
		return Request{}, Errorf(CodeInvalidRequest, OAuthInvalidRequest,
			"the body names another credential than the subject it was sent on")
	}
	r.Credential = name
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// parse decodes a request body that is not empty, without checking its
// fields against each other.
func parse(data []byte) (Request, error) {
	var r Request
	if len(data) > MaxRequestBytes {
		return r, Errorf(CodeTooLarge, OAuthInvalidRequest, "request is %d bytes, over the limit of %d", len(data), MaxRequestBytes)
	}
	if !utf8.Valid(data) {
		return r, Errorf(CodeInvalidRequest, OAuthInvalidRequest, "request is not valid UTF-8")
	}
	if fast, ok := decodeFast(data); ok {
		return fast, nil
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return Request{}, Errorf(CodeInvalidRequest, OAuthInvalidRequest, "malformed JSON: %s", describeJSONError(err))
	}
	return r, nil
}

// Validate checks the request's fields against each other and their bounds.
func (r *Request) Validate() error {
	bad := func(format string, args ...any) error {
		return Errorf(CodeInvalidRequest, OAuthInvalidRequest, format, args...)
	}
	switch {
	case r.Username != "" && r.Credential != "":
		return bad("give either username and password, or credential, not both")
	case r.Username == "" && r.Credential == "":
		if r.Password != "" {
			return bad("password given without username")
		}
		return bad("missing username and password, or credential")
	case r.Username != "" && r.Password == "":
		return bad("missing password")
	case r.Credential != "" && r.Password != "":
		return bad("password goes with username, not with credential")
	case len(r.Username) > MaxFieldBytes || len(r.Password) > MaxFieldBytes || len(r.Credential) > MaxFieldBytes || len(r.Claims) > MaxFieldBytes:
		return bad("a field is over %d bytes", MaxFieldBytes)
	case r.MinTTL < 0 || r.MinTTL > MaxMinTTL:
		return bad("min_ttl must be between 0 and %d seconds", MaxMinTTL)
	}
	return nil
}

// describeJSONError names what is wrong with a body without quoting it: a
// type error names the field and the kinds expected and found, a syntax
// error the offset. It must not use UnmarshalTypeError.Value as it is: for
// a number that does not fit the field, encoding/json puts the whole literal
// there, and a 60 KB min_ttl came back twice, in the body and in the
// Nats-Service-Error header.
func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fmt.Sprintf("expected a JSON object, got %s", jsonValueKind(typeErr.Value))
		}
		return fmt.Sprintf("field %q must be %s, got %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), jsonValueKind(typeErr.Value))
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("syntax error at byte %d", syntaxErr.Offset)
	default:
		return "unexpected end of input"
	}
}

// jsonValueKind names the kind of JSON value an UnmarshalTypeError found,
// from its Value ("string", "bool", "array", "object", "number" or
// "number <literal>"), in a few fixed words. A number is told apart only by
// whether its literal has a fraction or an exponent; the literal itself is
// never returned.
func jsonValueKind(value string) string {
	switch kind, literal, _ := strings.Cut(value, " "); kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "array":
		return "an array"
	case "object":
		return "an object"
	case "number":
		switch {
		case literal == "":
			return "a number"
		case strings.ContainsAny(literal, ".eE"):
			return "a number with a fraction or an exponent"
		default:
			return "a number out of range"
		}
	default:
		return "another kind of value"
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int64", "int", "float64":
		return "a whole number"
	default:
		return goKind
	}
}
