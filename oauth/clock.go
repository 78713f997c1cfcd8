package oauth

import "time"

// SetClock replaces the clock the Client computes expiries with. It is for
// tests and simulations that move time themselves, shared with the broker
// and a fake IdP so all three agree; call it before the Client is used.
func (c *Client) SetClock(now func() time.Time) { c.now = now }
