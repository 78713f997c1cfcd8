package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/policy"
)

// TestATokensLife walks one token, granted for an hour with a 10-minute
// threshold, through its life, asking at each moment what the cache does
// with a plain request, a min_ttl request and a forced refresh, and what it
// does while the IdP is down.
func TestATokensLife(t *testing.T) {
	issued := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tok := &tokenbroker.Token{AccessToken: "at", TokenType: "Bearer", Expiry: issued.Add(time.Hour), Lifetime: time.Hour}
	p := policy.Policy{Threshold: 10 * time.Minute}
	plain := &tokenbroker.Request{Credential: "c"}
	minTTL := &tokenbroker.Request{Credential: "c", MinTTL: 30 * 60}
	forced := &tokenbroker.Request{Credential: "c", ForceRefresh: true}

	for _, tc := range []struct {
		name          string
		at            time.Duration // after issue
		req           *tokenbroker.Request
		serves, stale bool
		action        string // of the plan, with a refresh token
	}{
		{"fresh", time.Minute, plain, true, true, tokenbroker.ActionRefreshed},
		{"fresh, min_ttl met", 20 * time.Minute, minTTL, true, true, tokenbroker.ActionRefreshed},
		{"fresh, min_ttl larger than what is left", 40 * time.Minute, minTTL, false, false, tokenbroker.ActionRefreshed},
		{"the last moment before the threshold", 50*time.Minute - time.Nanosecond, plain, true, true, tokenbroker.ActionRefreshed},
		{"at the threshold", 50 * time.Minute, plain, false, true, tokenbroker.ActionRefreshed},
		{"inside the threshold", 55 * time.Minute, plain, false, true, tokenbroker.ActionRefreshed},
		{"forced while fresh", time.Minute, forced, false, false, tokenbroker.ActionRefreshed},
		{"forced inside the threshold", 55 * time.Minute, forced, false, false, tokenbroker.ActionRefreshed},
		{"at expiry", time.Hour, plain, false, false, tokenbroker.ActionReplacedExpired},
		{"expired", 2 * time.Hour, plain, false, false, tokenbroker.ActionReplacedExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := issued.Add(tc.at)
			if got := p.Serves(tok, tc.req, now); got != tc.serves {
				t.Errorf("Serves = %t, want %t", got, tc.serves)
			}
			if got := p.ServesStale(tok, tc.req, now); got != tc.stale {
				t.Errorf("ServesStale (IdP down) = %t, want %t", got, tc.stale)
			}
			if got := p.Plan(tok, true, now); got != (policy.Plan{Refresh: true, Action: tc.action}) {
				t.Errorf("Plan with a refresh token = %+v, want refresh and %q", got, tc.action)
			}
			if got := p.Plan(tok, false, now); got != (policy.Plan{Action: tc.action}) {
				t.Errorf("Plan without a refresh token = %+v, want the credential's grant and %q", got, tc.action)
			}
		})
	}
}

func TestPlanWithoutAToken(t *testing.T) {
	p := policy.Policy{Threshold: time.Minute}
	// No token, or only another password's: a new one with the
	// credential's grant, even if a refresh token is held.
	if got := p.Plan(nil, true, time.Now()); got != (policy.Plan{Action: tokenbroker.ActionNew}) {
		t.Errorf("Plan(nil) = %+v, want a new token with the credential's grant", got)
	}
}

func TestShortLivedTokensUseHalfTheirLifetime(t *testing.T) {
	p := policy.Policy{Threshold: 10 * time.Minute}
	for _, tc := range []struct{ lifetime, want time.Duration }{
		{time.Hour, 10 * time.Minute},
		{20 * time.Minute, 10 * time.Minute},
		{19 * time.Minute, 570 * time.Second},
		{time.Minute, 30 * time.Second},
		{0, 10 * time.Minute}, // unknown lifetime: the threshold as set
	} {
		if got := p.ThresholdFor(tc.lifetime); got != tc.want {
			t.Errorf("ThresholdFor(%v) = %v, want %v", tc.lifetime, got, tc.want)
		}
	}
	// A two-minute token with a ten-minute threshold is still cached for
	// its first minute.
	now := time.Now()
	tok := &tokenbroker.Token{Expiry: now.Add(2 * time.Minute), Lifetime: 2 * time.Minute}
	if !p.Serves(tok, &tokenbroker.Request{}, now.Add(59*time.Second)) {
		t.Error("a short-lived token is not served from cache in the first half of its life")
	}
	if p.Serves(tok, &tokenbroker.Request{}, now.Add(61*time.Second)) {
		t.Error("a short-lived token is served from cache in the second half of its life")
	}
}

func TestUnmeetableMinTTL(t *testing.T) {
	tok := &tokenbroker.Token{Lifetime: time.Hour}
	for _, tc := range []struct {
		minTTL int64
		refuse bool
	}{{0, false}, {60, false}, {3599, false}, {3600, true}, {7200, true}} {
		err := policy.Unmeetable(tok, &tokenbroker.Request{MinTTL: tc.minTTL})
		if (err != nil) != tc.refuse {
			t.Errorf("min_ttl %d: Unmeetable = %v, want refused %t", tc.minTTL, err, tc.refuse)
			continue
		}
		if err != nil && (err.Code != tokenbroker.CodeInvalidRequest || !strings.Contains(err.Description, "3600 s lifetime")) {
			t.Errorf("min_ttl %d: error %v, want a 400 naming the 3600 s lifetime", tc.minTTL, err)
		}
	}
}

func TestNextRefreshFallsWithinTheSpreadBeforeTheThreshold(t *testing.T) {
	p := policy.Policy{Threshold: 10 * time.Minute}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tok := &tokenbroker.Token{Expiry: now.Add(time.Hour), Lifetime: time.Hour}
	threshold := tok.Expiry.Add(-10 * time.Minute)
	earliest := threshold.Add(-10 * time.Minute)
	for _, draw := range []func(int64) int64{
		func(int64) int64 { return 0 },
		func(n int64) int64 { return n - 1 },
		nil, // at random
	} {
		at := p.NextRefresh(tok, now, draw)
		if !at.Before(threshold) || at.Before(earliest) {
			t.Errorf("NextRefresh = %v, want in [%v, %v)", at, earliest, threshold)
		}
	}
	// Too little time left for a spread: at the threshold.
	late := threshold.Add(time.Second)
	if at := p.NextRefresh(tok, late, nil); !at.Equal(threshold) {
		t.Errorf("NextRefresh inside the threshold = %v, want the threshold %v", at, threshold)
	}
}

func TestRetryBacksOffExponentiallyWithinBounds(t *testing.T) {
	now := time.Now()
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	for _, tc := range []struct {
		failures int
		min, max time.Duration
	}{
		{1, policy.MinBackoff / 2, policy.MinBackoff},
		{2, policy.MinBackoff, 2 * policy.MinBackoff},
		{3, 2 * policy.MinBackoff, 4 * policy.MinBackoff},
		{40, policy.MaxBackoff / 2, policy.MaxBackoff},
	} {
		if got := policy.Retry(tc.failures, now, low).Sub(now); got != tc.min {
			t.Errorf("failures %d, lowest draw: wait %v, want %v", tc.failures, got, tc.min)
		}
		if got := policy.Retry(tc.failures, now, high).Sub(now); got > tc.max || got < tc.min {
			t.Errorf("failures %d, highest draw: wait %v, want within [%v, %v]", tc.failures, got, tc.min, tc.max)
		}
	}
}

func TestRefreshTimesSpreadBeforeTheThreshold(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		lifetime, thr    time.Duration
		earliest, latest time.Duration // after now
	}{
		{time.Hour, 10 * time.Minute, 40 * time.Minute, 49 * time.Minute},              // spread = threshold
		{20 * time.Second, 10 * time.Second, 5 * time.Second, 9500 * time.Millisecond}, // spread = half the time before it
	}
	for _, tc := range tests {
		expiry := now.Add(tc.lifetime)
		lo, hi := expiry, now
		for i := 0; i < 2000; i++ {
			at := policy.Policy{Threshold: tc.thr}.NextRefresh(&tokenbroker.Token{Expiry: expiry, Lifetime: tc.lifetime}, now, nil)
			lo, hi = minTime(lo, at), maxTime(hi, at)
		}
		if lo.Before(now.Add(tc.earliest)) || hi.After(now.Add(tc.latest)) {
			t.Fatalf("%s/%s: refreshes between %s and %s after issue", tc.lifetime, tc.thr, lo.Sub(now), hi.Sub(now))
		}
		// 2,000 draws cover most of the spread, not one instant.
		if hi.Sub(lo) < (tc.latest-tc.earliest)*8/10 {
			t.Fatalf("%s/%s: refreshes bunched within %s", tc.lifetime, tc.thr, hi.Sub(lo))
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func TestTheIdPsRefreshHintAndLongLivedTokens(t *testing.T) {
	p := policy.Policy{Threshold: 10 * time.Minute}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	first := func(int64) int64 { return 0 }
	byThreshold := p.NextRefresh(&tokenbroker.Token{Expiry: now.Add(time.Hour), Lifetime: time.Hour}, now, first)

	// refresh_in: at that time, not at the threshold.
	hinted := &tokenbroker.Token{Expiry: now.Add(time.Hour), Lifetime: time.Hour, RefreshAt: now.Add(20 * time.Minute)}
	if at := p.NextRefresh(hinted, now, first); !at.Equal(hinted.RefreshAt) {
		t.Errorf("with refresh_in: %v, want %v", at, hinted.RefreshAt)
	}
	// A hint beyond the threshold would leave the token unserved: the
	// threshold comes first.
	late := &tokenbroker.Token{Expiry: now.Add(time.Hour), Lifetime: time.Hour, RefreshAt: now.Add(55 * time.Minute)}
	if at := p.NextRefresh(late, now, first); !at.Equal(byThreshold) {
		t.Errorf("with a late refresh_in: %v, want the threshold's %v", at, byThreshold)
	}
	// Longer than two hours and no hint: at half its lifetime, as MSAL does.
	day := &tokenbroker.Token{Expiry: now.Add(24 * time.Hour), Lifetime: 24 * time.Hour}
	if at := p.NextRefresh(day, now, first); !at.Equal(now.Add(12 * time.Hour)) {
		t.Errorf("a day-long token: %v, want at half its life %v", at, now.Add(12*time.Hour))
	}
	// Two hours exactly is not long-lived.
	two := &tokenbroker.Token{Expiry: now.Add(2 * time.Hour), Lifetime: 2 * time.Hour}
	if at := p.NextRefresh(two, now, first); !at.After(now.Add(time.Hour + 30*time.Minute)) {
		t.Errorf("a two-hour token: %v, want by its threshold", at)
	}
}
