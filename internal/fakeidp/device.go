package fakeidp

// The device authorization grant (RFC 8628) as Azure AD serves it: the
// device authorization endpoints /TENANT/oauth2/v2.0/devicecode (scope) and
// v1's /TENANT/oauth2/devicecode (resource), and the device_code grant on
// both token endpoints. No browser signs in: a test plays the user with
// ApproveDevice or DenyDevice, finding the user codes with
// PendingDeviceCodes.
//
// Error names: authorization_pending (AADSTS70016), expired_token
// (AADSTS70019) and bad_verification_code (AADSTS70018) are Azure AD's and
// RFC 8628's alike. A declined sign-in is RFC 8628's access_denied by
// default; Azure AD answers authorization_declined, which
// WithAzureDeviceDecline serves. slow_down is RFC 8628's: Azure AD does not
// document sending it, so it and the declined sign-in carry no AADSTS
// number, for none is known.

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// GrantDeviceCode is the grant_type of a device access token request, as
// sent and as counted by CallsFor.
const GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// Defaults of the device authorization grant: Azure AD's.
const (
	// DefaultDeviceInterval is the interval of a Server made without
	// WithDeviceInterval.
	DefaultDeviceInterval = 5 * time.Second
	// DefaultDeviceExpiry is the device codes' lifetime of a Server made
	// without WithDeviceExpiry: 15 minutes.
	DefaultDeviceExpiry = 900 * time.Second
)

// slowDownStep is what a slow_down adds to the interval a device code's
// polls must keep (RFC 8628 section 3.5).
const slowDownStep = 5 * time.Second

// devices is the Server's device authorization state, guarded by
// Server.mu. Its zero value is Azure AD's behaviour.
type devices struct {
	interval time.Duration // 0: DefaultDeviceInterval
	expiry   time.Duration // 0: DefaultDeviceExpiry
	lax      bool          // no slow_down: WithStrictDevicePolling(false)
	azure    bool          // authorization_declined rather than access_denied
	calls    int64         // requests to the device authorization endpoints
	failures []*pending
	byDevice map[string]*deviceCode // device code -> its grant
	byUser   map[string]*deviceCode // normalised user code -> its grant
}

// deviceCode is one device authorization: its codes, what was asked, and
// where the user and the polls have got to.
type deviceCode struct {
	device, user    string // the codes as issued; user is "ABCD-EFGH"
	v               version
	clientID        string
	resource, scope string
	issued, expires time.Time
	interval        time.Duration // between polls; grows by slowDownStep
	lastPoll        time.Time     // zero before the first poll
	state           int
	username        string // who approved
}

const (
	dcPending  = iota
	dcApproved // the next poll gets the tokens
	dcDenied
	dcRedeemed // the tokens were issued; the code is spent
)

// WithDeviceInterval sets the interval the device authorization responses
// give (default DefaultDeviceInterval), sent in whole seconds, at least
// one, as RFC 8628 has it; strict polling holds clients to what was sent.
func WithDeviceInterval(d time.Duration) Option {
	return func(s *Server) { s.dev.interval = d }
}

// WithDeviceExpiry sets how long device and user codes are valid (default
// DefaultDeviceExpiry), sent as expires_in in whole seconds, at least one;
// the codes expire on the Server's clock.
func WithDeviceExpiry(d time.Duration) Option {
	return func(s *Server) { s.dev.expiry = d }
}

// WithStrictDevicePolling sets whether a poll sooner than the code's
// interval after the previous poll of the same code, on the Server's clock,
// is answered slow_down, and the code's interval raised by five seconds for
// every later poll (RFC 8628 section 3.5). Default true. Turn it off for a
// test whose client polls on a clock other than the Server's, such as a
// fast real clock with a fake IdP clock; the first poll of a code is never
// too soon.
func WithStrictDevicePolling(strict bool) Option {
	return func(s *Server) { s.dev.lax = !strict }
}

// WithAzureDeviceDecline makes a declined sign-in answer Azure AD's
// authorization_declined instead of RFC 8628's access_denied.
func WithAzureDeviceDecline(azure bool) Option {
	return func(s *Server) { s.dev.azure = azure }
}

// DeviceAuthorizationURL is in discovery.go, for discovery names it;
// V1DeviceAuthorizationURL is its v1 sibling.

// V1DeviceAuthorizationURL returns the Azure AD v1 device authorization
// endpoint of a started Server.
func (s *Server) V1DeviceAuthorizationURL() string {
	return s.url + "/" + s.tenant + "/oauth2/devicecode"
}

// DeviceVerificationURL returns the verification_uri the device
// authorization responses of a started Server name. The Server serves no
// page there: tests sign in with ApproveDevice.
func (s *Server) DeviceVerificationURL() string { return s.url + "/devicelogin" }

// DeviceAuthorizationCalls returns how many requests reached either device
// authorization endpoint so far, failed ones included. Polls are token
// calls: CallsFor(GrantDeviceCode) counts them.
func (s *Server) DeviceAuthorizationCalls() int64 { return s.locked(&s.dev.calls) }

// FailDeviceAuthorization makes the next n device authorization requests
// fail with f, as Fail does for token calls (n < 0: until
// ClearDeviceAuthorizationFailures). Polls, being token calls, take Fail's
// failures, not these.
func (s *Server) FailDeviceAuthorization(f Failure, n int) { s.queue(&s.dev.failures, f, n) }

// ClearDeviceAuthorizationFailures drops every failure queued by
// FailDeviceAuthorization.
func (s *Server) ClearDeviceAuthorizationFailures() { s.clearQueue(&s.dev.failures) }

// PendingDeviceCodes returns the user codes ("ABCD-EFGH") of the device
// authorizations awaiting the user, unexpired by the Server's clock, oldest
// first.
func (s *Server) PendingDeviceCodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var live []*deviceCode
	for _, c := range s.dev.byUser {
		if c.state == dcPending && now.Before(c.expires) {
			live = append(live, c)
		}
	}
	slices.SortFunc(live, func(a, b *deviceCode) int {
		if c := a.issued.Compare(b.issued); c != 0 {
			return c
		}
		return strings.Compare(a.user, b.user)
	})
	codes := make([]string, len(live))
	for i, c := range live {
		codes[i] = c.user
	}
	return codes
}

// ApproveDevice signs username in at the verification page with userCode
// (any case, with or without the dash), as a user who consents: the next
// poll of its device code gets tokens for username. Any non-empty username
// will do, known to the password grant or not, since the browser sign-in is
// not modelled. It fails when the code is unknown, expired, or already
// approved or denied.
func (s *Server) ApproveDevice(userCode, username string) error {
	if username == "" {
		return fmt.Errorf("fakeidp: approve device code %s: empty username", userCode)
	}
	return s.decideDevice(userCode, func(c *deviceCode) {
		c.state, c.username = dcApproved, username
	})
}

// DenyDevice declines the sign-in of userCode, as a user who does not
// consent: the next poll of its device code gets access_denied (or
// authorization_declined, see WithAzureDeviceDecline). It fails as
// ApproveDevice does.
func (s *Server) DenyDevice(userCode string) error {
	return s.decideDevice(userCode, func(c *deviceCode) { c.state = dcDenied })
}

func (s *Server) decideDevice(userCode string, decide func(*deviceCode)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.dev.byUser[normalUserCode(userCode)]
	switch {
	case !ok:
		return fmt.Errorf("fakeidp: no device authorization with user code %q", userCode)
	case !s.now().Before(c.expires):
		return fmt.Errorf("fakeidp: user code %s has expired", c.user)
	case c.state != dcPending:
		return fmt.Errorf("fakeidp: user code %s was already approved or denied", c.user)
	}
	decide(c)
	return nil
}

// normalUserCode is a user code as typed, in the form it is looked up by:
// upper case, without dashes or spaces (RFC 8628 section 6.1).
func normalUserCode(code string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToUpper(code))
}

// handleDevice adds the device authorization endpoints to mux.
func (s *Server) handleDevice(mux *http.ServeMux) {
	mux.HandleFunc("/{tenant}/oauth2/devicecode", func(w http.ResponseWriter, r *http.Request) { s.serveDevice(w, r, v1) })
	mux.HandleFunc("/{tenant}/oauth2/v2.0/devicecode", func(w http.ResponseWriter, r *http.Request) { s.serveDevice(w, r, v2) })
}

// serveDevice is both device authorization endpoints: count, scripted
// failure, then the request itself.
func (s *Server) serveDevice(w http.ResponseWriter, r *http.Request, v version) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "fakeidp: closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	s.dev.calls++
	var failure *Failure
	if len(s.dev.failures) > 0 {
		p := s.dev.failures[0]
		f := p.f
		failure = &f
		if p.n > 0 {
			if p.n--; p.n == 0 {
				s.dev.failures = s.dev.failures[1:]
			}
		}
	}
	s.mu.Unlock()

	if failure != nil {
		failure.serve(s, w, r, v)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.writeError(w, r, http.StatusMethodNotAllowed, tokenbroker.OAuthInvalidRequest, 900561, "The endpoint only accepts POST requests. Received a "+r.Method+" request.")
		return
	}
	if tenant := r.PathValue("tenant"); tenant != s.tenant {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 90002, "Tenant '"+tenant+"' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 900144, "The request body must be application/x-www-form-urlencoded.")
		return
	}
	form, ok := s.clientCredentials(w, r)
	if !ok {
		return
	}
	clientID, resource, scope := form.Get("client_id"), form.Get("resource"), form.Get("scope")
	switch {
	case clientID == "":
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	case v == v1 && resource == "":
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidResource, 50001, "The request body must contain the 'resource' parameter on the v1 endpoint: the resource principal was not found in the tenant named "+s.tenant+".")
		return
	case v == v2 && scope == "":
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 90014, "The required field 'scope' is missing from the credential. Ensure that you have all the necessary parameters for the login request.")
		return
	}

	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	verify := scheme + "://" + r.Host + "/devicelogin"

	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deviceClient(w, r, clientID, form.Get("client_secret")) {
		return
	}
	now := s.now()
	s.pruneDevices(now)
	interval := wholeSeconds(s.dev.interval, DefaultDeviceInterval)
	expiry := wholeSeconds(s.dev.expiry, DefaultDeviceExpiry)
	c := &deviceCode{
		device:   "DAQABAAEAAA" + base64.RawURLEncoding.EncodeToString(randomBytes(96)),
		user:     s.newUserCode(),
		v:        v,
		clientID: clientID,
		resource: resource,
		scope:    scope,
		issued:   now,
		expires:  now.Add(expiry),
		interval: interval,
	}
	if s.dev.byDevice == nil {
		s.dev.byDevice, s.dev.byUser = map[string]*deviceCode{}, map[string]*deviceCode{}
	}
	s.dev.byDevice[c.device] = c
	s.dev.byUser[normalUserCode(c.user)] = c

	secs, ivSecs := int64(expiry/time.Second), int64(interval/time.Second)
	body := map[string]any{
		"device_code":               c.device,
		"user_code":                 c.user,
		"verification_uri_complete": verify + "?otc=" + url.QueryEscape(c.user),
		"message":                   "To sign in, use a web browser to open the page " + verify + " and enter the code " + c.user + " to authenticate.",
	}
	if v == v1 {
		// v1's names and types: verification_url, numbers as strings.
		body["verification_url"] = verify
		body["expires_in"], body["interval"] = strconv.FormatInt(secs, 10), strconv.FormatInt(ivSecs, 10)
	} else {
		body["verification_uri"] = verify
		body["expires_in"], body["interval"] = secs, ivSecs
	}
	writeJSON(w, http.StatusOK, body)
}

// deviceClient checks the client of a device authorization request as
// grant checks a token request's client secret, and answers the request
// when it fails. Clients that authenticate with a certificate or a
// federated credential are not served here. The caller holds s.mu.
func (s *Server) deviceClient(w http.ResponseWriter, r *http.Request, clientID, sent string) bool {
	secret, known := s.clients[clientID]
	switch {
	case !known:
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthUnauthorizedClient, 700016, "Application with identifier '"+clientID+"' was not found in the directory '"+s.tenant+"'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.")
	case secret == "" && sent != "":
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
	case secret != "" && sent == "":
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	case sent != secret:
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
	default:
		return true
	}
	return false
}

// wholeSeconds is d, or def when d is not positive, in whole seconds and at
// least one, as the responses send it: the Server holds clients to what it
// sent, not to a fraction they never saw.
func wholeSeconds(d, def time.Duration) time.Duration {
	if d <= 0 {
		d = def
	}
	return max(time.Second, d.Truncate(time.Second))
}

// userCodeAlphabet is RFC 8628 section 6.1's: consonants only, so that no
// code spells a word, and none that are read alike.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// newUserCode returns a user code like "BCDF-GHJK" that no live device
// authorization has. The caller holds s.mu.
func (s *Server) newUserCode() string {
	for {
		b := randomBytes(8)
		code := make([]byte, 0, 9)
		for i, x := range b {
			if i == 4 {
				code = append(code, '-')
			}
			code = append(code, userCodeAlphabet[int(x)%len(userCodeAlphabet)])
		}
		if _, taken := s.dev.byUser[normalUserCode(string(code))]; !taken {
			return string(code)
		}
	}
}

// deviceGraceAfterExpiry is how long an expired device code is kept, so
// that its polls are told expired_token rather than bad_verification_code.
const deviceGraceAfterExpiry = time.Hour

// pruneDevices forgets device codes expired long ago, so that a
// long-running Server (the demo) does not grow. The caller holds s.mu.
func (s *Server) pruneDevices(now time.Time) {
	for dc, c := range s.dev.byDevice {
		if now.Sub(c.expires) > deviceGraceAfterExpiry {
			delete(s.dev.byDevice, dc)
			delete(s.dev.byUser, normalUserCode(c.user))
		}
	}
}

// deviceGrant answers a device access token request (RFC 8628 section 3.4)
// whose client grant has authenticated: pending, slow_down, denied, expired
// or tokens for the user who approved, with a refresh token on v1 and on v2
// when the device authorization's scope had offline_access, as Azure AD
// issues them. The poll's own scope and resource are not read: the tokens
// are for what the user consented to. A v1 poll may carry the device code
// in code, as ADAL sent it. The caller holds s.mu.
func (s *Server) deviceGrant(w http.ResponseWriter, r *http.Request, v version, form url.Values, clientID string) {
	dc := form.Get("device_code")
	if dc == "" && v == v1 {
		dc = form.Get("code")
	}
	if dc == "" {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 900144, "The request body must contain the following parameter: 'device_code'.")
		return
	}
	now := s.now()
	c, ok := s.dev.byDevice[dc]
	switch {
	case !ok || c.v != v:
		s.writeError(w, r, http.StatusBadRequest, "bad_verification_code", 70018, "The provided value for the input parameter 'device_code' is not valid.")
	case c.clientID != clientID:
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 70000, "Provided grant is invalid or malformed: the device code was issued to another client.")
	case c.state == dcRedeemed:
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 90120, "The device code has already been redeemed.")
	case !now.Before(c.expires):
		s.writeError(w, r, http.StatusBadRequest, "expired_token", 70019, "Verification code expired.")
	case c.state == dcDenied:
		code := tokenbroker.OAuthAccessDenied
		if s.dev.azure {
			code = "authorization_declined"
		}
		s.writeRFCError(w, r, code, "The end user denied the authorization request.")
	case !s.dev.lax && !c.lastPoll.IsZero() && now.Sub(c.lastPoll) < c.interval:
		c.lastPoll = now
		c.interval += slowDownStep
		s.writeRFCError(w, r, "slow_down", "The device code was polled sooner than its interval; wait "+strconv.Itoa(int(c.interval/time.Second))+" seconds between polls.")
	case c.state == dcPending:
		c.lastPoll = now
		s.writeError(w, r, http.StatusBadRequest, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
	default: // approved
		c.lastPoll = now
		c.state = dcRedeemed
		s.issue(w, v, clientID, c.username, c.resource, c.scope, v == v1 || hasScope(c.scope, "offline_access"))
	}
}

// writeRFCError writes a 400 error of RFC 8628 that Azure AD gives no
// AADSTS number: Azure's shape (trace and correlation lines, ids) without
// error_codes or error_uri.
func (s *Server) writeRFCError(w http.ResponseWriter, r *http.Request, code, description string) {
	body := s.errorBody(r, code, 0, description)
	body["error_description"] = strings.TrimPrefix(body["error_description"].(string), "AADSTS0: ")
	delete(body, "error_codes")
	delete(body, "error_uri")
	writeJSON(w, http.StatusBadRequest, body)
}
