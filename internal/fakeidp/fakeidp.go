// Package fakeidp is an identity provider that speaks the Azure AD (Entra ID)
// token endpoint dialect, v1 (/TENANT/oauth2/token, lifetimes as strings,
// resource) and v2 (/TENANT/oauth2/v2.0/token, lifetimes as numbers, scope),
// for tests and for the `tokenbroker demo` command.
//
// Beyond answering the password, client_credentials and refresh_token grants
// with Azure's response and error shapes (AADSTS codes, trace and correlation
// ids), for public clients, clients with a secret and clients with a
// certificate (a client assertion JWT, RFC 7523, checked as Azure AD checks
// it: see AddCertificateClient and GenerateCertificate) and clients with
// federated identity credentials (a JWT another issuer signed, as for
// workload identity: see AddFederatedClient and FederatedIssuer), it lets a
// test count calls, script failures (throttling, HTML pages, truncated JSON,
// hangs, ...), hold calls to pile up concurrent callers behind one IdP call,
// and revoke refresh tokens. It also holds clients to one way of sending
// their secret, HTTP Basic or the form body, as Ory Hydra and Okta do
// (AddBasicClient, AddPostClient), and serves OpenID Connect discovery
// documents (V2Issuer, Issuer). It does not import testing, so the demo
// binary can use it.
package fakeidp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTenant is the tenant of a Server made without WithTenant.
const DefaultTenant = "demo-tenant"

// DefaultLifetime is the access token lifetime of a Server made without
// WithLifetime: Azure AD's usual hour.
const DefaultLifetime = time.Hour

// Grant types, as sent in grant_type and as counted by CallsFor.
const (
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// Server is a fake Azure AD token endpoint. It is safe for concurrent use.
type Server struct {
	tenant string
	now    func() time.Time
	strict bool
	key    []byte // HMAC key of the access tokens

	calls atomic.Int64
	wg    sync.WaitGroup // handlers in flight, waited for by Close
	done  chan struct{}  // closed by Close: releases held and hanging calls

	mu       sync.Mutex // guards the fields below
	closed   bool
	lifetime time.Duration
	users    map[string]string              // username -> password
	clients  map[string]string              // client id -> secret ("" = public client)
	certs    map[string][]*x509.Certificate // client id -> registered certificates
	jtis     map[string]time.Time           // client id + " " + jti -> assertion expiry
	fed      federation                     // federated identity credentials; see federated.go
	hints    hints                          // refresh_in and claims requests; see claims.go
	refresh  map[string]*refreshGrant
	record   bool     // keep every token issued, for IssuedTokens
	issued   []string // access and refresh tokens, when record is set
	callsFor map[string]int64
	failures []*pending
	hold     chan struct{}
	onCall   func(grant string)

	// Client authentication methods (clientauth.go) and discovery
	// (discovery.go), guarded by mu.
	authOnly  map[string]string // client id -> the one secret method it accepts
	authCalls map[string]int64  // secret method -> calls that sent a secret by it
	disc      discovery
	dev       devices // the device authorization grant; see device.go

	srv *http.Server
	url string
}

// refreshGrant is what a refresh token stands for, and why it stopped working.
type refreshGrant struct {
	user     string // "" for none (never issued for client_credentials)
	clientID string
	state    int
}

const (
	rtValid      = iota
	rtUsed       // rotated away under strict rotation
	rtRevoked    // RevokeRefreshTokens
	rtPwdChanged // the user's password changed since it was issued
)

type pending struct {
	f Failure
	n int // calls left; < 0 for until ClearFailures
}

// Option configures a Server made by New or Start.
type Option func(*Server)

// WithTenant sets the tenant in the endpoint paths and tokens (default
// DefaultTenant). A call to another tenant fails with AADSTS90002.
func WithTenant(tenant string) Option { return func(s *Server) { s.tenant = tenant } }

// WithLifetime sets the access token lifetime (default DefaultLifetime); see
// SetLifetime.
func WithLifetime(d time.Duration) Option { return func(s *Server) { s.lifetime = d } }

// WithUser adds a user that may use the password grant.
func WithUser(username, password string) Option {
	return func(s *Server) { s.users[username] = password }
}

// WithClient adds a client application; see AddClient.
func WithClient(clientID, secret string) Option {
	return func(s *Server) { s.clients[clientID] = secret }
}

// WithRecordIssued makes the Server keep every access and refresh token it
// issues, so a test can check that none of them leaks anywhere (logs,
// errors, stored records). Off by default: a load test issues many.
func WithRecordIssued() Option { return func(s *Server) { s.record = true } }

// IssuedTokens returns every access and refresh token issued so far, when
// the Server was made WithRecordIssued; nil otherwise.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// WithStrictRotation sets whether a refresh token is invalid once used
// (default true, as Azure AD does for single-page apps and as a careful
// broker must assume); false lets a refresh token be used again, as Azure AD
// allows for confidential clients.
func WithStrictRotation(strict bool) Option { return func(s *Server) { s.strict = strict } }

// WithClock sets the clock for issue and expiry times and for Valid (default
// time.Now). It must be safe for concurrent use.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New returns a Server with the options applied. It does not listen: serve
// Handler on a listener of your own, or use Start.
func New(opts ...Option) *Server {
	s := &Server{
		tenant:   DefaultTenant,
		now:      time.Now,
		strict:   true,
		key:      randomBytes(32),
		done:     make(chan struct{}),
		lifetime: DefaultLifetime,
		users:    map[string]string{},
		clients:  map[string]string{},
		certs:    map[string][]*x509.Certificate{},
		jtis:     map[string]time.Time{},
		refresh:  map[string]*refreshGrant{},
		callsFor: map[string]int64{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Start returns a Server listening on 127.0.0.1 on a free port. The caller
// must Close it.
func Start(opts ...Option) (*Server, error) {
	s := New(opts...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakeidp: listen: %w", err)
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.url = "http://" + ln.Addr().String()
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the listener of a started Server, releases held and hanging
// calls, and waits for the calls in flight to return. Calls arriving after
// Close get a 503. Close is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
	}
	s.wg.Wait()
}

// Handler returns the HTTP handler of both token endpoints and the
// discovery documents, for serving on a listener of your own (the demo
// does).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{tenant}/oauth2/token", func(w http.ResponseWriter, r *http.Request) { s.serveToken(w, r, v1) })
	mux.HandleFunc("/{tenant}/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) { s.serveToken(w, r, v2) })
	s.handleDiscovery(mux)
	s.handleDevice(mux)
	return mux
}

// URL returns the base URL of a started Server, "" when it was made by New.
func (s *Server) URL() string { return s.url }

// Tenant returns the tenant in the endpoint paths, for building the token
// URLs of a Server served on another listener.
func (s *Server) Tenant() string { return s.tenant }

// V1TokenURL returns the Azure AD v1 token endpoint of a started Server.
func (s *Server) V1TokenURL() string { return s.url + "/" + s.tenant + "/oauth2/token" }

// V2TokenURL returns the Azure AD v2 token endpoint of a started Server.
func (s *Server) V2TokenURL() string { return s.url + "/" + s.tenant + "/oauth2/v2.0/token" }

// AddUser adds a user for the password grant, or sets its password as
// SetPassword does.
func (s *Server) AddUser(username, password string) { s.SetPassword(username, password) }

// SetPassword sets a user's password, adding the user if unknown. As in Azure
// AD, a changed password revokes the refresh tokens issued to the user
// (invalid_grant AADSTS50173), so only a password grant with the new
// password gets tokens again.
func (s *Server) SetPassword(username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.users[username]; ok && old != password {
		for _, g := range s.refresh {
			if g.user == username && g.state == rtValid {
				g.state = rtPwdChanged
			}
		}
	}
	s.users[username] = password
}

// AddClient adds a client application. A secret "" makes it a public client:
// it may use the password and refresh_token grants without a secret, must
// not send one, and may not use client_credentials.
func (s *Server) AddClient(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[clientID] = secret
}

// SetLifetime sets the lifetime of the access tokens issued from now on.
// expires_in is its whole seconds, at least 1; tests use a few seconds.
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// Calls returns how many calls reached either token endpoint so far, of all
// grants, failed ones included.
func (s *Server) Calls() int64 { return s.calls.Load() }

// CallsFor returns how many calls so far had grant_type grant (use "" for
// calls without one, such as a GET).
func (s *Server) CallsFor(grant string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsFor[grant]
}

// Fail makes the next n calls to either endpoint fail with f, whatever their
// grant; n < 0 makes every call fail until ClearFailures. Failures queue up:
// Fail(a, 1) then Fail(b, 1) fails the next call with a and the one after
// with b (a failure with n < 0 stays at the head of the queue).
func (s *Server) Fail(f Failure, n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, &pending{f: f, n: n})
}

// ClearFailures drops every failure queued by Fail.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = nil
}

// Hold makes calls block after being counted (and after the OnCall hook)
// until release is called, the caller gives up, or the Server is closed. A
// test holds, starts N callers, waits for the first call to arrive, and
// checks after release that one IdP call served them all. release may be
// called more than once.
func (s *Server) Hold() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == ch {
				s.hold = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// RevokeRefreshTokens invalidates every refresh token issued so far: using
// one fails with invalid_grant AADSTS700082. Tokens issued later work.
func (s *Server) RevokeRefreshTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.refresh {
		if g.state == rtValid {
			g.state = rtRevoked
		}
	}
}

// OnCall sets a hook called with the grant_type of every call, when it is
// counted and before any Hold or failure, on the call's goroutine. Tests use
// it to learn a call arrived. nil removes the hook.
func (s *Server) OnCall(hook func(grant string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCall = hook
}

// Valid reports whether accessToken was issued by this Server and has not
// expired by its clock.
func (s *Server) Valid(accessToken string) bool {
	parts := strings.Split(accessToken, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, s.sign(parts[0]+"."+parts[1])) {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return false
	}
	return s.now().Before(time.Unix(claims.Exp, 0))
}

// Claims returns the claims of an access token this Server issued, nil when
// it did not issue it (expired tokens included, so tests can inspect them).
func (s *Server) Claims(accessToken string) map[string]any {
	parts := strings.Split(accessToken, ".")
	if len(parts) != 3 {
		return nil
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, s.sign(parts[0]+"."+parts[1])) {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return nil
	}
	return claims
}

func (s *Server) sign(signingInput string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(signingInput))
	return m.Sum(nil)
}

// jwt returns a JWT-shaped token of claims, signed with HS256.
func (s *Server) jwt(claims map[string]any) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"HS256"}`))
	body, _ := json.Marshal(claims)
	input := header + "." + base64.RawURLEncoding.EncodeToString(body)
	return input + "." + base64.RawURLEncoding.EncodeToString(s.sign(input))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("fakeidp: crypto/rand: " + err.Error())
	}
	return b
}

// newUUID returns a random (version 4) UUID, like Azure's trace ids.
func newUUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
