package oauth

// Client authentication with a client secret (RFC 6749 section 2.3.1): in
// an HTTP Basic Authorization header ("client_secret_basic") or in the form
// body ("client_secret_post"). RFC 6749 makes Basic the one every server
// must support, and Ory Hydra, Okta and Keycloak default their clients to
// it, answering invalid_client to a secret in the body; Azure AD reads the
// body. So the style is chosen per endpoint, and found out when nothing says.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/tokenbroker/tokenbroker"
)

// AuthStyle is how a Client sends Endpoint.ClientSecret. It matters only
// for requests that carry a client secret: a public client (no secret) and
// a client assertion (private_key_jwt) are sent the same whatever the style.
type AuthStyle int

const (
	// AuthAuto, the zero value, sends the secret in the form body to Azure
	// AD (whose hosts it knows: login.microsoftonline.com and the national
	// clouds, *.ciamlogin.com, *.b2clogin.com). Elsewhere it takes the first
	// of client_secret_basic and client_secret_post that Endpoint.AuthMethods
	// lists and, when it lists both (a server's list says what it accepts,
	// not how each client is registered), the other once if the IdP answers
	// invalid_client or 401. When AuthMethods lists neither, it tries Basic
	// and then the form body the same way. The style that got past client
	// authentication is remembered for the token URL and client id, so later
	// calls send one request. Nothing else (an outage, throttling, a
	// timeout) leads to a second request.
	AuthAuto AuthStyle = iota
	// AuthBasic sends client_id and client_secret, each form-urlencoded, in
	// an HTTP Basic Authorization header (RFC 6749 2.3.1): the
	// client_secret_basic method of OpenID Connect and RFC 8414. client_id
	// is in the body too, as RFC 6749 3.2.1 allows, so that a server that
	// does not read the header answers invalid_client rather than
	// invalid_request.
	AuthBasic
	// AuthPost sends client_id and client_secret in the form body: the
	// client_secret_post method.
	AuthPost
)

// String returns the style's name: "auto", or the discovery method name
// client_secret_basic or client_secret_post.
func (s AuthStyle) String() string {
	switch s {
	case AuthAuto:
		return "auto"
	case AuthBasic:
		return MethodBasic
	case AuthPost:
		return MethodPost
	}
	return fmt.Sprintf("AuthStyle(%d)", int(s))
}

// The token endpoint authentication methods of a discovery document's
// token_endpoint_auth_methods_supported (OpenID Connect Discovery 1.0,
// RFC 8414) that AuthAuto picks between.
const (
	MethodBasic = "client_secret_basic"
	MethodPost  = "client_secret_post"
)

// azureHosts are the Azure AD (Entra ID) token hosts of the public and
// national clouds. login.windows.net and login.microsoft.com are aliases of
// login.microsoftonline.com that MSAL also knows.
var azureHosts = map[string]bool{
	"login.microsoftonline.com":        true,
	"login.microsoftonline.us":         true,
	"login.chinacloudapi.cn":           true,
	"login.partner.microsoftonline.cn": true,
	"login.microsoftonline.de":         true,
	"login.windows.net":                true,
	"login.microsoft.com":              true,
}

// isAzureAD reports whether host (a URL's host, maybe with a port) is an
// Azure AD one, including the per-tenant hosts of External ID (CIAM) and
// B2C.
func isAzureAD(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return azureHosts[host] || strings.HasSuffix(host, ".ciamlogin.com") || strings.HasSuffix(host, ".b2clogin.com")
}

// basicAuth returns the Authorization header value of RFC 6749 2.3.1: the id
// and secret are form-urlencoded before the Basic encoding (RFC 7617), so
// that a ':' in the id, or any non-ASCII byte, survives. url.QueryEscape is
// the encoding of application/x-www-form-urlencoded (a space is '+'), as
// golang.org/x/oauth2 uses it.
func basicAuth(clientID, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(secret)))
}

// maxStyles bounds the styles a Client remembers. A broker has one entry per
// credential; should a misuse create more, forgetting one costs only a
// second request, once, on its next call.
const maxStyles = 4096

// authStyles remembers, per token URL and client id, the style AuthAuto
// found to work. The zero value is ready for use.
type authStyles struct {
	mu sync.Mutex
	m  map[string]AuthStyle
}

func styleKey(tokenURL, clientID string) string { return tokenURL + "\x00" + clientID }

func (a *authStyles) get(key string) (AuthStyle, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.m[key]
	return s, ok
}

func (a *authStyles) set(key string, s AuthStyle) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[string]AuthStyle)
	}
	if _, ok := a.m[key]; !ok && len(a.m) >= maxStyles {
		for k := range a.m { // an arbitrary entry: see maxStyles
			delete(a.m, k)
			break
		}
	}
	a.m[key] = s
}

// styleFor returns the style for ep under AuthAuto and whether it is a
// guess to be checked (Basic, with the form body as the fallback).
func (c *Client) styleFor(ep Endpoint, host string) (style AuthStyle, probe bool) {
	if isAzureAD(host) {
		return AuthPost, false
	}
	if s, ok := c.styles.get(styleKey(ep.TokenURL, ep.ClientID)); ok {
		return s, false
	}
	basic, post := slices.Index(ep.AuthMethods, MethodBasic), slices.Index(ep.AuthMethods, MethodPost)
	switch {
	case basic >= 0 && post >= 0:
		// The IdP takes both, but each client is registered with one of
		// them (Ory Hydra lists client_secret_post first and defaults its
		// clients to Basic): the first listed, then the other once.
		if post < basic {
			return AuthPost, true
		}
		return AuthBasic, true
	case basic >= 0:
		return AuthBasic, false
	case post >= 0:
		return AuthPost, false
	}
	return AuthBasic, true
}

// authenticate sends body, to which Exchange added everything but the
// client secret, with ep's secret as its style says. safeURL is
// ep.TokenURL fit for errors.
func (c *Client) authenticate(ctx context.Context, ep Endpoint, safeURL string, body url.Values) (*Token, error) {
	secret := ep.ClientSecret.Reveal()
	if secret == "" || body.Has("client_secret") || body.Has("client_assertion") || body.Has("client_assertion_type") {
		// No secret of ep's to place, or a form that made its own choice
		// of credential: unchanged from before there were styles, a set
		// secret goes in the body.
		if secret != "" && !body.Has("client_secret") {
			body.Set("client_secret", secret)
		}
		return c.post(ctx, ep.TokenURL, safeURL, body, "", body)
	}
	style, probe := ep.AuthStyle, false
	switch style {
	case AuthAuto:
		u, _ := url.Parse(ep.TokenURL) // checkTokenURL parsed it
		style, probe = c.styleFor(ep, u.Host)
	case AuthBasic, AuthPost:
	default:
		return nil, fmt.Errorf("%w: unknown auth style %d", ErrInvalidArgument, int(style))
	}

	basic := basicAuth(ep.ClientID, secret)
	// The secret and the header never reach an error, even when the IdP
	// echoes the request: see scrub.
	redact := make(url.Values, len(body)+1)
	for k, v := range body {
		redact[k] = v
	}
	redact["client_secret"] = []string{secret, strings.TrimPrefix(basic, "Basic ")}

	posted := func() (*Token, error) {
		withSecret := make(url.Values, len(body)+1)
		for k, v := range body {
			withSecret[k] = v
		}
		withSecret.Set("client_secret", secret)
		return c.post(ctx, ep.TokenURL, safeURL, withSecret, "", redact)
	}
	send := func(s AuthStyle) (*Token, error) {
		if s == AuthPost {
			return posted()
		}
		return c.post(ctx, ep.TokenURL, safeURL, body, basic, redact)
	}
	tok, err := send(style)
	if !probe {
		return tok, err
	}
	key := styleKey(ep.TokenURL, ep.ClientID)
	if clientAccepted(err) {
		c.styles.set(key, style)
		return tok, err
	}
	if !clientRejected(err) {
		return tok, err
	}
	other := AuthPost
	if style == AuthPost {
		other = AuthBasic
	}
	tok, err = send(other)
	if clientAccepted(err) {
		c.styles.set(key, other)
	}
	// When the other fails too, the style stays unknown and the error is
	// the second's: the secret is most likely wrong, and whichever style
	// the IdP wants, its error about one is as telling as the other's.
	return tok, err
}

// clientRejected reports whether err is the IdP refusing the client's
// authentication in a way that sending the secret in the body may cure:
// invalid_client (RFC 6749 5.2) or a 401, the answers of an IdP that wants
// the secret sent another way. Not when Azure AD says it read the secret
// and it is wrong (AADSTS7000215) or expired (AADSTS7000222): Azure AD
// reads the header as well as the body, under hosts AuthAuto does not know
// too (a B2C custom domain, a gateway in front of it), and the body would
// carry the same secret to the same answer.
func clientRejected(err error) bool {
	var re *RetrieveError
	if !errors.As(err, &re) || re.StatusCode < 400 || re.StatusCode >= 500 {
		return false
	}
	if re.HasErrorCode(aadstsInvalidSecret) || re.HasErrorCode(aadstsExpiredSecret) {
		return false
	}
	return re.StatusCode == http.StatusUnauthorized || re.ErrorCode == tokenbroker.OAuthInvalidClient
}

// Azure AD's error codes for a client secret it read and refused.
const (
	aadstsInvalidSecret = 7000215
	aadstsExpiredSecret = 7000222
)

// clientAccepted reports whether err shows the IdP got past client
// authentication: a token, or a rejection of the grant itself
// (invalid_grant: a wrong password, a revoked refresh token; invalid_scope),
// which an IdP decides only for a client it has authenticated. Remembering
// the style then keeps a user's wrong password from costing two requests on
// every call.
func clientAccepted(err error) bool {
	if err == nil {
		return true
	}
	var re *RetrieveError
	return errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 && re.StatusCode != http.StatusUnauthorized &&
		(re.ErrorCode == tokenbroker.OAuthInvalidGrant || re.ErrorCode == tokenbroker.OAuthInvalidScope)
}
