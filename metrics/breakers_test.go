package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// scrapeText returns m's /metrics in the text format.
func scrapeText(t testing.TB, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// breakerLines returns the tokenbroker_idp_breaker_state samples of text.
func breakerLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "tokenbroker_idp_breaker_state{") {
			out = append(out, l)
		}
	}
	return out
}

// TestBreakerStateGauge opens a real guard's breaker against the fake IdP
// and reads the gauge: 2 for the open endpoint, 1 once its open time has
// passed, 0 for a configured endpoint never called; read at each scrape,
// with no call in between.
func TestBreakerStateGauge(t *testing.T) {
	idp, err := fakeidp.Start(fakeidp.WithClient("app", "app-s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	const openFor = 30 * time.Second
	g := guard.New(oauth.NewClient(nil, 5*time.Second), guard.Options{
		MaxAttempts: 1, FailureThreshold: 1, MinOpenFor: openFor, OpenFor: openFor, Now: clk.Now,
	})
	const configured = "https://login.example.com/tenant/oauth2/v2.0/token"
	m := metrics.New()
	m.SetBreakerStates(func() map[string]guard.BreakerState { return g.BreakerStates(configured + "?p=s3cret") })

	text := scrapeText(t, m)
	if !strings.Contains(text, "# HELP tokenbroker_idp_breaker_state ") || !strings.Contains(text, "0 closed, 1 half-open") ||
		!strings.Contains(text, "# TYPE tokenbroker_idp_breaker_state gauge") {
		t.Errorf("HELP or TYPE missing or without the values:\n%s", text)
	}
	if got, want := breakerLines(text), []string{`tokenbroker_idp_breaker_state{endpoint="` + configured + `"} 0`}; !equal(got, want) {
		t.Errorf("before any call: %q, want %q", got, want)
	}

	idp.Fail(fakeidp.FailHTML(503), 1)
	ep := oauth.Endpoint{TokenURL: idp.V2TokenURL() + "?api-version=s3cret", ClientID: "app", ClientSecret: "app-s3cret", Scope: "api://x/.default"}
	if _, err := g.ClientCredentials(context.Background(), ep); err == nil {
		t.Fatal("want the 503")
	}
	text = scrapeText(t, m)
	want := []string{
		`tokenbroker_idp_breaker_state{endpoint="` + configured + `"} 0`,
		`tokenbroker_idp_breaker_state{endpoint="` + idp.V2TokenURL() + `"} 2`,
	}
	if got := breakerLines(text); !equal(got, want) {
		t.Errorf("breaker open: %q, want %q", got, want)
	}
	if strings.Contains(text, "s3cret") {
		t.Error("a query or secret reached /metrics")
	}

	clk.Advance(openFor)
	want[1] = `tokenbroker_idp_breaker_state{endpoint="` + idp.V2TokenURL() + `"} 1`
	if got := breakerLines(scrapeText(t, m)); !equal(got, want) {
		t.Errorf("open time passed: %q, want %q", got, want)
	}
}

// TestBreakerStateValues pins each state's value through a stub, and that
// nil removes the series.
func TestBreakerStateValues(t *testing.T) {
	m := metrics.New()
	if got := breakerLines(scrapeText(t, m)); len(got) != 0 {
		t.Errorf("no function set: %q, want no series", got)
	}
	m.SetBreakerStates(func() map[string]guard.BreakerState {
		return map[string]guard.BreakerState{"https://a/token": guard.StateClosed, "https://b/token": guard.StateHalfOpen, "https://c/token": guard.StateOpen}
	})
	want := []string{
		`tokenbroker_idp_breaker_state{endpoint="https://a/token"} 0`,
		`tokenbroker_idp_breaker_state{endpoint="https://b/token"} 1`,
		`tokenbroker_idp_breaker_state{endpoint="https://c/token"} 2`,
	}
	if got := breakerLines(scrapeText(t, m)); !equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if metrics.BreakerClosed != 0 || metrics.BreakerHalfOpen != 1 || metrics.BreakerOpen != 2 {
		t.Error("the documented values changed")
	}
	m.SetBreakerStates(nil)
	if got := breakerLines(scrapeText(t, m)); len(got) != 0 {
		t.Errorf("after SetBreakerStates(nil): %q, want no series", got)
	}
	var nilMetrics *metrics.Metrics
	nilMetrics.SetBreakerStates(func() map[string]guard.BreakerState { return nil }) // must not panic
}

// equal reports whether a and b hold the same lines, in any order.
func equal(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
