package fakeidp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tokenbroker/tokenbroker"
)

// Failure is a scripted way for a call to fail, queued with Server.Fail.
// Make one with the Fail... functions.
type Failure struct {
	name  string
	serve func(s *Server, w http.ResponseWriter, r *http.Request, v version)
}

// String names the failure, for test names and logs.
func (f Failure) String() string { return f.name }

// FailStatus answers with status, the given Content-Type (none when "") and
// body, as sent.
func FailStatus(status int, body, contentType string) Failure {
	return Failure{name: fmt.Sprintf("status %d", status), serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}}
}

// FailAADSTS answers with status and an Azure AD error body: error errCode,
// error_codes [aadsts], and description (prefixed "AADSTSnnn: " unless it
// starts with AADSTS) followed by Azure's trace lines.
func FailAADSTS(status int, errCode string, aadsts int, description string) Failure {
	return Failure{name: fmt.Sprintf("AADSTS%d", aadsts), serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		s.writeError(w, r, status, errCode, aadsts, description)
	}}
}

// FailHTML answers with status and an HTML page, as a proxy, a captive
// portal or an Azure front door in trouble does.
func FailHTML(status int) Failure {
	return Failure{name: fmt.Sprintf("HTML %d", status), serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>%d %s</title></head><body><h1>Sign in to your account</h1><p>Something went wrong.</p></body></html>\n", status, http.StatusText(status))
	}}
}

// FailTruncated answers 200 with the first half of a valid token response,
// without Content-Length, so the client reads a complete but cut JSON body.
func FailTruncated() Failure {
	return Failure{name: "truncated", serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		data, _ := json.Marshal(s.sampleBody(v))
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
	}}
}

// FailMissingAccessToken answers 200 with a token response without
// access_token.
func FailMissingAccessToken() Failure {
	return Failure{name: "missing access_token", serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		body := s.sampleBody(v)
		delete(body, "access_token")
		writeJSON(w, http.StatusOK, body)
	}}
}

// FailLifetime answers 200 with a token response whose expires_in and
// ext_expires_in are seconds ("0", "-5", "99999999999", "soon"), and
// without expires_on, so that lifetime alone decides. v1 sends it as a JSON
// string; v2 as a number when it is one. seconds "" leaves out every
// lifetime field.
func FailLifetime(seconds string) Failure {
	return Failure{name: "lifetime " + strconv.Quote(seconds), serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		body := s.sampleBody(v)
		delete(body, "expires_on")
		delete(body, "expires_in")
		delete(body, "ext_expires_in")
		if seconds != "" {
			var value any = seconds
			if v == v2 && json.Valid([]byte(seconds)) {
				value = json.RawMessage(seconds)
			}
			body["expires_in"], body["ext_expires_in"] = value, value
		}
		writeJSON(w, http.StatusOK, body)
	}}
}

// FailRetryAfter answers with status (429 or 503, usually), a Retry-After
// header of seconds and an Azure error body temporarily_unavailable
// AADSTS90033.
func FailRetryAfter(status int, seconds int) Failure {
	return Failure{name: fmt.Sprintf("%d retry after %ds", status, seconds), serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		w.Header().Set("Retry-After", strconv.Itoa(seconds))
		s.writeError(w, r, status, tokenbroker.OAuthTemporarilyUnavailable, 90033, "A transient error has occurred. Please try again.")
	}}
}

// FailHang never answers: the call blocks until the caller gives up or the
// Server is closed, as an IdP behind a black-holing firewall does.
func FailHang() Failure {
	return Failure{name: "hang", serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	}}
}

// Fail200WithError answers 200 with an Azure error body (invalid_grant
// AADSTS50126): some gateways rewrite statuses, and a client must not
// mistake it for a token.
func Fail200WithError() Failure {
	return Failure{name: "200 with error", serve: func(s *Server, w http.ResponseWriter, r *http.Request, v version) {
		s.writeError(w, r, http.StatusOK, tokenbroker.OAuthInvalidGrant, 50126, "Error validating credentials due to invalid username or password.")
	}}
}

// sampleBody is a well-formed token response of dialect v for the failures
// to spoil. It is not a valid grant: its access token is for no one.
func (s *Server) sampleBody(v version) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenBody(v, "fakeidp-failure", "", "https://fakeidp.invalid", "https://fakeidp.invalid/.default")
}
