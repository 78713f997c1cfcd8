package httpapi

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// startTrace starts the span of a /requesttoken request, the child of the
// span its traceparent header names, if it has one. Called only with
// tracing on. The path only: a query string might carry anything.
func startTrace(r *http.Request) *tracing.Request {
	return tracing.StartRequest(propagation.HeaderCarrier(r.Header), tokenbroker.TransportHTTP,
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path))
}

// endTrace ends tr with the error e the gateway answered with status.
func endTrace(tr *tracing.Request, status int, e *tokenbroker.Error) {
	if tr == nil {
		return
	}
	tr.SetAttributes(attribute.Int("http.response.status_code", status))
	tr.Fail(e)
}
