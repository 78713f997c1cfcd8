package main

import (
	"bytes"
	"context"
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFlags(tc.args, &bytes.Buffer{}); err == nil {
				t.Fatal("no error")
			}
		})
	}
	o, err := parseFlags([]string{"--lifetime", "30s"}, &bytes.Buffer{})
	if err != nil || o.threshold != 15*time.Second || o.topology != "all" || len(o.concurrency) != 4 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}
