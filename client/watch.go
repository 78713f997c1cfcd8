package client

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Event is one event a broker published: a token.refreshed event (a
// credential got a new token) or a token.failed event (a refresh failed for
// good, for example with invalid_grant). Exactly one of Refreshed, Failed
// and Err is set.
type Event struct {
	// Subject is the subject the event came on:
	// <prefix>.refreshed.<credential_id> or <prefix>.failed.<credential_id>.
	Subject string
	// Refreshed is the event of a new token.
	Refreshed *tokenbroker.RefreshedEvent
	// Failed is the event of a refresh that failed for good.
	Failed *tokenbroker.FailedEvent
	// Err says why an event could not be read. Such events are delivered
	// rather than dropped so that a watcher can tell a broker speaking
	// another version of the wire format from a quiet one.
	Err error
	// Data is the event as published, JSON. That of a refreshed event holds
	// the access token: do not log it.
	Data []byte
}

// CredentialID returns the credential_id of the event, "" when it could
// not be read.
func (e Event) CredentialID() string {
	switch {
	case e.Refreshed != nil:
		return e.Refreshed.CredentialID
	case e.Failed != nil:
		return e.Failed.CredentialID
	}
	return ""
}

// Watcher delivers the events of a Client.Watch until it is closed.
type Watcher struct {
	mu     sync.Mutex // held while fn runs, so that it runs for one event at a time, and during Watch
	closed atomic.Bool
	subs   []*nats.Subscription
	stop   func() bool // releases the context.AfterFunc that closes the Watcher
}

// Watch calls fn with each token.refreshed and token.failed event of the
// credential credentialID (a reply's CredentialID), or of every credential
// when credentialID is "", until ctx ends or the Watcher is closed.
//
// fn runs on a goroutine of the NATS connection, for one event at a time;
// events of one kind come in the order published, refreshed and failed
// events in no particular order relative to each other. A slow fn holds
// events back, and the NATS connection drops them past its pending limits
// (nats.ErrSlowConsumer), so hand long work to another goroutine.
//
// When Watch returns without an error the subscriptions are registered
// with the NATS server: no event published afterwards is missed. The
// registration is bounded by ctx's deadline, or the Client's timeout when ctx
// has none; its errors are those of Client.Token's NoReplyError. A
// credentialID that is not one subject token (it has '.', '*', '>' or white
// space) is a 400, since it would watch other subjects than one
// credential's.
//
// The subscriptions survive reconnects of the NATS connection, as nats.go
// subscriptions do, and end with it. Events are not replayed: to have the
// current token as well, ask for it with Token after Watch returns.
func (c *Client) Watch(ctx context.Context, credentialID string, fn func(Event)) (*Watcher, error) {
	if fn == nil {
		return nil, errors.New("tokenbroker client: Watch needs a function to call")
	}
	refreshed, failed := c.subjects.AllRefreshed(), c.subjects.AllFailed()
	if credentialID != "" {
		if strings.ContainsAny(credentialID, ".*> \t\r\n") {
			return nil, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
				"a credential id is one subject token: no '.', '*', '>' or white space")
		}
		refreshed, failed = c.subjects.Refreshed(credentialID), c.subjects.Failed(credentialID)
	}
	w := &Watcher{}
	// Events wait for the setup to finish, so that fn never runs, and never
	// calls Close, before Watch has filled in the Watcher.
	w.mu.Lock()
	defer w.mu.Unlock()
	deliver := func(ev Event) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.closed.Load() {
			fn(ev)
		}
	}
	for _, sub := range []struct {
		subject string
		read    func(*nats.Msg) Event
	}{
		{refreshed, func(m *nats.Msg) Event {
			ev := Event{Subject: m.Subject, Data: m.Data}
			if r, err := wire.DecodeRefreshed(m.Data); err != nil {
				ev.Err = err
			} else {
				ev.Refreshed = &r
			}
			return ev
		}},
		{failed, func(m *nats.Msg) Event {
			ev := Event{Subject: m.Subject, Data: m.Data}
			if f, err := wire.DecodeFailed(m.Data); err != nil {
				ev.Err = err
			} else {
				ev.Failed = &f
			}
			return ev
		}},
	} {
		s, err := c.nc.Subscribe(sub.subject, func(m *nats.Msg) { deliver(sub.read(m)) })
		if err != nil {
			w.closed.Store(true)
			_ = w.unsubscribe()
			return nil, &NoReplyError{
				Broker: tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "cannot subscribe to %s", sub.subject),
				Err:    err,
			}
		}
		w.subs = append(w.subs, s)
	}
	fctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if err := c.nc.FlushWithContext(fctx); err != nil {
		w.closed.Store(true)
		_ = w.unsubscribe()
		return nil, c.noReply(fctx, refreshed, err)
	}
	w.stop = context.AfterFunc(ctx, func() {
		// Taking mu waits for Watch to return, whose fields Close reads.
		w.mu.Lock()
		w.mu.Unlock()
		_ = w.Close()
	})
	return w, nil
}

// Close stops the events: fn is not called for any event after Close
// returns, though a call in progress finishes. Close may be called from fn,
// and more than once; it returns the error of the first unsubscribe, which
// does not matter once the NATS connection is closed.
func (w *Watcher) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	w.stop()
	return w.unsubscribe()
}

func (w *Watcher) unsubscribe() error {
	var first error
	for _, s := range w.subs {
		if err := s.Unsubscribe(); err != nil && first == nil &&
			!errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			first = err
		}
	}
	return first
}
