// Command tokenbench measures the token broker against the wire: a bare NATS
// echo responder that replies with as many bytes as a token reply, and the
// broker's token.request, side by side in one run and on one NATS topology,
// with the broker/echo ratios that the benchmark targets are stated in.
//
//	tokenbench [flags]                      echo vs broker cache hits, c = 1, 16, 64, 256
//	tokenbench --scenario herd|scale|storm  the cold herd, 100,000 credentials, a refresh storm
//	tokenbench nats --listen HOST:PORT      a bare NATS server (the procs topology's first child)
//	tokenbench serve --nats URL             broker + echo + fake IdP (the procs topology's second child)
//	tokenbench --audit log|nats ...         the same with the audit trail on (AUDIT; off by default)
//	tokenbench --sse-streams 1000 ...       cache hits with that many /events streams open on the broker
//
// See BENCHMARKS.md at the module root for results and how to read them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "tokenbench:", err)
		os.Exit(1)
	}
}

// options are the flags of a benchmark run.
type options struct {
	topology    string
	scenario    string
	duration    time.Duration
	warmup      time.Duration
	conns       int
	rounds      int
	concurrency []int
	json        bool
	idpDelay    time.Duration
	credentials int
	lifetime    time.Duration
	threshold   time.Duration
	cpuProfile  string
	tokenBytes  int
	audit       string // AUDIT of the broker under test
	sseStreams  int    // GET /events streams held open during the throughput runs
}

const usageText = `Usage:
  tokenbench [flags]                      bare NATS echo vs broker cache hits, side by side
  tokenbench --scenario herd|scale|storm  cold herd, many credentials, refresh storm (in-process)
  tokenbench nats --listen HOST:PORT      child of --topology procs: a bare NATS server
  tokenbench serve --nats URL             child of --topology procs: broker + echo + fake IdP
  tokenbench --audit log|nats ...         any of the above with the broker's audit trail on
  tokenbench --sse-streams N ...          cache hits with N GET /events streams held open on the broker

Everything listens on 127.0.0.1. Ratios (broker/echo, measured in the same run) are what
matters; absolute numbers depend on the machine.

Flags:
`

// run is the whole command, for main and for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "nats":
			fs := flag.NewFlagSet("tokenbench nats", flag.ContinueOnError)
			fs.SetOutput(stderr)
			listen := fs.String("listen", "127.0.0.1:0", "host:port to listen on (port 0: a free one)")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			return serveNATS(ctx, *listen, stdout)
		case "serve":
			fs := flag.NewFlagSet("tokenbench serve", flag.ContinueOnError)
			fs.SetOutput(stderr)
			url := fs.String("nats", "", "URL of the NATS server to serve on (required)")
			auditMode := fs.String("audit", config.AuditOff, "AUDIT of the broker: off, log or nats")
			httpGateway := fs.Bool("http", false, "start the broker's HTTP gateway on a free loopback port (for --sse-streams)")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			if *url == "" {
				return errors.New("serve: --nats is required")
			}
			if err := checkAudit(*auditMode); err != nil {
				return err
			}
			return serveBackend(ctx, *url, *auditMode, *httpGateway, stdout)
		}
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" && o.scenario != "scale" { // scale profiles its phases
		stop, err := startProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	out := stdout
	if o.json {
		out = stderr // tables for people, stdout for the JSON document
	}
	res := &Results{Machine: machine(), Options: o.describe()}
	switch o.scenario {
	case "", "throughput":
		err = runThroughput(ctx, o, res, out, stderr)
	case "herd":
		res.Herd, err = runHerd(ctx, o, out)
	case "scale":
		res.Scale, err = runScale(ctx, o, out)
	case "storm":
		res.Storm, err = runStorm(ctx, o, out)
	}
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, res)
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("tokenbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.topology, "topology", "all", "inproc (one process), procs (nats-server, broker, load generator) or all (both in turn)")
	fs.StringVar(&o.scenario, "scenario", "throughput", "throughput, herd, scale or storm (the last three run inproc)")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "measured time of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before each run")
	fs.IntVar(&o.conns, "conns", 4, "NATS connections the load is spread over")
	fs.IntVar(&o.rounds, "rounds", 3, "echo and broker alternate this many times per concurrency, --duration split among them")
	conc := fs.String("concurrency", "1,16,64,256", "comma-separated concurrency levels (mainly for tests)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON on stdout (tables go to stderr)")
	fs.DurationVar(&o.idpDelay, "idp-delay", 20*time.Millisecond, "herd and storm: how long the fake IdP takes to answer")
	fs.IntVar(&o.credentials, "credentials", 0, "scale and storm: number of credentials (default 100000 for scale, 10000 for storm)")
	fs.IntVar(&o.tokenBytes, "token-bytes", 1400, "scale: length of each access token (Entra ID user tokens run 1-2.5 KB)")
	fs.DurationVar(&o.lifetime, "lifetime", 20*time.Second, "storm: token lifetime the IdP grants")
	fs.DurationVar(&o.threshold, "threshold", 0, "storm: refresh threshold (default half the lifetime)")
	fs.StringVar(&o.audit, "audit", config.AuditOff, "AUDIT of the broker under test: off, log (lines formatted as JSON, written to io.Discard) or nats (those lines, and every record published); off by default, so that figures stay comparable with earlier runs")
	fs.IntVar(&o.sseStreams, "sse-streams", 0, "throughput: hold this many GET /events streams of the bench credential open on the broker's HTTP gateway during the runs (0: none, and no gateway, as before)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to `file` (the whole broker with --topology inproc; scale: `file`.warm, and `file`.one and `file`.many, the first cache-hit run of each)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.concurrency, err = parseInts(*conc); err != nil {
		return nil, fmt.Errorf("--concurrency: %w", err)
	}
	switch {
	case o.topology != "inproc" && o.topology != "procs" && o.topology != "all":
		return nil, fmt.Errorf("--topology %q: want inproc, procs or all", o.topology)
	case o.scenario != "throughput" && o.scenario != "herd" && o.scenario != "scale" && o.scenario != "storm":
		return nil, fmt.Errorf("--scenario %q: want throughput, herd, scale or storm", o.scenario)
	case o.duration <= 0 || o.warmup < 0:
		return nil, errors.New("--duration must be positive and --warmup not negative")
	case o.conns < 1 || o.rounds < 1:
		return nil, errors.New("--conns and --rounds must be at least 1")
	case o.credentials < 0 || o.idpDelay < 0 || o.lifetime <= 0 || o.threshold < 0:
		return nil, errors.New("--credentials, --idp-delay and --threshold must not be negative, --lifetime must be positive")
	case o.tokenBytes < 64 || o.tokenBytes > 16384:
		return nil, errors.New("--token-bytes must be between 64 and 16384")
	case o.sseStreams < 0 || o.sseStreams > 0 && o.scenario != "throughput":
		return nil, errors.New("--sse-streams must not be negative, and applies to the throughput scenario only")
	}
	if err := checkAudit(o.audit); err != nil {
		return nil, err
	}
	if o.threshold == 0 {
		o.threshold = o.lifetime / 2
	}
	return o, nil
}

func checkAudit(mode string) error {
	switch mode {
	case config.AuditOff, config.AuditLog, config.AuditNATS:
		return nil
	}
	return fmt.Errorf("--audit %q: want off, log or nats", mode)
}

// parseInts parses "1,16,64".
func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// describe is the options as recorded in the JSON results.
func (o *options) describe() map[string]any {
	return map[string]any{
		"topology": o.topology, "scenario": o.scenario, "duration": o.duration.String(),
		"warmup": o.warmup.String(), "conns": o.conns, "rounds": o.rounds, "concurrency": o.concurrency,
		"idp_delay": o.idpDelay.String(), "credentials": o.credentials,
		"lifetime": o.lifetime.String(), "threshold": o.threshold.String(), "token_bytes": o.tokenBytes,
		"audit": o.audit, "sse_streams": o.sseStreams,
	}
}
