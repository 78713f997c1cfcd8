package fakeidp

import (
	"encoding/json"
	"time"
)

// hints are what Azure AD adds for long-lived tokens and continuous access
// evaluation: refresh_in in the token response, and the claims request
// parameter, whose access_token.xms_cc capabilities end up in the token.
// Guarded by Server.mu.
type hints struct {
	refreshIn time.Duration
	claims    []string // every claims parameter received, in order
}

// WithRefreshIn makes token responses carry refresh_in of d, as Azure AD
// does for tokens it wants refreshed before they expire.
func WithRefreshIn(d time.Duration) Option { return func(s *Server) { s.hints.refreshIn = d } }

// ClaimsRequests returns every claims parameter the token endpoint received, in
// order.
func (s *Server) ClaimsRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hints.claims...)
}

// noteClaims records a claims parameter and reports whether it is a JSON
// object, as Azure AD requires.
func (s *Server) noteClaims(claims string) bool {
	var obj map[string]any
	if json.Unmarshal([]byte(claims), &obj) != nil || obj == nil {
		return false
	}
	s.mu.Lock()
	s.hints.claims = append(s.hints.claims, claims)
	s.mu.Unlock()
	return true
}

// applyHints adds refresh_in to body and, from a claims parameter, the
// client capabilities (xms_cc) and the claims asked for with a value to the
// access token's claims, so that a test sees the IdP honoured them.
func (s *Server) applyHints(v version, body, tokenClaims map[string]any, lifetimeSecs int64, claimsParam ...string) {
	refreshIn := s.hints.refreshIn // the caller holds s.mu
	if refreshIn > 0 && v == v2 {
		if secs := int64(refreshIn / time.Second); secs > 0 && secs < lifetimeSecs {
			body["refresh_in"] = secs
		}
	}
	if len(claimsParam) == 0 || claimsParam[0] == "" {
		return
	}
	var req struct {
		AccessToken map[string]struct {
			Value  any   `json:"value"`
			Values []any `json:"values"`
		} `json:"access_token"`
	}
	if json.Unmarshal([]byte(claimsParam[0]), &req) != nil {
		return
	}
	for name, c := range req.AccessToken {
		switch {
		case name == "xms_cc":
			tokenClaims["xms_cc"] = c.Values
		case c.Value != nil:
			tokenClaims[name] = c.Value
		}
	}
}
