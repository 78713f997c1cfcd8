// Package metrics holds the broker's Prometheus metrics, on a registry of its
// own so that tests and several brokers in one process never collide on the
// global one.
//
// Every label value comes from a small fixed set (transports, reply codes,
// action phrases, grant names, outcomes). A value outside its set is counted
// as "other": labels never carry a username, a secret or a token, and a bug
// in a caller cannot create unbounded series. Two labels are not from a
// fixed set: the credential of tokenbroker_certificate_expiry_seconds, a
// named credential's name, which operators choose and alerts must name; and
// the endpoint of tokenbroker_idp_breaker_state, a configured token
// endpoint's scheme, host and path, without user info or query.
//
// Every method is safe on a nil *Metrics, where it does nothing, so packages
// take a *Metrics that may be nil and call it without checks.
package metrics

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// Namespace prefixes every metric of the broker.
const Namespace = "tokenbroker"

// Transports a request can arrive on: the transport label of
// tokenbroker_requests_total.
const (
	// TransportNATS is token.request.
	TransportNATS = "nats"
	// TransportHTTP is the HTTP gateway's /requesttoken.
	TransportHTTP = "http"
)

// Outcomes of a request and of a refresh. A failed request's outcome is its
// error code as a string ("401") instead. The outcomes of an IdP call are
// oauth's (oauth.OutcomeOK, oauth.OutcomeRejected, ...), whose "ok" is the
// same label value as OutcomeOK.
const (
	// OutcomeOK is a request answered with a token, or a refresh that got
	// one.
	OutcomeOK = "ok"
	// OutcomeFailed is a refresh that failed.
	OutcomeFailed = "failed"
	// OutcomeDropped is a request left unanswered: no reply subject, or
	// one outside the allowed inbox prefixes.
	OutcomeDropped = "dropped"
)

// Event kinds, as published on token.refreshed.* and token.failed.*.
const (
	// EventRefreshed is a token.refreshed.<credential_id> event.
	EventRefreshed = "refreshed"
	// EventFailed is a token.failed.<credential_id> event.
	EventFailed = "failed"
)

// Other replaces any label value outside its allowlist.
const Other = "other"

// The allowlists. Maps rather than switches so that a new value is one line;
// a lookup with a string key does not allocate.
var (
	transports = set(TransportNATS, TransportHTTP)
	// Request outcomes: "ok" or a contract error code as a string.
	requestOutcomes = set(OutcomeOK, OutcomeDropped,
		strconv.Itoa(tokenbroker.CodeInvalidRequest), strconv.Itoa(tokenbroker.CodeTooMany), strconv.Itoa(tokenbroker.CodeRejected),
		strconv.Itoa(tokenbroker.CodeNotFound), strconv.Itoa(tokenbroker.CodeTooLarge),
		strconv.Itoa(tokenbroker.CodeBadGateway), strconv.Itoa(tokenbroker.CodeUnavailable),
		strconv.Itoa(tokenbroker.CodeTimeout), strconv.Itoa(tokenbroker.CodeInternal))
	// Actions: the four phrases, and "" for a failed request, which has none.
	actions = set("", tokenbroker.ActionNew, tokenbroker.ActionExisting,
		tokenbroker.ActionRefreshed, tokenbroker.ActionReplacedExpired)
	grants      = set("password", "client_credentials", "client_assertion", "refresh_token")
	idpOutcomes = set(string(oauth.OutcomeOK), string(oauth.OutcomeRejected),
		string(oauth.OutcomeUnusable), string(oauth.OutcomeUnavailable))
	refreshKinds = set(OutcomeOK, OutcomeFailed)
	eventKinds   = set(EventRefreshed, EventFailed)
)

func set(values ...string) map[string]struct{} {
	m := make(map[string]struct{}, len(values))
	for _, v := range values {
		m[v] = struct{}{}
	}
	return m
}

// allow returns v when it is in the allowlist, else Other.
func allow(allowed map[string]struct{}, v string) string {
	if _, ok := allowed[v]; ok {
		return v
	}
	return Other
}

// Metrics is the broker's set of metrics. Create it with New; a nil *Metrics
// is valid and records nothing.
type Metrics struct {
	// Registry holds the broker's metrics and the Go runtime and process
	// collectors. Register more collectors on it to have Handler serve them.
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	idpCalls    *prometheus.CounterVec
	idpDuration *prometheus.HistogramVec
	refreshes   *prometheus.CounterVec
	events      *prometheus.CounterVec
	// auditDropped counts audit records the audit sink could not queue:
	// a gap in the trail must show somewhere an alert can see it.
	auditDropped prometheus.Counter

	// The cache-hit series, resolved once: a hit is one atomic add, with no
	// label hashing or lookup on the hot path.
	hitNATS prometheus.Counter
	hitHTTP prometheus.Counter

	credentials atomic.Pointer[func() int]
	certs       *certificates
	breakers    *breakers
}

// New returns a Metrics with every metric registered on a fresh registry.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), certs: newCertificates(), breakers: newBreakers()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "requests_total",
		Help:      "Token requests answered, by transport, outcome (ok or the error code) and action phrase.",
	}, []string{"transport", "outcome", "action"})
	m.idpCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "idp_calls_total",
		Help:      "Calls to IdP token endpoints, by grant and outcome.",
	}, []string{"grant", "outcome"})
	m.idpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "idp_call_duration_seconds",
		Help:      "Duration of calls to IdP token endpoints, by grant.",
		// A token endpoint answers in tens to hundreds of milliseconds;
		// the tail up to the 30 s client timeout is what alerts care about.
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30},
	}, []string{"grant"})
	m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "refreshes_total",
		Help:      "Token refreshes, proactive and on request, by outcome.",
	}, []string{"outcome"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "events_published_total",
		Help:      "Events published, by kind.",
	}, []string{"kind"})
	m.auditDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "audit_dropped_total",
		Help:      "Audit records dropped because the audit sink's queue was full.",
	})
	credentials := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "credentials",
		Help:      "Credentials held in memory.",
	}, func() float64 {
		if f := m.credentials.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.idpCalls, m.idpDuration, m.refreshes, m.events, m.auditDropped, credentials, m.certs, m.breakers,
	)
	m.hitNATS = m.requests.WithLabelValues(TransportNATS, OutcomeOK, tokenbroker.ActionExisting)
	m.hitHTTP = m.requests.WithLabelValues(TransportHTTP, OutcomeOK, tokenbroker.ActionExisting)
	return m
}

// Handler serves the registry in the Prometheus exposition formats. On a nil
// Metrics it answers 404, as if there were no metrics endpoint.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		// Also count scrape errors on the registry itself.
		Registry: m.Registry,
	})
}

// Request counts one answered token request. transport is TransportNATS or
// TransportHTTP; outcome is OutcomeOK or the error code as a string ("401");
// action is the reply's action phrase, "" for an error.
func (m *Metrics) Request(transport, outcome, action string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(allow(transports, transport), allow(requestOutcomes, outcome),
		allow(actions, action)).Inc()
}

// CacheHit counts one request answered with a cached token ("returned
// existing token"). It is the same series as Request(transport, "ok",
// tokenbroker.ActionExisting), at the cost of one atomic add.
func (m *Metrics) CacheHit(transport string) {
	if m == nil {
		return
	}
	switch transport {
	case TransportNATS:
		m.hitNATS.Inc()
	case TransportHTTP:
		m.hitHTTP.Inc()
	default:
		m.Request(transport, OutcomeOK, tokenbroker.ActionExisting)
	}
}

// IdPCall records one call to a token endpoint: grant is the grant_type sent
// ("password", "client_credentials", "client_assertion", "refresh_token"),
// outcome the call's oauth.OutcomeOf, d how long the call took. Its
// signature is guard.Options.OnAttempt's, so it can be that hook.
func (m *Metrics) IdPCall(grant string, outcome oauth.Outcome, d time.Duration) {
	if m == nil {
		return
	}
	grant = allow(grants, grant)
	m.idpCalls.WithLabelValues(grant, allow(idpOutcomes, string(outcome))).Inc()
	m.idpDuration.WithLabelValues(grant).Observe(d.Seconds())
}

// Refresh counts one refresh of a held token, proactive or on request;
// outcome is OutcomeOK or OutcomeFailed.
func (m *Metrics) Refresh(outcome string) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(allow(refreshKinds, outcome)).Inc()
}

// Event counts one published event; kind is EventRefreshed or EventFailed.
func (m *Metrics) Event(kind string) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(allow(eventKinds, kind)).Inc()
}

// AuditDropped counts one audit record dropped because the audit sink's
// queue was full. It is one atomic add: it runs where the record was made,
// which may be a cache hit.
func (m *Metrics) AuditDropped() {
	if m == nil {
		return
	}
	m.auditDropped.Inc()
}

// SetCredentials sets the function the tokenbroker_credentials gauge reads at
// each scrape: the number of credentials in memory. It must be safe to call
// from any goroutine. A later call replaces the function; nil makes the gauge
// read 0.
func (m *Metrics) SetCredentials(f func() int) {
	if m == nil {
		return
	}
	if f == nil {
		m.credentials.Store(nil)
		return
	}
	m.credentials.Store(&f)
}
