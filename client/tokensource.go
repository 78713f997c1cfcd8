package client

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/wire"
)

// DefaultEarlyExpiry is how long before its expiry a TokenSource treats a
// token as expired when no WithEarlyExpiry is given.
const DefaultEarlyExpiry = 30 * time.Second

// ErrClosed is returned by TokenSource.Token after Close.
var ErrClosed = errors.New("tokenbroker client: token source closed")

// SourceOption configures a TokenSource made by Client.TokenSource.
type SourceOption func(*TokenSource)

// WithEarlyExpiry sets how long before its expiry a token counts as
// expired, so that Token asks the broker for a new one (default
// DefaultEarlyExpiry). It leaves time for clock skew and for the request
// the token goes on. A negative d means zero.
//
// Keep it below the IdP's token lifetime: a token the broker hands out
// already inside the margin is returned by Token, but the next Token call
// asks the broker again.
func WithEarlyExpiry(d time.Duration) SourceOption {
	return func(s *TokenSource) {
		if d < 0 {
			d = 0
		}
		s.early = d
	}
}

// TokenSource is a golang.org/x/oauth2.TokenSource of one credential's
// tokens from a broker. It holds the newest token it knows of: the one the
// broker last answered with, or a newer one the broker pushed on
// <prefix>.refreshed.<credential_id> after refreshing the credential ahead
// of expiry. Token returns that token while it is valid for longer than the
// early expiry margin, and only otherwise asks the broker, so a consumer of
// a warm credential sends no request after the first one.
//
// TokenSource is safe for concurrent use by multiple goroutines, unlike
// many oauth2.TokenSource implementations: concurrent Token calls that find
// no usable token share one request to the broker (single flight) and all
// get its answer. Close it when done, to unsubscribe from the events.
//
// oauth2.NewClient(ctx, src) works, with one caveat: it wraps src in
// oauth2.ReuseTokenSource, which keeps using the token it got until 10 s
// before that token's expiry, so pushed tokens are picked up only then, and
// an early expiry margin longer than 10 s is in effect 10 s. An http.Client
// whose Transport is &oauth2.Transport{Source: src} calls Token on every
// request instead, which is cheap (a lock and a comparison) and always
// sends the newest token.
type TokenSource struct {
	c     *Client
	req   tokenbroker.Request // what Token asks for; ForceRefresh cleared
	early time.Duration
	base  context.Context // values for later requests; never cancelled
	id    string          // credential_id, from the first reply
	sub   *nats.Subscription
	now   func() time.Time

	mu       sync.Mutex // guards the fields below
	tok      held
	inflight *call
	closed   bool
}

// held is the token a TokenSource has; the zero value is no token.
type held struct {
	access    string
	tokenType string
	expiry    time.Time
}

// oauth2 returns a fresh *oauth2.Token of h, so that a caller modifying
// what it got does not change what others get.
func (h held) oauth2(id string) *oauth2.Token {
	t := &oauth2.Token{AccessToken: h.access, TokenType: h.tokenType, Expiry: h.expiry}
	return t.WithExtra(map[string]any{"credential_id": id})
}

// call is one request in flight, shared by every Token caller that needs it.
type call struct {
	done    chan struct{} // closed when tok or err is set
	tok     *oauth2.Token
	err     error
	waiters int // callers sharing the call besides the one making it; guarded by TokenSource.mu
}

// result returns the call's outcome, each caller getting its own token.
func (c *call) result() (*oauth2.Token, error) {
	if c.err != nil {
		return nil, c.err
	}
	t := *c.tok
	return &t, nil
}

// TokenSource asks the broker for req's token now and returns a
// TokenSource that keeps it fresh. The first request is bounded by ctx (or
// by the Client's timeout when ctx has no deadline) and its errors are
// those of Client.Token. ctx's values, not its deadline or cancellation,
// are kept for the requests Token makes later; each of those is bounded by
// the Client's timeout.
//
// The reply's credential_id names the events subscribed to. When
// TokenSource returns, the subscription is registered with the NATS
// server, so no refresh published afterwards is missed. req.ForceRefresh
// applies to the first request only.
func (c *Client) TokenSource(ctx context.Context, req tokenbroker.Request, opts ...SourceOption) (*TokenSource, error) {
	s := &TokenSource{c: c, req: req, early: DefaultEarlyExpiry, base: context.WithoutCancel(ctx), now: time.Now}
	s.req.ForceRefresh = false
	for _, o := range opts {
		o(s)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	rep, err := c.Token(ctx, req)
	if err != nil {
		return nil, err
	}
	tok, err := s.heldOf(rep)
	if err != nil {
		return nil, err
	}
	s.tok, s.id = tok, rep.CredentialID
	if s.id == "" {
		return nil, tokenbroker.Errorf(tokenbroker.CodeBadGateway, tokenbroker.OAuthServerError, "the broker's reply has no credential_id")
	}
	subject := c.subjects.Refreshed(s.id)
	if s.sub, err = c.nc.Subscribe(subject, s.pushed); err != nil {
		return nil, &NoReplyError{
			Broker: tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "cannot subscribe to %s", subject),
			Err:    err,
		}
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		_ = s.sub.Unsubscribe()
		return nil, c.noReply(ctx, subject, err)
	}
	return s, nil
}

// CredentialID returns the credential_id of the source's tokens, the
// suffix of the token.refreshed subject it listens on.
func (s *TokenSource) CredentialID() string { return s.id }

// Token returns the newest token while it is valid for longer than the
// early expiry margin, else asks the broker for one, sharing the request
// with concurrent callers. Its errors are those of Client.Token, and
// ErrClosed after Close. The token's Extra("credential_id") is the
// credential_id.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if s.usable(s.tok) {
		t := s.tok.oauth2(s.id)
		s.mu.Unlock()
		return t, nil
	}
	if c := s.inflight; c != nil {
		c.waiters++
		s.mu.Unlock()
		<-c.done
		return c.result()
	}
	c := &call{done: make(chan struct{})}
	s.inflight = c
	s.mu.Unlock()

	tok, err := s.fetch()

	s.mu.Lock()
	if err == nil {
		s.keep(tok, true)
		// s.tok is tok or a newer token pushed meanwhile.
		c.tok = s.tok.oauth2(s.id)
	} else {
		c.err = err
	}
	s.inflight = nil
	s.mu.Unlock()
	close(c.done)
	return c.result()
}

// Close unsubscribes from the events. Token returns ErrClosed afterwards;
// calls in flight finish. Close is idempotent and returns the error of the
// first unsubscribe, which does not matter once the NATS connection is
// closed.
func (s *TokenSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if err := s.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return err
	}
	return nil
}

// usable reports whether h is valid beyond the early expiry margin.
// Called with s.mu held.
func (s *TokenSource) usable(h held) bool {
	return h.access != "" && s.now().Add(s.early).Before(h.expiry)
}

// keep makes h the held token when it expires later than the held one
// (or as late, for the broker's answer to a request: orEqual), since
// replies and events may arrive in any order. Called with s.mu held.
func (s *TokenSource) keep(h held, orEqual bool) {
	if s.tok.access == "" || h.expiry.After(s.tok.expiry) || (orEqual && h.expiry.Equal(s.tok.expiry)) {
		s.tok = h
	}
}

// fetch asks the broker, bounded by the Client's timeout.
func (s *TokenSource) fetch() (held, error) {
	ctx, cancel := context.WithTimeout(s.base, s.c.timeout)
	defer cancel()
	rep, err := s.c.Token(ctx, s.req)
	if err != nil {
		return held{}, err
	}
	return s.heldOf(rep)
}

func (s *TokenSource) heldOf(rep *tokenbroker.Reply) (held, error) {
	exp, err := expiryOf(rep.ExpiresOn, rep.ExpiresIn, s.now())
	if err != nil {
		return held{}, tokenbroker.Errorf(tokenbroker.CodeBadGateway, tokenbroker.OAuthServerError, "the broker's reply: %v", err)
	}
	return held{access: rep.AccessToken, tokenType: rep.TokenType, expiry: exp}, nil
}

// pushed takes a token.refreshed event, on the subscription's goroutine.
// An event that cannot be read, is for another credential or carries an
// older token than the one held is dropped.
func (s *TokenSource) pushed(msg *nats.Msg) {
	ev, err := wire.DecodeRefreshed(msg.Data)
	if err != nil {
		return
	}
	if ev.CredentialID != "" && ev.CredentialID != s.id {
		return
	}
	sec, err := strconv.ParseInt(ev.ExpiresOn, 10, 64)
	if err != nil || sec <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.keep(held{access: ev.AccessToken, tokenType: ev.TokenType, expiry: time.Unix(sec, 0)}, false)
	}
}
