package messaging_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// exampleAccountsConfig is the example configuration with an account per
// team, shipped in examples/nats-accounts, relative to this package.
const exampleAccountsConfig = "../examples/nats-accounts/nats.conf"

// Passwords of the teams' users in the accounts example; the broker's is
// secBrokerPassword, in the same variable as in examples/nats-auth.
const (
	teamCRMPassword = "team-crm-pw-7a9c1e3b5d"
	teamHRPassword  = "team-hr-pw-4f6b8d0a2c"
)

// setAccountsPasswords sets the variables the accounts example reads its
// passwords from.
func setAccountsPasswords(t *testing.T) {
	t.Helper()
	t.Setenv("TOKENBROKER_NATS_PASSWORD", secBrokerPassword)
	t.Setenv("TEAM_CRM_NATS_PASSWORD", teamCRMPassword)
	t.Setenv("TEAM_HR_NATS_PASSWORD", teamHRPassword)
	t.Setenv("ADMIN_NATS_PASSWORD", secAdminPassword)
}

// asTheAccountsREADMESays sets what examples/nats-accounts/README.md says
// to run the broker with: answer the replies that service imports make,
// and serve named credentials on their own subjects only.
func asTheAccountsREADMESays(cfg *config.Config) {
	cfg.ReplyPrefixes = []string{"_R_"}
	cfg.NamedOnSharedSubject = false
}

// nextEvent returns the next refreshed event on sub.
func nextEvent(t *testing.T, sub *nats.Subscription) tokenbroker.RefreshedEvent {
	t.Helper()
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no event on %s: %v", sub.Subject, err)
	}
	var ev tokenbroker.RefreshedEvent
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatalf("event on %s: %v", msg.Subject, err)
	}
	return ev
}

func subscribeSync(t *testing.T, nc *nats.Conn, subject string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func flush(t *testing.T, conns ...*nats.Conn) {
	t.Helper()
	for _, nc := range conns {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.LastError(); err != nil {
			t.Fatalf("%s: %v", nc.Opts.Name, err)
		}
	}
}

// TestAccountsExampleGivesATeamItsCredential runs a real broker on the
// accounts example as its README says: the CRM team gets crm-prod through
// its import and crm-prod's events, and reaches nothing else of the
// broker's: not hr-prod, not the shared subject, not hr-prod's events;
// the HR team likewise the other way round.
func TestAccountsExampleGivesATeamItsCredential(t *testing.T) {
	setAccountsPasswords(t)
	loadConfigFile(t, exampleAccountsConfig)
	b, idp, logs := startTeamsBroker(t, exampleAccountsConfig, asTheAccountsREADMESays)
	url := b.ClientURL()
	crm := connectAs(t, url, "crm-app", teamCRMPassword, nil)
	hr := connectAs(t, url, "hr-app", teamHRPassword, nil)

	crmEvents := subscribeSync(t, crm, "token.refreshed.crm-prod")
	crmAll := subscribeSync(t, crm, "token.refreshed.>")
	crmForeign := subscribeSync(t, crm, "token.refreshed.hr-prod")
	hrEvents := subscribeSync(t, hr, "token.refreshed.hr-prod")
	hrAll := subscribeSync(t, hr, "token.refreshed.>")
	flush(t, crm, hr)

	// HR gets hr-prod, and its event.
	hrReply := askToken(t, hr, "token.request.hr-prod", `{"force_refresh":true}`)
	wantToken(t, idp, hrReply, hrCredential, hrClientID)
	if ev := nextEvent(t, hrEvents); ev.CredentialID != hrCredential || ev.AccessToken != hrReply.AccessToken {
		t.Fatalf("HR's event is %s's, same token %v", ev.CredentialID, ev.AccessToken == hrReply.AccessToken)
	}

	// CRM gets crm-prod through its import, and its event. The broker
	// published hr-prod's event before it, on the same connection, so had
	// CRM's subscriptions been given hr-prod's, it would have come first.
	crmReply := askToken(t, crm, "token.request.crm-prod", `{"force_refresh":true}`)
	wantToken(t, idp, crmReply, secCredential, secClientID)
	for _, sub := range []*nats.Subscription{crmAll, crmEvents} {
		if ev := nextEvent(t, sub); ev.CredentialID != secCredential || ev.AccessToken != crmReply.AccessToken {
			t.Fatalf("CRM's first event on %s is %s's, same token %v", sub.Subject, ev.CredentialID, ev.AccessToken == crmReply.AccessToken)
		}
	}
	for _, sub := range []*nats.Subscription{crmAll, crmForeign} {
		if n, _, _ := sub.Pending(); n != 0 {
			t.Fatalf("CRM holds %d more events on %s", n, sub.Subject)
		}
	}

	// crm-prod's own subject takes an empty body or {}; one that names
	// another credential, or carries a username, is a 400.
	wantToken(t, idp, askToken(t, crm, "token.request.crm-prod", ""), secCredential, secClientID)
	wantToken(t, idp, askToken(t, crm, "token.request.crm-prod", "{}"), secCredential, secClientID)
	for _, body := range []string{`{"credential":"hr-prod"}`, userRequest} {
		if code := askCode(t, crm, "token.request.crm-prod", body); code != "400" {
			t.Fatalf("token.request.crm-prod %s: code %s, want 400", body, code)
		}
	}

	// Nothing else of the broker's is in CRM's account: whatever it asks
	// for elsewhere, nobody answers. Nor in HR's for crm-prod.
	for _, r := range []struct {
		team          string
		nc            *nats.Conn
		subject, body string
	}{
		{"CRM", crm, "token.request.hr-prod", ""},
		{"CRM", crm, "token.request", `{"credential":"hr-prod"}`},
		{"CRM", crm, "token.request", `{"credential":"crm-prod"}`},
		{"CRM", crm, "token.request", userRequest},
		{"CRM", crm, "$SRV.INFO.tokenbroker", ""},
		{"HR", hr, "token.request.crm-prod", ""},
		{"HR", hr, "token.request", `{"credential":"crm-prod"}`},
	} {
		if m, err := r.nc.Request(r.subject, []byte(r.body), 10*time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("%s on %s %s: %v (%v), want no responders", r.team, r.subject, r.body, m, err)
		}
	}

	// A team cannot hand another one a token: what CRM publishes on
	// token.refreshed.hr-prod stays in its own account. HR's next event is
	// the broker's, with the token HR was given.
	if err := crm.Publish("token.refreshed.hr-prod", []byte(`{"credential_id":"hr-prod","accesstoken":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	flush(t, crm)
	again := askToken(t, hr, "token.request.hr-prod", `{"force_refresh":true}`)
	if ev := nextEvent(t, hrEvents); ev.AccessToken != again.AccessToken {
		t.Fatal("HR's next event on token.refreshed.hr-prod is not the broker's")
	}

	// HR's wildcard got hr-prod's two events and nothing between them:
	// neither crm-prod's event, published in between, nor CRM's forgery.
	for i, want := range []string{hrReply.AccessToken, again.AccessToken} {
		if ev := nextEvent(t, hrAll); ev.CredentialID != hrCredential || ev.AccessToken != want {
			t.Fatalf("HR's event %d on token.refreshed.> is %s's, the token HR got %v", i+1, ev.CredentialID, ev.AccessToken == want)
		}
	}
	if n, _, _ := hrAll.Pending(); n != 0 {
		t.Fatalf("HR holds %d more events on token.refreshed.>", n)
	}

	assertNoSecretIn(t, logs.String(), secBrokerPassword, teamCRMPassword, teamHRPassword,
		secClientSecret, hrClientSecret, crmReply.AccessToken, hrReply.AccessToken)
}

// TestAccountsExampleNamesTheCaller: a request that crosses the CRM
// team's shared import reaches the broker's account with the
// Nats-Request-Info header naming the CRM account and the crm-app user,
// even when the caller set one of its own, and the broker's audit trail
// names that caller, for a token and for a refusal alike.
func TestAccountsExampleNamesTheCaller(t *testing.T) {
	setAccountsPasswords(t)
	loadConfigFile(t, exampleAccountsConfig)
	b, _, logs := startTeamsBroker(t, exampleAccountsConfig, func(cfg *config.Config) {
		asTheAccountsREADMESays(cfg)
		cfg.Audit = config.AuditLog
	})
	url := b.ClientURL()

	// A second connection of the broker's user sees each request as the
	// broker does: it may subscribe to token.request.*.
	spy := connectAs(t, url, "broker", secBrokerPassword, nil)
	seen := subscribeSync(t, spy, "token.request.crm-prod")
	flush(t, spy)

	crm := connectAs(t, url, "crm-app", teamCRMPassword, nil)
	msg := nats.NewMsg("token.request.crm-prod")
	msg.Header.Set("Nats-Request-Info", `{"acc":"HR","user":"hr-app"}`) // a lie
	if _, err := crm.RequestMsg(msg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got, err := seen.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Header.Values("Nats-Request-Info"); len(h) != 1 {
		t.Fatalf("Nats-Request-Info %q, want one", h)
	}
	var info struct {
		Account string `json:"acc"`
		User    string `json:"user"`
	}
	if err := json.Unmarshal([]byte(got.Header.Get("Nats-Request-Info")), &info); err != nil {
		t.Fatal(err)
	}
	if caller := info.Account + "/" + info.User; caller != "CRM/crm-app" {
		t.Fatalf("the broker sees the caller %q, want CRM/crm-app", caller)
	}

	// The audit trail: the token CRM got, and a request the broker refused on
	// crm-prod's own subject, recorded under crm-prod.
	if code := askCode(t, crm, "token.request.crm-prod", `{"credential":"hr-prod"}`); code != "400" {
		t.Fatalf("code %s, want 400", code)
	}
	// Each record is one line holding all of its fields, in any order.
	want := [][]string{
		{"msg=audit", "credential_id=crm-prod", "caller=CRM/crm-app", "transport=nats", "outcome=ok"},
		{"msg=audit", "credential_id=crm-prod", "caller=CRM/crm-app", "transport=nats", "outcome=400"},
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		l := logs.String()
	records:
		for _, fields := range want {
			for _, line := range strings.Split(l, "\n") {
				if containsAll(line, fields) {
					continue records
				}
			}
			return fmt.Errorf("no audit line with %q in:\n%s", fields, l)
		}
		return nil
	})
	// Those are the records of both requests: none names whom the header
	// CRM sent claimed.
	if l := logs.String(); strings.Contains(l, "hr-app") || strings.Count(l, "msg=audit") != 2 {
		t.Fatalf("audit lines other than the two requests':\n%s", l)
	}
}

// TestAccountsExampleKeepsDurableState: JetStream is enabled for the
// broker's account, so with TOKENBROKER_KEY the broker stores the token it
// got and after a restart serves it to CRM without asking the IdP, with
// nothing refused; and the CRM team sees none of the broker's JetStream.
func TestAccountsExampleKeepsDurableState(t *testing.T) {
	setAccountsPasswords(t)
	loadConfigFile(t, exampleAccountsConfig)
	idp := startTeamsIdP(t)
	key, dataDir := newStateKey(t), t.TempDir()
	durable := func() *config.Config {
		cfg := teamsConfig(idp, exampleAccountsConfig)
		asTheAccountsREADMESays(cfg)
		cfg.Key, cfg.DataDir = key, dataDir
		return cfg
	}
	logs := &testkit.LogBuffer{}

	first := startLogged(t, durable(), logs)
	got := askToken(t, connectAs(t, first.ClientURL(), "crm-app", teamCRMPassword, nil), "token.request.crm-prod", "")
	if n := idp.Calls(); n != 1 {
		t.Fatalf("IdP calls %d, want 1", n)
	}
	if err := first.Conn().LastError(); err != nil {
		t.Fatalf("broker connection: %v", err)
	}
	if err := brokertest.Stop(first); err != nil {
		t.Fatal(err)
	}

	second := startLogged(t, durable(), logs)
	crm := connectAs(t, second.ClientURL(), "crm-app", teamCRMPassword, nil)
	assertRestored(t, second, got, askToken(t, crm, "token.request.crm-prod", ""), idp, logs)

	// The buckets are the broker account's: CRM's JetStream API, if it
	// answers at all, knows no such stream and has no JetStream.
	for _, subject := range []string{"$JS.API.INFO", "$JS.API.STREAM.INFO.KV_tokenbroker_tokens",
		"$JS.API.DIRECT.GET.KV_tokenbroker_tokens.$KV.tokenbroker_tokens.crm-prod"} {
		m, err := crm.Request(subject, nil, 10*time.Second)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
		case err != nil:
			t.Fatalf("CRM on %s: %v", subject, err)
		case !strings.Contains(strings.ToLower(string(m.Data)), "jetstream not enabled"):
			t.Fatalf("CRM on %s got %q", subject, m.Data)
		}
	}
	assertNoSecretIn(t, logs.String(), secBrokerPassword, teamCRMPassword, secClientSecret, got.AccessToken)
}

// TestAccountsExampleBrokerHasTheNATSAuthPermissions: the broker's user has
// the same permissions in both examples, so that what
// durable_security_test.go proves of each permission in
// examples/nats-auth holds here too.
func TestAccountsExampleBrokerHasTheNATSAuthPermissions(t *testing.T) {
	setExamplePasswords(t)
	setAccountsPasswords(t)
	find := func(opts *server.Options) *server.Permissions {
		for _, u := range opts.Users {
			if u.Username == "broker" {
				return u.Permissions
			}
		}
		t.Fatal("no user broker")
		return nil
	}
	auth, accounts := find(loadExampleConfig(t)), find(loadConfigFile(t, exampleAccountsConfig))
	if !reflect.DeepEqual(auth, accounts) {
		t.Fatalf("the broker's permissions differ:\nnats-auth: %+v %+v %+v\nnats-accounts: %+v %+v %+v",
			auth.Publish, auth.Subscribe, auth.Response, accounts.Publish, accounts.Subscribe, accounts.Response)
	}
}

// TestAccountsExampleRefusesStrangers: no one connects to the accounts
// example without a user and its password.
func TestAccountsExampleRefusesStrangers(t *testing.T) {
	setAccountsPasswords(t)
	example := loadConfigFile(t, exampleAccountsConfig)
	s := natstest.StartServer(t, func(o *server.Options) {
		example.Host, example.Port, example.NoLog, example.NoSigs = o.Host, o.Port, o.NoLog, o.NoSigs
		*o = *example
	})
	connectAs(t, s.ClientURL(), "crm-app", teamCRMPassword, nil) // the right one is let in
	for _, r := range []struct{ name, user, password string }{
		{"no user", "", ""},
		{"wrong password", "crm-app", "not-the-password"},
		{"another team's password", "crm-app", teamHRPassword},
		{"unknown user", "admin", secBrokerPassword},
	} {
		t.Run(r.name, func(t *testing.T) {
			connectRefused(t, s.ClientURL(), r.user, r.password)
		})
	}
}

// containsAll reports whether s holds every one of subs.
func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
