package tokenbroker

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"
)

// The original helper's four action phrases. Clients match on them, so they
// are part of the contract, letter for letter.
const (
	ActionNew             = "retrieved new token"
	ActionExisting        = "returned existing token"
	ActionRefreshed       = "refreshed existing token"
	ActionReplacedExpired = "retrieved new token to replace expired token"
)

// Reply is a successful answer. The original helper's three fields come
// first so that its clients, which read accesstoken, see the same document.
type Reply struct {
	AccessToken  string `json:"accesstoken"`
	ExpiresOn    string `json:"expires_on"` // Unix seconds, as a string, as the original sent it
	Action       string `json:"action"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"` // seconds left at the time of the reply
	CredentialID string `json:"credential_id"`
}

// ErrorReply is the body of a failed answer.
type ErrorReply struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	// RetryAfter, in seconds, is set on a 503 when the IdP said how long it
	// wants to be left alone (also the Retry-After header, on NATS and HTTP).
	RetryAfter int `json:"retry_after,omitempty"`
}

// NewReply builds the reply with action for tok, as seen at now.
func NewReply(credentialID string, tok *Token, action string, now time.Time) Reply {
	return Reply{
		AccessToken:  tok.AccessToken,
		ExpiresOn:    strconv.FormatInt(tok.Expiry.Unix(), 10),
		Action:       action,
		TokenType:    tok.TokenType,
		ExpiresIn:    tok.ExpiresIn(now),
		CredentialID: credentialID,
	}
}

// EncodeError returns the JSON body of an error reply.
func EncodeError(e *Error) []byte {
	b, _ := json.Marshal(ErrorReply{Error: e.OAuth, Description: e.Description, RetryAfter: e.RetryAfter})
	return b
}

// CachedReply is a token's reply, encoded once when the token arrives and
// completed per answer with the two fields that vary: the action, which
// depends on who is answered (the callers that waited for the token, or
// later cache hits), and expires_in, which changes with time. No JSON
// encoding happens on the hot path. Transports with a buffer of their own
// append the reply there (AppendTo, no allocation); Body hands out a slice,
// and keeps the current second's whole so that callers within one second
// share one immutable body.
type CachedReply struct {
	// enc is the reply without its action and expires_in values, split at
	// actionAt and expiresInAt:
	// {"accesstoken":...,"action":" | ","token_type":...,"expires_in": | ,"credential_id":"..."}
	// One string, so that a hit reads one object, not several.
	enc         string
	actionAt    int
	expiresInAt int
	expiresOn   time.Time
	current     atomic.Pointer[secondReply]
	missed      atomic.Int64 // the Unix second of the last Body that found no current reply
}

// secondReply is the complete reply with one action for one wall-clock second.
type secondReply struct {
	unix   int64
	action string
	body   []byte
}

// NewCachedReply encodes the parts of tok's reply that do not change.
func NewCachedReply(credentialID string, tok *Token) *CachedReply {
	c := new(CachedReply)
	c.Init(credentialID, tok)
	return c
}

// Init is NewCachedReply into a CachedReply that is not in use yet, for
// holding one inside a larger object.
func (c *CachedReply) Init(credentialID string, tok *Token) {
	head, _ := json.Marshal(struct {
		AccessToken string `json:"accesstoken"`
		ExpiresOn   string `json:"expires_on"`
	}{tok.AccessToken, strconv.FormatInt(tok.Expiry.Unix(), 10)})
	tokenType, _ := json.Marshal(tok.TokenType)
	id, _ := json.Marshal(credentialID)
	enc := append(head[:len(head)-1], `,"action":"`...)
	actionAt := len(enc)
	enc = append(append(append(enc, `","token_type":`...), tokenType...), `,"expires_in":`...)
	expiresInAt := len(enc)
	enc = append(append(append(enc, `,"credential_id":`...), id...), '}')
	c.enc, c.actionAt, c.expiresInAt, c.expiresOn = string(enc), actionAt, expiresInAt, tok.Expiry
	c.current.Store(nil)
	c.missed.Store(0)
}

// AppendTo appends the complete reply with action, as seen at now, to dst.
// action is one of the Action constants, which JSON carries as they are.
func (c *CachedReply) AppendTo(dst []byte, action string, now time.Time) []byte {
	dst = append(dst, c.enc[:c.actionAt]...)
	dst = append(dst, action...)
	dst = append(dst, c.enc[c.actionAt:c.expiresInAt]...)
	dst = strconv.AppendInt(dst, secondsLeft(c.expiresOn, now), 10)
	return append(dst, c.enc[c.expiresInAt:]...)
}

// Body returns the complete reply with action as seen at now. The body may
// be shared by every caller answered with the same action within the same
// second and must not be modified. It is kept for the second only once a
// second caller asks within it, so that the many credentials asked for now
// and then do not each hold a copy.
func (c *CachedReply) Body(action string, now time.Time) []byte {
	unix := now.Unix()
	if cur := c.current.Load(); cur != nil && cur.unix == unix && cur.action == action {
		return cur.body
	}
	body := c.AppendTo(make([]byte, 0, c.Len()), action, now)
	if c.missed.Swap(unix) == unix {
		c.current.Store(&secondReply{unix: unix, action: action, body: body})
	}
	return body
}

// AccessToken returns the access token as held inside the encoded reply
// when the encoding left it as it is (a JWT always is), so that whoever
// keeps the reply can drop its own copy of a token of a kilobyte or two;
// else it returns token.
func (c *CachedReply) AccessToken(token string) string {
	const start = len(`{"accesstoken":"`)
	if c.actionAt >= start+len(token) && c.enc[start:start+len(token)] == token {
		return c.enc[start : start+len(token)]
	}
	return token
}

// Len is an upper bound of the encoded reply's length, for sizing buffers:
// the longest action phrase and the longest expires_in included.
func (c *CachedReply) Len() int { return len(c.enc) + len(ActionReplacedExpired) + 20 }

// secondsLeft is expires_in: whole seconds between now and expiresOn, as a
// caller computes it from expires_on and its clock, never negative. Being
// whole-second arithmetic, it is the same for every reply within a second.
func secondsLeft(expiresOn, now time.Time) int64 {
	return max(expiresOn.Unix()-now.Unix(), 0)
}
