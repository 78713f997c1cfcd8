package messaging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Admin is what the admin endpoints (<prefix>.admin.>) ask of the broker:
// the credential registry's commands. caller is who asked, as
// Nats-Request-Info names them ("" when it does not), for the record.
// Errors are answered to the operator as they are.
type Admin interface {
	Put(ctx context.Context, req wire.AdminPutRequest, caller string) (wire.AdminPutReply, *tokenbroker.Error)
	Remove(ctx context.Context, name, caller string) (wire.AdminRmReply, *tokenbroker.Error)
	List(ctx context.Context) (wire.AdminListReply, *tokenbroker.Error)
	Show(ctx context.Context, name string) (wire.AdminCredentialInfo, *tokenbroker.Error)
	// Login starts a device code enrolment on this broker; LoginWait waits
	// (until ctx ends) for this broker's login of name to end. BrokerID
	// names this broker in AdminLoginWait subjects.
	Login(ctx context.Context, name, caller string) (wire.AdminLoginReply, *tokenbroker.Error)
	LoginWait(ctx context.Context, name string) (wire.AdminLoginStatus, *tokenbroker.Error)
	BrokerID() string
}

// adminTimeout bounds one admin command: a registry write on a JetStream
// cluster, at most.
const adminTimeout = 15 * time.Second

// MaxLoginWaits is how many login waits a broker holds at once; more are
// answered 429 at once.
const MaxLoginWaits = 64

// maxAdminBody bounds an admin request: a put of many credentials with
// their certificates fits well below it.
const maxAdminBody = 1 << 20

// addAdmin registers the admin endpoints on their own subjects, so that
// NATS permissions can keep callers away from them.
func (s *Service) addAdmin(svc micro.Service, subjects wire.Subjects, admin Admin) error {
	for _, ep := range []struct {
		name, subject string
		do            func(ctx context.Context, req micro.Request) (any, *tokenbroker.Error)
		// wait: the handler may block up to wire.LoginWaitMax, so it runs
		// on a goroutine of its own, not the endpoint's delivery one.
		wait bool
	}{
		{"admin-credential-put", subjects.AdminCredentialPut(), func(ctx context.Context, req micro.Request) (any, *tokenbroker.Error) {
			var body wire.AdminPutRequest
			defer func() { clearCredentials(body.Credentials) }()
			if err := decodeAdmin(req.Data(), &body); err != nil {
				return nil, err
			}
			return admin.Put(ctx, body, callerOf(req))
		}, false},
		{"admin-credential-rm", subjects.AdminCredentialRm(), func(ctx context.Context, req micro.Request) (any, *tokenbroker.Error) {
			name, err := decodeName(req.Data())
			if err != nil {
				return nil, err
			}
			return admin.Remove(ctx, name, callerOf(req))
		}, false},
		{"admin-credential-ls", subjects.AdminCredentialLs(), func(ctx context.Context, _ micro.Request) (any, *tokenbroker.Error) {
			return admin.List(ctx)
		}, false},
		{"admin-credential-show", subjects.AdminCredentialShow(), func(ctx context.Context, req micro.Request) (any, *tokenbroker.Error) {
			name, err := decodeName(req.Data())
			if err != nil {
				return nil, err
			}
			return admin.Show(ctx, name)
		}, false},
		{"admin-login", subjects.AdminLogin(), func(ctx context.Context, req micro.Request) (any, *tokenbroker.Error) {
			name, err := decodeName(req.Data())
			if err != nil {
				return nil, err
			}
			reply, e := admin.Login(ctx, name, callerOf(req))
			reply.WaitSubject = subjects.AdminLoginWait(reply.Broker)
			return reply, e
		}, false},
		{"admin-login-wait", subjects.AdminLoginWait(admin.BrokerID()), func(ctx context.Context, req micro.Request) (any, *tokenbroker.Error) {
			name, err := decodeName(req.Data())
			if err != nil {
				return nil, err
			}
			return admin.LoginWait(ctx, name)
		}, true},
	} {
		do, timeout := ep.do, adminTimeout
		if ep.wait {
			timeout = wire.LoginWaitMax
		}
		h := func(req micro.Request) {
			if !s.replyAllowed(req.Reply()) {
				s.drop(req.Reply())
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			reply, e := do(ctx, req)
			if e != nil {
				_ = req.Error(strconv.Itoa(e.Code), wire.HeaderValue(e.Description), tokenbroker.EncodeError(e))
				return
			}
			if err := req.RespondJSON(reply); err != nil {
				s.log.Warn("reply to admin request", "err", err)
			}
		}
		handler := h
		if ep.wait {
			// Each wait holds a goroutine for up to LoginWaitMax: a bounded
			// number, so that a flood of waits cannot pile them up.
			slots := make(chan struct{}, MaxLoginWaits)
			handler = func(req micro.Request) {
				select {
				case slots <- struct{}{}:
					go func() {
						defer func() { <-slots }()
						h(req)
					}()
				default:
					if !s.replyAllowed(req.Reply()) {
						s.drop(req.Reply())
						return
					}
					e := tokenbroker.Errorf(tokenbroker.CodeTooMany, tokenbroker.OAuthTemporarilyUnavailable,
						"%d login waits are held on this broker already; wait again shortly", MaxLoginWaits)
					_ = req.Error(strconv.Itoa(e.Code), wire.HeaderValue(e.Description), tokenbroker.EncodeError(e))
				}
			}
		}
		if err := svc.AddEndpoint(ep.name, micro.HandlerFunc(handler),
			micro.WithEndpointSubject(ep.subject), micro.WithEndpointQueueGroup(wire.QueueGroup)); err != nil {
			return err
		}
	}
	return nil
}

// decodeAdmin reads an admin request's JSON strictly: an unknown field is
// a typo in a hand-written request, better refused than ignored.
func decodeAdmin(data []byte, v any) *tokenbroker.Error {
	if len(data) > maxAdminBody {
		return tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"the request is larger than %d bytes", maxAdminBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"the request is not the JSON expected: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"the request has data after its JSON object")
	}
	return nil
}

// jsonProblem says what is wrong with a request's JSON without quoting it:
// a put carries secrets.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return "field " + strconv.Quote(te.Field) + " has the wrong type"
	case errors.As(err, &se):
		return "malformed at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "empty or cut short"
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

func decodeName(data []byte) (string, *tokenbroker.Error) {
	var body wire.AdminNameRequest
	if err := decodeAdmin(data, &body); err != nil {
		return "", err
	}
	if !wire.ValidName(body.Name) {
		return "", tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"name must be 1 to 64 letters, digits, '-' or '_'")
	}
	return body.Name, nil
}

// clearCredentials drops the secrets a put carried once it is handled.
func clearCredentials(cs []wire.Credential) {
	for i := range cs {
		cs[i] = wire.Credential{}
	}
}
