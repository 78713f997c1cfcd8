package fakeidp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// version is the Azure AD endpoint version a call came in on.
type version int

const (
	v1 version = 1
	v2 version = 2
)

// maxForm bounds a request body; Azure rejects far smaller ones.
const maxForm = 64 << 10

// serveToken is both token endpoints: count, hook, hold, scripted failure,
// then the grant itself.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, v version) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "fakeidp: closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	grant := ""
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if r.ParseForm() == nil {
			grant = r.PostForm.Get("grant_type")
		}
	}

	s.calls.Add(1)
	s.mu.Lock()
	s.callsFor[grant]++
	hook, hold := s.onCall, s.hold
	var failure *Failure
	if len(s.failures) > 0 {
		p := s.failures[0]
		f := p.f
		failure = &f
		if p.n > 0 {
			if p.n--; p.n == 0 {
				s.failures = s.failures[1:]
			}
		}
	}
	s.mu.Unlock()

	if hook != nil {
		hook(grant)
	}
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		case <-s.done:
			http.Error(w, "fakeidp: closed", http.StatusServiceUnavailable)
			return
		}
	}
	if failure != nil {
		failure.serve(s, w, r, v)
		return
	}
	// grant answers under s.mu; it writes to a recorder so that a client
	// slow to read never holds the lock.
	rec := httptest.NewRecorder()
	s.grant(rec, r, v)
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// grant validates a call like Azure AD, in about Azure's order, and issues
// tokens.
func (s *Server) grant(w http.ResponseWriter, r *http.Request, v version) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.writeError(w, r, http.StatusMethodNotAllowed, tokenbroker.OAuthInvalidRequest, 900561, "The endpoint only accepts POST requests. Received a "+r.Method+" request.")
		return
	}
	if tenant := r.PathValue("tenant"); tenant != s.tenant {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 90002, "Tenant '"+tenant+"' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
		return
	}
	form, ok := s.clientCredentials(w, r)
	if !ok {
		return
	}
	missing := func(param string) {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 900144, "The request body must contain the following parameter: '"+param+"'.")
	}
	claims := form.Get("claims")
	if claims != "" && !s.noteClaims(claims) {
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 50005, "The claims parameter is not a valid JSON object.")
		return
	}
	grant := form.Get("grant_type")
	clientID := form.Get("client_id")
	resource, scope := form.Get("resource"), form.Get("scope")
	switch {
	case grant == "":
		missing("grant_type")
		return
	case clientID == "":
		missing("client_id")
		return
	case v == v1 && resource == "":
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidResource, 50001, "The request body must contain the 'resource' parameter on the v1 endpoint: the resource principal was not found in the tenant named "+s.tenant+".")
		return
	case v == v2 && scope == "":
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 90014, "The required field 'scope' is missing from the credential. Ensure that you have all the necessary parameters for the login request.")
		return
	case grant != GrantPassword && grant != GrantClientCredentials && grant != GrantRefreshToken && grant != GrantDeviceCode:
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthUnsupportedGrantType, 70003, "The app requested an unsupported grant type.")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	secret, hasSecret := s.clients[clientID]
	certs := s.certs[clientID]
	asserts := len(certs) > 0 || s.hasFederated(clientID) // may authenticate with a client assertion
	known := hasSecret || asserts
	confidential := secret != "" || asserts
	sent := form.Get("client_secret")
	assertion := form.Get("client_assertion")
	usesAssertion := assertion != "" || form.Has("client_assertion_type")
	switch {
	case !known:
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthUnauthorizedClient, 700016, "Application with identifier '"+clientID+"' was not found in the directory '"+s.tenant+"'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.")
		return
	case !confidential && (sent != "" || usesAssertion):
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
		return
	case sent != "" && usesAssertion:
		s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidRequest, 90023, "Only one client credential may be presented: both 'client_secret' and 'client_assertion' were sent.")
		return
	case usesAssertion:
		if !s.checkAssertion(w, r, v, clientID, certs) {
			return
		}
	case !confidential && grant == GrantClientCredentials, confidential && sent == "":
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	case sent != secret: // a certificate-only client has no secret to match
		s.writeError(w, r, http.StatusUnauthorized, tokenbroker.OAuthInvalidClient, 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
		return
	}

	switch grant {
	case GrantPassword:
		username, password := form.Get("username"), form.Get("password")
		switch want, ok := s.users[username]; {
		case username == "":
			missing("username")
		case password == "":
			missing("password")
		case !ok:
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 50034, "The user account {EmailHidden} does not exist in the "+s.tenant+" directory. To sign into this application, the account must be added to the directory.")
		case password != want:
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 50126, "Error validating credentials due to invalid username or password.")
		default:
			s.issueWith(w, v, clientID, username, resource, scope, v == v1 || hasScope(scope, "offline_access"), claims)
		}
	case GrantClientCredentials:
		if v == v2 && !strings.HasSuffix(strings.TrimSpace(scope), "/.default") {
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidScope, 1002012, "The provided value for scope "+scope+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
			return
		}
		s.issueWith(w, v, clientID, "", resource, scope, false, claims)
	case GrantRefreshToken:
		rt := form.Get("refresh_token")
		if rt == "" {
			missing("refresh_token")
			return
		}
		g, ok := s.refresh[rt]
		switch {
		case !ok:
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 9002313, "Invalid request. Request is malformed or invalid.")
		case g.state == rtPwdChanged:
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.")
		case g.state != rtValid:
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 700082, "The refresh token has expired due to inactivity or has been used or revoked.")
		case g.clientID != clientID:
			s.writeError(w, r, http.StatusBadRequest, tokenbroker.OAuthInvalidGrant, 70000, "Provided grant is invalid or malformed: the refresh token was issued to another client.")
		default:
			if s.strict {
				g.state = rtUsed
			}
			s.issueWith(w, v, clientID, g.user, resource, scope, true, claims)
		}
	case GrantDeviceCode:
		s.deviceGrant(w, r, v, form, clientID)
	}
}

// issue writes a token response. The caller holds s.mu.
func (s *Server) issue(w http.ResponseWriter, v version, clientID, user, resource, scope string, withRefresh bool) {
	s.issueWith(w, v, clientID, user, resource, scope, withRefresh, "")
}

// issueWith is issue for a request that carried the claims parameter
// claims ("" for none): see claims.go.
func (s *Server) issueWith(w http.ResponseWriter, v version, clientID, user, resource, scope string, withRefresh bool, claims string) {
	body := s.tokenBody(v, clientID, user, resource, scope, claims)
	if withRefresh {
		rt := "0.A" + base64.RawURLEncoding.EncodeToString(randomBytes(48))
		s.refresh[rt] = &refreshGrant{user: user, clientID: clientID}
		body["refresh_token"] = rt
		if s.record {
			s.issued = append(s.issued, rt)
		}
	}
	if at, ok := body["access_token"].(string); ok && s.record {
		s.issued = append(s.issued, at)
	}
	writeJSON(w, http.StatusOK, body)
}

// tokenBody returns a token response without refresh token, in the dialect
// of v: v1 sends every number as a string and adds expires_on, not_before and
// resource; v2 sends numbers. The caller holds s.mu (for the lifetime).
func (s *Server) tokenBody(v version, clientID, user, resource, scope string, claimsParam ...string) map[string]any {
	now := s.now()
	secs := int64(s.lifetime / time.Second)
	if secs < 1 {
		secs = 1
	}
	exp := now.Unix() + secs
	claims := map[string]any{
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   exp,
		"tid":   s.tenant,
		"appid": clientID,
		"jti":   base64.RawURLEncoding.EncodeToString(randomBytes(16)),
		"ver":   fmt.Sprintf("%d.0", v),
	}
	if user != "" {
		claims["sub"], claims["upn"] = user, user
	} else {
		claims["sub"] = clientID
	}
	body := map[string]any{"token_type": "Bearer"}
	if v == v1 {
		claims["aud"] = resource
		claims["iss"] = "https://sts.windows.net/" + s.tenant + "/"
		if user != "" {
			claims["scp"] = "user_impersonation"
			body["scope"] = "user_impersonation"
		}
		n := strconv.FormatInt(secs, 10)
		body["expires_in"], body["ext_expires_in"] = n, n
		body["expires_on"] = strconv.FormatInt(exp, 10)
		body["not_before"] = strconv.FormatInt(now.Unix(), 10)
		body["resource"] = resource
	} else {
		claims["aud"] = audience(scope)
		claims["iss"] = "https://login.microsoftonline.com/" + s.tenant + "/v2.0"
		if user != "" {
			claims["scp"] = scope
		}
		body["scope"] = scope
		body["expires_in"], body["ext_expires_in"] = secs, secs
	}
	s.applyHints(v, body, claims, secs, claimsParam...)
	body["access_token"] = s.jwt(claims)
	return body
}

// audience is the resource of a v2 scope list: the first scope that is not
// an OpenID Connect one, without its permission ("/.default", "/User.Read").
func audience(scope string) string {
	for _, sc := range strings.Fields(scope) {
		switch sc {
		case "openid", "profile", "email", "offline_access":
			continue
		}
		if i := strings.LastIndex(sc, "/"); i > len("https://") {
			return sc[:i]
		}
		return sc
	}
	return ""
}

func hasScope(scope, want string) bool {
	for _, sc := range strings.Fields(scope) {
		if sc == want {
			return true
		}
	}
	return false
}

// writeError writes an Azure AD error: the RFC 6749 error, a description
// starting "AADSTSnnn: " and ending with trace, correlation and time lines,
// and Azure's extra fields. The correlation id echoes the client-request-id
// header when the caller sent one, as Azure does.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, description string) {
	writeJSON(w, status, s.errorBody(r, code, aadsts, description))
}

func (s *Server) errorBody(r *http.Request, code string, aadsts int, description string) map[string]any {
	traceID, correlationID := newUUID(), newUUID()
	if id := r.Header.Get("client-request-id"); len(id) == 36 {
		correlationID = id
	}
	ts := s.now().UTC().Format("2006-01-02 15:04:05Z")
	if !strings.HasPrefix(description, "AADSTS") {
		description = fmt.Sprintf("AADSTS%d: %s", aadsts, description)
	}
	return map[string]any{
		"error":             code,
		"error_description": description + "\r\nTrace ID: " + traceID + "\r\nCorrelation ID: " + correlationID + "\r\nTimestamp: " + ts,
		"error_codes":       []int{aadsts},
		"timestamp":         ts,
		"trace_id":          traceID,
		"correlation_id":    correlationID,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	data, _ := json.Marshal(body)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store, no-cache")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	w.Write(data)
}
