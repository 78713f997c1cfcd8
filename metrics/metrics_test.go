package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// scrape returns the Handler's text output.
func scrape(t testing.TB, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestRequestCounts(t *testing.T) {
	m := New()
	m.Request("http", "ok", tokenbroker.ActionNew)
	m.Request("http", "ok", tokenbroker.ActionNew)
	m.Request("nats", "401", "")

	c := func(transport, outcome, action string) float64 {
		return testutil.ToFloat64(mustRequests(t, m, transport, outcome, action))
	}
	if got := c("http", "ok", tokenbroker.ActionNew); got != 2 {
		t.Errorf("http ok new = %v, want 2", got)
	}
	if got := c("nats", "401", ""); got != 1 {
		t.Errorf("nats 401 = %v, want 1", got)
	}
}

func TestCacheHitIsTheRequestSeries(t *testing.T) {
	m := New()
	m.CacheHit("nats")
	m.CacheHit("nats")
	m.CacheHit("http")
	m.Request("nats", "ok", tokenbroker.ActionExisting)

	if got := testutil.ToFloat64(mustRequests(t, m, "nats", "ok", tokenbroker.ActionExisting)); got != 3 {
		t.Errorf("nats hits = %v, want 3 (CacheHit and Request share one series)", got)
	}
	if got := testutil.ToFloat64(mustRequests(t, m, "http", "ok", tokenbroker.ActionExisting)); got != 1 {
		t.Errorf("http hits = %v, want 1", got)
	}
	// An unknown transport still counts, as "other".
	m.CacheHit("carrier-pigeon")
	if got := testutil.ToFloat64(mustRequests(t, m, "other", "ok", tokenbroker.ActionExisting)); got != 1 {
		t.Errorf("other hits = %v, want 1", got)
	}
}

func TestIdPRefreshEventCredentials(t *testing.T) {
	m := New()
	m.IdPCall("password", "ok", 120*time.Millisecond)
	m.IdPCall("password", "rejected", 80*time.Millisecond)
	m.IdPCall("client_credentials", "unavailable", 30*time.Second)
	m.Refresh("ok")
	m.Refresh("failed")
	m.Refresh("ok")
	m.Event("refreshed")
	m.SetCredentials(func() int { return 7 })

	text := scrape(t, m)
	for _, want := range []string{
		`tokenbroker_idp_calls_total{grant="password",outcome="ok"} 1`,
		`tokenbroker_idp_calls_total{grant="password",outcome="rejected"} 1`,
		`tokenbroker_idp_calls_total{grant="client_credentials",outcome="unavailable"} 1`,
		`tokenbroker_idp_call_duration_seconds_count{grant="password"} 2`,
		`tokenbroker_idp_call_duration_seconds_bucket{grant="password",le="0.1"} 1`,
		`tokenbroker_idp_call_duration_seconds_bucket{grant="client_credentials",le="30"} 1`,
		`tokenbroker_refreshes_total{outcome="ok"} 2`,
		`tokenbroker_refreshes_total{outcome="failed"} 1`,
		`tokenbroker_events_published_total{kind="refreshed"} 1`,
		`tokenbroker_credentials 7`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}

	// The gauge reads the function at each scrape, and a later call replaces it.
	n := 1
	m.SetCredentials(func() int { return n })
	n = 3
	if text := scrape(t, m); !strings.Contains(text, "tokenbroker_credentials 3\n") {
		t.Errorf("credentials gauge did not follow the function")
	}
}

func TestHandlerServesRuntimeAndOwnMetrics(t *testing.T) {
	m := New()
	m.Request("http", "ok", tokenbroker.ActionNew)
	m.IdPCall("password", "ok", time.Millisecond)
	m.Refresh("ok")
	m.Event("failed")
	text := scrape(t, m)
	for _, name := range []string{
		"go_goroutines",
		"process_", // process collector; on Linux process_cpu_seconds_total and friends
		"tokenbroker_requests_total",
		"tokenbroker_idp_calls_total",
		"tokenbroker_idp_call_duration_seconds",
		"tokenbroker_refreshes_total",
		"tokenbroker_events_published_total",
		"tokenbroker_credentials",
	} {
		if !strings.Contains(text, name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
}

// TestIdPOutcomeLabels holds the label of every IdP-call outcome oauth
// reports to the wire value dashboards and alerts query.
func TestIdPOutcomeLabels(t *testing.T) {
	m := New()
	for o, label := range map[oauth.Outcome]string{
		oauth.OutcomeOK: "ok", oauth.OutcomeRejected: "rejected",
		oauth.OutcomeUnusable: "unusable", oauth.OutcomeUnavailable: "unavailable",
	} {
		m.IdPCall("client_assertion", o, time.Millisecond)
		c, err := m.idpCalls.GetMetricWithLabelValues("client_assertion", label)
		if err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(c); got != 1 {
			t.Errorf("outcome %q counted %v times under %q, want 1", o, got, label)
		}
	}
}

func TestUnknownLabelValuesBecomeOther(t *testing.T) {
	m := New()
	// Values a buggy caller might pass: a username, a token, a credential
	// name, a free-form error text. None may become a series.
	m.Request("smtp", "418", "alice@contoso.com")
	m.Request("http", "eyJhbGciOi.secret", tokenbroker.ActionNew)
	m.IdPCall("urn:custom:grant", "exploded", time.Second)
	m.Refresh("maybe")
	m.Event("s3cr3t")

	if got := testutil.ToFloat64(mustRequests(t, m, "other", "other", "other")); got != 1 {
		t.Errorf("request with three unknown labels = %v, want 1 in {other,other,other}", got)
	}
	if got := testutil.ToFloat64(mustRequests(t, m, "http", "other", tokenbroker.ActionNew)); got != 1 {
		t.Errorf("request with unknown outcome = %v, want 1", got)
	}
	text := scrape(t, m)
	for _, want := range []string{
		`tokenbroker_idp_calls_total{grant="other",outcome="other"} 1`,
		`tokenbroker_idp_call_duration_seconds_count{grant="other"} 1`,
		`tokenbroker_refreshes_total{outcome="other"} 1`,
		`tokenbroker_events_published_total{kind="other"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// Only the broker's own lines: runtime values may contain "418" by chance.
	var own strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, "tokenbroker_") {
			own.WriteString(line + "\n")
		}
	}
	for _, leaked := range []string{"smtp", "418", "alice", "eyJ", "urn:custom", "exploded", "maybe", "s3cr3t"} {
		if strings.Contains(own.String(), leaked) {
			t.Errorf("scrape contains the label value %q", leaked)
		}
	}
}

func TestSeriesAreBounded(t *testing.T) {
	m := New()
	for i := range 1000 {
		m.Request("http", "ok", "user"+string(rune('a'+i%26)))
	}
	// Two pre-resolved cache-hit series from New, plus the one "other".
	if n := testutil.CollectAndCount(m.Registry, "tokenbroker_requests_total"); n != 3 {
		t.Errorf("tokenbroker_requests_total has %d series, want 3", n)
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	m.Request("http", "ok", tokenbroker.ActionNew)
	m.CacheHit("nats")
	m.IdPCall("password", "ok", time.Second)
	m.Refresh("ok")
	m.Event("refreshed")
	m.SetCredentials(func() int { return 1 })

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Handler status = %d, want 404", rec.Code)
	}
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	m := New()
	if n := testing.AllocsPerRun(1000, func() { m.CacheHit("nats") }); n != 0 {
		t.Errorf("CacheHit allocates %v times per call, want 0", n)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.CacheHit(TransportNATS)
	}
}

func BenchmarkRequest(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.Request(TransportHTTP, OutcomeOK, tokenbroker.ActionNew)
	}
}

// mustRequests returns the requests_total child for the labels. It creates
// the series when missing, so count series before calling it.
func mustRequests(t testing.TB, m *Metrics, transport, outcome, action string) prometheus.Counter {
	t.Helper()
	c, err := m.requests.GetMetricWithLabelValues(transport, outcome, action)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertificateExpiryCountsDownAndForgets(t *testing.T) {
	m := New()
	base := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	now := base
	m.certs.now = func() time.Time { return now }
	m.CertificateExpiry("crm-prod", base.Add(30*24*time.Hour))
	body := scrape(t, m)
	if !strings.Contains(body, `tokenbroker_certificate_expiry_seconds{credential="crm-prod"} 2.592e+06`) {
		t.Fatalf("gauge missing or wrong:\n%s", grepLines(body, "certificate"))
	}
	now = base.Add(31 * 24 * time.Hour)
	if body := scrape(t, m); !strings.Contains(body, `tokenbroker_certificate_expiry_seconds{credential="crm-prod"} -86400`) {
		t.Fatalf("gauge does not count down past expiry:\n%s", grepLines(body, "certificate"))
	}
	m.CertificateExpiry("crm-prod", time.Time{})
	if body := scrape(t, m); strings.Contains(body, `credential="crm-prod"`) {
		t.Fatal("a forgotten credential is still reported")
	}
	var nilM *Metrics
	nilM.CertificateExpiry("x", base) // must not panic
}

func grepLines(body, sub string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
