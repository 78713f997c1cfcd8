package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sseOpenConcurrency is how many /events streams are being opened at once:
// enough to open a thousand in a moment, few enough not to look like a
// connection flood to the gateway's listener.
const sseOpenConcurrency = 50

// sseStreams holds open GET /events streams of the bench credential, as
// that many HTTP callers kept current by pushed refreshes would, while the
// cache-hit load runs: it measures what holding them open costs cache hits.
type sseStreams struct {
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	transport *http.Transport
	events    atomic.Int64 // events read, over all streams
	ended     atomic.Int64 // streams the broker ended before close
	closing   atomic.Bool
}

// openSSEStreams opens n streams against the gateway at httpAddr and
// returns once each has delivered its first event, the current token, so
// that all n are established before anything is measured.
func openSSEStreams(ctx context.Context, httpAddr string, n int) (*sseStreams, error) {
	if httpAddr == "" {
		return nil, errors.New("sse streams: the broker has no HTTP gateway")
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &sseStreams{cancel: cancel, transport: &http.Transport{MaxIdleConnsPerHost: sseOpenConcurrency}}
	client := &http.Client{Transport: s.transport}
	url := "http://" + httpAddr + "/events?credential=" + benchCredential
	ready := make(chan error, n)
	slots := make(chan struct{}, sseOpenConcurrency)
	for range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			slots <- struct{}{}
			s.stream(ctx, client, url, func(err error) {
				<-slots
				ready <- err
			})
		}()
	}
	timeout := time.After(60 * time.Second)
	for i := range n {
		select {
		case err := <-ready:
			if err != nil {
				s.close()
				return nil, fmt.Errorf("sse stream %d of %d: %w", i+1, n, err)
			}
		case <-timeout:
			s.close()
			return nil, fmt.Errorf("sse streams: %d of %d open after 60s", i, n)
		}
	}
	return s, nil
}

// stream reads one stream until ctx ends, calling opened once: with nil
// after its first event, or with why it got none.
func (s *sseStreams) stream(ctx context.Context, client *http.Client, url string, opened func(error)) {
	var reported bool
	tell := func(err error) {
		if !reported {
			reported = true
			opened(err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		tell(err)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		tell(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tell(fmt.Errorf("status %d", resp.StatusCode))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	inEvent := false
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.HasPrefix(line, "event: "):
			inEvent = true
		case line == "" && inEvent:
			inEvent = false
			s.events.Add(1)
			tell(nil)
		}
	}
	tell(errors.New("the stream ended before its first event"))
	if !s.closing.Load() {
		s.ended.Add(1)
	}
}

// close ends every stream and waits for their readers.
func (s *sseStreams) close() {
	s.closing.Store(true)
	s.cancel()
	s.wg.Wait()
	s.transport.CloseIdleConnections()
}
