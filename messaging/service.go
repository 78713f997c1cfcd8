package messaging

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/tracing"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Version is the micro service's version, shown by `nats micro info`.
const Version = "0.1.0"

// Service is the token.request endpoint, registered as the NATS micro
// service "tokenbroker" in queue group "tokenbroker", so that any number of
// brokers share the requests and `nats micro ls|info|stats` see them.
type Service struct {
	nc      *nats.Conn
	svc     micro.Service
	backend tokenbroker.Service
	fast    tokenbroker.AppendService // backend, when it can answer hits into buf; else nil
	log     *slog.Logger
	metrics *metrics.Metrics

	usersOnShared bool // NAMED_ON_SHARED_SUBJECT=false: token.request serves username/password requests only
	audit         tokenbroker.Auditor

	replyPrefixes []string     // a reply subject must start with one of them
	dropLog       atomic.Int64 // Unix nanoseconds of the last drop logged

	requests atomic.Uint64
	errors   atomic.Uint64
	dropped  atomic.Uint64
}

// Counts are the broker's own counts of token requests, shown by
// `tokenbroker status` and in the endpoint's stats data. Unlike micro's
// NumErrors, Errors includes the errors a credential's actor answered after
// the handler returned: a password the IdP refused, a 503 once its breaker
// opened, a 504.
type Counts struct {
	Requests uint64 `json:"requests"` // requests received
	Errors   uint64 `json:"errors"`   // requests answered with an error
	// Dropped are requests left unanswered, without asking the IdP,
	// because their reply subject was missing or outside the allowed inbox
	// prefixes (REPLY_PREFIXES).
	Dropped uint64 `json:"dropped"`
}

// ServiceOptions are the optional parts of a Service.
type ServiceOptions struct {
	Logger  *slog.Logger     // nil discards
	Metrics *metrics.Metrics // nil records nothing
	// ReplyPrefixes are the inbox prefixes a request's reply subject must
	// start with (REPLY_PREFIXES), as given to nats.CustomInboxPrefix, with
	// or without the final dot. Empty means wire.DefaultReplyPrefix alone.
	// See wire.CheckReplyPrefixes.
	ReplyPrefixes []string
	// NamedOnOwnSubjectOnly makes token.request refuse requests for named
	// credentials, which are then served on token.request.<name> alone
	// (NAMED_ON_SHARED_SUBJECT=false), so that NATS permissions decide
	// which caller gets which credential.
	NamedOnOwnSubjectOnly bool
	// Auditor gets a record of each request the service refuses itself
	// (the backend records the rest); nil records nothing.
	Auditor tokenbroker.Auditor
	// Status, when set, adds its fields to the custom data of the
	// endpoint's stats, beside the Counts, so `nats micro stats
	// tokenbroker` and `tokenbroker status` show it. It must return a value
	// that encodes as a JSON object, and be safe for concurrent use.
	Status func() any
	// Admin, when set, serves the admin endpoints on <prefix>.admin.>:
	// the credential registry's commands.
	Admin Admin
}

// NewService registers the endpoint on nc and starts serving it with backend.
func NewService(nc *nats.Conn, subjects wire.Subjects, backend tokenbroker.Service, o ServiceOptions) (*Service, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefixes, err := wire.CheckReplyPrefixes(o.ReplyPrefixes, subjects.Prefix)
	if err != nil {
		return nil, err
	}
	s := &Service{nc: nc, backend: backend, log: log, metrics: o.Metrics, replyPrefixes: prefixes,
		usersOnShared: o.NamedOnOwnSubjectOnly, audit: o.Auditor}
	s.fast, _ = backend.(tokenbroker.AppendService)
	cfg := micro.Config{
		Name:        wire.ServiceName,
		Version:     Version,
		Description: "OAuth2 access tokens for stateless callers",
		QueueGroup:  wire.QueueGroup,
	}
	cfg.StatsHandler = func(*micro.Endpoint) any {
		d := statsData{counts: s.Counts()}
		if o.Status != nil {
			d.status = o.Status()
		}
		return d
	}
	svc, err := micro.AddService(nc, cfg)
	if err != nil {
		return nil, err
	}
	// Each endpoint has a subscription, and so a delivery goroutine, of
	// its own: each gets a handler with its own buffers.
	shared, named := &handler{s: s}, &handler{s: s, named: true}
	for _, ep := range []struct {
		name, subject string
		h             *handler
	}{
		{"request", subjects.Request(), shared},
		{"request-named", subjects.NamedRequests(), named},
	} {
		if err := svc.AddEndpoint(ep.name, micro.HandlerFunc(ep.h.handle),
			micro.WithEndpointSubject(ep.subject),
			micro.WithEndpointQueueGroup(wire.QueueGroup)); err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	if o.Admin != nil {
		if err := s.addAdmin(svc, subjects, o.Admin); err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	s.svc = svc
	// Return only once the server has the subscription, so a caller told
	// the broker is up never meets "no responders"; and fail if the server
	// refused it, rather than run a broker nobody can reach.
	if err := nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
		_ = svc.Stop()
		return nil, fmt.Errorf("messaging: the NATS user may not serve %s and %s: %w", subjects.Request(), subjects.NamedRequests(), err)
	}
	return s, nil
}

// Stop unsubscribes the endpoint, letting messages already delivered be
// handled. It is idempotent.
func (s *Service) Stop() error { return s.svc.Stop() }

// Stopped reports whether the service has stopped.
func (s *Service) Stopped() bool { return s.svc.Stopped() }

// Info returns the micro service's description, as `nats micro info` shows it.
func (s *Service) Info() micro.Info { return s.svc.Info() }

// Stats returns the endpoint's counts, as `nats micro stats` shows them.
func (s *Service) Stats() micro.Stats { return s.svc.Stats() }

// Counts returns the requests received and answered with an error so far.
func (s *Service) Counts() Counts {
	return Counts{Requests: s.requests.Load(), Errors: s.errors.Load(), Dropped: s.dropped.Load()}
}

// replyAllowed reports whether the broker may answer on reply.
func (s *Service) replyAllowed(reply string) bool {
	for _, p := range s.replyPrefixes {
		if len(reply) > len(p) && strings.HasPrefix(reply, p) {
			return true
		}
	}
	return false
}

// drop leaves a request unanswered: it has no reply subject, or one the
// broker must not publish to. It is counted, and logged at most every ten
// seconds, so a flood of them cannot flood the log.
func (s *Service) drop(reply string) {
	s.dropped.Add(1)
	s.metrics.Request(metrics.TransportNATS, metrics.OutcomeDropped, "")
	now := time.Now().UnixNano()
	last := s.dropLog.Load()
	if now-last < int64(10*time.Second) || !s.dropLog.CompareAndSwap(last, now) {
		return
	}
	if len(reply) > 64 {
		reply = reply[:64] + "..."
	}
	s.log.Warn("token request dropped: its reply subject is missing or outside the allowed inbox prefixes (REPLY_PREFIXES)",
		"reply", reply, "dropped_so_far", s.dropped.Load())
}

// statsData is the endpoint's custom stats data: the Counts and the fields
// of the backend's status, in one flat object.
type statsData struct {
	counts Counts
	status any
}

func (d statsData) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(d.counts)
	if err != nil || d.status == nil {
		return head, err
	}
	body, err := json.Marshal(d.status)
	if err != nil {
		return nil, err
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, errors.New("messaging: the status is not a JSON object")
	}
	if len(body) == 2 { // {}
		return head, nil
	}
	return append(append(head[:len(head)-1], ','), body[1:]...), nil
}

// handler serves one endpoint. It runs on that endpoint's subscription's
// single delivery goroutine, which owns its fields: the cache-hit reply
// buffer, the request being handled, and a replier that no request holds
// (a cache hit leaves it unused, so the next request takes it).
type handler struct {
	s     *Service
	named bool // token.request.<name>: the subject names the credential
	buf   []byte
	req   tokenbroker.Request
	spare *replier
}

// handle never waits: a cache hit is answered before the backend returns,
// anything else is answered later by the credential's actor through the
// replier.
func (h *handler) handle(req micro.Request) {
	s := h.s
	s.requests.Add(1)
	if !s.replyAllowed(req.Reply()) {
		s.drop(req.Reply())
		return
	}
	// Off, tracing costs this load and branch: no header is read.
	var tr *tracing.Request
	if tracing.Enabled() {
		tr = startTrace(req)
	}
	r, err := h.decode(req)
	if err != nil {
		e := tokenbroker.AsError(err)
		h.refuse(req, e)
		tr.Fail(e)
		return
	}
	r.Transport = tokenbroker.TransportNATS
	if s.audit != nil { // the caller is for the audit trail alone
		r.Caller = callerOf(req)
	}
	if tr != nil && r.Credential != "" {
		tr.SetCredential(r.Credential)
	}
	rep := h.spare
	if rep == nil {
		rep = &replier{s: s}
	}
	rep.req = req
	if tr != nil {
		rep.trace = tr // before the actor may see rep
	}
	if s.fast != nil {
		// The request is resolved once: a hit is appended to the one
		// buffer the handler owns (Respond copies it out), a miss goes on
		// to the actor with what was resolved.
		h.req = r
		body, hit := s.fast.ServeAppend(h.buf[:0], &h.req, rep)
		h.req = tokenbroker.Request{} // hold no password past the call
		if hit {
			h.buf, h.spare, rep.req = body, rep, nil
			s.metrics.CacheHit(metrics.TransportNATS)
			if err := req.Respond(body); err != nil {
				s.log.Warn("reply to token request", "err", err)
			}
			if tr != nil {
				rep.trace = nil // the spare serves the next request
				tr.Respond(tokenbroker.ActionExisting, body)
			}
			return
		}
	} else {
		s.backend.Serve(r, rep)
	}
	h.spare = nil // handed on, or used
	rep.mu.Lock()
	rep.returned = true
	rep.mu.Unlock()
}

// decode reads the request: on a credential's own subject the subject names
// it; on the shared one the body does, unless named credentials are served
// on their own subjects only.
func (h *handler) decode(req micro.Request) (tokenbroker.Request, error) {
	if h.named {
		return tokenbroker.DecodeNamedRequest(req.Data(), credentialOf(req))
	}
	r, err := tokenbroker.DecodeRequest(req.Data())
	if err == nil && h.s.usersOnShared && !r.IsPassword() {
		return tokenbroker.Request{}, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
			"named credentials are served on their own subjects (the request subject followed by the name) only")
	}
	return r, err
}

// refuse answers a request the service refuses itself, and records it:
// under the credential its subject names, if it names one, so that whoever
// watches a credential's audit subject sees the attempts refused on it.
func (h *handler) refuse(req micro.Request, e *tokenbroker.Error) {
	s := h.s
	s.errors.Add(1)
	s.metrics.Request(metrics.TransportNATS, strconv.Itoa(e.Code), "")
	if s.audit != nil {
		var id string
		if h.named {
			id = credentialOf(req)
		}
		s.audit.Audit(tokenbroker.AuditRecord{Time: time.Now(), CredentialID: id, Caller: callerOf(req),
			Transport: tokenbroker.TransportNATS, Outcome: strconv.Itoa(e.Code)})
	}
	_ = req.Error(strconv.Itoa(e.Code), wire.HeaderValue(e.Description), tokenbroker.EncodeError(e))
}

// credentialOf is the credential a request on token.request.<name> names:
// the last token of its subject.
func credentialOf(req micro.Request) string {
	subject := req.Subject()
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// requestInfoHeader is where nats-server says who sent a request that came
// through a service import with share: true (the importing account and
// user), so that the exporting broker can tell its callers apart.
const requestInfoHeader = "Nats-Request-Info"

// callerOf returns "ACCOUNT/USER" from a request's Nats-Request-Info
// header, or "" when it has none (a request from the broker's own account,
// or an import without share: true). nats-server sets the header on a
// request that crosses a service import with share: true; a client of the
// broker's own account could send one of its own, so the caller it names
// is as trustworthy as the accounts are separate (README, audit trail).
func callerOf(req micro.Request) string {
	info := req.Headers().Get(requestInfoHeader)
	if info == "" {
		return ""
	}
	var ci struct {
		Account string `json:"acc"`
		User    string `json:"user"`
	}
	if json.Unmarshal([]byte(info), &ci) != nil || ci.Account == "" {
		return ""
	}
	if ci.User == "" {
		return ci.Account
	}
	return ci.Account + "/" + ci.User
}

// replier answers one request. While the handler runs it answers through
// the micro request, so micro counts the reply (and an error as an error);
// once the handler has returned, micro reads the request's state without a
// lock, so a late answer is published on the connection directly, with the
// same micro error headers. Either way the Service counts it.
type replier struct {
	s     *Service
	req   micro.Request
	trace *tracing.Request // nil when not traced

	mu       sync.Mutex
	returned bool
}

func (r *replier) Respond(action string, body []byte) {
	if action == tokenbroker.ActionExisting {
		r.s.metrics.CacheHit(metrics.TransportNATS)
	} else {
		r.s.metrics.Request(metrics.TransportNATS, metrics.OutcomeOK, action)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.returned {
		err = r.s.nc.Publish(r.req.Reply(), body)
	} else {
		err = r.req.Respond(body)
	}
	if err != nil {
		r.s.log.Warn("reply to token request", "err", err)
	}
	r.trace.Respond(action, body)
}

// Trace implements tracing.Traced, for the actor that answers.
func (r *replier) Trace() *tracing.Request { return r.trace }

func (r *replier) Fail(e *tokenbroker.Error) {
	code := strconv.Itoa(e.Code)
	r.s.errors.Add(1)
	r.s.metrics.Request(metrics.TransportNATS, code, "")
	r.mu.Lock()
	defer r.mu.Unlock()
	body := tokenbroker.EncodeError(e)
	var extra micro.Headers
	if e.RetryAfter > 0 {
		extra = micro.Headers{wire.RetryAfterHeader: []string{strconv.Itoa(e.RetryAfter)}}
	}
	var err error
	if r.returned {
		msg := nats.NewMsg(r.req.Reply())
		for k, v := range extra {
			msg.Header[k] = v
		}
		msg.Header.Set(micro.ErrorHeader, wire.HeaderValue(e.Description))
		msg.Header.Set(micro.ErrorCodeHeader, code)
		msg.Data = body
		err = r.s.nc.PublishMsg(msg)
	} else {
		err = r.req.Error(code, wire.HeaderValue(e.Description), body, micro.WithHeaders(extra))
	}
	if err != nil {
		r.s.log.Warn("reply to token request", "err", err)
	}
	r.trace.Fail(e)
}
