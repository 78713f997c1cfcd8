package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// certificates is the tokenbroker_certificate_expiry_seconds gauge: seconds
// until each named credential's client certificate expires, negative once
// it has. It is computed at each scrape, so that it keeps falling between
// reloads, and its credential label is the one exception to labels from a
// fixed set: a named credential's name is an operator's choice, few, and
// what an alert must name to be of use. Usernames never reach it.
type certificates struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu       sync.Mutex
	notAfter map[string]time.Time
}

func newCertificates() *certificates {
	return &certificates{
		desc: prometheus.NewDesc(Namespace+"_certificate_expiry_seconds",
			"Seconds until the client certificate of a named credential expires (negative once expired).",
			[]string{"credential"}, nil),
		now:      time.Now,
		notAfter: map[string]time.Time{},
	}
}

func (c *certificates) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certificates) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for name, t := range c.notAfter {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, t.Sub(now).Seconds(), name)
	}
}

// CertificateExpiry records that the client certificate of the named
// credential expires at notAfter; the zero time forgets the credential
// (removed, or no longer signing with a certificate).
func (m *Metrics) CertificateExpiry(credential string, notAfter time.Time) {
	if m == nil {
		return
	}
	m.certs.mu.Lock()
	defer m.certs.mu.Unlock()
	if notAfter.IsZero() {
		delete(m.certs.notAfter, credential)
		return
	}
	m.certs.notAfter[credential] = notAfter
}
