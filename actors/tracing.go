package actors

import (
	"strconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/tracing"
)

// How a credential's actor takes part in tracing (package tracing). The
// transports start and end each request's span; the actor, which answers
// what the cache could not, notes on it how the request was served, and
// hangs the spans of the job it starts under it. With tracing off every
// function here returns after one atomic load.

// noteTrace notes on g's request span, just before g is answered, how the
// cache served it and with a token from where (source, "" for a failure).
func (g *getToken) noteTrace(source string) {
	tr := tracing.Of(g.rep)
	if tr == nil {
		return
	}
	cache := tracing.CacheMiss
	if source == tokenbroker.SourceCache {
		// The Router's cache did not answer, but the actor's token did:
		// fresh (the snapshot was being replaced, say), or past its
		// threshold because the IdP just failed.
		cache = tracing.CacheHit
		if g.afterFailure {
			cache = tracing.CacheStale
		}
	}
	tr.Note(cache, source, g.id)
}

// traceAnswers readies the spans of the callers a finished job is about to
// answer: each caller but the one the job was started for gets a link to
// the span the job's spans hang under, so that all who shared one IdP call
// find it; and the failure of the job is noted, so that a held token
// served in spite of it shows as stale.
func traceAnswers(waiters []*getToken, d *jobDone) {
	if !tracing.Enabled() {
		return
	}
	for _, g := range waiters {
		tr := tracing.Of(g.rep)
		if tr == nil {
			continue
		}
		g.afterFailure = d.err != nil
		if d.span.IsValid() && !tr.SpanContext().Equal(d.span) {
			tr.Span().AddLink(trace.Link{SpanContext: d.span})
		}
	}
}

// startTrace hangs the job's spans (the IdP call, the store write, the
// event's publish) under the span of the caller it was started for, or,
// for a refresh of the timer's, under a new root span tokenbroker.refresh.
// It makes j.ctx carry that span, and returns what notes its span context
// on the job's report, for the event, and ends the refresh span. It runs
// in the job's goroutine, before anything reads j.ctx.
func (j *job) startTrace() (end func(*jobDone)) {
	if !tracing.Enabled() {
		return endNoTrace
	}
	if j.background {
		ctx, span := tracing.Start(j.ctx, tracing.SpanRefresh, trace.WithNewRoot(),
			trace.WithAttributes(tracing.Credential.String(j.id), tracing.Grant.String(string(j.grant)),
				tracing.Action.String(j.action)))
		if span == nil {
			return endNoTrace
		}
		j.ctx = ctx
		return func(d *jobDone) {
			d.span = span.SpanContext()
			endRefresh(span, d)
		}
	}
	if j.parent == nil {
		return endNoTrace // no traced caller: a device login's job, say
	}
	span := j.parent.Span()
	j.ctx = trace.ContextWithSpan(j.ctx, span)
	return func(d *jobDone) { d.span = span.SpanContext() }
}

func endNoTrace(*jobDone) {}

// endRefresh ends a refresh's span with its outcome: the token came from
// the IdP or from the store (another broker got it), or the refresh
// failed, which is an error for a job nobody else will report.
func endRefresh(span trace.Span, d *jobDone) {
	switch {
	case d.err != nil:
		e := oauth.Classify(d.err)
		span.SetAttributes(tracing.Outcome.String(strconv.Itoa(e.Code)), tracing.Error.String(e.OAuth))
		span.SetStatus(codes.Error, e.OAuth)
	case d.rec != nil:
		span.SetAttributes(tracing.Outcome.String("ok"), tracing.Source.String(tokenbroker.SourceStore))
	default:
		span.SetAttributes(tracing.Outcome.String("ok"), tracing.Source.String(tokenbroker.SourceIdP))
	}
	span.End()
}

// publishRefreshed publishes e, in a span under the job's span (span) when
// the job was traced and the publisher traces.
func publishRefreshed(p tokenbroker.Publisher, span trace.SpanContext, e tokenbroker.RefreshedEvent) {
	if span.IsValid() {
		if tp, ok := p.(tracing.Publisher); ok {
			tp.PublishRefreshedUnder(span, e)
			return
		}
	}
	p.PublishRefreshed(e)
}
