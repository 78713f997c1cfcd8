package broker_test

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// A resource that answers 401 with a claims challenge (continuous access
// evaluation) gets its caller a new token asked for with that challenge,
// merged with the client's declared capabilities; the token is then cached
// and served to the callers that ask without one.
func TestAClaimsChallengeSkipsTheCacheAndReachesTheIdP(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute, func(c *config.Config, idp *fakeidp.Server) {
		idp.AddClient("cae-app", "cae-secret")
		c.Credentials = append(c.Credentials, config.Credential{Name: "cae", Grant: config.GrantClientCredentials,
			TokenEndpoint: idp.V2TokenURL(), ClientID: "cae-app", ClientSecret: "cae-secret",
			Scope: brokertest.Resource + "/.default", RefreshThreshold: 10 * time.Minute,
			ClientCapabilities: []string{"cp1"}})
	})
	first := askName(t, e, "cae")
	if got := e.idp.Claims(first.AccessToken)["xms_cc"]; !reflect.DeepEqual(got, []any{"cp1"}) {
		t.Fatalf("first token's xms_cc: %v, want [cp1]: the capabilities go with every call", got)
	}
	calls := e.idp.Calls()

	// As the WWW-Authenticate header carries it: base64 of the JSON.
	challenge := `{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}`
	code, challenged := askNamedBody(e, "cae", `{"claims":"`+base64.StdEncoding.EncodeToString([]byte(challenge))+`"}`)
	if code != 0 {
		t.Fatalf("claims challenge answered %d", code)
	}
	if challenged.AccessToken == first.AccessToken || e.idp.Calls() != calls+1 {
		t.Fatalf("a claims challenge was answered from the cache (IdP calls %d, were %d)", e.idp.Calls(), calls)
	}
	reqs := e.idp.ClaimsRequests()
	var sent struct {
		AccessToken map[string]json.RawMessage `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(reqs[len(reqs)-1]), &sent); err != nil || sent.AccessToken["nbf"] == nil || sent.AccessToken["xms_cc"] == nil {
		t.Fatalf("claims sent to the IdP: %s, want the challenge's nbf and xms_cc", reqs[len(reqs)-1])
	}
	if got := e.idp.Claims(challenged.AccessToken)["nbf"]; got != "1700000000" {
		t.Fatalf("new token's nbf claim: %v, want the challenge's", got)
	}

	// The new token is the one held now.
	if again := askName(t, e, "cae"); again.AccessToken != challenged.AccessToken || e.idp.Calls() != calls+1 {
		t.Fatal("the token obtained for the challenge is not the one served next")
	}

	// A challenge that is not a JSON object changes nothing.
	for _, bad := range []string{`"not json"`, `"W10="`, `42`, `{"a":1}`, `"` + strings.Repeat("x", 5000) + `"`} {
		if code, _ := askNamedBody(e, "cae", `{"claims":`+bad+`}`); code != 400 {
			t.Fatalf("claims %.20s: answered %d, want 400", bad, code)
		}
	}
	if e.idp.Calls() != calls+1 {
		t.Fatal("a bad claims challenge reached the IdP")
	}
}

// askNamedBody asks a named credential with body and returns the error code
// answered, 0 for a token.
func askNamedBody(e *env, name, body string) (int, tokenbroker.Reply) {
	msg, err := e.nc.Request("token.request."+name, []byte(body), 10*time.Second)
	if err != nil {
		return -1, tokenbroker.Reply{}
	}
	return codeOf(msg)
}

// Azure AD's refresh_in decides when a token is refreshed; a token living
// longer than two hours without one is refreshed at half its life.
func TestRefreshHintsDecideTheNextRefresh(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lifetime  time.Duration
		refreshIn time.Duration
		want      time.Duration // after the token was obtained
	}{
		{"refresh_in", time.Hour, 20 * time.Minute, 20 * time.Minute},
		{"long-lived", 4 * time.Hour, 0, 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []fakeidp.Option
			if tc.refreshIn > 0 {
				opts = append(opts, fakeidp.WithRefreshIn(tc.refreshIn))
			}
			before := time.Now()
			e := brokertest.Start(t, brokertest.Options{Lifetime: tc.lifetime, IdP: opts, Logs: newLogSink()})
			suite.addIdP(e.IdP)
			nc, err := nats.Connect(e.Broker.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Request("token.request."+brokertest.App, nil, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			var app *actors.CredentialStatus
			testkit.Until(t, 10*time.Second, "App warm with a refresh planned", func() bool {
				for _, c := range e.Broker.Router().Status().Named {
					if c.CredentialID == brokertest.App && c.NextRefresh != nil {
						app = &c
						return true
					}
				}
				return false
			})
			after := time.Now()
			if c := app; c != nil {
				if c.NextRefresh.Before(before.Add(tc.want-2*time.Second)) || c.NextRefresh.After(after.Add(tc.want+2*time.Second)) {
					t.Fatalf("next refresh in %v, want %v", c.NextRefresh.Sub(after).Round(time.Second), tc.want)
				}
			}
		})
	}
}
