package broker_test

import (
	"maps"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/metrics"
)

// breakerStates reads tokenbroker_idp_breaker_state by endpoint.
func breakerStates(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "tokenbroker_idp_breaker_state" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "endpoint" {
					out[l.GetValue()] = s.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// TestBreakerStateGaugeFromStartToAnOpenBreaker checks the wiring of the
// breaker gauge: both configured token endpoints are exported as closed
// before any IdP call, so that the alert on it exists before any outage,
// and the endpoint whose calls keep failing reads open.
func TestBreakerStateGaugeFromStartToAnOpenBreaker(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	want := map[string]float64{e.idp.V1TokenURL(): metrics.BreakerClosed, e.idp.V2TokenURL(): metrics.BreakerClosed}
	if got := breakerStates(t, e.broker.Metrics()); !maps.Equal(got, want) {
		t.Fatalf("at start: %v, want %v", got, want)
	}
	if n := e.idp.Calls(); n != 0 {
		t.Fatalf("%d IdP calls at start: the test means to read the gauge before any", n)
	}

	// A Retry-After longer than the call's deadline: one attempt per
	// request, and a breaker that stays open for 10 minutes once open,
	// however slow the machine.
	e.idp.Fail(fakeidp.FailRetryAfter(503, 600), -1)
	for i := 0; i < guard.DefaultFailureThreshold; i++ {
		if code, _ := errorOf(t, e, `{"credential":"app"}`); code != "503" {
			t.Fatalf("request %d: code %s, want 503", i+1, code)
		}
	}
	want[e.idp.V2TokenURL()] = metrics.BreakerOpen
	if got := breakerStates(t, e.broker.Metrics()); !maps.Equal(got, want) {
		t.Fatalf("after %d unavailable calls: %v, want %v", guard.DefaultFailureThreshold, got, want)
	}
}
