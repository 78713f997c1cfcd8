package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInprocSmoke runs the in-process comparison briefly and checks the
// table's shape. It asserts no timing: the machine decides those.
func TestInprocSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errs bytes.Buffer
	err := run(ctx, []string{"--topology", "inproc", "--duration", "200ms", "--warmup", "50ms",
		"--concurrency", "1,16"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, errs.String())
	}
	text := out.String()
	if !strings.Contains(text, "== topology inproc") || !strings.Contains(text, "req/s ratio") || !strings.Contains(text, "p50 ratio") {
		t.Fatalf("no inproc table with ratio columns:\n%s", text)
	}
	for _, c := range []string{"1", "16"} {
		// conc, then echo and broker figures, then the ratios.
		row := regexp.MustCompile(`(?m)^\s*` + c + `\s+\d+\s+\d+µs\s+\d+µs\s+\d+\s+\d+µs\s+\d+µs\s+\d+\.\d\d\s+\d+\.\d\d`)
		if !row.MatchString(text) {
			t.Errorf("no row for concurrency %s:\n%s", c, text)
		}
	}
	if strings.Contains(text, "errors)") {
		t.Errorf("requests failed:\n%s", text)
	}
}

// TestSSEStreamsSmoke holds a few /events streams open during a brief
// inproc run: they are all established (each got the current token) before
// the rows, none is ended by the broker during them, and the table and the
// JSON say how many there were.
func TestSSEStreamsSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errs bytes.Buffer
	err := run(ctx, []string{"--topology", "inproc", "--duration", "200ms", "--warmup", "50ms",
		"--concurrency", "16", "--sse-streams", "40", "--json"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, errs.String())
	}
	var res Results
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Throughput) != 1 {
		t.Fatalf("JSON output: %v\n%s", err, out.String())
	}
	tr := res.Throughput[0]
	if tr.SSEStreams != 40 || tr.SSEEnded != 0 || len(tr.Rows) != 1 || tr.Rows[0].Broker.Requests == 0 {
		t.Fatalf("streams %d, ended early %d, rows %+v", tr.SSEStreams, tr.SSEEnded, tr.Rows)
	}
	if !strings.Contains(errs.String(), "== topology inproc: reply ") || !strings.Contains(errs.String(), ", 40 /events streams open, ") {
		t.Fatalf("the table does not name the streams:\n%s", errs.String())
	}
}

// TestScaleSmoke runs the scale scenario over a few hundred credentials and
// checks what it reports: every credential warmed with one IdP call and
// held, and both cache-hit runs answered. No timing is asserted.
func TestScaleSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errs bytes.Buffer
	err := run(ctx, []string{"--scenario", "scale", "--credentials", "300", "--token-bytes", "1500",
		"--duration", "100ms", "--warmup", "20ms", "--json"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, errs.String())
	}
	var res Results
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Scale == nil {
		t.Fatalf("JSON output: %v\n%s", err, out.String())
	}
	s := res.Scale
	if s.Failed != 0 || s.IdPCalls != 300 || s.InMemory != 301 || s.TokenBytes != 1500 {
		t.Fatalf("warmed: failed %d, IdP calls %d, in memory %d (want 300 + the named one), token bytes %d",
			s.Failed, s.IdPCalls, s.InMemory, s.TokenBytes)
	}
	if s.OneRPS <= 0 || s.ManyRPS <= 0 || s.Ratio <= 0 {
		t.Fatalf("cache-hit runs: one %.0f, many %.0f req/s, ratio %.2f", s.OneRPS, s.ManyRPS, s.Ratio)
	}
	if !strings.Contains(errs.String(), "== scale: 300 username/password credentials, 1500-byte tokens") {
		t.Fatalf("no scale table on stderr:\n%s", errs.String())
	}
}

func TestFlags(t *testing.T) {
	var errs bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &errs); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if !strings.Contains(errs.String(), "--topology") && !strings.Contains(errs.String(), "-topology") {
		t.Fatalf("usage does not list the flags:\n%s", errs.String())
	}
	tests := []struct {
		name string
		args []string
	}{
		{"unknown topology", []string{"--topology", "cluster"}},
		{"unknown scenario", []string{"--scenario", "chaos"}},
		{"no connections", []string{"--conns", "0"}},
		{"bad concurrency", []string{"--concurrency", "1,,2"}},
		{"stray argument", []string{"extra"}},
		{"tiny tokens", []string{"--token-bytes", "10"}},
		{"unknown audit", []string{"--audit", "stream"}},
		{"negative streams", []string{"--sse-streams", "-1"}},
		{"streams in another scenario", []string{"--scenario", "herd", "--sse-streams", "10"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFlags(tc.args, &bytes.Buffer{}); err == nil {
				t.Fatal("no error")
			}
		})
	}
	o, err := parseFlags([]string{"--lifetime", "30s"}, &bytes.Buffer{})
	if err != nil || o.threshold != 15*time.Second || o.topology != "all" || len(o.concurrency) != 4 || o.audit != "off" {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

// --audit reaches the broker under test: with nats, a refused request's
// record is published; with off, the default, nothing is. A refusal, not a
// cache hit, because the start's warm-up makes cache hits of its own, whose
// records may still be on their way.
func TestAuditSettingReachesTheBroker(t *testing.T) {
	for _, mode := range []string{"nats", "off"} {
		t.Run(mode, func(t *testing.T) {
			e, err := startInproc(1, backendOptions{audit: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer e.close()
			nc := e.conns[0]
			sub, err := nc.SubscribeSync("token.audit._none")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			msg, err := nc.Request(requestSubject, []byte(`{"credential":`), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code := msg.Header.Get("Nats-Service-Error-Code"); code != "400" {
				t.Fatalf("malformed request answered with %q", code)
			}
			// Shutting the broker down writes its whole trail; a round
			// trip of the subscriber's connection then delivers it.
			e.backend.close()
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			n, _, _ := sub.Pending()
			if mode == "off" {
				if n != 0 {
					t.Fatalf("AUDIT=off published %d records", n)
				}
				return
			}
			if n != 1 {
				t.Fatalf("%d records for one refusal", n)
			}
			rec, _ := sub.NextMsg(time.Second)
			var doc map[string]string
			if err := json.Unmarshal(rec.Data, &doc); err != nil || doc["outcome"] != "400" || doc["transport"] != "nats" {
				t.Fatalf("record %s (%v)", rec.Data, err)
			}
		})
	}
}
