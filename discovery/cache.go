package discovery

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultMaxAge is how long a Cache serves a document before fetching it
// again. IdPs change their documents rarely (a new endpoint, a method
// added) and Azure AD lets them be cached for a day.
const DefaultMaxAge = 24 * time.Hour

// DefaultRetryAfter is how long a Cache waits after a failed fetch before
// fetching again: callers arriving meanwhile get the last good document, or
// the failure, without a request each to an IdP that is failing.
const DefaultRetryAfter = time.Minute

// Options configures a Cache; the zero value is the defaults.
type Options struct {
	// MaxAge is how long a document is served before it is fetched again
	// (DefaultMaxAge when <= 0).
	MaxAge time.Duration
	// RetryAfter is how long after a failed fetch the next one may start
	// (DefaultRetryAfter when <= 0).
	RetryAfter time.Duration
	// Now is the clock (time.Now when nil); tests pass a fake one.
	Now func() time.Time
	// OnStale, when set, is called with the error of a refresh that failed
	// while a last good document is served instead: the caller then sees
	// no error, and this is where it can be logged.
	OnStale func(issuer string, err error)
}

// Cache holds one discovery document per issuer, fetched on first use. A
// document older than MaxAge is fetched again on the next use; when that
// fails, the last good document keeps being served and the fetch is not
// retried for RetryAfter. An issuer never fetched successfully gets the
// failure, again without a new fetch for RetryAfter. One fetch per issuer
// runs at a time: callers with no document to serve wait for it, the others
// are served the last good one meanwhile. A Cache is safe for concurrent
// use. It holds an entry for every issuer it was asked for: issuers come
// from configuration, not from callers.
type Cache struct {
	hc *http.Client
	o  Options

	mu      sync.Mutex
	entries map[string]*entry // by issuer without its trailing slash
}

type entry struct {
	doc     *Document     // the last good document, nil before one
	fetched time.Time     // when doc was fetched
	err     error         // the last fetch's error, nil after a success
	failed  time.Time     // when it failed
	busy    chan struct{} // non-nil while a fetch runs; closed when it ends
}

// NewCache returns a Cache that fetches with hc (nil: see Fetch).
func NewCache(hc *http.Client, o Options) *Cache {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{hc: hc, o: o, entries: map[string]*entry{}}
}

// Get returns issuer's document, fetching it when the Cache has none, or
// one older than MaxAge, and no fetch failed in the last RetryAfter. The
// Document is shared: do not modify it. Errors are Fetch's, or an *Error
// wrapping ctx's error when ctx ended while waiting for another caller's
// fetch.
func (c *Cache) Get(ctx context.Context, issuer string) (*Document, error) {
	key := strings.TrimSuffix(issuer, "/") // one issuer however it is spelt: see sameIssuer
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		e = &entry{}
		c.entries[key] = e
	}
	for {
		now := c.o.Now()
		switch {
		case e.doc != nil && now.Sub(e.fetched) < c.o.MaxAge:
			c.mu.Unlock()
			return e.doc, nil
		case e.busy != nil && e.doc != nil:
			c.mu.Unlock()
			return e.doc, nil // being refreshed; the old one meanwhile
		case e.busy != nil:
			busy := e.busy
			c.mu.Unlock()
			select {
			case <-busy:
			case <-ctx.Done():
				safe, _ := checkIssuer(issuer)
				return nil, &Error{Issuer: safe, Reason: "gave up waiting for the document", Err: ctx.Err()}
			}
			c.mu.Lock()
			continue
		case e.err != nil && now.Sub(e.failed) < c.o.RetryAfter:
			doc, err := e.doc, e.err
			c.mu.Unlock()
			if doc != nil {
				return doc, nil
			}
			return nil, err
		}
		break
	}
	busy := make(chan struct{})
	e.busy = busy
	c.mu.Unlock()

	doc, err := Fetch(ctx, c.hc, issuer)

	c.mu.Lock()
	e.busy = nil
	close(busy)
	if err == nil {
		e.doc, e.fetched, e.err = doc, c.o.Now(), nil
		c.mu.Unlock()
		return doc, nil
	}
	if ctx.Err() == nil {
		// The IdP's failure, not a caller who gave up: hold fetches back.
		// A caller who gave up leaves the next caller to fetch at once.
		e.err, e.failed = err, c.o.Now()
	}
	stale := e.doc
	c.mu.Unlock()
	if stale == nil {
		return nil, err
	}
	if c.o.OnStale != nil && ctx.Err() == nil {
		c.o.OnStale(issuer, err)
	}
	return stale, nil
}
