package broker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/wire"
)

const deviceUser = "bob@contoso.example"

// startDevice runs a broker with the device code credential "mail" on the
// fake IdP's v2 endpoints (its device endpoint derived from the token
// endpoint, as for Azure AD).
func startDevice(t *testing.T, idpOpts ...fakeidp.Option) *env {
	t.Helper()
	return startDeviceWith(t, false, idpOpts...)
}

// startDeviceWith is startDevice, with the credential declared by its
// issuer (OIDC discovery finds both endpoints) when byIssuer.
func startDeviceWith(t *testing.T, byIssuer bool, idpOpts ...fakeidp.Option) *env {
	t.Helper()
	e := brokertest.Start(t, brokertest.Options{
		Logs: newLogSink(),
		IdP:  append([]fakeidp.Option{fakeidp.WithDeviceInterval(time.Second), fakeidp.WithRecordIssued()}, idpOpts...),
		Adjust: func(c *config.Config, idp *fakeidp.Server) {
			cr := config.Credential{Name: "mail", Grant: config.GrantDeviceCode,
				TokenEndpoint: idp.V2TokenURL(), ClientID: brokertest.PublicClient,
				Scope: brokertest.Resource + "/.default offline_access", RefreshThreshold: 10 * time.Minute}
			if byIssuer {
				cr.TokenEndpoint, cr.Issuer = "", idp.Issuer()
			}
			c.Credentials = append(c.Credentials, cr)
		},
	})
	suite.addIdP(e.IdP)
	nc, err := nats.Connect(e.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &env{idp: e.IdP, broker: e.Broker, nc: nc, logs: e.Logs}
}

func subscribe(t *testing.T, nc *nats.Conn, subject string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

func nextEvent(t *testing.T, sub *nats.Subscription, v any) {
	t.Helper()
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no event on %s: %v", sub.Subject, err)
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		t.Fatal(err)
	}
}

// assertLoginNeeded checks that a request for mail gets the 401 that says
// to sign in.
func assertLoginNeeded(t *testing.T, e *env, body string) {
	t.Helper()
	msg, err := e.nc.Request("token.request.mail", []byte(body), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	te := wire.DecodeError(msg)
	if te == nil || te.Code != 401 || te.OAuth != tokenbroker.OAuthInteractionRequired || !strings.Contains(te.Description, "tokenbroker login mail") {
		t.Fatalf("want a 401 that asks for a login, got %+v (%s)", te, msg.Data)
	}
}

func TestADeviceCodeCredentialIsEnrolledOnceAndThenKeptByItsRefreshToken(t *testing.T) {
	e := startDevice(t)
	refreshed := subscribe(t, e.nc, "token.refreshed.mail")
	failed := subscribe(t, e.nc, "token.failed.mail")

	// Nobody has signed in: a clear 401, and no IdP call.
	assertLoginNeeded(t, e, "")
	if got := e.idp.Calls(); got != 0 {
		t.Fatalf("IdP calls before any login: %d", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	da, te := e.broker.Router().Login(ctx, "mail")
	if te != nil {
		t.Fatal(te)
	}
	if da.UserCode == "" || !strings.HasPrefix(da.VerificationURI, "http://127.0.0.1") {
		t.Fatalf("device authorization: %+v", da)
	}
	ended, stop := context.WithCancel(ctx)
	stop() // LoginWait says pending when its ctx ends before the login
	if st, _ := e.broker.Router().LoginWait(ended, "mail"); st.State != actors.LoginPending {
		t.Fatalf("login ended before the user signed in: %+v", st)
	}
	if err := e.idp.ApproveDevice(da.UserCode, deviceUser); err != nil {
		t.Fatal(err)
	}
	if st, te := e.broker.Router().LoginWait(ctx, "mail"); te != nil || st.State != actors.LoginDone {
		t.Fatalf("login: %+v %v", st, te)
	}
	var ev tokenbroker.RefreshedEvent
	nextEvent(t, refreshed, &ev)
	if ev.Action != tokenbroker.ActionNew || e.idp.Claims(ev.AccessToken)["upn"] != deviceUser {
		t.Fatalf("refreshed event after the login: action %q, upn %v", ev.Action, e.idp.Claims(ev.AccessToken)["upn"])
	}

	// Served like any named credential, from the cache.
	calls := e.idp.Calls()
	if got := askName(t, e, "mail"); got.AccessToken != ev.AccessToken || e.idp.Calls() != calls {
		t.Fatal("the signed-in token is not served from the cache")
	}
	// Refreshed with the refresh token, rotated each time: the fake IdP
	// refuses a refresh token used twice, so the second refresh works only
	// if the first one's new refresh token was kept.
	for i := 0; i < 2; i++ {
		if code, _ := askNamedForced(e, "mail"); code != 0 {
			t.Fatalf("refresh %d answered %d", i+1, code)
		}
	}
	if got := e.idp.CallsFor(fakeidp.GrantRefreshToken); got != 2 {
		t.Fatalf("refresh_token calls: %d, want 2", got)
	}

	// The refresh token dies: consumers are told a login is needed, and
	// callers get a 401 until then.
	e.idp.RevokeRefreshTokens()
	if code, _ := askNamedForced(e, "mail"); code != 401 {
		t.Fatalf("refresh with a revoked refresh token answered %d, want 401", code)
	}
	var fe tokenbroker.FailedEvent
	nextEvent(t, failed, &fe)
	if fe.Error != tokenbroker.OAuthInvalidGrant || !strings.Contains(fe.Description, "tokenbroker login mail") {
		t.Fatalf("failed event: %+v", fe)
	}
	assertLoginNeeded(t, e, `{"force_refresh":true}`)

	// A new login brings it back.
	da, te = e.broker.Router().Login(ctx, "mail")
	if te != nil {
		t.Fatal(te)
	}
	if err := e.idp.ApproveDevice(da.UserCode, deviceUser); err != nil {
		t.Fatal(err)
	}
	if st, te := e.broker.Router().LoginWait(ctx, "mail"); te != nil || st.State != actors.LoginDone {
		t.Fatalf("second login: %+v %v", st, te)
	}
	if code, _ := askNamedForced(e, "mail"); code != 0 {
		t.Fatalf("refresh after the new login answered %d", code)
	}
	assertNoSecrets(t, e.logs.String(), ev.AccessToken)
}

func TestADeviceLoginThatIsDeclinedOrExpiresSaysSo(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []fakeidp.Option
		act  func(idp *fakeidp.Server, userCode string) error
		want string
	}{
		{"declined", nil, func(idp *fakeidp.Server, code string) error { return idp.DenyDevice(code) }, actors.LoginDenied},
		{"declined as Azure AD says it", []fakeidp.Option{fakeidp.WithAzureDeviceDecline(true)}, func(idp *fakeidp.Server, code string) error { return idp.DenyDevice(code) }, actors.LoginDenied},
		{"expired", []fakeidp.Option{fakeidp.WithDeviceExpiry(time.Second)}, func(*fakeidp.Server, string) error { return nil }, actors.LoginExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startDevice(t, tc.opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			da, te := e.broker.Router().Login(ctx, "mail")
			if te != nil {
				t.Fatal(te)
			}
			if err := tc.act(e.idp, da.UserCode); err != nil {
				t.Fatal(err)
			}
			if st, te := e.broker.Router().LoginWait(ctx, "mail"); te != nil || st.State != tc.want {
				t.Fatalf("login: %+v %v, want %s", st, te, tc.want)
			}
			assertLoginNeeded(t, e, "")
		})
	}
}

// An IdP found by discovery: its document gives the device authorization
// endpoint.
func TestADeviceCodeCredentialByIssuer(t *testing.T) {
	e := startDeviceWith(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	da, te := e.broker.Router().Login(ctx, "mail")
	if te != nil {
		t.Fatal(te)
	}
	if err := e.idp.ApproveDevice(da.UserCode, deviceUser); err != nil {
		t.Fatal(err)
	}
	if st, te := e.broker.Router().LoginWait(ctx, "mail"); te != nil || st.State != actors.LoginDone {
		t.Fatalf("login: %+v %v", st, te)
	}
	if got := askName(t, e, "mail"); e.idp.Claims(got.AccessToken)["upn"] != deviceUser {
		t.Fatal("the token served is not the signed-in user's")
	}
	if e.idp.DiscoveryCalls() == 0 {
		t.Fatal("discovery was not used")
	}
}

// The admin endpoints, as `tokenbroker login` uses them: start on any
// broker, wait on the one that polls.
func TestDeviceLoginOverTheAdminSubjects(t *testing.T) {
	e := startDevice(t)
	s := wire.Subjects{}
	body, _ := json.Marshal(wire.AdminNameRequest{Name: "mail"})
	msg, err := e.nc.Request(s.AdminLogin(), body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if te := wire.DecodeError(msg); te != nil {
		t.Fatal(te)
	}
	var rep wire.AdminLoginReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.UserCode == "" || rep.VerificationURI == "" || rep.WaitSubject != s.AdminLoginWait(rep.Broker) || strings.Contains(string(msg.Data), "device_code") {
		t.Fatalf("login reply: %s", msg.Data)
	}
	if err := e.idp.ApproveDevice(rep.UserCode, deviceUser); err != nil {
		t.Fatal(err)
	}
	var st wire.AdminLoginStatus
	for st.State == "" || st.State == wire.LoginPending {
		msg, err := e.nc.Request(rep.WaitSubject, body, wire.LoginWaitMax+5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(msg.Data, &st); err != nil {
			t.Fatalf("wait reply %s: %v", msg.Data, err)
		}
	}
	if st.State != wire.LoginDone {
		t.Fatalf("login: %+v", st)
	}
	askName(t, e, "mail")

	// A credential of another grant, or none, is refused.
	for name, want := range map[string]int{brokertest.App: 400, "nope": 404} {
		b, _ := json.Marshal(wire.AdminNameRequest{Name: name})
		msg, err := e.nc.Request(s.AdminLogin(), b, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if te := wire.DecodeError(msg); te == nil || te.Code != want {
			t.Fatalf("login of %s: %+v, want %d", name, te, want)
		}
	}
}

// A login on one broker serves the credential on every broker sharing the
// JetStream state: the tokens are stored before they are used.
func TestADeviceLoginOnOneBrokerServesEveryBroker(t *testing.T) {
	ns := natstest.StartJetStream(t)
	idp := brokertest.StartIdP(t, time.Hour, fakeidp.WithDeviceInterval(time.Second), fakeidp.WithRecordIssued())
	suite.addIdP(idp)
	key := newKey(t)
	var bs []*broker.Broker
	for i := 0; i < 2; i++ {
		cfg := durableConfig(idp, key, "", ns.ClientURL())
		cfg.Credentials = append(cfg.Credentials, config.Credential{Name: "mail", Grant: config.GrantDeviceCode,
			TokenEndpoint: idp.V2TokenURL(), ClientID: brokertest.PublicClient,
			Scope: brokertest.Resource + "/.default offline_access", RefreshThreshold: 10 * time.Minute})
		bs = append(bs, startBroker(t, cfg, newLogSink(), 0))
	}
	other := natstest.Connect(t, ns)
	if code, _ := askNamed(other, "mail"); code != 401 {
		t.Fatalf("before the login: %d, want 401", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	da, te := bs[0].Router().Login(ctx, "mail")
	if te != nil {
		t.Fatal(te)
	}
	if err := idp.ApproveDevice(da.UserCode, deviceUser); err != nil {
		t.Fatal(err)
	}
	if st, te := bs[0].Router().LoginWait(ctx, "mail"); te != nil || st.State != actors.LoginDone {
		t.Fatalf("login: %+v %v", st, te)
	}
	for i, b := range bs {
		nc := connectTo(t, b)
		code, got := askNamed(nc, "mail")
		if code != 0 || idp.Claims(got.AccessToken)["upn"] != deviceUser {
			t.Fatalf("broker %d after the login: %d", i, code)
		}
	}
	// The refresh token is in the store, but not in clear.
	for k, e := range rawRecords(t, ns.ClientURL()) {
		for _, s := range idp.IssuedTokens() {
			if strings.Contains(string(e.Value()), s) {
				t.Fatalf("record %s holds a token in clear", k)
			}
		}
	}
}
