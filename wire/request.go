package wire

import (
	"encoding/json"

	"github.com/tokenbroker/tokenbroker"
)

// request is the JSON of a token request as a caller sends it. It exists
// because tokenbroker.Secret marshals as "[redacted]" on purpose, so that a
// Request logged or encoded by mistake shows no password: the password goes
// on the wire here, and only here, in clear. The broker reads it back with
// tokenbroker.DecodeRequest.
type request struct {
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	Credential   string `json:"credential,omitempty"`
	ForceRefresh bool   `json:"force_refresh,omitempty"`
	MinTTL       int64  `json:"min_ttl,omitempty"`
	Claims       string `json:"claims,omitempty"`
}

// EncodeRequest returns the body of a token request for req, password in
// clear, fields left out when empty. It does not validate req: the broker
// does, and answers an invalid request with a 400 that says what is wrong.
func EncodeRequest(req tokenbroker.Request) []byte {
	// Strings, a bool and an int64 always encode.
	data, _ := json.Marshal(request{
		Username:     req.Username,
		Password:     req.Password.Reveal(),
		Credential:   req.Credential,
		ForceRefresh: req.ForceRefresh,
		MinTTL:       req.MinTTL,
		Claims:       req.Claims,
	})
	return data
}

// RequestMsg returns the subject and body to send req on: a named
// credential's own subject (token.request.<name>), with a body that carries
// only force_refresh, min_ttl and claims, so that NATS permissions on that subject
// decide who may have the credential; token.request for a
// username/password request, or a name that cannot be a subject token
// (which the broker then refuses for what it is).
func RequestMsg(s Subjects, req tokenbroker.Request) (subject string, data []byte) {
	if req.Credential != "" && req.Username == "" && req.Password.IsZero() && ValidName(req.Credential) {
		return s.RequestFor(req.Credential), EncodeRequest(tokenbroker.Request{ForceRefresh: req.ForceRefresh, MinTTL: req.MinTTL, Claims: req.Claims})
	}
	return s.Request(), EncodeRequest(req)
}
