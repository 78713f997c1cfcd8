// Package httpapi is the broker's HTTP gateway: the original helper's
// POST /requesttoken, served by the same tokenbroker.Service as token.request
// on NATS, a named credential's events as Server-Sent Events on /events, and
// the operations endpoints /healthz, /readyz and /metrics.
//
// Every answer of /requesttoken is JSON with the contract's field names and a
// real HTTP status: 200 with the encoded Reply, or the Error's code (400, 401,
// 404, 413, 429, 502, 503, 504, 500) or the gateway's own refusal (415, 421)
// with {"error": ..., "error_description": ...}. The gateway never logs or
// labels a username, a password or a token.
//
// The gateway authenticates no one, so it must not serve a web page that
// happens to run in a browser able to reach it. /requesttoken and /metrics
// answer only requests whose Host is one of the gateway's own (see
// Options.AllowedHosts), which defeats DNS rebinding, and /requesttoken
// takes only application/json bodies, which a cross-site page cannot send
// without a CORS preflight that the gateway never grants.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// Options configure the gateway's handler.
type Options struct {
	// Service answers token requests, as it does on NATS. Required.
	Service tokenbroker.Service
	// Metrics records one request per /requesttoken answer and serves
	// /metrics. Nil records nothing and makes /metrics a 404.
	Metrics *metrics.Metrics
	// Ready reports whether the broker can serve: nil when NATS is
	// connected and token.request subscribed, else why not. /readyz calls
	// it on every probe, so it must be cheap and safe for concurrent use.
	// A nil Ready means always ready.
	Ready func() error
	// AllowedHosts are the Host values, besides the gateway's own, that
	// /requesttoken and /metrics answer (HTTP_ALLOWED_HOSTS): the names
	// callers reach the gateway by, such as a Kubernetes Service's.
	// Always answered are the loopback names (localhost, 127.0.0.1, ::1)
	// and the address the request's connection arrived on, which is the
	// listen address or, behind a wildcard one, the interface address a
	// probe or scraper used. Entries are compared case-insensitively
	// without their port, so the listen address (HTTP_ADDR) may be given
	// as it is; wildcard addresses (0.0.0.0, ::) are ignored. Any other
	// Host gets a 421 before the body is read.
	AllowedHosts []string
	// Logger gets one Debug line per request (method, path, status,
	// duration) and nothing about its content. Nil discards.
	Logger *slog.Logger
	// Auditor gets a record of each /requesttoken request the gateway
	// refuses itself once its Host is allowed (405, 415, 413, a body that
	// does not decode: 400), with the status as outcome and no credential
	// id; the Service records the answers it gives. A request refused for
	// its Host is not recorded: it is not for this gateway, and recording
	// it would let any web page fill the trail. Nil records nothing.
	// Each /events stream opened is recorded too, with its credential.
	Auditor tokenbroker.Auditor
	// Events serves GET /events, a named credential's events as
	// Server-Sent Events (events.go), behind the same Host check as
	// /requesttoken. Nil makes /events a 404.
	Events *EventsOptions
}

// handler is the gateway's mux. It dispatches on the exact path by hand,
// rather than with http.ServeMux, so that unknown paths and wrong methods get
// the same JSON error bodies as everything else.
type handler struct {
	svc     tokenbroker.Service
	allowed map[string]struct{} // normalised AllowedHosts
	metrics *metrics.Metrics
	ready   func() error
	log     *slog.Logger
	audit   tokenbroker.Auditor
	events  *hub // nil without Options.Events
}

// NewHandler returns the gateway's handler: /requesttoken, /healthz, /readyz,
// /metrics and, with Options.Events, /events. Any other path is a 404 with a
// JSON error body. It panics without a Service, a wiring bug.
func NewHandler(o Options) http.Handler {
	if o.Service == nil {
		panic("httpapi: NewHandler without a Service")
	}
	h := &handler{svc: o.Service, metrics: o.Metrics, ready: o.Ready, log: o.Logger, audit: o.Auditor,
		allowed: make(map[string]struct{}, len(o.AllowedHosts))}
	for _, a := range o.AllowedHosts {
		host := hostName(strings.TrimSpace(a))
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			// A wildcard listen address names no host: a Host of
			// 0.0.0.0 is not how anyone should address the gateway.
			continue
		}
		h.allowed[host] = struct{}{}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.audit == nil {
		h.audit = tokenbroker.NopAuditor{}
	}
	if o.Events != nil {
		h.events = newHub(*o.Events, h.log)
	}
	return h
}

// Paths the gateway serves.
const (
	// PathRequestToken takes a token request, POST or GET with a JSON body.
	PathRequestToken = "/requesttoken"
	// PathHealthz answers 200 while the process runs.
	PathHealthz = "/healthz"
	// PathReadyz answers 200 when Options.Ready says so, else 503.
	PathReadyz = "/readyz"
	// PathMetrics serves Options.Metrics in the Prometheus text format.
	PathMetrics = "/metrics"
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The status recorder costs an allocation per request, so it is only
	// put in when its Debug line will be written.
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// The path only: a query string might carry anything.
			h.log.Debug("http request", "method", r.Method, "path", r.URL.Path,
				"status", sw.status, "duration", time.Since(start))
		}()
		w = sw
	}
	switch r.URL.Path {
	case PathRequestToken:
		if !h.hostAllowed(w, r) {
			return
		}
		// The original helper accepted GET with a JSON body too.
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			h.refused(r, http.StatusMethodNotAllowed)
			methodNotAllowed(w, "GET, POST")
			return
		}
		h.requestToken(w, r)
	// /healthz and /readyz skip the Host check: probes address the
	// gateway by whatever name or address the platform uses, and the
	// answers tell nothing about tokens or credentials.
	case PathHealthz:
		if get(w, r) {
			writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
		}
	case PathReadyz:
		if get(w, r) {
			h.readyz(w)
		}
	case PathEvents:
		h.serveEvents(w, r)
	case PathMetrics:
		// Behind the Host check too: what the broker serves and how
		// often is nothing for a rebinding page to read.
		if !h.hostAllowed(w, r) || !get(w, r) {
			return
		}
		if h.metrics == nil {
			notFound(w)
			return
		}
		h.metrics.Handler().ServeHTTP(w, r)
	default:
		notFound(w)
	}
}

// hostAllowed answers 421 to a request whose Host is not one of the
// gateway's own and reports whether the request may go on. A page that
// rebinds its own name to the gateway's address is same-origin with it in
// the browser, but its requests still carry that name as their Host.
func (h *handler) hostAllowed(w http.ResponseWriter, r *http.Request) bool {
	host := hostName(r.Host)
	if host == "localhost" {
		return true
	}
	if _, ok := h.allowed[host]; ok {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		// No DNS name is involved in reaching an address, so no page
		// can rebind it: the one the connection arrived on is the
		// gateway's own.
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && a.IP.Equal(ip) {
			return true
		}
	}
	// The Host is not echoed: it is the attacker's text.
	writeJSON(w, http.StatusMisdirectedRequest, tokenbroker.EncodeError(tokenbroker.Errorf(
		http.StatusMisdirectedRequest, tokenbroker.OAuthInvalidRequest,
		"this gateway does not answer for the Host of this request; address it as localhost or add the name to HTTP_ALLOWED_HOSTS")))
	return false
}

// hostName is the host of a Host header or an AllowedHosts entry: without
// port or IPv6 brackets, in lower case and without the trailing dot of a
// fully qualified name, so that two spellings of one name compare equal.
func hostName(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1] // an IPv6 address without port
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// jsonBody reports whether the request says its body is JSON in UTF-8, the
// only encoding JSON has (RFC 8259). HTML forms and no-CORS fetches can only
// send text/plain, application/x-www-form-urlencoded and multipart/form-data
// across sites; anything else needs a preflight the gateway never grants.
func jsonBody(r *http.Request) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return false
	}
	// Another charset would be decoded as UTF-8 anyway, turning a
	// password's non-ASCII letters into U+FFFD: refuse it plainly.
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// get answers 405 to anything but GET or HEAD and reports whether the
// request may go on.
func get(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	methodNotAllowed(w, "GET, HEAD")
	return false
}

func (h *handler) readyz(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	var err error
	if h.ready != nil {
		err = h.ready()
	}
	if err != nil {
		body, _ := json.Marshal(struct {
			Status string `json:"status"`
			Reason string `json:"reason"`
		}{"unready", err.Error()})
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":"ready"}`))
}

// requestToken decodes the body, hands the request to the Service and waits
// for its answer or the client's departure, whichever comes first. It has
// no timer of its own: the Service answers every request by its
// REQUEST_TIMEOUT, with a 504 at worst, so NATS and HTTP callers are told
// the same thing at the same moment.
func (h *handler) requestToken(w http.ResponseWriter, r *http.Request) {
	// Token answers carry secrets: no cache may keep them, nor an error
	// that a retry would change.
	w.Header().Set("Cache-Control", "no-store")
	// Off, tracing costs this load and branch: no header is read. tr's
	// methods do nothing on nil.
	var tr *tracing.Request
	if tracing.Enabled() {
		tr = startTrace(r)
	}

	if !jsonBody(r) {
		// Before reading the body: a cross-site form post is refused
		// on its headers.
		w.Header().Set("Accept", "application/json")
		e := tokenbroker.Errorf(http.StatusUnsupportedMediaType, tokenbroker.OAuthInvalidRequest,
			"the body must be JSON, sent with Content-Type: application/json")
		h.refused(r, http.StatusUnsupportedMediaType)
		writeJSON(w, http.StatusUnsupportedMediaType, tokenbroker.EncodeError(e))
		endTrace(tr, http.StatusUnsupportedMediaType, e)
		return
	}
	if r.ContentLength > tokenbroker.MaxRequestBytes {
		// Known to be too large before reading a byte of it.
		h.refuse(w, r, tr, tooLarge())
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tokenbroker.MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.refuse(w, r, tr, tooLarge())
			return
		}
		h.refuse(w, r, tr, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest, "could not read the request body"))
		return
	}
	req, err := tokenbroker.DecodeRequest(data)
	if err != nil {
		h.refuse(w, r, tr, tokenbroker.AsError(err))
		return
	}
	// For the audit trail: who asked, as the connection tells. RemoteAddr
	// is already host:port, and assigning it costs nothing.
	req.Transport, req.Caller = tokenbroker.TransportHTTP, r.RemoteAddr
	if tr != nil && req.Credential != "" {
		tr.SetCredential(req.Credential)
	}

	rep := &replier{ch: make(chan answer, 1), trace: tr}
	h.svc.Serve(req, rep)

	var a answer
	select {
	case a = <-rep.ch:
	case <-r.Context().Done():
		// The client is gone: nobody to answer, and no outcome worth
		// counting as the broker's. The answer, when it comes, lands in
		// the buffered channel and is collected with it.
		tr.Abandon()
		return
	}
	if a.err != nil {
		h.fail(w, a.err)
		endTrace(tr, status(a.err), a.err)
		return
	}
	if a.action == tokenbroker.ActionExisting {
		h.metrics.CacheHit(metrics.TransportHTTP)
	} else {
		h.metrics.Request(metrics.TransportHTTP, metrics.OutcomeOK, a.action)
	}
	writeJSON(w, http.StatusOK, a.body)
	if tr != nil {
		tr.SetAttributes(attribute.Int("http.response.status_code", http.StatusOK))
		tr.Respond(a.action, a.body)
	}
}

// refuse answers a request the gateway refuses before the Service sees it
// with e, and records it: the Service records the answers it gives, so
// these would otherwise be missing from the trail. tr is the request's
// trace, nil when untraced.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, tr *tracing.Request, e *tokenbroker.Error) {
	h.refused(r, status(e))
	h.fail(w, e)
	endTrace(tr, status(e), e)
}

// refused records a refusal of r with status, which has no credential id:
// the body was not read, or did not decode.
func (h *handler) refused(r *http.Request, status int) {
	h.audit.Audit(tokenbroker.AuditRecord{Time: time.Now(), Caller: r.RemoteAddr,
		Transport: tokenbroker.TransportHTTP, Outcome: strconv.Itoa(status)})
}

// status is the HTTP status of e.
func status(e *tokenbroker.Error) int {
	if e.Code < 400 || e.Code > 599 {
		// Not a code of the contract: a bug somewhere, and HTTP needs an
		// error status.
		return http.StatusInternalServerError
	}
	return e.Code
}

// fail writes e and counts it.
func (h *handler) fail(w http.ResponseWriter, e *tokenbroker.Error) {
	status := status(e)
	h.metrics.Request(metrics.TransportHTTP, strconv.Itoa(status), "")
	// The two statuses whose RetryAfter tells a caller when asking again
	// may succeed: the IdP's own throttling (503) and a username locked
	// after refused sign-ins (429). HTTP clients and proxies read the
	// header, not the body's retry_after.
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, status, tokenbroker.EncodeError(e))
}

func tooLarge() *tokenbroker.Error {
	return tokenbroker.Errorf(tokenbroker.CodeTooLarge, tokenbroker.OAuthInvalidRequest,
		"request is over the limit of %d bytes", tokenbroker.MaxRequestBytes)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, tokenbroker.EncodeError(tokenbroker.Errorf(
		http.StatusMethodNotAllowed, tokenbroker.OAuthInvalidRequest, "method not allowed; use %s", allow)))
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, tokenbroker.EncodeError(tokenbroker.Errorf(
		http.StatusNotFound, tokenbroker.OAuthInvalidRequest, "no such endpoint; token requests go to POST %s", PathRequestToken)))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client is gone
}

// answer is what the Service delivered: a body and its action, or an error.
type answer struct {
	action string
	body   []byte
	err    *tokenbroker.Error
}

// replier hands the Service's answer to the waiting handler through a
// channel of capacity 1, so that Respond and Fail never block, even when the
// handler has stopped waiting (the client is gone).
type replier struct {
	ch    chan answer
	trace *tracing.Request // nil when untraced
}

// Trace implements tracing.Traced, for the actor that answers.
func (r *replier) Trace() *tracing.Request { return r.trace }

// Respond implements tokenbroker.Replier. body is copied: the Service may
// reuse it once Respond returns.
func (r *replier) Respond(action string, body []byte) {
	r.send(answer{action: action, body: bytes.Clone(body)})
}

// Fail implements tokenbroker.Replier.
func (r *replier) Fail(e *tokenbroker.Error) {
	if e == nil {
		e = tokenbroker.AsError(nil)
	}
	r.send(answer{err: e})
}

func (r *replier) send(a answer) {
	select {
	case r.ch <- a:
	default:
		// A second answer breaks the Replier contract; dropping it keeps
		// the Service's goroutine (maybe an actor) from blocking forever.
	}
}

// statusWriter remembers the status for the request's log line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
