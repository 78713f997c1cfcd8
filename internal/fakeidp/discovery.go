package fakeidp

// OpenID Connect discovery documents (OpenID Connect Discovery 1.0, RFC
// 8414), so that a client that reads the token endpoint and the client
// authentication methods from discovery is tested against the fake too.

import (
	"net/http"
)

// defaultAuthMethods is token_endpoint_auth_methods_supported of a Server
// made without WithAuthMethods, in the order Azure AD v2 lists them.
var defaultAuthMethods = []string{AuthMethodPost, AuthMethodJWT, AuthMethodBasic}

// discovery is the Server's discovery state, guarded by Server.mu.
type discovery struct {
	methods    []string // token_endpoint_auth_methods_supported
	methodsSet bool     // methods was configured, even to none
	calls      int64
	failures   []*pending
}

// WithAuthMethods sets token_endpoint_auth_methods_supported of the
// discovery documents, in the order given (default client_secret_post,
// private_key_jwt, client_secret_basic: Azure AD v2's list); no
// methods leaves the field out. It is what the Server says, not what it
// enforces: AddBasicClient and AddPostClient hold a client to a method.
func WithAuthMethods(methods ...string) Option {
	return func(s *Server) { s.disc.methods, s.disc.methodsSet = append([]string(nil), methods...), true }
}

// SetAuthMethods is WithAuthMethods for a running Server: later discovery
// fetches list methods.
func (s *Server) SetAuthMethods(methods ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disc.methods, s.disc.methodsSet = append([]string(nil), methods...), true
}

// V2Issuer returns the issuer of the tenant's v2 discovery document, as
// Azure AD v2 names it: URL/TENANT/v2.0. Its document is at
// V2Issuer()+"/.well-known/openid-configuration".
func (s *Server) V2Issuer() string { return s.url + "/" + s.tenant + "/v2.0" }

// Issuer returns the issuer of the generic discovery document served at
// /.well-known/openid-configuration: the base URL with a trailing slash, as
// Ory Hydra names its issuer. Its endpoints are the v2 ones.
func (s *Server) Issuer() string { return s.url + "/" }

// DeviceAuthorizationURL returns the v2 device authorization endpoint the
// discovery documents name (RFC 8628).
func (s *Server) DeviceAuthorizationURL() string {
	return s.url + "/" + s.tenant + "/oauth2/v2.0/devicecode"
}

// DiscoveryCalls returns how many requests reached either discovery
// document so far, failed ones included.
func (s *Server) DiscoveryCalls() int64 { return s.locked(&s.disc.calls) }

// FailDiscovery makes the next n discovery requests fail with f, as Fail
// does for token calls (n < 0: until ClearDiscoveryFailures). The token
// endpoints are not affected, nor is Fail's queue by discovery requests.
func (s *Server) FailDiscovery(f Failure, n int) { s.queue(&s.disc.failures, f, n) }

// ClearDiscoveryFailures drops every failure queued by FailDiscovery.
func (s *Server) ClearDiscoveryFailures() { s.clearQueue(&s.disc.failures) }

// handleDiscovery adds the discovery documents to mux.
func (s *Server) handleDiscovery(mux *http.ServeMux) {
	mux.HandleFunc("/{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		s.serveDiscovery(w, r, "/"+r.PathValue("tenant")+"/v2.0")
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		s.serveDiscovery(w, r, "/")
	})
}

// serveDiscovery answers a discovery request for the issuer at path
// issuerPath on the host the request was sent to, so that a Server served
// on a listener of its own names itself right.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request, issuerPath string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "fakeidp: closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	s.disc.calls++
	var failure *Failure
	if len(s.disc.failures) > 0 {
		p := s.disc.failures[0]
		f := p.f
		failure = &f
		if p.n > 0 {
			if p.n--; p.n == 0 {
				s.disc.failures = s.disc.failures[1:]
			}
		}
	}
	methods, methodsSet := s.disc.methods, s.disc.methodsSet
	s.mu.Unlock()

	if failure != nil {
		failure.serve(s, w, r, v2)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "fakeidp: discovery is GET only", http.StatusMethodNotAllowed)
		return
	}
	if tenant := r.PathValue("tenant"); issuerPath != "/" && tenant != s.tenant {
		s.writeError(w, r, http.StatusBadRequest, "invalid_tenant", 90002, "Tenant '"+tenant+"' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	v2Base := base + "/" + s.tenant + "/oauth2/v2.0"
	doc := map[string]any{
		"issuer":                        base + issuerPath,
		"token_endpoint":                v2Base + "/token",
		"device_authorization_endpoint": v2Base + "/devicecode",
		"grant_types_supported":         []string{GrantPassword, GrantClientCredentials, GrantRefreshToken, GrantDeviceCode},
		"scopes_supported":              []string{"openid", "profile", "email", "offline_access"},
	}
	switch {
	case !methodsSet:
		doc["token_endpoint_auth_methods_supported"] = defaultAuthMethods
	case len(methods) > 0:
		doc["token_endpoint_auth_methods_supported"] = methods
	}
	writeJSON(w, http.StatusOK, doc)
}

// queue adds f for the next n requests to the failure queue q, as Fail
// does (n < 0: until cleared).
func (s *Server) queue(q *[]*pending, f Failure, n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	*q = append(*q, &pending{f: f, n: n})
}

// clearQueue drops every failure queued in q.
func (s *Server) clearQueue(q *[]*pending) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*q = nil
}

// locked reads a counter guarded by s.mu.
func (s *Server) locked(n *int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *n
}
