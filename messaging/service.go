package messaging

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
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
	log     *slog.Logger
	metrics *metrics.Metrics
	buf     []byte // the cache-hit reply buffer, owned by the handler goroutine
}

// ServiceOptions are the optional parts of a Service.
type ServiceOptions struct {
	Logger  *slog.Logger     // nil discards
	Metrics *metrics.Metrics // nil records nothing
	// Status, when set, is the custom data of the endpoint's stats, so
	// `nats micro stats tokenbroker` and `tokenbroker status` show it. It
	// must be safe for concurrent use.
	Status func() any
}

// NewService registers the endpoint on nc and starts serving it with backend.
func NewService(nc *nats.Conn, subjects Subjects, backend tokenbroker.Service, o ServiceOptions) (*Service, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{nc: nc, backend: backend, log: log, metrics: o.Metrics}
	cfg := micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "OAuth2 access tokens for stateless callers",
		QueueGroup:  QueueGroup,
	}
	if o.Status != nil {
		cfg.StatsHandler = func(*micro.Endpoint) any { return o.Status() }
	}
	svc, err := micro.AddService(nc, cfg)
	if err != nil {
		return nil, err
	}
	if err := svc.AddEndpoint("request", micro.HandlerFunc(s.handle),
		micro.WithEndpointSubject(subjects.Request()),
		micro.WithEndpointQueueGroup(QueueGroup)); err != nil {
		_ = svc.Stop()
		return nil, err
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
		return nil, fmt.Errorf("messaging: the NATS user may not serve %s: %w", subjects.Request(), err)
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

// handle runs on the subscription's single delivery goroutine, so it never
// waits: a cache hit is answered before Serve returns, anything else is
// answered later by the credential's actor through the replier.
func (s *Service) handle(req micro.Request) {
	r, err := tokenbroker.DecodeRequest(req.Data())
	if err != nil {
		e := tokenbroker.AsError(err)
		s.metrics.Request(metrics.TransportNATS, strconv.Itoa(e.Code), "")
		_ = req.Error(strconv.Itoa(e.Code), headerValue(e.Description), tokenbroker.EncodeError(e))
		return
	}
	if c, ok := s.backend.(cacher); ok {
		// The handler runs on the subscription's one goroutine, so one
		// buffer serves every cache hit; Respond copies it out.
		if body, ok := c.AppendCached(s.buf[:0], &r); ok {
			s.buf = body
			s.metrics.CacheHit(metrics.TransportNATS)
			if err := req.Respond(body); err != nil {
				s.log.Warn("reply to token request", "err", err)
			}
			return
		}
	}
	rep := &replier{nc: s.nc, req: req, log: s.log, metrics: s.metrics}
	s.backend.Serve(r, rep)
	rep.mu.Lock()
	rep.returned = true
	rep.mu.Unlock()
}

// cacher is a tokenbroker.Service that can answer cache hits without a
// Replier (actors.Router does), sparing the hot path an allocation.
type cacher interface {
	AppendCached(dst []byte, req *tokenbroker.Request) ([]byte, bool)
}

// replier answers one request. While the handler runs it answers through
// the micro request, so micro counts the reply (and an error as an error);
// once the handler has returned, micro reads the request's state without a
// lock, so a late answer is published on the connection directly, with the
// same micro error headers.
type replier struct {
	nc      *nats.Conn
	req     micro.Request
	log     *slog.Logger
	metrics *metrics.Metrics

	mu       sync.Mutex
	returned bool
}

func (r *replier) Respond(action string, body []byte) {
	if action == tokenbroker.ActionExisting {
		r.metrics.CacheHit(metrics.TransportNATS)
	} else {
		r.metrics.Request(metrics.TransportNATS, metrics.OutcomeOK, action)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.returned {
		err = r.nc.Publish(r.req.Reply(), body)
	} else {
		err = r.req.Respond(body)
	}
	if err != nil {
		r.log.Warn("reply to token request", "err", err)
	}
}

func (r *replier) Fail(e *tokenbroker.Error) {
	code := strconv.Itoa(e.Code)
	r.metrics.Request(metrics.TransportNATS, code, "")
	r.mu.Lock()
	defer r.mu.Unlock()
	body := tokenbroker.EncodeError(e)
	var extra micro.Headers
	if e.RetryAfter > 0 {
		extra = micro.Headers{retryAfterHeader: []string{strconv.Itoa(e.RetryAfter)}}
	}
	var err error
	if r.returned {
		msg := nats.NewMsg(r.req.Reply())
		for k, v := range extra {
			msg.Header[k] = v
		}
		msg.Header.Set(micro.ErrorHeader, headerValue(e.Description))
		msg.Header.Set(micro.ErrorCodeHeader, code)
		msg.Data = body
		err = r.nc.PublishMsg(msg)
	} else {
		err = r.req.Error(code, headerValue(e.Description), body, micro.WithHeaders(extra))
	}
	if err != nil {
		r.log.Warn("reply to token request", "err", err)
	}
}

// retryAfterHeader carries, on a 503, the seconds the IdP asked callers to
// wait, as HTTP's Retry-After does.
const retryAfterHeader = "Retry-After"

// oneLine folds line breaks: a header value is one line, and Azure AD puts
// its trace and correlation ids on lines of their own.
var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// headerValue is the Nats-Service-Error value for an error description.
// The JSON body keeps the description as the IdP sent it.
func headerValue(description string) string { return oneLine.Replace(description) }
