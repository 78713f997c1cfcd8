package fakeidp

// Client authentication with a secret (RFC 6749 section 2.3.1): in an HTTP
// Basic Authorization header (client_secret_basic) or in the form body
// (client_secret_post). Azure AD takes both; Ory Hydra, Okta and Keycloak
// hold each client to one method, Basic by default, and answer
// invalid_client to the other. AddBasicClient and AddPostClient make such
// clients, so that a client of the broker is tested against both kinds.

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// Client authentication methods, as token_endpoint_auth_methods_supported
// names them (OpenID Connect Discovery 1.0, RFC 8414).
const (
	AuthMethodBasic = "client_secret_basic"
	AuthMethodPost  = "client_secret_post"
	AuthMethodJWT   = "private_key_jwt"
)

// WithBasicClient adds a client application that accepts its secret only
// in an HTTP Basic header; see AddBasicClient.
func WithBasicClient(clientID, secret string) Option {
	return func(s *Server) { s.addMethodClient(clientID, secret, AuthMethodBasic) }
}

// WithPostClient adds a client application that accepts its secret only in
// the form body; see AddPostClient.
func WithPostClient(clientID, secret string) Option {
	return func(s *Server) { s.addMethodClient(clientID, secret, AuthMethodPost) }
}

// AddBasicClient adds a confidential client application, or sets its
// secret, that authenticates only with client_secret_basic, as Ory Hydra's
// clients do by default: a client_secret in the body gets 401
// invalid_client AADSTS7000218. The header holds base64 of the
// form-urlencoded id, ':' and the form-urlencoded secret (RFC 6749 2.3.1).
// A client added with AddClient accepts either method; AddClient on this id
// later changes its secret, not its method.
func (s *Server) AddBasicClient(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addMethodClient(clientID, secret, AuthMethodBasic)
}

// AddPostClient adds a confidential client application, or sets its
// secret, that authenticates only with client_secret_post: a secret in an
// Authorization header is not read, so the call gets 401 invalid_client
// AADSTS7000218 as if it carried no secret.
func (s *Server) AddPostClient(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addMethodClient(clientID, secret, AuthMethodPost)
}

// addMethodClient records a client held to method. The caller holds s.mu
// or is an Option, run before the Server is shared.
func (s *Server) addMethodClient(clientID, secret, method string) {
	s.clients[clientID] = secret
	if s.authOnly == nil {
		s.authOnly = map[string]string{}
	}
	s.authOnly[clientID] = method
}

// CallsWithAuth returns how many token calls so far sent a client secret
// by method, AuthMethodBasic or AuthMethodPost, whether or not it was
// accepted, so a test can check how a client authenticated and how often
// it tried.
func (s *Server) CallsWithAuth(method string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authCalls[method]
}

// clientCredentials returns the form of a token request with the client's
// credentials where grant looks for them: a Basic header's id and secret
// become client_id and client_secret, as if sent in the body. It answers
// the call and returns false when the header is not valid Basic client
// authentication, the client sent two credentials, or the client is held
// to the other method.
func (s *Server) clientCredentials(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	form := r.PostForm
	method := ""
	if form.Get("client_secret") != "" {
		method = AuthMethodPost
	}
	if h := r.Header.Get("Authorization"); h != "" {
		id, secret, ok := parseBasic(h)
		switch {
		case !ok:
			s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 7000218, "The Authorization header is not HTTP Basic client authentication: base64 of the form-urlencoded client id, ':', and the form-urlencoded client secret.")
			return nil, false
		case form.Has("client_secret") || form.Has("client_assertion"):
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 90023, "Only one client credential may be presented: an Authorization header and a credential in the body were sent.")
			return nil, false
		case form.Has("client_id") && form.Get("client_id") != id:
			s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 700016, "The client_id in the request body is not the client id of the Authorization header.")
			return nil, false
		}
		form = cloneValues(form)
		form.Set("client_id", id)
		if secret != "" {
			form.Set("client_secret", secret)
			method = AuthMethodBasic
		}
	}
	if method == "" {
		return form, true
	}
	clientID := form.Get("client_id")
	s.mu.Lock()
	if s.authCalls == nil {
		s.authCalls = map[string]int64{}
	}
	s.authCalls[method]++
	only := s.authOnly[clientID]
	s.mu.Unlock()
	switch {
	case only == AuthMethodPost && method == AuthMethodBasic:
		// A server that does not read the header sees no secret.
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return nil, false
	case only == AuthMethodBasic && method == AuthMethodPost:
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 7000218, "The client '"+clientID+"' authenticates with client_secret_basic: send its secret in an HTTP Basic Authorization header, not in the request body.")
		return nil, false
	}
	return form, true
}

// parseBasic decodes an Authorization header of RFC 6749 2.3.1: Basic,
// base64 of id ':' secret, each form-urlencoded (so '+' is a space). The
// id may not be empty.
func parseBasic(h string) (id, secret string, ok bool) {
	scheme, cred, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	id, err1 := url.QueryUnescape(rawID)
	secret, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil || id == "" {
		return "", "", false
	}
	return id, secret, true
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}
