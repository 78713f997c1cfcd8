package guard

// BreakerStates returns, for metrics and status pages, the breaker state of
// every token endpoint the Client has called and of every token URL in
// known (the configured ones, say), keyed by endpoint: the token URL's
// scheme, host and path, without user info, query or fragment, as in
// CircuitOpenError.TokenURL. An endpoint in known that was never called is
// closed, so that it is reported before its first call; a URL in known that
// is not absolute is left out, as the Client never guards it. States are
// read on the Client's clock (Options.Now), as State reads them: an open
// breaker whose open time has passed is half-open.
//
// The map is the caller's. It has one entry per endpoint, and endpoints come
// from configuration, so its size is bounded. BreakerStates only reads: it
// creates no entry and claims no probe.
func (c *Client) BreakerStates(known ...string) map[string]BreakerState {
	c.mu.Lock()
	eps := make([]*endpoint, 0, len(c.eps))
	for _, e := range c.eps {
		eps = append(eps, e)
	}
	c.mu.Unlock()

	out := make(map[string]BreakerState, len(eps)+len(known))
	for _, u := range known {
		if key, ok := endpointKey(u); ok {
			out[key] = StateClosed
		}
	}
	// Each endpoint's state under its own lock, not c.mu: a scrape must
	// not hold up every caller's lookup of its endpoint.
	now := c.opts.Now()
	for _, e := range eps {
		out[e.url] = e.state(now)
	}
	return out
}
