// Package policy holds the one rule of the broker's token cache: whether a
// token a credential holds may answer a request, how the next token is
// obtained and what callers are told about it, and when a token is refreshed
// ahead of expiry.
//
// Policy is pure: it reads a token, a request and the time it is given, and
// returns a decision. The cache-hit path (the Router's snapshot), the
// credential's actor and its IdP calls all ask it, so the rule is written,
// and tested through a token's whole life, once.
package policy

import (
	"math/rand/v2"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Backoff bounds for background refreshes that fail for a passing reason.
const (
	MinBackoff = time.Second
	MaxBackoff = time.Minute
)

// Policy is one credential's cache rule. The zero Policy refreshes a token
// only when it has expired.
type Policy struct {
	// Threshold is how long before expiry a token stops being served from
	// cache and is refreshed (REFRESH_THRESHOLD). For a token that lives
	// less than twice as long, half its lifetime is used instead, so that
	// short-lived tokens are still cached rather than sent to the IdP on
	// every request.
	Threshold time.Duration
}

// ThresholdFor returns the refresh threshold of a token granted for
// lifetime.
func (p Policy) ThresholdFor(lifetime time.Duration) time.Duration {
	if lifetime > 0 && p.Threshold > lifetime/2 {
		return lifetime / 2
	}
	return p.Threshold
}

// FreshUntil is when t stops being served from cache: its expiry less the
// refresh threshold.
func (p Policy) FreshUntil(t *tokenbroker.Token) time.Time {
	return t.Expiry.Add(-p.ThresholdFor(t.Lifetime))
}

// Serves reports whether t may answer req from cache at now: the caller did
// not force a refresh, t is still before its refresh threshold, and it
// outlives the caller's min_ttl.
func (p Policy) Serves(t *tokenbroker.Token, req *tokenbroker.Request, now time.Time) bool {
	return !req.ForceRefresh && req.Claims == "" && now.Before(p.FreshUntil(t)) && Outlives(t, req, now)
}

// ServesStale reports whether t may answer req at now although a new token
// could not be had because the IdP is down or throttling: t has not expired
// and outlives min_ttl, threshold or not. A forced refresh is never answered
// with the token the caller wanted replaced.
func (p Policy) ServesStale(t *tokenbroker.Token, req *tokenbroker.Request, now time.Time) bool {
	return !req.ForceRefresh && req.Claims == "" && Outlives(t, req, now)
}

// Outlives reports whether t is still valid at now and stays valid for
// longer than req's min_ttl.
func Outlives(t *tokenbroker.Token, req *tokenbroker.Request, now time.Time) bool {
	left := t.Expiry.Sub(now)
	return left > 0 && left > time.Duration(req.MinTTL)*time.Second
}

// Unmeetable returns the caller's error when no token of t's lifetime can
// meet req's min_ttl, so that asking the IdP again would not help; else nil.
// t is a token the IdP granted for this credential: the IdP grants the same
// lifetime each time.
func Unmeetable(t *tokenbroker.Token, req *tokenbroker.Request) *tokenbroker.Error {
	if req.MinTTL <= 0 || time.Duration(req.MinTTL)*time.Second < t.Lifetime {
		return nil
	}
	return tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
		"min_ttl %d is not less than the %d s lifetime the identity provider grants", req.MinTTL, int64(t.Lifetime/time.Second))
}

// Unmet returns the caller's error when t, just obtained, does not outlive
// req's min_ttl: Unmeetable's when no token of t's lifetime could, else
// one that says how much t has left (a token another broker obtained a
// while ago, or an IdP whose expires_on is early).
func Unmet(t *tokenbroker.Token, req *tokenbroker.Request, now time.Time) *tokenbroker.Error {
	if err := Unmeetable(t, req); err != nil {
		return err
	}
	return tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest,
		"min_ttl %d is more than the %d s left on the newest token the identity provider granted", req.MinTTL, t.ExpiresIn(now))
}

// Plan is how the next token is obtained, and what the callers it answers
// are told.
type Plan struct {
	// Refresh uses the refresh_token grant; otherwise the credential's own
	// grant (its secret, certificate or password).
	Refresh bool
	// Action is the reply's action phrase.
	Action string
}

// Plan decides how to replace held, the token the caller may be given (nil
// when there is none, or when it belongs to another password), given
// whether a refresh token is held.
func (p Policy) Plan(held *tokenbroker.Token, refreshToken bool, now time.Time) Plan {
	switch {
	case held == nil:
		return Plan{Action: tokenbroker.ActionNew}
	case !now.Before(held.Expiry):
		return Plan{Refresh: refreshToken, Action: tokenbroker.ActionReplacedExpired}
	default:
		return Plan{Refresh: refreshToken, Action: tokenbroker.ActionRefreshed}
	}
}

// NextRefresh picks when to refresh t, obtained at now, ahead of its
// threshold: at random within a spread that ends just before the threshold
// and is as long as the threshold itself, or half the time left before it
// if that is shorter. Early enough that callers never wait on the IdP;
// spread so that tokens issued together (a restart, a deployment) reach the
// IdP over a whole threshold's time, not in one burst. draw(n) returns a
// number in [0, n); nil draws at random.
func (p Policy) NextRefresh(t *tokenbroker.Token, now time.Time, draw func(n int64) int64) time.Time {
	next := p.nextByThreshold(t, now, draw)
	switch {
	case !t.RefreshAt.IsZero():
		// The IdP said when (Azure AD's refresh_in), which is how it spreads
		// its load and rolls its keys: that time, unless the threshold comes
		// first, past which the token is no longer served anyway.
		return minTime(t.RefreshAt, next)
	case t.Lifetime > LongLived:
		// A long-lived token without a hint is refreshed at half its life,
		// as MSAL does: a token that lives a day should not be a day old
		// when the IdP revokes what it was issued for.
		return minTime(t.Expiry.Add(-t.Lifetime/2), next)
	}
	return next
}

// LongLived is the lifetime beyond which a token the IdP gave no refresh
// hint for is refreshed at half its life.
const LongLived = 2 * time.Hour

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// nextByThreshold is NextRefresh by the refresh threshold alone.
func (p Policy) nextByThreshold(t *tokenbroker.Token, now time.Time, draw func(n int64) int64) time.Time {
	thr := p.ThresholdFor(t.Lifetime)
	spread := min(thr, (t.Expiry.Sub(now)-thr)/2)
	if spread <= 0 {
		return t.Expiry.Add(-thr)
	}
	if draw == nil {
		draw = rand.Int64N
	}
	lead := spread/10 + time.Duration(draw(int64(spread-spread/10)+1))
	return t.Expiry.Add(-thr - lead)
}

// Retry picks when to try again after failures background refreshes in a
// row (1 or more) failed for a passing reason: exponential from MinBackoff
// to MaxBackoff, drawn in the upper half so that many failing credentials
// do not retry in step. draw is as for NextRefresh.
func Retry(failures int, now time.Time, draw func(n int64) int64) time.Time {
	d := MinBackoff << min(max(failures, 1)-1, 16)
	if d > MaxBackoff || d <= 0 {
		d = MaxBackoff
	}
	if draw == nil {
		draw = rand.Int64N
	}
	return now.Add(d/2 + time.Duration(draw(int64(d/2)+1)))
}
