package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// DefaultServiceName is the service.name of the broker's spans when
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) does not
// say otherwise.
const DefaultServiceName = "tokenbroker"

// The variables Setup reads itself; the OTLP exporter reads the rest of
// OTEL_EXPORTER_OTLP_* (headers, timeout, compression, TLS files), and
// the SDK OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG and OTEL_BSP_*.
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envExporter       = "OTEL_TRACES_EXPORTER"
	envDisabled       = "OTEL_SDK_DISABLED"
)

// Setup turns tracing on when the environment asks for it: when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// (and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none says
// otherwise), spans are exported over OTLP/HTTP in batches, under the
// service name OTEL_SERVICE_NAME (default "tokenbroker"), sampled as
// OTEL_TRACES_SAMPLER says (default: every trace a caller samples, and
// every trace the broker starts). It also installs the provider and the
// W3C Trace Context propagator as OpenTelemetry's globals.
//
// Otherwise it installs nothing, and every span the broker would make
// costs one atomic load. An endpoint that is not an http(s) URL, or a
// protocol other than http/protobuf, is an error naming the variable.
//
// shutdown flushes the spans still queued and turns tracing off; it is
// never nil.
func Setup(ctx context.Context) (shutdown func(context.Context) error, err error) {
	return setup(ctx, os.LookupEnv)
}

func setup(ctx context.Context, lookup func(string) (string, bool)) (func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	wanted, err := wantedBy(lookup)
	if err != nil || !wanted {
		return none, err
	}
	// The exporter reads OTEL_EXPORTER_OTLP_* from the process's
	// environment itself: the standard variables mean what they mean
	// everywhere else.
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return none, fmt.Errorf("tracing: OTLP/HTTP exporter (OTEL_EXPORTER_OTLP_*): %w", err)
	}
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// over the default name.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)), resource.WithFromEnv())
	if err != nil {
		return none, fmt.Errorf("tracing: resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	// An unreachable collector fails every batch; say so in the broker's
	// log, not on stderr through OpenTelemetry's default, and not every
	// few seconds.
	otel.SetErrorHandler(&errorLog{})
	restore := Enable(tp)
	return func(ctx context.Context) error {
		restore()
		return tp.Shutdown(ctx)
	}, nil
}

// wantedBy reports whether the environment asks for traces, and whether
// what it says can be honoured.
func wantedBy(lookup func(string) (string, bool)) (bool, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	if strings.EqualFold(get(envDisabled), "true") {
		return false, nil
	}
	switch exporter := strings.ToLower(get(envExporter)); exporter {
	case "", "otlp":
	case "none":
		return false, nil
	default:
		return false, fmt.Errorf("tracing: %s=%s: the broker exports traces over OTLP (otlp) or not at all (none)", envExporter, exporter)
	}
	wanted := false
	for _, name := range []string{envTracesEndpoint, envEndpoint} {
		v := get(name)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return false, fmt.Errorf("tracing: %s is not an http:// or https:// URL (the collector's OTLP/HTTP address, e.g. http://localhost:4318)", name)
		}
		wanted = true
	}
	if !wanted {
		return false, nil
	}
	for _, name := range []string{envTracesProtocol, envProtocol} {
		if p := get(name); p != "" && p != "http/protobuf" {
			return false, fmt.Errorf("tracing: %s=%s: the broker exports over OTLP/HTTP with protobuf only (http/protobuf)", name, p)
		}
	}
	return true, nil
}

// errorLog logs OpenTelemetry's errors (failed exports, mostly) as
// warnings in the process's default logger, at most one a minute.
type errorLog struct{ last atomic.Int64 }

func (l *errorLog) Handle(err error) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Minute) || !l.last.CompareAndSwap(last, now) {
		return
	}
	slog.Warn("tracing: OpenTelemetry error (further ones within a minute are not logged)", "err", err)
}
