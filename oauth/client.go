package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// DefaultTimeout bounds a call when NewClient is given no timeout. Azure AD
// answers in well under a second; ten seconds is an outage, not a slow day.
const DefaultTimeout = 10 * time.Second

// maxBody bounds the response body read: a token response is a few KiB, and
// an IdP (or something in front of it) must not make the broker buffer more.
const maxBody = 1 << 20

// Endpoint is an OAuth2 token endpoint and the client identity used on it.
type Endpoint struct {
	// TokenURL is the token endpoint, e.g.
	// https://login.microsoftonline.com/TENANT/oauth2/token (Azure AD v1)
	// or .../oauth2/v2.0/token (v2). http and https only.
	TokenURL string
	// ClientID is sent as client_id when non-empty.
	ClientID string
	// ClientSecret is optional; when set it authenticates the client as
	// AuthStyle says: in an HTTP Basic Authorization header or as
	// client_secret in the form body (RFC 6749 2.3.1).
	ClientSecret tokenbroker.Secret
	// AuthStyle is how ClientSecret is sent. The zero value, AuthAuto,
	// picks the form body for Azure AD, else follows AuthMethods, else
	// finds out; see AuthStyle.
	AuthStyle AuthStyle
	// AuthMethods is the IdP's token_endpoint_auth_methods_supported from
	// its discovery document, in its order, or nil when unknown. Only
	// AuthAuto reads it.
	AuthMethods []string
	// Resource is Azure AD v1's resource parameter, sent when non-empty.
	Resource string
	// Scope is the v2 / generic scope parameter, space separated, sent when
	// non-empty.
	Scope string
	// Claims is the claims request parameter (OpenID Connect Core 5.5), a
	// JSON object, sent when non-empty: a resource's claims challenge
	// (continuous access evaluation) and the client's capabilities
	// (Azure AD's xms_cc). See MergeClaims.
	Claims string
}

// Client calls token endpoints. It keeps no token between calls; the only
// state it keeps is, per token endpoint and client, the way of sending a
// client secret that AuthAuto found to work. One Client is safe for
// concurrent use by any number of credentials.
type Client struct {
	hc      *http.Client
	timeout time.Duration
	now     func() time.Time // the local clock; replaced in tests
	styles  authStyles
}

// NewClient returns a Client that sends requests with hc and bounds each
// call, including reading the response, by timeout. A nil hc gets a client
// with dial, TLS and response-header timeouts that does not follow
// redirects: a token endpoint that redirects is misconfigured, and following
// it would post credentials to another URL. A timeout <= 0 means
// DefaultTimeout.
func NewClient(hc *http.Client, timeout time.Duration) *Client {
	if hc == nil {
		hc = defaultHTTPClient()
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{hc: hc, timeout: timeout, now: time.Now}
}

// Timeout returns the bound on one call that NewClient was given, or
// DefaultTimeout. A ctx deadline sooner than that ends a call sooner: a call
// never outlives its ctx. A client in front of c that makes several calls
// for one request (guard) can therefore bound them all by Timeout with one
// ctx deadline, and each call gets only what is left of it.
func (c *Client) Timeout() time.Duration { return c.timeout }

func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 30 * time.Second
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Password runs the resource owner password credentials grant (RFC 6749
// 4.3) for username. See Exchange for the errors.
func (c *Client) Password(ctx context.Context, ep Endpoint, username string, password tokenbroker.Secret) (*Token, error) {
	if username == "" {
		return nil, fmt.Errorf("%w: empty username", ErrInvalidArgument)
	}
	return c.Exchange(ctx, ep, url.Values{
		"grant_type": {"password"},
		"username":   {username},
		"password":   {password.Reveal()},
	})
}

// ClientCredentials runs the client credentials grant (RFC 6749 4.4). See
// Exchange for the errors.
func (c *Client) ClientCredentials(ctx context.Context, ep Endpoint) (*Token, error) {
	return c.Exchange(ctx, ep, url.Values{"grant_type": {"client_credentials"}})
}

// Refresh runs the refresh_token grant (RFC 6749 6). The Client keeps
// nothing: the caller keeps the newest refresh token. When the IdP issued a
// new one, the returned Token's RefreshToken holds it and the old one may be
// invalid already (Azure AD rotates them); when the IdP issued none,
// RefreshToken is "" and the caller keeps using its old one. See Exchange
// for the errors.
func (c *Client) Refresh(ctx context.Context, ep Endpoint, refreshToken tokenbroker.Secret) (*Token, error) {
	if refreshToken.IsZero() {
		return nil, fmt.Errorf("%w: empty refresh token", ErrInvalidArgument)
	}
	return c.Exchange(ctx, ep, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken.Reveal()},
	})
}

// Exchange posts form to ep.TokenURL and returns the token of a 2xx answer.
// form must hold grant_type and the grant's own parameters; Exchange adds
// client_id, resource and scope from ep where they are set and form does
// not already have them, and authenticates with ep.ClientSecret as
// ep.AuthStyle says unless form carries its own client_secret or a client
// assertion (then a set ClientSecret goes in the body, as form chose).
// Under AuthAuto one call may be two requests; see AuthStyle. form is not
// modified.
//
// Errors: *RetrieveError when the IdP answered with an OAuth2 error or an
// error status, *ResponseError when it answered 2xx (or 3xx) with no usable
// token, *TransportError when it could not be reached or the call outlived
// the Client's timeout or ctx, and an error wrapping ErrInvalidArgument when
// the call was not even attempted.
func (c *Client) Exchange(ctx context.Context, ep Endpoint, form url.Values) (*Token, error) {
	safeURL, err := checkTokenURL(ep.TokenURL)
	if err != nil {
		return nil, err
	}
	if form.Get("grant_type") == "" {
		return nil, fmt.Errorf("%w: form has no grant_type", ErrInvalidArgument)
	}
	body := make(url.Values, len(form)+4)
	for k, v := range form {
		body[k] = v
	}
	setDefault := func(key, value string) {
		if value != "" && !body.Has(key) {
			body.Set(key, value)
		}
	}
	setDefault("client_id", ep.ClientID)
	setDefault("resource", ep.Resource)
	setDefault("scope", ep.Scope)
	setDefault("claims", ep.Claims)

	// One deadline for the call, a second request of AuthAuto included, so
	// that Timeout still bounds what a caller waits.
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.authenticate(ctx, ep, safeURL, body)
}

// post sends one request with body and, when basic is not "", an
// Authorization header of that value, and interprets the answer. redact
// holds, under sensitive keys, every value of the request that must not
// reach an error: body's, and the secret and header when they are not in
// body.
func (c *Client) post(ctx context.Context, tokenURL, safeURL string, body url.Values, basic string, redact url.Values) (*Token, error) {
	resp, data, err := c.postForm(ctx, tokenURL, safeURL, "token URL", body, basic)
	if err != nil {
		return nil, err
	}
	now := c.now()
	tok, err := interpret(resp, data, now)
	if err != nil {
		var re *RetrieveError
		if errors.As(err, &re) {
			re.Description = scrub(re.Description, redact)
			re.ErrorURI = scrub(re.ErrorURI, redact)
		}
		return nil, err
	}
	return tok, nil
}

// postForm sends body, form-encoded, to target (safeURL in errors, what
// naming it) with an Authorization header of basic when not "", and reads
// the answer, at most maxBody+1 bytes of it: a token or a device
// authorization request alike.
func (c *Client) postForm(ctx context.Context, target, safeURL, what string, body url.Values, basic string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body.Encode()))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s %s: cannot build request", ErrInvalidArgument, what, safeURL)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic != "" {
		req.Header.Set("Authorization", basic)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, transportError(ctx, safeURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, transportError(ctx, safeURL, err)
	}
	return resp, data, nil
}

// interpret maps a response to a token or one of the typed errors.
func interpret(resp *http.Response, data []byte, now time.Time) (*Token, error) {
	status := resp.StatusCode
	tooLarge := len(data) > maxBody
	switch {
	case status >= 200 && status < 300:
		if tooLarge {
			return nil, &ResponseError{StatusCode: status, Reason: "body over 1 MiB"}
		}
		return parseTokenResponse(status, resp.Header.Get("Content-Type"), data, now)
	case status >= 400:
		var tj tokenJSON
		e := &RetrieveError{StatusCode: status}
		if !tooLarge && tj.decode(data) == "" {
			e = tj.retrieveError(status)
		}
		// Otherwise an HTML error page: for 5xx an outage or a gateway in
		// front of the IdP, for 4xx a rejection we cannot read.
		if e.ErrorCode == "" {
			switch {
			case status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable:
				e.ErrorCode = tokenbroker.OAuthTemporarilyUnavailable
			case status >= 500:
				e.ErrorCode = tokenbroker.OAuthServerError
			}
		}
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
		return nil, e
	default:
		return nil, &ResponseError{StatusCode: status, Reason: fmt.Sprintf("unexpected status %d; content type %s", status, mediaType(resp.Header.Get("Content-Type")))}
	}
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 10.2.3). Anything else, or a time in the past, is 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > int64(MaxLifetime/time.Second) {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}

// checkTokenURL validates TokenURL and returns it without user info, query
// or fragment, fit for an error message.
func checkTokenURL(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%w: empty token URL", ErrInvalidArgument)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: token URL does not parse", ErrInvalidArgument)
	}
	safe := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%w: token URL %s is not an absolute http(s) URL", ErrInvalidArgument, safe)
	}
	return safe, nil
}

// transportError wraps err, dropping http.Client's *url.Error, whose message
// repeats the full URL. When the call's context ended, its error is wrapped
// too: a body read cut by the deadline may report only "request canceled",
// and Timeout must still say true.
func transportError(ctx context.Context, safeURL string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w: %w", cerr, err)
	}
	return &TransportError{URL: safeURL, Err: err}
}

// sensitive are the form parameters whose values must never reach an error.
var sensitive = []string{"password", "client_secret", "refresh_token", "client_assertion", "code", "code_verifier", "assertion"}

// scrub removes from s any value of a sensitive form parameter. It is a
// second line of defence: an IdP (or a proxy in front of it) that echoes the
// request in its error_description must not get a secret into our logs.
// Values shorter than 4 bytes are left alone, as they would match ordinary
// words and are not secrets worth the name.
func scrub(s string, form url.Values) string {
	for _, key := range sensitive {
		for _, v := range form[key] {
			if len(v) >= 4 {
				s = strings.ReplaceAll(s, v, "[redacted]")
				if q := url.QueryEscape(v); q != v {
					s = strings.ReplaceAll(s, q, "[redacted]")
				}
			}
		}
	}
	return s
}
