package fakeidp_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/clock"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// startDevice returns a started Server on a fake clock, with the user and
// clients of start.
func startDevice(t *testing.T, opts ...fakeidp.Option) (*fakeidp.Server, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	return start(t, append([]fakeidp.Option{fakeidp.WithClock(clk.Now)}, opts...)...), clk
}

// deviceV2 asks the v2 device authorization endpoint for codes for
// publicApp and scope, and returns the response body.
func deviceV2(t *testing.T, s *fakeidp.Server, scope string) map[string]any {
	t.Helper()
	r := post(t, s.DeviceAuthorizationURL(), form("client_id", publicApp, "scope", scope))
	if r.status != http.StatusOK {
		t.Fatalf("device authorization: status %d: %s", r.status, r.raw)
	}
	return r.body
}

// pollV2 polls the v2 token endpoint once for deviceCode as publicApp.
func pollV2(t *testing.T, s *fakeidp.Server, deviceCode string) reply {
	t.Helper()
	return post(t, s.V2TokenURL(), form("grant_type", fakeidp.GrantDeviceCode, "client_id", publicApp, "scope", scopeV2, "device_code", deviceCode))
}

// wantRFCError checks an RFC 8628 error the fake gives no AADSTS number.
func wantRFCError(t *testing.T, r reply, code string) {
	t.Helper()
	if r.status != http.StatusBadRequest || r.body["error"] != code {
		t.Fatalf("got %d %v, want 400 %s: %s", r.status, r.body["error"], code, r.raw)
	}
	if _, ok := r.body["error_codes"]; ok {
		t.Errorf("error_codes %v sent for %s", r.body["error_codes"], code)
	}
	desc, _ := r.body["error_description"].(string)
	if strings.HasPrefix(desc, "AADSTS") || !strings.Contains(desc, "\r\nTrace ID: ") {
		t.Errorf("error_description %q", desc)
	}
}

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

func TestDeviceAuthorizationResponses(t *testing.T) {
	t.Run("v2", func(t *testing.T) {
		s, _ := startDevice(t)
		body := deviceV2(t, s, scopeV2)
		dc, _ := body["device_code"].(string)
		uc, _ := body["user_code"].(string)
		verify := s.URL() + "/devicelogin"
		if len(dc) < 40 || !userCodeRE.MatchString(uc) {
			t.Errorf("device_code of %d bytes, user_code %q", len(dc), uc)
		}
		if body["verification_uri"] != verify || body["verification_uri_complete"] != verify+"?otc="+uc || s.DeviceVerificationURL() != verify {
			t.Errorf("verification_uri %v, complete %v", body["verification_uri"], body["verification_uri_complete"])
		}
		if body["expires_in"] != float64(900) || body["interval"] != float64(5) {
			t.Errorf("expires_in %#v interval %#v, want numbers 900 and 5", body["expires_in"], body["interval"])
		}
		if msg, _ := body["message"].(string); !strings.Contains(msg, verify) || !strings.Contains(msg, uc) {
			t.Errorf("message %q names neither the page nor the code", msg)
		}
		if _, ok := body["verification_url"]; ok {
			t.Error("v2 sent v1's verification_url")
		}
		if got := s.PendingDeviceCodes(); len(got) != 1 || got[0] != uc {
			t.Errorf("PendingDeviceCodes = %v, want [%s]", got, uc)
		}
	})

	t.Run("v1", func(t *testing.T) {
		s, _ := startDevice(t, fakeidp.WithDeviceInterval(2500*time.Millisecond), fakeidp.WithDeviceExpiry(time.Minute))
		r := post(t, s.V1DeviceAuthorizationURL(), form("client_id", publicApp, "resource", resource))
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.raw)
		}
		// v1's dialect: verification_url, and numbers as strings; a
		// fraction of a second is not sent.
		if r.body["verification_url"] != s.URL()+"/devicelogin" || r.body["expires_in"] != "60" || r.body["interval"] != "2" {
			t.Errorf("verification_url %v expires_in %#v interval %#v", r.body["verification_url"], r.body["expires_in"], r.body["interval"])
		}
		if _, ok := r.body["verification_uri"]; ok {
			t.Error("v1 sent v2's verification_uri")
		}
	})

	t.Run("codes are unique", func(t *testing.T) {
		s, _ := startDevice(t)
		seen := map[string]bool{}
		for range 20 {
			body := deviceV2(t, s, scopeV2)
			for _, k := range []string{"device_code", "user_code"} {
				v := body[k].(string)
				if seen[v] {
					t.Fatalf("%s issued twice", k)
				}
				seen[v] = true
			}
		}
		if n := len(s.PendingDeviceCodes()); n != 20 {
			t.Errorf("%d pending, want 20", n)
		}
	})
}

func TestDeviceAuthorizationErrors(t *testing.T) {
	s, _ := startDevice(t)
	tests := []struct {
		name   string
		url    string
		form   map[string]string
		status int
		code   string
		aadsts int
	}{
		{"no client_id", s.DeviceAuthorizationURL(), map[string]string{"scope": scopeV2}, 400, "invalid_request", 900144},
		{"unknown client", s.DeviceAuthorizationURL(), map[string]string{"client_id": "nobody", "scope": scopeV2}, 400, "unauthorized_client", 700016},
		{"v2 without scope", s.DeviceAuthorizationURL(), map[string]string{"client_id": publicApp}, 400, "invalid_request", 90014},
		{"v1 without resource", s.V1DeviceAuthorizationURL(), map[string]string{"client_id": publicApp}, 400, "invalid_resource", 50001},
		{"public client with a secret", s.DeviceAuthorizationURL(), map[string]string{"client_id": publicApp, "client_secret": "x", "scope": scopeV2}, 401, "invalid_client", 700025},
		{"confidential client without its secret", s.DeviceAuthorizationURL(), map[string]string{"client_id": confApp, "scope": scopeV2}, 401, "invalid_client", 7000218},
		{"wrong secret", s.DeviceAuthorizationURL(), map[string]string{"client_id": confApp, "client_secret": "wrong", "scope": scopeV2}, 401, "invalid_client", 7000215},
		{"other tenant", strings.Replace(s.DeviceAuthorizationURL(), fakeidp.DefaultTenant, "other", 1), map[string]string{"client_id": publicApp, "scope": scopeV2}, 400, "invalid_request", 90002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := form()
			for k, v := range tc.form {
				f.Set(k, v)
			}
			wantAADSTS(t, post(t, tc.url, f), tc.status, tc.code, tc.aadsts)
		})
	}
	if n := len(s.PendingDeviceCodes()); n != 0 {
		t.Errorf("%d codes issued by failed requests", n)
	}
	if r := post(t, s.DeviceAuthorizationURL(), form("client_id", confApp, "client_secret", confSecret, "scope", scopeV2)); r.status != 200 {
		t.Errorf("confidential client with its secret: %d %s", r.status, r.raw)
	}
	resp, err := http.Get(s.DeviceAuthorizationURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
	if got := s.DeviceAuthorizationCalls(); got != int64(len(tests))+2 {
		t.Errorf("DeviceAuthorizationCalls = %d, want %d", got, len(tests)+2)
	}
	if s.Calls() != 0 {
		t.Errorf("Calls = %d: device authorization requests counted as token calls", s.Calls())
	}
}

func TestDeviceGrantPendingThenApproved(t *testing.T) {
	s, clk := startDevice(t, fakeidp.WithStrictRotation(true))
	body := deviceV2(t, s, scopeV2)
	dc, uc := body["device_code"].(string), body["user_code"].(string)

	wantAADSTS(t, pollV2(t, s, dc), 400, "authorization_pending", 70016)
	clk.Advance(5 * time.Second)
	wantAADSTS(t, pollV2(t, s, dc), 400, "authorization_pending", 70016)

	// The user types the code as users do: lower case, no dash.
	if err := s.ApproveDevice(strings.ToLower(strings.ReplaceAll(uc, "-", "")), "bob@contoso.com"); err != nil {
		t.Fatal(err)
	}
	if got := s.PendingDeviceCodes(); len(got) != 0 {
		t.Errorf("approved code still pending: %v", got)
	}
	clk.Advance(5 * time.Second)
	r := pollV2(t, s, dc)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	checkLifetimes(t, r.body, false, 3600)
	at, _ := r.body["access_token"].(string)
	if c := s.Claims(at); !s.Valid(at) || c["upn"] != "bob@contoso.com" || c["scp"] != scopeV2 || c["aud"] != "https://graph.microsoft.com" {
		t.Errorf("claims %v", c)
	}
	rt, _ := r.body["refresh_token"].(string)
	if rt == "" {
		t.Fatal("no refresh token, though the scope had offline_access")
	}
	if got := s.CallsFor(fakeidp.GrantDeviceCode); got != 3 {
		t.Errorf("CallsFor(GrantDeviceCode) = %d, want 3", got)
	}

	// The code is spent.
	clk.Advance(5 * time.Second)
	wantAADSTS(t, pollV2(t, s, dc), 400, "invalid_grant", 90120)

	// The refresh token is an ordinary one: it rotates.
	refresh := form("grant_type", "refresh_token", "client_id", publicApp, "scope", scopeV2, "refresh_token", rt)
	r2 := post(t, s.V2TokenURL(), refresh)
	if rt2, _ := r2.body["refresh_token"].(string); r2.status != 200 || rt2 == "" || rt2 == rt {
		t.Fatalf("refresh: %d %s", r2.status, r2.raw)
	}
	if c := s.Claims(r2.body["access_token"].(string)); c["upn"] != "bob@contoso.com" {
		t.Errorf("refreshed token's claims %v", c)
	}
	wantAADSTS(t, post(t, s.V2TokenURL(), refresh), 400, "invalid_grant", 700082)
}

func TestDeviceGrantRefreshTokenNeedsOfflineAccess(t *testing.T) {
	s, _ := startDevice(t)
	body := deviceV2(t, s, "https://graph.microsoft.com/User.Read")
	if err := s.ApproveDevice(body["user_code"].(string), user); err != nil {
		t.Fatal(err)
	}
	// The poll's scope has offline_access; the consent did not.
	r := pollV2(t, s, body["device_code"].(string))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if _, ok := r.body["refresh_token"]; ok {
		t.Error("refresh token without offline_access")
	}
	if r.body["scope"] != "https://graph.microsoft.com/User.Read" {
		t.Errorf("scope %v, want the consented one", r.body["scope"])
	}
}

func TestDeviceGrantV1(t *testing.T) {
	s, _ := startDevice(t)
	r := post(t, s.V1DeviceAuthorizationURL(), form("client_id", publicApp, "resource", resource))
	dc := r.body["device_code"].(string)
	if err := s.ApproveDevice(r.body["user_code"].(string), user); err != nil {
		t.Fatal(err)
	}
	// A v1 code is not redeemed on v2.
	r2 := pollV2(t, s, dc)
	wantAADSTS(t, r2, 400, "bad_verification_code", 70018)

	// ADAL's way: the device code in code.
	r3 := post(t, s.V1TokenURL(), form("grant_type", fakeidp.GrantDeviceCode, "client_id", publicApp, "resource", resource, "code", dc))
	if r3.status != 200 {
		t.Fatalf("status %d: %s", r3.status, r3.raw)
	}
	checkLifetimes(t, r3.body, true, 3600)
	if _, ok := r3.body["refresh_token"].(string); !ok {
		t.Error("v1 issued no refresh token")
	}
	if c := s.Claims(r3.body["access_token"].(string)); c["aud"] != resource || c["upn"] != user {
		t.Errorf("claims %v", c)
	}
}

func TestDeviceGrantErrors(t *testing.T) {
	s, clk := startDevice(t, fakeidp.WithDeviceExpiry(time.Minute))
	body := deviceV2(t, s, scopeV2)
	dc, uc := body["device_code"].(string), body["user_code"].(string)

	wantAADSTS(t, pollV2(t, s, "not-a-device-code"), 400, "bad_verification_code", 70018)
	wantAADSTS(t, post(t, s.V2TokenURL(), form("grant_type", fakeidp.GrantDeviceCode, "client_id", publicApp, "scope", scopeV2)), 400, "invalid_request", 900144)
	wantAADSTS(t, post(t, s.V2TokenURL(), form("grant_type", fakeidp.GrantDeviceCode, "client_id", confApp, "client_secret", confSecret, "scope", scopeV2, "device_code", dc)),
		400, "invalid_grant", 70000)

	if err := s.ApproveDevice("ZZZZ-ZZZZ", user); err == nil {
		t.Error("unknown user code approved")
	}
	if err := s.ApproveDevice(uc, ""); err == nil {
		t.Error("approved without a username")
	}

	clk.Advance(time.Minute)
	wantAADSTS(t, pollV2(t, s, dc), 400, "expired_token", 70019)
	if got := s.PendingDeviceCodes(); len(got) != 0 {
		t.Errorf("expired code pending: %v", got)
	}
	if err := s.ApproveDevice(uc, user); err == nil {
		t.Error("expired code approved")
	}
}

func TestDeviceGrantDenied(t *testing.T) {
	for _, tc := range []struct {
		azure bool
		code  string
	}{{false, "access_denied"}, {true, "authorization_declined"}} {
		t.Run(tc.code, func(t *testing.T) {
			s, _ := startDevice(t, fakeidp.WithAzureDeviceDecline(tc.azure), fakeidp.WithStrictDevicePolling(false))
			body := deviceV2(t, s, scopeV2)
			uc := body["user_code"].(string)
			if err := s.DenyDevice(uc); err != nil {
				t.Fatal(err)
			}
			if err := s.ApproveDevice(uc, user); err == nil {
				t.Error("denied code approved")
			}
			if err := s.DenyDevice(uc); err == nil {
				t.Error("denied twice")
			}
			for range 2 { // and it stays denied
				wantRFCError(t, pollV2(t, s, body["device_code"].(string)), tc.code)
			}
		})
	}
}

func TestDevicePolling(t *testing.T) {
	t.Run("strict", func(t *testing.T) {
		s, clk := startDevice(t)
		dc := deviceV2(t, s, scopeV2)["device_code"].(string)
		wantAADSTS(t, pollV2(t, s, dc), 400, "authorization_pending", 70016) // the first poll is never too soon
		clk.Advance(4 * time.Second)
		wantRFCError(t, pollV2(t, s, dc), "slow_down")
		// The interval is 10 seconds now, counted from the last poll.
		clk.Advance(5 * time.Second)
		wantRFCError(t, pollV2(t, s, dc), "slow_down")
		clk.Advance(15 * time.Second)
		wantAADSTS(t, pollV2(t, s, dc), 400, "authorization_pending", 70016)
		clk.Advance(15 * time.Second)
		wantAADSTS(t, pollV2(t, s, dc), 400, "authorization_pending", 70016)
	})
	t.Run("lax", func(t *testing.T) {
		s, _ := startDevice(t, fakeidp.WithStrictDevicePolling(false))
		dc := deviceV2(t, s, scopeV2)["device_code"].(string)
		for range 3 {
			wantAADSTS(t, pollV2(t, s, dc), 400, "authorization_pending", 70016)
		}
	})
	t.Run("codes are polled apart", func(t *testing.T) {
		s, _ := startDevice(t)
		a := deviceV2(t, s, scopeV2)["device_code"].(string)
		b := deviceV2(t, s, scopeV2)["device_code"].(string)
		wantAADSTS(t, pollV2(t, s, a), 400, "authorization_pending", 70016)
		wantAADSTS(t, pollV2(t, s, b), 400, "authorization_pending", 70016)
	})
}

func TestDeviceAuthorizationFailures(t *testing.T) {
	s, _ := startDevice(t)
	s.FailDeviceAuthorization(fakeidp.FailHTML(503), 1)
	s.Fail(fakeidp.FailRetryAfter(429, 7), 1)
	r := post(t, s.DeviceAuthorizationURL(), form("client_id", publicApp, "scope", scopeV2))
	if r.status != 503 || !strings.Contains(r.raw, "<html>") {
		t.Fatalf("scripted failure: %d %s", r.status, r.raw)
	}
	dc := deviceV2(t, s, scopeV2)["device_code"].(string)
	// Polls are token calls: they take Fail's failures.
	if r := pollV2(t, s, dc); r.status != 429 || r.header.Get("Retry-After") != "7" {
		t.Errorf("poll: %d %s", r.status, r.raw)
	}
	if s.Calls() != 1 || s.CallsFor(fakeidp.GrantDeviceCode) != 1 || s.DeviceAuthorizationCalls() != 2 {
		t.Errorf("Calls %d, device polls %d, device authorizations %d", s.Calls(), s.CallsFor(fakeidp.GrantDeviceCode), s.DeviceAuthorizationCalls())
	}

	s.FailDeviceAuthorization(fakeidp.FailHTML(502), -1)
	s.ClearDeviceAuthorizationFailures()
	deviceV2(t, s, scopeV2)
}

func TestDeviceAuthorizationFromDiscovery(t *testing.T) {
	s, _ := startDevice(t)
	resp, err := http.Get(s.V2Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	endpoint, _ := doc["device_authorization_endpoint"].(string)
	if endpoint != s.DeviceAuthorizationURL() {
		t.Fatalf("device_authorization_endpoint %q", endpoint)
	}
	if r := post(t, endpoint, form("client_id", publicApp, "scope", scopeV2)); r.status != 200 {
		t.Errorf("the advertised endpoint: %d %s", r.status, r.raw)
	}
}
