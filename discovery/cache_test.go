package discovery_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/discovery"
	"github.com/tokenbroker/tokenbroker/internal/clock"
)

// stale records OnStale's calls.
type stale struct {
	mu   sync.Mutex
	errs []error
}

func (s *stale) OnStale(issuer string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func (s *stale) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.errs)
}

func newCache(clk *clock.Fake, st *stale) *discovery.Cache {
	return discovery.NewCache(nil, discovery.Options{Now: clk.Now, OnStale: st.OnStale, RetryAfter: time.Minute})
}

func wantFetches(t *testing.T, p *idp, n int64) {
	t.Helper()
	if got := p.fetches.Load(); got != n {
		t.Errorf("fetches = %d, want %d", got, n)
	}
}

func mustGet(t *testing.T, c *discovery.Cache, issuer string) *discovery.Document {
	t.Helper()
	doc, err := c.Get(context.Background(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestCacheFetchesOnce(t *testing.T) {
	p := newIdP(t, document("", "", `"token_endpoint":"BASE/token"`))
	c := newCache(clock.NewFake(time.Unix(1_700_000_000, 0)), &stale{})
	first := mustGet(t, c, p.url)
	for range 5 {
		if doc := mustGet(t, c, p.url); doc != first {
			t.Fatal("another document")
		}
	}
	// The issuer with its trailing slash is the same issuer.
	if doc := mustGet(t, c, p.url+"/"); doc != first {
		t.Error("the issuer with a slash got another document")
	}
	wantFetches(t, p, 1)
}

func TestCacheRefreshesDaily(t *testing.T) {
	p := newIdP(t, document("", "", `"token_endpoint":"BASE/token"`))
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := newCache(clk, &stale{})
	mustGet(t, c, p.url)
	p.set(document("", "", `"token_endpoint":"BASE/v2/token"`))

	clk.Advance(discovery.DefaultMaxAge - time.Second)
	if doc := mustGet(t, c, p.url); doc.TokenEndpoint != p.url+"/token" {
		t.Errorf("refreshed early: %s", doc.TokenEndpoint)
	}
	wantFetches(t, p, 1)

	clk.Advance(time.Second)
	if doc := mustGet(t, c, p.url); doc.TokenEndpoint != p.url+"/v2/token" {
		t.Errorf("not refreshed after a day: %s", doc.TokenEndpoint)
	}
	mustGet(t, c, p.url)
	wantFetches(t, p, 2)
}

func TestCacheKeepsTheLastGoodDocument(t *testing.T) {
	p := newIdP(t, document("", "", `"token_endpoint":"BASE/token"`))
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	st := &stale{}
	c := newCache(clk, st)
	good := mustGet(t, c, p.url)

	p.set(serve(503, "text/html", "<html>down</html>"))
	clk.Advance(discovery.DefaultMaxAge + time.Hour)
	if doc := mustGet(t, c, p.url); doc != good {
		t.Fatal("a failed refresh lost the document")
	}
	wantFetches(t, p, 2)
	if st.count() != 1 || !strings.Contains(st.errs[0].Error(), "status 503") {
		t.Errorf("OnStale got %v, want the 503", st.errs)
	}

	// Within RetryAfter the IdP is left alone.
	clk.Advance(time.Minute - time.Second)
	if doc := mustGet(t, c, p.url); doc != good {
		t.Fatal("lost the document")
	}
	wantFetches(t, p, 2)

	// After it, another try; still failing, still the old document.
	clk.Advance(time.Second)
	if doc := mustGet(t, c, p.url); doc != good {
		t.Fatal("lost the document")
	}
	wantFetches(t, p, 3)

	// Recovered: the next try after RetryAfter gets the new document.
	p.set(document("", "", `"token_endpoint":"BASE/new"`))
	clk.Advance(time.Minute)
	if doc := mustGet(t, c, p.url); doc.TokenEndpoint != p.url+"/new" {
		t.Errorf("token endpoint %s after recovery", doc.TokenEndpoint)
	}
	mustGet(t, c, p.url)
	wantFetches(t, p, 4)
	if st.count() != 2 {
		t.Errorf("OnStale called %d times, want 2", st.count())
	}
}

// A bad document is a failure like an outage: the good one stays.
func TestCacheKeepsTheLastGoodDocumentOverABadOne(t *testing.T) {
	p := newIdP(t, document("", "", `"token_endpoint":"BASE/token"`))
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := newCache(clk, &stale{})
	good := mustGet(t, c, p.url)
	p.set(document("", "", `"token_endpoint":"http://evil.example.net/token"`))
	clk.Advance(discovery.DefaultMaxAge)
	if doc := mustGet(t, c, p.url); doc != good {
		t.Fatalf("document %+v, want the last good one", doc)
	}
}

func TestCacheBacksOffAfterAFirstFailure(t *testing.T) {
	p := newIdP(t, serve(404, "text/html", "<html>no</html>"))
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	st := &stale{}
	c := newCache(clk, st)
	_, err1 := c.Get(context.Background(), p.url)
	_, err2 := c.Get(context.Background(), p.url)
	if err1 == nil || err2 != err1 {
		t.Fatalf("errors %v, %v; want the same failure twice", err1, err2)
	}
	checkError(t, err1, p.url, "status 404")
	wantFetches(t, p, 1)
	if st.count() != 0 {
		t.Error("OnStale called with nothing stale to serve")
	}

	p.set(document("", "", `"token_endpoint":"BASE/token"`))
	clk.Advance(time.Minute)
	mustGet(t, c, p.url)
	wantFetches(t, p, 2)
}

// Callers that arrive while the first fetch runs wait for it rather than
// fetch too.
func TestCacheConcurrentCallersShareAFetch(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	p := newIdP(t, func(base string, w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		document("", "", `"token_endpoint":"BASE/token"`)(base, w, r)
	})
	c := newCache(clock.NewFake(time.Unix(1_700_000_000, 0)), &stale{})
	const n = 16
	docs := make(chan *discovery.Document, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			doc, err := c.Get(context.Background(), p.url)
			if err != nil {
				t.Error(err)
			}
			docs <- doc
		})
	}
	<-arrived
	close(release)
	wg.Wait()
	close(docs)
	var first *discovery.Document
	for doc := range docs {
		if first == nil {
			first = doc
		}
		if doc == nil || doc != first {
			t.Fatal("callers got different documents")
		}
	}
	wantFetches(t, p, 1)
}

// While a refresh runs, other callers get the old document at once.
func TestCacheServesTheOldDocumentDuringARefresh(t *testing.T) {
	p := newIdP(t, document("", "", `"token_endpoint":"BASE/token"`))
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := newCache(clk, &stale{})
	old := mustGet(t, c, p.url)

	arrived := make(chan struct{})
	release := make(chan struct{})
	p.set(func(base string, w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		document("", "", `"token_endpoint":"BASE/new"`)(base, w, r)
	})
	clk.Advance(discovery.DefaultMaxAge)
	refreshed := make(chan *discovery.Document)
	go func() {
		doc, _ := c.Get(context.Background(), p.url)
		refreshed <- doc
	}()
	<-arrived
	if doc := mustGet(t, c, p.url); doc != old {
		t.Error("a caller during the refresh did not get the old document")
	}
	close(release)
	if doc := <-refreshed; doc.TokenEndpoint != p.url+"/new" {
		t.Errorf("the refreshing caller got %s", doc.TokenEndpoint)
	}
	if doc := mustGet(t, c, p.url); doc.TokenEndpoint != p.url+"/new" {
		t.Errorf("after the refresh: %s", doc.TokenEndpoint)
	}
	wantFetches(t, p, 2)
}

// A caller who gives up is not the IdP failing: the next caller fetches at
// once, and a waiter gives up on its own ctx.
func TestCacheCallerGivesUp(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	p := newIdP(t, func(base string, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		document("", "", `"token_endpoint":"BASE/token"`)(base, w, r)
	})
	c := newCache(clock.NewFake(time.Unix(1_700_000_000, 0)), &stale{})

	ctx, cancel := context.WithCancel(context.Background())
	fetched := make(chan error)
	go func() {
		_, err := c.Get(ctx, p.url)
		fetched <- err
	}()
	<-arrived
	// A second caller waits for the fetch, and gives up on its own.
	waitCtx, waitCancel := context.WithCancel(context.Background())
	waitCancel()
	if _, err := c.Get(waitCtx, p.url); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter: err = %v, want context.Canceled", err)
	}
	cancel()
	if err := <-fetched; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(release)
	mustGet(t, c, p.url)
	wantFetches(t, p, 2)
}
