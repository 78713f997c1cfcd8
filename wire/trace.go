package wire

import (
	"strings"

	"github.com/nats-io/nats.go"
)

// TraceParentHeader is the W3C Trace Context header that links a request
// or an event to the trace of whoever sent it.
const TraceParentHeader = "traceparent"

// HeaderCarrier lets an OpenTelemetry propagator (propagation.TraceContext)
// read and write the traceparent and tracestate headers of a NATS message:
// it satisfies propagation.TextMapCarrier without wire importing
// OpenTelemetry. It lives here because the broker and the Go client both
// need it, and the client must stay light.
//
// NATS header names are case-sensitive, unlike HTTP's. Set writes the name
// as the propagator gives it (lower case, as W3C Trace Context spells it);
// Get finds it in any case, so that a sender that canonicalised it the HTTP
// way (Traceparent) is still understood.
type HeaderCarrier nats.Header

// Get returns the first value of key, matched exactly or, failing that,
// without regard to case.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set replaces key's values with value. c must not be nil.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys returns the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
