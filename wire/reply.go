package wire

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
)

// RetryAfterHeader carries, on a 503 error answer, the seconds the IdP
// asked callers to wait, as HTTP's Retry-After does. The JSON body's
// retry_after says the same; the header is there for callers that read
// only headers.
const RetryAfterHeader = "Retry-After"

// oneLine folds line breaks: a header value is one line, and Azure AD puts
// its trace and correlation ids on lines of their own.
var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// HeaderValue is the Nats-Service-Error header value of an error
// description: the description on one line. The JSON body keeps the
// description as the IdP sent it.
func HeaderValue(description string) string { return oneLine.Replace(description) }

// DecodeReply reads a broker's answer to a token request: a *tokenbroker.Error
// when the answer is an error, else the Reply. The error, always a
// *tokenbroker.Error, is:
//   - what DecodeError reads, when the answer carries the micro error headers;
//   - the JSON error body's, with Code 500, when a body that is an error
//     came without them;
//   - a 502 server_error when the answer is neither a reply nor an error
//     (not JSON, or no accesstoken).
func DecodeReply(msg *nats.Msg) (*tokenbroker.Reply, error) {
	if e := DecodeError(msg); e != nil {
		return nil, e
	}
	var rep tokenbroker.Reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, tokenbroker.Errorf(tokenbroker.CodeBadGateway, tokenbroker.OAuthServerError, "the broker's reply is not JSON: %v", err)
	}
	if rep.AccessToken == "" {
		var er tokenbroker.ErrorReply
		if json.Unmarshal(msg.Data, &er) == nil && er.Error != "" {
			return nil, decodeError(msg, "", "")
		}
		return nil, tokenbroker.Errorf(tokenbroker.CodeBadGateway, tokenbroker.OAuthServerError, "the broker's reply has no accesstoken")
	}
	return &rep, nil
}

// DecodeError returns the error an answer carries in the NATS micro error
// headers, or nil when it has neither Nats-Service-Error-Code nor
// Nats-Service-Error. Code comes from Nats-Service-Error-Code (500 when it
// is missing or not a number); OAuth, Description and RetryAfter from the
// JSON body (an IdP's rejection keeps the IdP's own words), Description
// falling back to Nats-Service-Error, OAuth to tokenbroker.OAuthFor(Code),
// RetryAfter to the Retry-After header.
func DecodeError(msg *nats.Msg) *tokenbroker.Error {
	code, desc := msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
	if code == "" && desc == "" {
		return nil
	}
	return decodeError(msg, code, desc)
}

func decodeError(msg *nats.Msg, codeHdr, descHdr string) *tokenbroker.Error {
	e := &tokenbroker.Error{Code: tokenbroker.CodeInternal, Description: descHdr}
	if n, err := strconv.Atoi(strings.TrimSpace(codeHdr)); err == nil && n > 0 {
		e.Code = n
	}
	var er tokenbroker.ErrorReply
	if len(msg.Data) > 0 && json.Unmarshal(msg.Data, &er) == nil {
		e.OAuth = er.Error
		e.RetryAfter = er.RetryAfter
		if er.Description != "" {
			e.Description = er.Description
		}
	}
	if e.OAuth == "" {
		e.OAuth = tokenbroker.OAuthFor(e.Code)
	}
	if e.RetryAfter <= 0 {
		// Seconds only: the broker never sends an HTTP date.
		if n, err := strconv.Atoi(strings.TrimSpace(msg.Header.Get(RetryAfterHeader))); err == nil && n > 0 {
			e.RetryAfter = n
		} else {
			e.RetryAfter = 0
		}
	}
	return e
}
