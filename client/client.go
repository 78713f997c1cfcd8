// Package client is the Go client of the token broker: it asks a broker for
// OAuth2 access tokens over NATS request-reply on token.request and keeps
// the newest token the broker pushes on token.refreshed.<credential_id>.
//
// Client.Token is one request and one reply. TokenSource wraps that in a
// golang.org/x/oauth2.TokenSource that caches the token, takes the tokens
// the broker refreshes ahead of expiry without asking again, and asks the
// broker only when the token it holds is about to expire:
//
//	src, err := client.New(nc).TokenSource(ctx, tokenbroker.Request{Credential: "crm-prod"})
//	if err != nil { ... }
//	defer src.Close()
//	httpClient := oauth2.NewClient(ctx, src)
//
// Client.Watch delivers the broker's token.refreshed and token.failed
// events, of one credential or of all, to a function, for consumers that
// want the events themselves rather than a current token.
//
// Every error that Token and TokenSource return for a failed request
// carries a *tokenbroker.Error, found with errors.As, whose Code is one of
// the contract's codes (tokenbroker.CodeRejected, CodeNotFound, ...).
package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/wire"
)

// DefaultTimeout bounds one request whose context has no deadline. It is a
// little longer than the broker's own REQUEST_TIMEOUT (30 s by default), so
// that a slow IdP shows up as the broker's 504 rather than the client's.
const DefaultTimeout = 35 * time.Second

// Client asks a token broker for tokens over a NATS connection. It is safe
// for concurrent use. Its zero value is not usable: build it with New.
type Client struct {
	nc       *nats.Conn
	subjects wire.Subjects
	timeout  time.Duration
}

// Option configures a Client made by New.
type Option func(*Client)

// New returns a Client that sends requests on nc. The caller keeps owning
// nc: the Client never closes it.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := &Client{nc: nc, subjects: wire.Subjects{Prefix: wire.DefaultPrefix}, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	return c
}

// WithSubjectPrefix sets the prefix of the subjects the Client uses, the
// broker's SUBJECT_PREFIX (default "token": requests go to token.request,
// events come from token.refreshed.<credential_id>). An empty prefix means
// the default.
func WithSubjectPrefix(prefix string) Option {
	return func(c *Client) {
		if prefix == "" {
			prefix = wire.DefaultPrefix
		}
		c.subjects = wire.Subjects{Prefix: prefix}
	}
}

// WithTimeout sets how long one request may take when its context has no
// deadline (default DefaultTimeout). A context deadline always wins. A
// duration <= 0 means the default.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d <= 0 {
			d = DefaultTimeout
		}
		c.timeout = d
	}
}

// NoReplyError is the error of a request that got no answer from any
// broker. It carries both the contract's view of the failure, Broker, and
// its cause, Err, and unwraps to both, so that
//
//	errors.As(err, &tbErr)                     // tbErr *tokenbroker.Error: Code 503 or 504
//	errors.Is(err, context.DeadlineExceeded)   // the deadline passed
//	errors.Is(err, nats.ErrNoResponders)       // no broker listens
//
// all work. Broker.Code is tokenbroker.CodeUnavailable (503) when no broker
// listens or the NATS connection is closed or failed, and
// tokenbroker.CodeTimeout (504) when the context ended (deadline or
// cancellation) before an answer came.
type NoReplyError struct {
	Broker *tokenbroker.Error // the contract code and a description
	Err    error              // the cause: nats.ErrNoResponders, context.DeadlineExceeded, ...
}

// Error implements error.
func (e *NoReplyError) Error() string { return e.Broker.Error() + ": " + e.Err.Error() }

// Unwrap returns Broker and Err, for errors.Is and errors.As.
func (e *NoReplyError) Unwrap() []error { return []error{e.Broker, e.Err} }

// Token sends req to a broker and returns its reply: a named credential on
// its own subject, <prefix>.request.<name>, which NATS permissions can grant
// a caller alone; a username/password request on <prefix>.request.
//
// When ctx has no deadline the request is bounded by the Client's timeout
// (WithTimeout). The errors are:
//   - *tokenbroker.Error when a broker answered with an error: Code from the
//     Nats-Service-Error-Code header (401 rejected by the IdP, 404 unknown
//     credential, ...), OAuth and Description from the JSON body (the IdP's
//     own words for a 401), Description falling back to the
//     Nats-Service-Error header, RetryAfter from the body or the Retry-After
//     header; Code 502 when the answer cannot be read (wire.DecodeReply);
//   - *NoReplyError when no answer came: 503 when no broker listens
//     (nats.ErrNoResponders) or the connection is unusable, 504 when ctx
//     ended first (errors.Is(err, context.DeadlineExceeded) holds).
//
// The request itself is checked by the broker, not here: an invalid one
// gets the broker's 400. When ctx carries an OpenTelemetry span, the
// request carries its traceparent, so the broker's spans join the
// caller's trace.
func (c *Client) Token(ctx context.Context, req tokenbroker.Request) (*tokenbroker.Reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	subject, data := wire.RequestMsg(c.subjects, req)
	out := &nats.Msg{Subject: subject, Data: data}
	// A caller inside a span of its own gets the broker's span for this
	// request as its child: W3C traceparent in the request's headers,
	// written by the propagator the application installed
	// (otel.SetTextMapPropagator). Without a span nothing is written, and
	// nothing allocated.
	if trace.SpanContextFromContext(ctx).IsValid() {
		h := nats.Header{}
		otel.GetTextMapPropagator().Inject(ctx, wire.HeaderCarrier(h))
		if len(h) > 0 { // none without a propagator installed
			out.Header = h
		}
	}
	msg, err := c.nc.RequestMsgWithContext(ctx, out)
	if err != nil {
		return nil, c.noReply(ctx, subject, err)
	}
	return wire.DecodeReply(msg)
}

// noReply turns a failed NATS request into a *NoReplyError.
func (c *Client) noReply(ctx context.Context, subject string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return &NoReplyError{
			Broker: tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "no broker answers on %s", subject),
			Err:    err,
		}
	case ctx.Err() != nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		cause := ctx.Err()
		if cause == nil {
			cause = err
		}
		return &NoReplyError{
			Broker: tokenbroker.Errorf(tokenbroker.CodeTimeout, tokenbroker.OAuthTemporarilyUnavailable, "no answer from a broker on %s in time", subject),
			Err:    cause,
		}
	default:
		return &NoReplyError{
			Broker: tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "cannot send the request on %s", subject),
			Err:    err,
		}
	}
}

// expiryOf returns when the token of a reply expires: expires_on, or
// expires_in from now when expires_on is missing or unreadable.
func expiryOf(expiresOn string, expiresIn int64, now time.Time) (time.Time, error) {
	if s, err := strconv.ParseInt(strings.TrimSpace(expiresOn), 10, 64); err == nil && s > 0 {
		return time.Unix(s, 0), nil
	}
	if expiresIn > 0 {
		return now.Add(time.Duration(expiresIn) * time.Second), nil
	}
	return time.Time{}, fmt.Errorf("expires_on %q is not Unix seconds", expiresOn)
}
