package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker/guard"
)

// The values of tokenbroker_idp_breaker_state, ordered by how bad they are,
// so that max() over brokers or endpoints gives the worst: not guard's own
// numbering of guard.BreakerState.
const (
	// BreakerClosed is a breaker letting every call through.
	BreakerClosed = 0
	// BreakerHalfOpen is a breaker whose open time has passed: its next
	// call probes the IdP.
	BreakerHalfOpen = 1
	// BreakerOpen is a breaker failing every call fast.
	BreakerOpen = 2
)

// breakerValue is the gauge's value of st.
func breakerValue(st guard.BreakerState) float64 {
	switch st {
	case guard.StateOpen:
		return BreakerOpen
	case guard.StateHalfOpen:
		return BreakerHalfOpen
	default:
		return BreakerClosed
	}
}

// breakers is the tokenbroker_idp_breaker_state gauge: the circuit breaker
// state of each token endpoint, read from the guard at each scrape, so that
// an open breaker turning half-open shows without any call. Its endpoint
// label is the token URL's scheme, host and path (no user info, query or
// fragment): one per configured endpoint, so bounded, and no secret.
type breakers struct {
	desc   *prometheus.Desc
	states atomic.Pointer[func() map[string]guard.BreakerState]
}

func newBreakers() *breakers {
	return &breakers{desc: prometheus.NewDesc(Namespace+"_idp_breaker_state",
		"Circuit breaker state of each IdP token endpoint (scheme, host and path): 0 closed, 1 half-open (the next call probes the IdP), 2 open (calls fail fast with 503).",
		[]string{"endpoint"}, nil)}
}

func (b *breakers) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *breakers) Collect(ch chan<- prometheus.Metric) {
	f := b.states.Load()
	if f == nil {
		return
	}
	for endpoint, st := range (*f)() {
		ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, breakerValue(st), endpoint)
	}
}

// SetBreakerStates sets the function the tokenbroker_idp_breaker_state gauge
// reads at each scrape: the breaker state of each token endpoint, keyed by
// endpoint, as guard.Client.BreakerStates returns them. It must be safe to
// call from any goroutine. A later call replaces the function; nil removes
// every series.
func (m *Metrics) SetBreakerStates(f func() map[string]guard.BreakerState) {
	if m == nil {
		return
	}
	if f == nil {
		m.breakers.states.Store(nil)
		return
	}
	m.breakers.states.Store(&f)
}
