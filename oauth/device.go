package oauth

// The device authorization grant (RFC 8628): a user signs in on another
// device (a browser on a phone or laptop) with a short user code, while the
// broker polls the token endpoint with the matching device code. It is how
// `tokenbroker login` enrols a delegated user credential without the broker
// ever seeing the user's password.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// GrantTypeDeviceCode is the grant_type of a device access token request
// (RFC 8628 section 3.4).
const GrantTypeDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// DefaultDeviceInterval is the wait between polls when the device
// authorization response names none (RFC 8628 section 3.2).
const DefaultDeviceInterval = 5 * time.Second

// slowDownStep is what each slow_down adds to the wait between polls, for
// that poll and every later one (RFC 8628 section 3.5).
const slowDownStep = 5 * time.Second

// maxDeviceExpiry bounds expires_in of a device authorization response.
// Azure AD gives 15 minutes, other IdPs 10 to 30; a code valid for more than
// a day is a unit mistake or garbage, and would keep PollDevice polling
// for it.
const maxDeviceExpiry = 24 * time.Hour

// maxDeviceBackoff bounds the wait between polls after the IdP failed
// temporarily, so that a login outlives a short outage without hammering
// the IdP and without sleeping through most of the code's life.
const maxDeviceBackoff = time.Minute

// Errors of a device access token request that need telling apart. A
// DeviceToken or PollDevice error matches one of them with errors.Is when
// the IdP answered with that error code, and is then also the IdP's
// *RetrieveError (errors.As), so Classify and OutcomeOf treat it as any
// other answer of the IdP: a 400 that is not Temporary, a rejection (401 for
// the broker's caller), never a failure of the IdP.
var (
	// ErrAuthorizationPending: the user has not signed in yet; poll again
	// after the interval. authorization_pending (Azure AD: AADSTS70016).
	ErrAuthorizationPending = errors.New("oauth: device authorization pending")
	// ErrSlowDown: polled too often; poll again after the interval plus
	// five seconds, and keep the longer interval. slow_down.
	ErrSlowDown = errors.New("oauth: device authorization polled too often")
	// ErrAccessDenied: the user declined the sign-in; stop polling.
	// access_denied (RFC 8628), or authorization_declined, Azure AD's name
	// for it.
	ErrAccessDenied = errors.New("oauth: device authorization denied")
	// ErrExpiredToken: the device code expired before the user signed in;
	// stop polling and start again with a new code. expired_token (Azure
	// AD: AADSTS70019), or PollDevice finding the code's expires_in past
	// on its own clock: that error is a *RetrieveError with StatusCode 0
	// (no IdP answer) and ErrorCode expired_token, so it classifies as the
	// IdP's own would.
	ErrExpiredToken = errors.New("oauth: device code expired")
)

// deviceSentinel returns the sentinel of an OAuth error code of the device
// flow, nil for any other code.
func deviceSentinel(code string) error {
	switch code {
	case "authorization_pending":
		return ErrAuthorizationPending
	case "slow_down":
		return ErrSlowDown
	case "access_denied", "authorization_declined":
		return ErrAccessDenied
	case "expired_token":
		return ErrExpiredToken
	}
	return nil
}

// deviceError is a *RetrieveError that also matches its sentinel with
// errors.Is. Its message is the RetrieveError's, or msg when set (an error
// PollDevice decided on without the IdP).
type deviceError struct {
	re   *RetrieveError
	kind error
	msg  string
}

func (e *deviceError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return e.re.Error()
}

// Unwrap returns both, so that errors.As finds the *RetrieveError (and
// Classify its code) and errors.Is the sentinel.
func (e *deviceError) Unwrap() []error { return []error{e.re, e.kind} }

// DeviceAuthorization is a device authorization response (RFC 8628 section
// 3.2): what to show the user, and the device code to poll with. It holds
// the device code in a Secret: print it, log it, the code stays out.
type DeviceAuthorization struct {
	// DeviceCode is what DeviceToken polls with. Whoever holds it gets the
	// user's tokens once the user signs in: never log or show it.
	DeviceCode tokenbroker.Secret
	// UserCode is what the user types at VerificationURI, e.g. "ABCD-EFGH".
	UserCode string
	// VerificationURI is where the user signs in: verification_uri, or
	// verification_url as Azure AD v1 endpoints name it.
	VerificationURI string
	// VerificationURIComplete is verification_uri_complete, the URI with
	// the user code in it (for a QR code), "" when the IdP sent none, as
	// Azure AD does not.
	VerificationURIComplete string
	// Message is the IdP's instructions for the user, "" when it sent
	// none. Azure AD sends one, with the URI and user code in it.
	Message string
	// ExpiresIn is how long, from the response, the codes are valid.
	ExpiresIn time.Duration
	// Interval is the least wait between polls: interval as sent, or
	// DefaultDeviceInterval when absent (or not positive).
	Interval time.Duration

	// issued is when the response arrived on the Client's clock, from
	// which PollDevice counts ExpiresIn; zero for a DeviceAuthorization
	// made by hand, which counts from the start of PollDevice.
	issued time.Time
}

// DeviceAuthorization asks the device authorization endpoint deviceEndpoint
// (discovery's device_authorization_endpoint; Azure AD's is the token
// endpoint's sibling .../oauth2/v2.0/devicecode, or v1's .../oauth2/devicecode)
// for a device code and a user code. It sends ep's client_id, scope and
// resource when set (Azure AD v2 wants scope, v1 resource; the scope decides
// what the user consents to, and a v2 refresh token comes only with
// offline_access in it), and authenticates with ep's client secret the way
// the token calls do (see AuthStyle), sharing what AuthAuto learnt about the
// token endpoint. ep.TokenURL is not called.
//
// Errors are those of Exchange: *RetrieveError, *ResponseError (a 2xx that is
// not a usable device authorization response), *TransportError, or one
// wrapping ErrInvalidArgument. Their messages name the token endpoint, as
// the types are shared, but carry the device authorization URL.
func (c *Client) DeviceAuthorization(ctx context.Context, deviceEndpoint string, ep Endpoint) (*DeviceAuthorization, error) {
	safeURL, err := checkDeviceURL(deviceEndpoint)
	if err != nil {
		return nil, err
	}
	if ep.ClientID == "" {
		return nil, fmt.Errorf("%w: device authorization needs a client id", ErrInvalidArgument)
	}
	body := url.Values{"client_id": {ep.ClientID}}
	if ep.Scope != "" {
		body.Set("scope", ep.Scope)
	}
	if ep.Resource != "" {
		body.Set("resource", ep.Resource)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.authenticateDevice(ctx, ep, deviceEndpoint, safeURL, body)
}

// checkDeviceURL is checkTokenURL for the device authorization endpoint,
// whose errors name it.
func checkDeviceURL(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%w: empty device authorization URL", ErrInvalidArgument)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: device authorization URL does not parse", ErrInvalidArgument)
	}
	safe := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%w: device authorization URL %s is not an absolute http(s) URL", ErrInvalidArgument, safe)
	}
	return safe, nil
}

// authenticateDevice is authenticate for the device authorization endpoint:
// the same choice of style (styleFor, remembered per token endpoint and
// client, as RFC 8628 3.1 has the client authenticate there as at the token
// endpoint), the same single fallback on a rejected client, the same
// redaction. It differs only in what it reads from a 2xx, which is why it
// is not authenticate itself: that one is bound to a token response.
func (c *Client) authenticateDevice(ctx context.Context, ep Endpoint, deviceURL, safeURL string, body url.Values) (*DeviceAuthorization, error) {
	secret := ep.ClientSecret.Reveal()
	if secret == "" {
		return c.postDevice(ctx, deviceURL, safeURL, body, "", body)
	}
	style, probe := ep.AuthStyle, false
	switch style {
	case AuthAuto:
		u, _ := url.Parse(deviceURL) // checkDeviceURL parsed it
		style, probe = c.styleFor(ep, u.Host)
	case AuthBasic, AuthPost:
	default:
		return nil, fmt.Errorf("%w: unknown auth style %d", ErrInvalidArgument, int(style))
	}
	basic := basicAuth(ep.ClientID, secret)
	redact := make(url.Values, len(body)+1)
	for k, v := range body {
		redact[k] = v
	}
	redact["client_secret"] = []string{secret, strings.TrimPrefix(basic, "Basic ")}
	send := func(s AuthStyle) (*DeviceAuthorization, error) {
		if s == AuthPost {
			withSecret := make(url.Values, len(body)+1)
			for k, v := range body {
				withSecret[k] = v
			}
			withSecret.Set("client_secret", secret)
			return c.postDevice(ctx, deviceURL, safeURL, withSecret, "", redact)
		}
		return c.postDevice(ctx, deviceURL, safeURL, body, basic, redact)
	}
	da, err := send(style)
	if !probe {
		return da, err
	}
	// Remembered under the token endpoint, whose calls follow: the style
	// is the client's registration, the same at both endpoints.
	key := styleKey(ep.TokenURL, ep.ClientID)
	if clientAccepted(err) {
		if ep.TokenURL != "" {
			c.styles.set(key, style)
		}
		return da, err
	}
	if !clientRejected(err) {
		return da, err
	}
	other := AuthPost
	if style == AuthPost {
		other = AuthBasic
	}
	da, err = send(other)
	if clientAccepted(err) && ep.TokenURL != "" {
		c.styles.set(key, other)
	}
	return da, err
}

// postDevice sends one device authorization request, as post does a token
// request, and reads the answer: a 2xx as a device authorization response,
// anything else as interpret reads a token endpoint's error.
func (c *Client) postDevice(ctx context.Context, deviceURL, safeURL string, body url.Values, basic string, redact url.Values) (*DeviceAuthorization, error) {
	resp, data, err := c.postForm(ctx, deviceURL, safeURL, "device authorization URL", body, basic)
	if err != nil {
		return nil, err
	}
	now := c.now()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if len(data) > maxBody {
			return nil, &ResponseError{StatusCode: resp.StatusCode, Reason: "body over 1 MiB"}
		}
		da, err := parseDeviceAuthorization(resp.StatusCode, resp.Header.Get("Content-Type"), data, now)
		return da, scrubbed(err, redact)
	}
	_, err = interpret(resp, data, now)
	return nil, scrubbed(err, redact)
}

// scrubbed removes redact's sensitive values from the IdP's words in err,
// when err is a *RetrieveError; see scrub.
func scrubbed(err error, redact url.Values) error {
	var re *RetrieveError
	if errors.As(err, &re) {
		re.Description = scrub(re.Description, redact)
		re.ErrorURI = scrub(re.ErrorURI, redact)
	}
	return err
}

// deviceJSON is a device authorization response as sent (RFC 8628 3.2, with
// Azure AD's message and v1's verification_url), and the error fields of an
// error in a 2xx, decoded in one pass as tokenJSON is. Its embedded
// tokenJSON holds the error fields; its token fields go unused, and its
// expires_in is shadowed by the device code's.
type deviceJSON struct {
	tokenJSON
	DeviceCode              jsonString  `json:"device_code"`
	UserCode                jsonString  `json:"user_code"`
	VerificationURI         jsonString  `json:"verification_uri"`
	VerificationURL         jsonString  `json:"verification_url"`
	VerificationURIComplete jsonString  `json:"verification_uri_complete"`
	Message                 jsonString  `json:"message"`
	ExpiresIn               jsonSeconds `json:"expires_in"`
	Interval                jsonSeconds `json:"interval"`
}

// parseDeviceAuthorization turns a 2xx device authorization response
// received at now into a DeviceAuthorization. It returns a *RetrieveError
// when the body carries an error field, a *ResponseError when it is not a
// usable response; neither quotes the body, which holds the device code.
func parseDeviceAuthorization(status int, contentType string, body []byte, now time.Time) (*DeviceAuthorization, error) {
	bad := func(format string, args ...any) error {
		return &ResponseError{StatusCode: status, Reason: fmt.Sprintf(format, args...)}
	}
	var dj deviceJSON
	if err := json.Unmarshal(body, &dj); err != nil {
		return nil, bad("%s; content type %s", notAnObject(body, err), mediaType(contentType))
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return nil, bad("body is JSON null, not an object")
	}
	if dj.Error.s != "" {
		return nil, dj.retrieveError(status)
	}
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"device_code", dj.DeviceCode.bad},
		{"user_code", dj.UserCode.bad},
		{"verification_uri", dj.VerificationURI.bad},
		{"verification_url", dj.VerificationURL.bad},
		{"expires_in", dj.ExpiresIn.bad},
		{"interval", dj.Interval.bad},
	} {
		if f.bad {
			return nil, bad("field %q has the wrong type", f.name)
		}
	}
	da := &DeviceAuthorization{
		DeviceCode:              tokenbroker.Secret(dj.DeviceCode.s),
		UserCode:                dj.UserCode.s,
		VerificationURI:         dj.VerificationURI.s,
		VerificationURIComplete: dj.VerificationURIComplete.s,
		Message:                 dj.Message.s,
		Interval:                DefaultDeviceInterval,
		issued:                  now,
	}
	if da.VerificationURI == "" {
		da.VerificationURI = dj.VerificationURL.s
	}
	maxSecs := int64(maxDeviceExpiry / time.Second)
	switch {
	case da.DeviceCode.IsZero():
		return nil, bad("no device_code")
	case da.UserCode == "":
		return nil, bad("no user_code")
	case da.VerificationURI == "":
		return nil, bad("no verification_uri (or verification_url)")
	case !dj.ExpiresIn.set:
		return nil, bad("no expires_in: the device code's lifetime is unknown")
	case dj.ExpiresIn.v <= 0 || dj.ExpiresIn.v > maxSecs:
		return nil, bad("expires_in %d is not between 1 and %d seconds", dj.ExpiresIn.v, maxSecs)
	}
	da.ExpiresIn = time.Duration(dj.ExpiresIn.v) * time.Second
	// An interval of 0 would have the client poll as fast as it can; RFC
	// 8628's default is the safe reading of a value that makes no sense.
	if iv := dj.Interval; iv.set && iv.v > 0 && iv.v <= maxSecs {
		da.Interval = time.Duration(iv.v) * time.Second
	}
	return da, nil
}

// DeviceToken polls the token endpoint once for the tokens of deviceCode
// (RFC 8628 section 3.4): grant_type GrantTypeDeviceCode and device_code,
// with ep's client_id, scope, resource, claims and client authentication as
// Exchange adds them. To an Azure AD v1 token endpoint (a path ending in
// /oauth2/token, with ep.Resource set) the device code goes in code as
// well: ADAL, the v1 client library, sent it only there (with grant_type
// device_code), and a server that reads device_code ignores an unknown
// parameter (RFC 6749 section 3.2).
//
// While the user has not signed in the error matches ErrAuthorizationPending
// or ErrSlowDown; once the user declined or the code expired, ErrAccessDenied
// or ErrExpiredToken. Each is the IdP's *RetrieveError as well. Other errors
// are Exchange's. The device code never appears in an error, even when the
// IdP echoes it.
func (c *Client) DeviceToken(ctx context.Context, ep Endpoint, deviceCode tokenbroker.Secret) (*Token, error) {
	if deviceCode.IsZero() {
		return nil, fmt.Errorf("%w: empty device code", ErrInvalidArgument)
	}
	dc := deviceCode.Reveal()
	form := url.Values{"grant_type": {GrantTypeDeviceCode}, "device_code": {dc}}
	if azureV1(ep) {
		form.Set("code", dc)
	}
	tok, err := c.Exchange(ctx, ep, form)
	if err == nil {
		return tok, nil
	}
	// post redacts the values of the parameters it knows to be secret;
	// device_code is not among them, so it is redacted here.
	err = scrubbed(err, url.Values{"code": {dc}})
	var re *RetrieveError
	if errors.As(err, &re) && re.StatusCode >= 400 {
		if kind := deviceSentinel(re.ErrorCode); kind != nil {
			return nil, &deviceError{re: re, kind: kind}
		}
	}
	return nil, err
}

// azureV1 reports whether ep is an Azure AD v1 token endpoint: the v1 path
// and the v1 resource parameter.
func azureV1(ep Endpoint) bool {
	if ep.Resource == "" {
		return false
	}
	u, err := url.Parse(ep.TokenURL)
	return err == nil && strings.HasSuffix(u.Path, "/oauth2/token")
}

// sleepTimer is how PollDevice waits when given no sleep: a timer.
func sleepTimer(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PollDevice polls with DeviceToken until the user signs in and returns the
// tokens. It waits da.Interval before each poll (the user cannot have signed
// in the instant the code was shown), adds five seconds to it for good on
// each slow_down (RFC 8628 section 3.5), and keeps polling through
// authorization_pending. After a temporary failure (throttling, an outage,
// the IdP unreachable) it keeps polling, waiting twice as long each time up
// to a minute, or the Retry-After the IdP asked for when longer.
//
// It returns the error of DeviceToken at once when that is final: the user
// declined (ErrAccessDenied), the IdP says the code expired
// (ErrExpiredToken), or any other rejection or unusable answer. It returns
// an error matching ErrExpiredToken without calling the IdP when the next
// poll would come at or after the code's expiry by the Client's clock
// (da.ExpiresIn from when DeviceAuthorization received it) — unless the
// last poll failed temporarily, as the IdP failing is then why the sign-in
// did not complete, and that error is returned. A DeviceAuthorization
// without ExpiresIn (made by hand) has no expiry of its own: the IdP's
// expired_token or ctx ends it. When ctx ends it returns an error wrapping
// ctx.Err().
//
// sleep waits between polls; nil means a timer. Tests pass one that moves
// a fake clock (the Client's, see SetClock) instead of waiting.
func (c *Client) PollDevice(ctx context.Context, ep Endpoint, da *DeviceAuthorization, sleep func(ctx context.Context, d time.Duration) error) (*Token, error) {
	if da == nil || da.DeviceCode.IsZero() {
		return nil, fmt.Errorf("%w: no device code to poll with", ErrInvalidArgument)
	}
	if sleep == nil {
		sleep = sleepTimer
	}
	interval := da.Interval
	if interval <= 0 {
		interval = DefaultDeviceInterval
	}
	start := da.issued
	if start.IsZero() {
		start = c.now()
	}
	var deadline time.Time
	if da.ExpiresIn > 0 {
		deadline = start.Add(da.ExpiresIn)
	}

	var lastErr error // the last poll's temporary failure, nil after any other answer
	failures := 0     // consecutive temporary failures
	wait := interval  // before the next poll
	for {
		if !deadline.IsZero() && !c.now().Add(wait).Before(deadline) {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, &deviceError{
				re: &RetrieveError{ErrorCode: "expired_token",
					Description: "the device code expired before the user signed in; start again with a new code"},
				kind: ErrExpiredToken,
				msg:  fmt.Sprintf("oauth: device code expired before the user signed in (it was valid for %s)", da.ExpiresIn),
			}
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("oauth: waiting for the user to sign in: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("oauth: waiting for the user to sign in: %w", err)
		}
		tok, err := c.DeviceToken(ctx, ep, da.DeviceCode)
		switch {
		case err == nil:
			return tok, nil
		case ctx.Err() != nil:
			// The call was cut by the caller, not failed by the IdP.
			return nil, err
		case errors.Is(err, ErrAuthorizationPending):
			lastErr, failures, wait = nil, 0, interval
		case errors.Is(err, ErrSlowDown):
			interval += slowDownStep
			lastErr, failures, wait = nil, 0, interval
		case temporary(err):
			lastErr = err
			failures++
			wait = backoff(interval, failures)
			if ra := retryAfterOf(err); ra > wait {
				wait = ra
			}
		default:
			return nil, err
		}
	}
}

// temporary reports whether err says the IdP is failing for now rather than
// answering: throttling, an outage, or no answer at all.
func temporary(err error) bool {
	var re *RetrieveError
	var te *TransportError
	switch {
	case errors.As(err, &re):
		return re.Temporary()
	case errors.As(err, &te):
		return true
	}
	return false
}

// retryAfterOf is the Retry-After of an IdP's error, 0 when none.
func retryAfterOf(err error) time.Duration {
	var re *RetrieveError
	if errors.As(err, &re) {
		return re.RetryAfter
	}
	return 0
}

// backoff is the wait after the n-th consecutive temporary failure: the
// interval doubled n times, at most maxDeviceBackoff (or the interval, when
// that is longer).
func backoff(interval time.Duration, n int) time.Duration {
	d := interval
	for i := 0; i < n && d < maxDeviceBackoff; i++ {
		d *= 2
	}
	return max(interval, min(d, maxDeviceBackoff))
}
