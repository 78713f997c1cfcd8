package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/tracing"
)

const serveHelp = `Usage: tokenbroker [serve] [flags]

Runs the broker: answers token requests on NATS (SUBJECT_PREFIX.request) and
publishes refreshed tokens. Without NATS_URL it starts an embedded NATS server
on NATS_LISTEN. Every flag has an environment variable; flags win.
SIGHUP reads TOKENBROKER_CONFIG and every secret file again.
OTEL_EXPORTER_OTLP_ENDPOINT turns on OpenTelemetry traces (README, Tracing).
Other commands: demo, token, watch, status, credential, demo-idp ('tokenbroker help').

`

func serve(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker serve", flag.ContinueOnError)
	cf := config.Register(fs)
	if ok, code := parse(fs, args, e, serveHelp, cf.PrintDefaults); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "tokenbroker serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := cf.Resolve(e.lookup)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return exitUsage
	}
	return runBroker(ctx, cfg, e, nil)
}

// runBroker runs a broker on cfg until ctx is done, then shuts it down.
// started, when set, runs once the broker serves.
func runBroker(ctx context.Context, cfg *config.Config, e env, started func(*broker.Broker)) int {
	log := newLogger(cfg, e.stderr)
	// hollywood logs through the default logger; route it to ours.
	slog.SetDefault(log)
	// Traces, when OTEL_EXPORTER_OTLP_ENDPOINT asks for them: on before
	// the broker serves, flushed after it stopped.
	stopTracing, err := tracing.Setup(ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return exitUsage
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(fctx); err != nil {
			log.Warn("tracing: spans not flushed at exit", "err", err)
		}
	}()
	if tracing.Enabled() {
		log.Info("tracing: spans are exported over OTLP/HTTP (OTEL_EXPORTER_OTLP_*)")
	}
	b, err := broker.Start(cfg, broker.Options{Logger: log})
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return exitError
	}
	if started != nil {
		started(b)
	}
	// SIGHUP reads TOKENBROKER_CONFIG and every secret file again; a file
	// that does not validate is logged and changes nothing.
	hangup := make(chan os.Signal, 1)
	signal.Notify(hangup, syscall.SIGHUP)
	defer signal.Stop(hangup)
	if e.ready != nil {
		e.ready(b.ClientURL())
	}
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			waiting = false
		case <-hangup:
			log.Info("SIGHUP: reloading TOKENBROKER_CONFIG and the secret files")
			_ = b.Reload(ctx) // logged by the broker
		}
	}
	log.Info("shutting down: answering requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout+5*time.Second)
	defer cancel()
	if err := b.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return exitError
	}
	log.Info("stopped")
	return exitOK
}
