// Package discovery reads an identity provider's OpenID Connect discovery
// document (OpenID Connect Discovery 1.0 section 4; RFC 8414, the OAuth 2.0
// Authorization Server Metadata it generalises), so that a credential can
// name an issuer instead of a token endpoint, and so that the broker learns
// how the IdP wants a client secret sent (token_endpoint_auth_methods_supported,
// which oauth.Endpoint.AuthMethods takes).
//
// Fetch reads one document and checks it; a Cache holds one per issuer,
// refreshed daily, and keeps serving the last good one while the IdP's
// discovery endpoint fails.
package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WellKnownPath is appended to an issuer, without its trailing slash, to
// get its discovery document (OpenID Connect Discovery 1.0 section 4.1).
const WellKnownPath = "/.well-known/openid-configuration"

// MaxBody bounds the document read. Azure AD's is about 2 KiB; a body over a
// MiB is not a discovery document, and must not make the broker buffer it.
const MaxBody = 1 << 20

// DefaultTimeout bounds a Fetch, including reading the body, when ctx
// allows longer.
const DefaultTimeout = 10 * time.Second

// Document is what the broker uses of a discovery document. Its slices are
// the document's own, in its order, nil when a field is absent.
type Document struct {
	// Issuer is the document's issuer, as sent.
	Issuer string
	// TokenEndpoint is token_endpoint: an absolute https URL (http only on
	// a loopback host).
	TokenEndpoint string
	// DeviceAuthorizationEndpoint is device_authorization_endpoint (RFC
	// 8628), checked as TokenEndpoint is; "" when absent.
	DeviceAuthorizationEndpoint string
	// TokenEndpointAuthMethods is token_endpoint_auth_methods_supported,
	// e.g. client_secret_basic, client_secret_post, private_key_jwt. It is
	// oauth.Endpoint.AuthMethods.
	TokenEndpointAuthMethods []string
	// GrantTypes is grant_types_supported.
	GrantTypes []string
	// Scopes is scopes_supported.
	Scopes []string
}

// Error is an error of Fetch or Cache.Get: which issuer, what is wrong, and
// the error beneath it when the document could not be fetched at all.
type Error struct {
	// Issuer is the configured issuer without user info, query or
	// fragment.
	Issuer string
	// Reason says what is wrong, on one line, without quoting the body
	// beyond a bounded issuer or URL of the document's.
	Reason string
	// Err is the transport or context error, nil when the IdP answered.
	Err error
}

// Error returns "discovery: issuer ISSUER: REASON[: ERR]".
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("discovery: issuer %s: %s: %v", e.Issuer, e.Reason, e.Err)
	}
	return fmt.Sprintf("discovery: issuer %s: %s", e.Issuer, e.Reason)
}

// Unwrap returns Err, so that errors.Is(err, context.DeadlineExceeded)
// works.
func (e *Error) Unwrap() error { return e.Err }

// sameIssuer reports whether a and b name the same issuer: exactly equal
// once one trailing slash is removed from each. OpenID Connect Discovery
// 4.1 removes it before appending WellKnownPath, and IdPs differ on whether
// their issuer ends with one (Ory Hydra's and Auth0's do, Azure AD's and
// Okta's do not), so "https://idp/" and "https://idp" are one issuer. No
// other normalisation (case, default port, escaping) is done: 4.3 wants
// the issuer identical, and an issuer that differs otherwise is someone
// else's document.
func sameIssuer(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// defaultClient is Fetch's client when given none. It does not follow
// redirects: the document of an issuer is at one URL, and a redirect could
// take the fetch to plain http.
var defaultClient = &http.Client{
	Transport: func() http.RoundTripper {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSHandshakeTimeout = 10 * time.Second
		tr.ResponseHeaderTimeout = DefaultTimeout
		return tr
	}(),
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Fetch GETs the discovery document of issuer, an absolute https URL (http
// on a loopback host) without query or fragment, from issuer, without its
// trailing slash, + WellKnownPath, and checks it: status 200, a JSON
// content type, at most MaxBody bytes, one JSON object whose issuer is
// issuer (see sameIssuer in the package source: one trailing slash is
// ignored) and whose token_endpoint, and device_authorization_endpoint when
// present, are absolute https URLs (http on a loopback host). hc nil means
// a client that follows no redirect. The call is bounded by ctx and
// DefaultTimeout. Errors are *Error.
func Fetch(ctx context.Context, hc *http.Client, issuer string) (*Document, error) {
	safe, err := checkIssuer(issuer)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return &Error{Issuer: safe, Reason: fmt.Sprintf(format, args...)}
	}
	if hc == nil {
		hc = defaultClient
	}
	docURL := strings.TrimSuffix(issuer, "/") + WellKnownPath
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return nil, fail("cannot build a request for %s", docURL)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the URL
		}
		return nil, &Error{Issuer: safe, Reason: "cannot fetch " + docURL, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fail("%s answered status %d, want 200", docURL, resp.StatusCode)
	}
	if mt := mediaType(resp.Header.Get("Content-Type")); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return nil, fail("%s answered content type %s, want application/json", docURL, strconv.Quote(bounded(mt)))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, &Error{Issuer: safe, Reason: "cannot read " + docURL, Err: err}
	}
	if len(data) > MaxBody {
		return nil, fail("the document is over %d bytes", MaxBody)
	}
	return parse(safe, issuer, data)
}

// document is the JSON of the fields Document takes.
type document struct {
	Issuer                      *string  `json:"issuer"`
	TokenEndpoint               string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint"`
	TokenEndpointAuthMethods    []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypes                  []string `json:"grant_types_supported"`
	Scopes                      []string `json:"scopes_supported"`
}

// parse checks a document's body; safe is the configured issuer fit for
// errors.
func parse(safe, issuer string, data []byte) (*Document, error) {
	fail := func(format string, args ...any) error {
		return &Error{Issuer: safe, Reason: fmt.Sprintf(format, args...)}
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return nil, fail("the document is not a JSON object")
	}
	var d document
	if err := json.Unmarshal(data, &d); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fail("the document's %s has the wrong type", te.Field)
		}
		return nil, fail("the document is not valid JSON")
	}
	switch {
	case d.Issuer == nil:
		return nil, fail("the document has no issuer")
	case !sameIssuer(*d.Issuer, issuer):
		return nil, fail("the document is issuer %s's", strconv.Quote(bounded(*d.Issuer)))
	case d.TokenEndpoint == "":
		return nil, fail("the document has no token_endpoint")
	}
	if why := checkEndpoint(d.TokenEndpoint); why != "" {
		return nil, fail("token_endpoint %s %s", strconv.Quote(bounded(d.TokenEndpoint)), why)
	}
	if d.DeviceAuthorizationEndpoint != "" {
		if why := checkEndpoint(d.DeviceAuthorizationEndpoint); why != "" {
			return nil, fail("device_authorization_endpoint %s %s", strconv.Quote(bounded(d.DeviceAuthorizationEndpoint)), why)
		}
	}
	return &Document{
		Issuer:                      *d.Issuer,
		TokenEndpoint:               d.TokenEndpoint,
		DeviceAuthorizationEndpoint: d.DeviceAuthorizationEndpoint,
		TokenEndpointAuthMethods:    d.TokenEndpointAuthMethods,
		GrantTypes:                  d.GrantTypes,
		Scopes:                      d.Scopes,
	}, nil
}

// checkIssuer checks a configured issuer and returns it fit for errors.
func checkIssuer(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || issuer == "" {
		return "", &Error{Issuer: "(unparsable)", Reason: "the issuer is not a URL"}
	}
	safe := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	switch {
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		// Discovery 1.0 section 2: an issuer has none of these.
		return "", &Error{Issuer: safe, Reason: "an issuer has no user info, query or fragment"}
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "http" && u.Host != "" && loopback(u.Hostname()):
	default:
		return "", &Error{Issuer: safe, Reason: "the issuer is not an absolute https URL (http is for loopback hosts only)"}
	}
	return safe, nil
}

// checkEndpoint says what is wrong with an endpoint URL of a document, ""
// when nothing is: it must be an absolute https URL, or http on a loopback
// host (a test or a local IdP), with no user info or fragment. A token
// endpoint on plain http elsewhere would carry client secrets in clear.
func checkEndpoint(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "is not an absolute http(s) URL"
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return "is plain http on a host that is not loopback"
	case u.User != nil || u.Fragment != "":
		return "has user info or a fragment"
	}
	return ""
}

// loopback reports whether host (no port) is localhost or a loopback
// address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// mediaType returns the media type of a Content-Type header, "" when none
// or unparsable.
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// bounded cuts a value of the document's, quoted in an error, to a length
// that keeps the error one short line.
func bounded(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
