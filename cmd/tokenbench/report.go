package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets the broker is held to, as ratios measured in the same run
// (spawning, at least 20,000 credentials/s, is BenchmarkSpawnCredential's).
const (
	targetThroughput = 0.9  // broker/echo requests/s at concurrency 64 and 256, at least
	targetP50        = 1.15 // broker/echo p50 at concurrency 1, at most
	targetHerd       = 1.5  // herd time / (IdP round trip + echo time for the same burst), at most
	targetScale      = 0.9  // cache-hit throughput over N credentials / over one, at least
	targetStorm      = 1.5  // cache-hit p50 during the storm / before it, at most
	targetRSS        = 1 << 30
)

// Results is everything one invocation measured; --json prints it.
type Results struct {
	Machine    Machine          `json:"machine"`
	Options    map[string]any   `json:"options"`
	Throughput []TopologyResult `json:"throughput,omitempty"`
	Herd       *HerdResult      `json:"herd,omitempty"`
	Scale      *ScaleResult     `json:"scale,omitempty"`
	Storm      *StormResult     `json:"storm,omitempty"`
}

// Machine describes where the numbers come from.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

// TopologyResult is the echo/broker comparison on one topology.
type TopologyResult struct {
	Topology   string `json:"topology"`
	ReplyBytes int    `json:"reply_bytes"`
	Conns      int    `json:"conns"`
	// SSEStreams is how many GET /events streams were held open on the
	// broker during every row (--sse-streams); SSEEnded how many of them
	// the broker ended before the runs were over.
	SSEStreams int   `json:"sse_streams,omitempty"`
	SSEEnded   int   `json:"sse_ended,omitempty"`
	Rows       []Row `json:"rows"`
}

// Row compares echo and broker at one concurrency.
type Row struct {
	Concurrency     int     `json:"concurrency"`
	Echo            Result  `json:"echo"`
	Broker          Result  `json:"broker"`
	ThroughputRatio float64 `json:"throughput_ratio"` // broker/echo requests/s
	P50Ratio        float64 `json:"p50_ratio"`        // broker/echo p50
	P99Ratio        float64 `json:"p99_ratio"`        // broker/echo p99
	Target          string  `json:"target,omitempty"` // the target at this concurrency
	Met             *bool   `json:"met,omitempty"`
}

func newRow(echo, brk Result) Row {
	r := Row{Concurrency: echo.Concurrency, Echo: echo, Broker: brk,
		ThroughputRatio: ratio(brk.RPS, echo.RPS),
		P50Ratio:        ratio(float64(brk.P50), float64(echo.P50)),
		P99Ratio:        ratio(float64(brk.P99), float64(echo.P99)),
	}
	switch r.Concurrency {
	case 1:
		r.Target = fmt.Sprintf("p50 <= %.2f", targetP50)
		r.Met = ptr(r.P50Ratio > 0 && r.P50Ratio <= targetP50)
	case 64, 256:
		r.Target = fmt.Sprintf("req/s >= %.2f", targetThroughput)
		r.Met = ptr(r.ThroughputRatio >= targetThroughput)
	}
	return r
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ptr[T any](v T) *T { return &v }

// verdict is "met" or "NOT MET".
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func printTopology(w io.Writer, t TopologyResult, o *options) {
	// The audit setting is named only when on, so that the default
	// output reads as it did before there was one.
	var audit string
	if o.audit != "" && o.audit != "off" {
		audit = ", AUDIT=" + o.audit
	}
	// Likewise the streams: named only when some were open.
	var streams string
	if t.SSEStreams > 0 {
		streams = fmt.Sprintf(", %d /events streams open", t.SSEStreams)
		if t.SSEEnded > 0 {
			streams += fmt.Sprintf(" (%d ended early)", t.SSEEnded)
		}
	}
	fmt.Fprintf(w, "\n== topology %s: reply %d bytes, %d connections%s%s, %s measured per row and target, in %d alternating rounds\n",
		t.Topology, t.ReplyBytes, t.Conns, audit, streams, o.duration, o.rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\techo req/s\techo p50\techo p99\tbroker req/s\tbroker p50\tbroker p99\treq/s ratio\tp50 ratio\tp99 ratio\ttarget\t")
	for _, r := range t.Rows {
		target := "-"
		if r.Met != nil {
			target = r.Target + ": " + verdict(*r.Met)
		}
		errs := ""
		if n := r.Echo.Errors + r.Broker.Errors; n > 0 {
			errs = fmt.Sprintf(" (%d errors)", n)
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%.0f\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s%s\t\n", r.Concurrency,
			r.Echo.RPS, us(r.Echo.P50), us(r.Echo.P99), r.Broker.RPS, us(r.Broker.P50), us(r.Broker.P99),
			r.ThroughputRatio, r.P50Ratio, r.P99Ratio, target, errs)
	}
	tw.Flush()
}

// us formats d in microseconds.
func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

// ms formats d in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func writeJSON(w io.Writer, res *Results) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func printMachine(w io.Writer, m Machine) {
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, %s\n", m.CPUs, m.CPU, m.GoVersion, m.OS)
}
