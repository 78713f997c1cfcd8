package messaging_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/wire"
)

// exampleNATSConfig is the example embedded-server configuration shipped
// in examples/nats-auth, relative to this package.
const exampleNATSConfig = "../examples/nats-auth/nats.conf"

// Passwords of the example config's users, handed to it through the
// environment variables it references.
const (
	secBrokerPassword    = "broker-pw-3f9c2a7d1e"
	secCallerPassword    = "caller-pw-8b1d4e6f0a"
	secCallerCRMPassword = "caller-crm-pw-2e4a6c8b0d"
	secConsumerPassword  = "consumer-pw-5c7a9e2b4d"
	secAdminPassword     = "admin-pw-7d2f5b9c1e"
)

// The named credential of the end-to-end test.
const (
	secCredential   = "crm-prod"
	secClientID     = "crm-prod-app"
	secClientSecret = "crm-prod-client-secret-value"
	secScope        = "https://contoso.crm.dynamics.com/.default"
)

// setExamplePasswords sets the variables the example config reads its
// passwords from. The caller's is a bcrypt hash, as the README suggests for
// users whose clear password the broker does not need.
func setExamplePasswords(t *testing.T) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(secCallerPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENBROKER_NATS_PASSWORD", secBrokerPassword)
	t.Setenv("CALLER_NATS_PASSWORD", string(hash))
	t.Setenv("CALLER_CRM_NATS_PASSWORD", secCallerCRMPassword)
	t.Setenv("CONSUMER_CRM_NATS_PASSWORD", secConsumerPassword)
	t.Setenv("ADMIN_NATS_PASSWORD", secAdminPassword)
}

// loadExampleConfig parses the example config as the embedded server does.
func loadExampleConfig(t *testing.T) *server.Options { return loadConfigFile(t, exampleNATSConfig) }

// loadConfigFile parses an example configuration file as the embedded
// server does.
func loadConfigFile(t *testing.T, path string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// The broker tests rely on NATS_LISTEN choosing the address: a listen
	// line in the example would win over it and bind 4222.
	if opts.Host != "" || opts.Port != 0 {
		t.Fatalf("%s pins the address %s:%d; leave it to NATS_LISTEN", path, opts.Host, opts.Port)
	}
	return opts
}

// startExampleServer runs a standalone server with the example config on
// a random loopback port.
func startExampleServer(t *testing.T) *server.Server {
	t.Helper()
	example := loadExampleConfig(t)
	return natstest.StartServer(t, func(o *server.Options) {
		// The example's users and permissions, at natstest's address.
		example.Host, example.Port, example.NoLog, example.NoSigs = o.Host, o.Port, o.NoLog, o.NoSigs
		*o = *example
	})
}

// asyncErrors collects the errors nats.go reports through its async error
// handler, such as a permissions violation.
type asyncErrors chan error

func (c asyncErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	select {
	case c <- err:
	default: // the test reads the first few only
	}
}

// wait returns the first error whose text contains want.
func (c asyncErrors) wait(t *testing.T, want string) error {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-c:
			if strings.Contains(err.Error(), want) {
				return err
			}
		case <-timeout:
			t.Fatalf("no async error mentioning %q in 10s", want)
		}
	}
}

// connectAs connects to url as user of the example config, with more
// options if given (an inbox prefix).
func connectAs(t *testing.T, url, user, password string, errs asyncErrors, more ...nats.Option) *nats.Conn {
	t.Helper()
	if errs == nil {
		errs = make(asyncErrors) // unbuffered: drops them, instead of nats.go printing them
	}
	opts := []nats.Option{nats.Name(user), nats.UserInfo(user, password), nats.ErrorHandler(errs.handler)}
	nc, err := nats.Connect(url, append(opts, more...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// subscribeDenied subscribes nc to subject, which the server must refuse
// (errs is nc's async error handler). It returns the subscription, for the
// test to check that nothing arrives on it after all.
func subscribeDenied(t *testing.T, nc *nats.Conn, errs asyncErrors, subject string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	assertPermissionViolation(t, errs.wait(t, strconv.Quote(subject)))
	return sub
}

// exampleBrokerConfig is a broker config that logs in as user to its
// embedded server, which runs the NATS configuration file natsConfig on a
// random loopback port.
func exampleBrokerConfig(natsConfig, user, password string) *config.Config {
	cfg := config.Defaults()
	cfg.NATSConfig = natsConfig
	cfg.NATSListen = "127.0.0.1:0"
	cfg.HTTPAddr = ""
	cfg.NATSUser, cfg.NATSPassword = user, tokenbroker.Secret(password)
	return cfg
}

// startSecIdP runs the fake IdP with the examples' client, until t ends.
func startSecIdP(t *testing.T) *fakeidp.Server {
	t.Helper()
	idp, err := fakeidp.Start(fakeidp.WithClient(secClientID, secClientSecret))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp
}

// secCredentials is the examples' one named credential, on idp.
func secCredentials(idp *fakeidp.Server) []config.Credential {
	return []config.Credential{{Name: secCredential, Grant: config.GrantClientCredentials,
		TokenEndpoint: idp.V2TokenURL(), ClientID: secClientID, ClientSecret: tokenbroker.Secret(secClientSecret),
		Scope: secScope, RefreshThreshold: 10 * time.Minute, KeepWarm: true}}
}

// startRefused starts a broker on cfg, which must fail, and returns why. A
// broker that starts after all is stopped before the test fails.
func startRefused(t *testing.T, cfg *config.Config) error {
	t.Helper()
	b, err := broker.Start(cfg, broker.Options{})
	if err == nil {
		_ = brokertest.Stop(b)
		t.Fatal("broker.Start succeeded")
	}
	return err
}

// TestExampleConfigPermissions checks every user of the example config
// against what it may and may not do. The server answers a denied SUB or
// PUB with -ERR before the PONG of the following Flush, so LastError is
// settled once Flush returns.
func TestExampleConfigPermissions(t *testing.T) {
	setExamplePasswords(t)
	s := startExampleServer(t)

	tests := []struct {
		name, user, password string
		sub, pub             string // one of them: the subject to subscribe to or publish on
		allowed              bool
	}{
		{"broker serves token.request", "broker", secBrokerPassword, "token.request", "", true},
		{"broker answers micro discovery", "broker", secBrokerPassword, "$SRV.PING.tokenbroker", "", true},
		{"broker publishes refreshed events", "broker", secBrokerPassword, "", "token.refreshed.crm-prod", true},
		{"broker publishes failed events", "broker", secBrokerPassword, "", "token.failed.crm-prod", true},
		{"broker publishes audit records", "broker", secBrokerPassword, "", "token.audit.crm-prod", true},
		{"broker reads events for GET /events", "broker", secBrokerPassword, "token.refreshed.>", "", true},
		{"broker reads failed events for GET /events", "broker", secBrokerPassword, "token.failed.>", "", true},
		{"broker does not read audit records", "broker", secBrokerPassword, "token.audit.>", "", false},
		{"broker does not send requests", "broker", secBrokerPassword, "", "token.request.crm-prod", false},
		{"broker does not send shared requests", "broker", secBrokerPassword, "", "token.request", false},
		{"broker does not write into inboxes unasked", "broker", secBrokerPassword, "", "_INBOX.someone.else", false},
		{"broker does not read inboxes", "broker", secBrokerPassword, "_INBOX.>", "", false},
		{"broker reads its own inbox", "broker", secBrokerPassword, "_INBOX_tokenbroker.abc.*", "", true},
		{"broker asks JetStream about its account", "broker", secBrokerPassword, "", "$JS.API.INFO", true},
		{"broker updates its bucket", "broker", secBrokerPassword, "", "$JS.API.STREAM.UPDATE.KV_tokenbroker_tokens", true},
		{"broker reads a record", "broker", secBrokerPassword, "", "$JS.API.DIRECT.GET.KV_tokenbroker_tokens.$KV.tokenbroker_tokens.crm-prod", true},
		{"broker writes a record", "broker", secBrokerPassword, "", "$KV.tokenbroker_tokens.crm-prod", true},
		{"broker writes a lease", "broker", secBrokerPassword, "", "$KV.tokenbroker_leases.crm-prod", true},
		{"broker watches a record", "broker", secBrokerPassword, "", "$JS.API.CONSUMER.CREATE.KV_tokenbroker_tokens.w1.$KV.tokenbroker_tokens.crm-prod", true},
		{"broker does not delete its bucket", "broker", secBrokerPassword, "", "$JS.API.STREAM.DELETE.KV_tokenbroker_tokens", false},
		{"broker does not purge its bucket", "broker", secBrokerPassword, "", "$JS.API.STREAM.PURGE.KV_tokenbroker_tokens", false},
		{"broker creates no other stream", "broker", secBrokerPassword, "", "$JS.API.STREAM.CREATE.EVENTS", false},
		{"broker reads no other stream", "broker", secBrokerPassword, "", "$JS.API.DIRECT.GET.KV_other.$KV.other.x", false},
		{"broker writes no other bucket", "broker", secBrokerPassword, "", "$KV.other.x", false},
		{"broker runs no consumer on the leases", "broker", secBrokerPassword, "", "$JS.API.CONSUMER.CREATE.KV_tokenbroker_leases.w1", false},
		{"broker lists no streams", "broker", secBrokerPassword, "", "$JS.API.STREAM.LIST", false},
		{"broker serves the admin endpoints", "broker", secBrokerPassword, "token.admin.credential.put", "", true},
		{"broker writes the registry", "broker", secBrokerPassword, "", "$KV.tokenbroker_credentials.hr-prod", true},
		{"broker watches the registry", "broker", secBrokerPassword, "", "$JS.API.CONSUMER.CREATE.KV_tokenbroker_credentials.w1", true},
		{"broker does not delete the registry", "broker", secBrokerPassword, "", "$JS.API.STREAM.DELETE.KV_tokenbroker_credentials", false},
		{"broker does not send admin commands", "broker", secBrokerPassword, "", "token.admin.credential.put", false},
		{"admin puts credentials", "admin", secAdminPassword, "", "token.admin.credential.put", true},
		{"admin removes credentials", "admin", secAdminPassword, "", "token.admin.credential.rm", true},
		{"admin reads its replies", "admin", secAdminPassword, "_INBOX.abc.*", "", true},
		{"admin asks for no token", "admin", secAdminPassword, "", "token.request", false},
		{"admin asks for no named token", "admin", secAdminPassword, "", "token.request.crm-prod", false},
		{"admin does not read admin commands", "admin", secAdminPassword, "token.admin.>", "", false},
		{"admin does not write the registry directly", "admin", secAdminPassword, "", "$KV.tokenbroker_credentials.hr-prod", false},
		{"admin cannot watch tokens", "admin", secAdminPassword, "token.refreshed.>", "", false},
		{"caller cannot send admin commands", "caller", secCallerPassword, "", "token.admin.credential.put", false},
		{"caller cannot list credentials", "caller", secCallerPassword, "", "token.admin.credential.ls", false},
		{"caller cannot read admin commands", "caller", secCallerPassword, "token.admin.>", "", false},
		{"caller sends requests", "caller", secCallerPassword, "", "token.request", true},
		{"caller asks for a credential on its subject", "caller", secCallerPassword, "", "token.request.crm-prod", true},
		{"caller reads its replies", "caller", secCallerPassword, "_INBOX.abc.*", "", true},
		{"caller cannot watch refreshed tokens", "caller", secCallerPassword, "token.refreshed.>", "", false},
		{"caller cannot watch one credential", "caller", secCallerPassword, "token.refreshed.crm-prod", "", false},
		{"caller cannot forge events", "caller", secCallerPassword, "", "token.refreshed.crm-prod", false},
		{"caller cannot read the audit trail", "caller", secCallerPassword, "token.audit.>", "", false},
		{"caller cannot forge audit records", "caller", secCallerPassword, "", "token.audit.crm-prod", false},
		{"caller cannot serve requests", "caller", secCallerPassword, "token.request", "", false},
		{"caller cannot read the token state", "caller", secCallerPassword, "", "$JS.API.DIRECT.GET.KV_tokenbroker_tokens.$KV.tokenbroker_tokens.crm-prod", false},
		{"caller cannot write the token state", "caller", secCallerPassword, "", "$KV.tokenbroker_tokens.crm-prod", false},
		{"caller cannot read the broker's inbox", "caller", secCallerPassword, "_INBOX_tokenbroker.>", "", false},
		{"caller-crm asks for crm-prod", "caller-crm", secCallerCRMPassword, "", "token.request.crm-prod", true},
		{"caller-crm reads its replies", "caller-crm", secCallerCRMPassword, "_INBOX_crm.abc.*", "", true},
		{"caller-crm cannot ask for another credential", "caller-crm", secCallerCRMPassword, "", "token.request.hr-prod", false},
		{"caller-crm cannot use the shared subject", "caller-crm", secCallerCRMPassword, "", "token.request", false},
		{"caller-crm cannot read the other callers' replies", "caller-crm", secCallerCRMPassword, "_INBOX.>", "", false},
		{"caller-crm cannot read every inbox", "caller-crm", secCallerCRMPassword, ">", "", false},
		{"caller-crm cannot watch crm-prod's events", "caller-crm", secCallerCRMPassword, "token.refreshed.crm-prod", "", false},
		{"caller-crm cannot serve its credential", "caller-crm", secCallerCRMPassword, "token.request.crm-prod", "", false},
		{"caller-crm cannot forge events", "caller-crm", secCallerCRMPassword, "", "token.refreshed.crm-prod", false},
		{"consumer watches its credential", "consumer-crm", secConsumerPassword, "token.refreshed.crm-prod", "", true},
		{"consumer watches its failures", "consumer-crm", secConsumerPassword, "token.failed.crm-prod", "", true},
		{"consumer cannot watch every credential", "consumer-crm", secConsumerPassword, "token.refreshed.>", "", false},
		{"consumer cannot watch another credential", "consumer-crm", secConsumerPassword, "token.refreshed.erp-prod", "", false},
		{"consumer cannot request tokens", "consumer-crm", secConsumerPassword, "", "token.request", false},
		{"consumer cannot read inboxes", "consumer-crm", secConsumerPassword, "_INBOX.>", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc := connectAs(t, s.ClientURL(), tc.user, tc.password, nil)
			var err error
			if tc.sub != "" {
				_, err = nc.SubscribeSync(tc.sub)
			} else {
				err = nc.Publish(tc.pub, []byte("{}"))
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			switch last := nc.LastError(); {
			case tc.allowed && last != nil:
				t.Fatalf("refused: %v", last)
			case !tc.allowed && !errors.Is(last, nats.ErrPermissionViolation):
				t.Fatalf("want a permissions violation, got %v", last)
			}
		})
	}

	refused := []struct{ name, user, password string }{
		{"no user", "", ""},
		{"wrong password", "caller", "not-the-password"},
		{"another user's password", "consumer-crm", secCallerPassword},
		{"caller's password for caller-crm", "caller-crm", secCallerPassword},
		{"the caller's bcrypt hash as password", "caller", os.Getenv("CALLER_NATS_PASSWORD")},
		{"unknown user", "admin", secBrokerPassword},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			err := connectRefused(t, s.ClientURL(), tc.user, tc.password)
			assertNoSecretIn(t, err.Error(), secBrokerPassword, secCallerPassword, secCallerCRMPassword, secConsumerPassword, "not-the-password")
		})
	}
}

// TestExampleConfigWithBroker runs a real broker on an embedded server
// configured with the example config: the broker logs in as "broker", a
// caller gets a token but may not watch events, and the consumer sees
// crm-prod's events only.
func TestExampleConfigWithBroker(t *testing.T) {
	setExamplePasswords(t)
	loadExampleConfig(t)
	idp := startSecIdP(t)

	cfg := exampleBrokerConfig(exampleNATSConfig, "broker", secBrokerPassword)
	cfg.Credentials = secCredentials(idp)
	logs := &testkit.LogBuffer{}
	b := brokertest.StartBroker(t, cfg, broker.Options{Logger: logs.Logger()})
	url := b.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":4222") {
		t.Fatalf("embedded server at %s, want a random loopback port", url)
	}
	// The broker's subscriptions (token.request, $SRV.*) were accepted:
	// Start flushed after making them, so a refusal would show here.
	if err := b.Conn().LastError(); err != nil {
		t.Fatalf("broker connection: %v", err)
	}

	consumerErrs := make(asyncErrors, 8)
	consumer := connectAs(t, url, "consumer-crm", secConsumerPassword, consumerErrs)
	events, err := consumer.SubscribeSync("token.refreshed." + secCredential)
	if err != nil {
		t.Fatal(err)
	}
	consumerAll := subscribeDenied(t, consumer, consumerErrs, "token.refreshed.>")

	callerErrs := make(asyncErrors, 8)
	caller := connectAs(t, url, "caller", secCallerPassword, callerErrs)
	snoop := subscribeDenied(t, caller, callerErrs, "token.refreshed.>")

	// force_refresh: an event is published even if the broker had warmed
	// the credential before the consumer subscribed.
	msg, err := caller.Request("token.request", []byte(`{"credential":"crm-prod","force_refresh":true}`), 10*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var reply tokenbroker.Reply
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.AccessToken == "" {
		t.Fatalf("reply %s (%v)", msg.Data, err)
	}
	if reply.CredentialID != secCredential {
		t.Fatalf("credential_id %q", reply.CredentialID)
	}

	ev, err := events.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("consumer-crm got no event: %v", err)
	}
	var event tokenbroker.RefreshedEvent
	if err := json.Unmarshal(ev.Data, &event); err != nil {
		t.Fatal(err)
	}
	if event.CredentialID != secCredential || event.AccessToken != reply.AccessToken {
		t.Fatalf("event %s does not carry the token the caller got", ev.Data)
	}

	// The event reached the consumer, so the server has routed it to every
	// subscription it accepted; a Flush on the other connections makes sure
	// any such delivery has been read. The refused subscriptions got none.
	for _, c := range []struct {
		name string
		nc   *nats.Conn
		sub  *nats.Subscription
	}{{"caller", caller, snoop}, {"consumer-crm's refused wildcard", consumer, consumerAll}} {
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if m, err := c.sub.NextMsg(50 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("%s received %v (%v) on a refused subscription", c.name, m, err)
		}
	}

	// The consumer may not ask for tokens itself.
	if err := consumer.PublishRequest("token.request", "_INBOX.consumer", []byte(`{"credential":"crm-prod"}`)); err != nil {
		t.Fatal(err)
	}
	assertPermissionViolation(t, consumerErrs.wait(t, `"token.request"`))

	assertNoSecretIn(t, logs.String(), secBrokerPassword, secCallerPassword, secConsumerPassword,
		secClientSecret, reply.AccessToken)
}

// TestBrokerLoggedInAsCallerDoesNotPassForServing: logged in as a user
// that may not serve token.request, a broker must not pass for serving:
// either Start fails, or (as of this writing, since Start does not check)
// its connection holds the server's refusal.
//
// A wrong NATS_PASSWORD is tested over TCP in TestExampleConfigPermissions
// and TestConnectAuthMethods: over the in-process connection to the
// embedded server, nats.go and the server both block writing to the
// unbuffered pipe until the server's 10s write deadline, and the error is
// "read/write on closed pipe" rather than an authorization violation.
func TestBrokerLoggedInAsCallerDoesNotPassForServing(t *testing.T) {
	setExamplePasswords(t)
	loadExampleConfig(t)
	err := startRefused(t, exampleBrokerConfig(exampleNATSConfig, "caller", secCallerPassword))
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "may not serve token.request") {
		t.Fatalf("start as caller: %v", err)
	}
	assertNoSecretIn(t, err.Error(), secCallerPassword)
}

// TestBrokerWithAWrongPasswordFailsClearly: a refused login to the embedded
// server is reported as such, at once, not as a closed pipe after a hang.
func TestBrokerWithAWrongPasswordFailsClearly(t *testing.T) {
	setExamplePasswords(t)
	err := startRefused(t, exampleBrokerConfig(exampleNATSConfig, "broker", "not-the-password-0123"))
	if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("start with a wrong password: %v", err)
	}
	assertNoSecretIn(t, err.Error(), "not-the-password-0123")
}

// TestBrokerRejectsBrokenNATSConfig: a NATS_CONFIG the server cannot use
// stops start-up with an error naming NATS_CONFIG.
func TestBrokerRejectsBrokenNATSConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path string
	}{
		{"syntax error", write("syntax.conf", "authorization {\n  users: [ { user: broker, password: x }\n")},
		{"unset password variable", write("unset.conf", "authorization { users: [ { user: broker, password: $TOKENBROKER_TEST_UNSET_VARIABLE } ] }\n")},
		{"unknown permission key", write("perm.conf", "authorization { users: [ { user: a, password: b, permissions: { publisher: \"x\" } } ] }\n")},
		{"missing file", filepath.Join(dir, "missing.conf")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := startRefused(t, exampleBrokerConfig(tc.path, "broker", secBrokerPassword))
			if !strings.Contains(err.Error(), "NATS_CONFIG") {
				t.Fatalf("error does not name NATS_CONFIG: %v", err)
			}
			assertNoSecretIn(t, err.Error(), secBrokerPassword)
		})
	}
}

// authSetup is one way for the broker to log in to NATS: the server's
// options, how the broker and a caller connect, and attempts that must fail.
type authSetup struct {
	server  func(*server.Options)
	broker  messaging.ConnectOptions
	caller  messaging.ConnectOptions
	refused []refusedLogin
	secrets []string // must not appear in any error
}

type refusedLogin struct {
	name string
	opts messaging.ConnectOptions
}

// TestConnectAuthMethods: messaging.Connect logs in with each method a
// NATS_* setting offers, and serves a request over the connection; wrong
// credentials fail without the secret in the error.
func TestConnectAuthMethods(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) authSetup
	}{
		{"user and password", func(t *testing.T) authSetup {
			const pw = "nats-user-password-1a2b"
			return authSetup{
				server: func(o *server.Options) { o.Username, o.Password = "broker", pw },
				broker: messaging.ConnectOptions{User: "broker", Password: pw},
				caller: messaging.ConnectOptions{User: "broker", Password: pw},
				refused: []refusedLogin{
					{"wrong password", messaging.ConnectOptions{User: "broker", Password: "wrong-password-9z8y"}},
					{"no password", messaging.ConnectOptions{}},
				},
				secrets: []string{pw, "wrong-password-9z8y"},
			}
		}},
		{"token", func(t *testing.T) authSetup {
			const token = "nats-token-7c6d5e4f"
			return authSetup{
				server: func(o *server.Options) { o.Authorization = token },
				broker: messaging.ConnectOptions{Token: token},
				caller: messaging.ConnectOptions{Token: token},
				refused: []refusedLogin{
					{"wrong token", messaging.ConnectOptions{Token: "wrong-token-3g2h1i"}},
				},
				secrets: []string{token, "wrong-token-3g2h1i"},
			}
		}},
		{"nkey seed file", func(t *testing.T) authSetup {
			pub, seed := newNKeyUser(t)
			seedFile := writeFile(t, "broker.nk", seed)
			_, otherSeed := newNKeyUser(t)
			otherFile := writeFile(t, "other.nk", otherSeed)
			return authSetup{
				server: func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} },
				broker: messaging.ConnectOptions{NKeyFile: seedFile},
				caller: messaging.ConnectOptions{NKeyFile: seedFile},
				refused: []refusedLogin{
					{"unknown nkey", messaging.ConnectOptions{NKeyFile: otherFile}},
				},
				secrets: []string{string(seed), string(otherSeed)},
			}
		}},
		{"JWT credentials file", func(t *testing.T) authSetup {
			op := newOperator(t)
			acct := op.account(t, "TOKENS")
			brokerCreds, brokerSeed := acct.user(t, "broker", func(u *jwt.UserClaims) {
				u.Pub.Allow.Add("token.refreshed.>", "token.failed.>")
				u.Sub.Allow.Add("token.request", "$SRV.>")
				u.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: 2 * time.Minute}
			})
			callerCreds, callerSeed := acct.user(t, "caller", func(u *jwt.UserClaims) {
				u.Pub.Allow.Add("token.request")
				u.Sub.Allow.Add("_INBOX.>")
			})
			// A user of an account the server does not know.
			strangerCreds, strangerSeed := newOperator(t).account(t, "OTHER").user(t, "stranger", nil)
			return authSetup{
				server:  op.serverOptions,
				broker:  messaging.ConnectOptions{CredsFile: brokerCreds},
				caller:  messaging.ConnectOptions{CredsFile: callerCreds},
				refused: []refusedLogin{{"user of an unknown account", messaging.ConnectOptions{CredsFile: strangerCreds}}},
				secrets: []string{brokerSeed, callerSeed, strangerSeed},
			}
		}},
		{"TLS with client certificates", func(t *testing.T) authSetup {
			pki := newTestPKI(t)
			other := newTestPKI(t)
			return authSetup{
				server: func(o *server.Options) {
					o.TLSConfig = pki.serverTLS(t)
					o.TLSVerify = true
					o.TLSTimeout = 5
				},
				broker: messaging.ConnectOptions{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey},
				caller: messaging.ConnectOptions{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey},
				refused: []refusedLogin{
					{"wrong CA", messaging.ConnectOptions{CAFile: other.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}},
					{"client certificate of another CA", messaging.ConnectOptions{CAFile: pki.caFile, CertFile: other.clientCert, KeyFile: other.clientKey}},
					{"no client certificate", messaging.ConnectOptions{CAFile: pki.caFile}},
				},
				secrets: []string{"PRIVATE KEY", pki.clientKeyPEM, other.clientKeyPEM},
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.setup(t)
			s := natstest.StartServer(t, a.server)

			a.broker.Name = "broker"
			bnc, err := messaging.Connect(s.ClientURL(), a.broker)
			if err != nil {
				t.Fatalf("broker: %v", err)
			}
			defer bnc.Close()
			a.caller.Name = "caller"
			cnc, err := messaging.Connect(s.ClientURL(), a.caller)
			if err != nil {
				t.Fatalf("caller: %v", err)
			}
			defer cnc.Close()
			assertRoundTrip(t, bnc, cnc)

			for _, r := range a.refused {
				t.Run("refused: "+r.name, func(t *testing.T) {
					nc, err := messaging.Connect(s.ClientURL(), r.opts)
					if err == nil {
						nc.Close()
						t.Fatal("connected")
					}
					assertNoSecretIn(t, err.Error(), a.secrets...)
				})
			}
		})
	}
}

// TestConnectInProcessWithExampleConfig: the broker's in-process
// connection to its embedded server logs in like any other client.
func TestConnectInProcessWithExampleConfig(t *testing.T) {
	setExamplePasswords(t)
	s := startExampleServer(t)
	bnc, err := messaging.Connect(s.ClientURL(), messaging.ConnectOptions{InProcess: s, User: "broker", Password: secBrokerPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer bnc.Close()
	cnc := connectAs(t, s.ClientURL(), "caller", secCallerPassword, nil)
	assertRoundTrip(t, bnc, cnc)
}

// assertRoundTrip answers one token.request on broker and sends it from
// caller.
func assertRoundTrip(t *testing.T, broker, caller *nats.Conn) {
	t.Helper()
	sub, err := broker.QueueSubscribe("token.request", wire.QueueGroup, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"accesstoken":"round-trip"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := broker.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := broker.LastError(); err != nil {
		t.Fatalf("broker connection: %v", err)
	}
	msg, err := caller.Request("token.request", []byte(`{"credential":"x"}`), 10*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if string(msg.Data) != `{"accesstoken":"round-trip"}` {
		t.Fatalf("reply %s", msg.Data)
	}
}

func assertPermissionViolation(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("want a permissions violation, got %v", err)
	}
}

// assertNoSecretIn fails if text contains any of secrets.
func assertNoSecretIn(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("a secret (%.6s...) shows in:\n%s", s, text)
		}
	}
}

// writeFile writes data to name in a fresh temporary directory, readable
// by its owner only, as secrets should be.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newNKeyUser(t *testing.T) (pub string, seed []byte) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	if pub, err = kp.PublicKey(); err != nil {
		t.Fatal(err)
	}
	if seed, err = kp.Seed(); err != nil {
		t.Fatal(err)
	}
	return pub, seed
}

// testOperator is an operator whose accounts a server in operator mode
// resolves from memory.
type testOperator struct {
	kp       nkeys.KeyPair
	claims   *jwt.OperatorClaims
	resolver *server.MemAccResolver
}

type testAccount struct {
	kp nkeys.KeyPair
}

func newOperator(t *testing.T) *testOperator {
	t.Helper()
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	oc := jwt.NewOperatorClaims(pub)
	oc.Name = "tokenbroker-test"
	token, err := oc.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwt.DecodeOperatorClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	return &testOperator{kp: kp, claims: claims, resolver: &server.MemAccResolver{}}
}

// account creates an account signed by the operator and stores its JWT in
// the operator's resolver.
func (o *testOperator) account(t *testing.T, name string) *testAccount {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	token, err := ac.Encode(o.kp)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.resolver.Store(pub, token); err != nil {
		t.Fatal(err)
	}
	return &testAccount{kp: kp}
}

// serverOptions puts a server in operator mode, trusting o.
func (o *testOperator) serverOptions(opts *server.Options) {
	opts.TrustedOperators = []*jwt.OperatorClaims{o.claims}
	opts.AccountResolver = o.resolver
}

// user writes a .creds file for a new user of a, with the permissions perm
// sets, and returns its path and the user's seed.
func (a *testAccount) user(t *testing.T, name string, perm func(*jwt.UserClaims)) (path, seed string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	if perm != nil {
		perm(uc)
	}
	token, err := uc.Encode(a.kp)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(token, s)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, name+".creds", creds), string(s)
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate. The client's are PEM files, as NATS_CA, NATS_CERT and
// NATS_KEY name them.
type testPKI struct {
	caFile                string
	clientCert, clientKey string
	clientKeyPEM          string
	caPool                *x509.CertPool
	server                *testkit.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca := testkit.NewCertificate(t, testkit.CertOptions{CommonName: "tokenbroker test CA", IsCA: true})
	server := testkit.NewCertificate(t, testkit.CertOptions{CommonName: "server", Issuer: ca,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	client := testkit.NewCertificate(t, testkit.CertOptions{CommonName: "broker", Issuer: ca,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	p := &testPKI{caPool: ca.Pool(), server: server, clientKeyPEM: strings.TrimSpace(string(client.KeyPEM))}
	p.caFile, _ = ca.WriteFiles(t, dir, "ca")
	p.clientCert, p.clientKey = client.WriteFiles(t, dir, "broker")
	return p
}

// serverTLS is the server's TLS configuration: its certificate, and client
// certificates required and verified against the CA.
func (p *testPKI) serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := tls.X509KeyPair(p.server.CertPEM, p.server.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.caPool,
	}
}

// The second named credential of the tests of who may have which token:
// the one that caller-crm and the CRM team must not get.
const (
	hrCredential   = "hr-prod"
	hrClientID     = "hr-prod-app"
	hrClientSecret = "hr-prod-client-secret-value"
	hrScope        = "https://hr.example/.default"
)

// startTeamsIdP runs a fake IdP for brokertest's default profile and for
// the clients of crm-prod and hr-prod.
func startTeamsIdP(t *testing.T) *fakeidp.Server {
	t.Helper()
	return brokertest.StartIdP(t, time.Hour, fakeidp.WithClient(secClientID, secClientSecret),
		fakeidp.WithClient(hrClientID, hrClientSecret))
}

// teamsConfig is a broker config whose embedded server runs the NATS
// configuration natsConfig on a random loopback port, logged in as
// "broker", serving brokertest's default profile (username/password
// requests) and the named credentials crm-prod and hr-prod at idp.
func teamsConfig(idp *fakeidp.Server, natsConfig string) *config.Config {
	cfg := brokertest.Config(idp, 10*time.Minute)
	cfg.NATSConfig = natsConfig
	cfg.NATSUser, cfg.NATSPassword = "broker", tokenbroker.Secret(secBrokerPassword)
	cfg.Credentials = []config.Credential{
		{Name: secCredential, Grant: config.GrantClientCredentials, TokenEndpoint: idp.V2TokenURL(),
			ClientID: secClientID, ClientSecret: tokenbroker.Secret(secClientSecret), Scope: secScope,
			RefreshThreshold: 10 * time.Minute, KeepWarm: true},
		{Name: hrCredential, Grant: config.GrantClientCredentials, TokenEndpoint: idp.V2TokenURL(),
			ClientID: hrClientID, ClientSecret: tokenbroker.Secret(hrClientSecret), Scope: hrScope,
			RefreshThreshold: 10 * time.Minute, KeepWarm: true},
	}
	return cfg
}

// startTeamsBroker starts a broker on teamsConfig at a fresh IdP. adjust
// changes the config last, as a README says to run the example.
func startTeamsBroker(t *testing.T, natsConfig string, adjust func(*config.Config)) (*broker.Broker, *fakeidp.Server, *testkit.LogBuffer) {
	t.Helper()
	idp := startTeamsIdP(t)
	cfg := teamsConfig(idp, natsConfig)
	if adjust != nil {
		adjust(cfg)
	}
	logs := &testkit.LogBuffer{}
	return startLogged(t, cfg, logs), idp, logs
}

// startLogged starts a broker on cfg logging to logs, and checks that the
// server accepted its subscriptions: Start flushed after making them, so a
// refusal would show on its connection.
func startLogged(t *testing.T, cfg *config.Config, logs *testkit.LogBuffer) *broker.Broker {
	t.Helper()
	b := brokertest.StartBroker(t, cfg, broker.Options{Logger: logs.Logger()})
	if err := b.Conn().LastError(); err != nil {
		t.Fatalf("broker connection: %v", err)
	}
	return b
}

// askToken sends body on subject over nc and returns the broker's reply,
// which must be a token.
func askToken(t *testing.T, nc *nats.Conn, subject, body string) tokenbroker.Reply {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", subject, body, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("%s %s: error %s: %s", subject, body, code, msg.Data)
	}
	var reply tokenbroker.Reply
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.AccessToken == "" {
		t.Fatalf("%s %s: reply %s (%v)", subject, body, msg.Data, err)
	}
	return reply
}

// askCode sends body on subject over nc and returns the error code the
// broker answered with; a token fails the test.
func askCode(t *testing.T, nc *nats.Conn, subject, body string) string {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", subject, body, err)
	}
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" || strings.Contains(string(msg.Data), "accesstoken") {
		t.Fatalf("%s %s: answered with a token, want an error", subject, body)
	}
	return code
}

// wantToken fails unless reply is a token of credentialID that the IdP
// issued to clientID.
func wantToken(t *testing.T, idp *fakeidp.Server, reply tokenbroker.Reply, credentialID, clientID string) {
	t.Helper()
	if reply.CredentialID != credentialID {
		t.Fatalf("credential_id %q, want %q", reply.CredentialID, credentialID)
	}
	if app := idp.Claims(reply.AccessToken)["appid"]; app != clientID {
		t.Fatalf("a token of the IdP's client %v, want %s", app, clientID)
	}
}

// userRequest is a username/password request of brokertest's user.
var userRequest = `{"username":"` + brokertest.User + `","password":"` + brokertest.Password + `"}`

// TestExampleConfigLimitsACallerToOneCredential runs a broker on the example
// config as its README says for caller-crm (NAMED_ON_SHARED_SUBJECT=false,
// REPLY_PREFIXES=_INBOX.,_INBOX_crm): caller-crm gets crm-prod on
// token.request.crm-prod and nothing else, whatever it sends; caller still
// gets any credential, on each one's own subject; token.request serves
// username/password requests only.
func TestExampleConfigLimitsACallerToOneCredential(t *testing.T) {
	setExamplePasswords(t)
	loadExampleConfig(t)
	b, idp, logs := startTeamsBroker(t, exampleNATSConfig, func(cfg *config.Config) {
		cfg.NamedOnSharedSubject = false
		cfg.ReplyPrefixes = []string{"_INBOX.", "_INBOX_crm"}
	})
	url := b.ClientURL()
	crmErrs := make(asyncErrors, 8)
	crm := connectAs(t, url, "caller-crm", secCallerCRMPassword, crmErrs, nats.CustomInboxPrefix("_INBOX_crm"))

	// crm-prod on its own subject, with an empty body, {}, or options.
	var crmToken string
	for _, body := range []string{"", "{}", `{"force_refresh":true}`, `{"min_ttl":60}`, `{"credential":"crm-prod"}`} {
		reply := askToken(t, crm, "token.request.crm-prod", body)
		wantToken(t, idp, reply, secCredential, secClientID)
		crmToken = reply.AccessToken
	}

	// A body that names another credential, or carries a username, is a
	// 400 there, and no token.
	for _, body := range []string{`{"credential":"hr-prod"}`, userRequest} {
		if code := askCode(t, crm, "token.request.crm-prod", body); code != "400" {
			t.Fatalf("token.request.crm-prod %s: code %s, want 400", body, code)
		}
	}

	// Anything else the server refuses: another credential's subject, and
	// the shared subject, for any credential.
	before := b.Service().Counts().Requests
	for _, r := range []struct{ subject, body string }{
		{"token.request.hr-prod", ""},
		{"token.request", `{"credential":"hr-prod"}`},
		{"token.request", `{"credential":"crm-prod"}`},
		{"token.request", userRequest},
	} {
		if err := crm.PublishRequest(r.subject, crm.NewRespInbox(), []byte(r.body)); err != nil {
			t.Fatal(err)
		}
		if err := crm.Flush(); err != nil {
			t.Fatal(err)
		}
		assertPermissionViolation(t, crmErrs.wait(t, strconv.Quote(r.subject)))
	}
	// So the broker never got them. One more request on crm-prod's subject
	// is served by the same subscription as token.request.hr-prod, after
	// it: it is the only request the broker got since.
	askToken(t, crm, "token.request.crm-prod", "")
	if n := b.Service().Counts().Requests - before; n != 1 {
		t.Fatalf("the broker got %d requests, want only the one allowed", n)
	}

	// caller holds token.request: there it gets username/password tokens
	// only, not crm-prod, with NAMED_ON_SHARED_SUBJECT=false.
	caller := connectAs(t, url, "caller", secCallerPassword, nil)
	if code := askCode(t, caller, "token.request", `{"credential":"crm-prod"}`); code != "400" {
		t.Fatalf("a named credential on token.request: code %s, want 400", code)
	}
	user := askToken(t, caller, "token.request", userRequest)
	if !strings.HasPrefix(user.CredentialID, "u-") || idp.Claims(user.AccessToken)["upn"] != brokertest.User {
		t.Fatalf("username/password reply: credential_id %q, claims %v", user.CredentialID, idp.Claims(user.AccessToken))
	}
	// Its token.request.* gives it every named credential.
	wantToken(t, idp, askToken(t, caller, "token.request.hr-prod", ""), hrCredential, hrClientID)
	wantToken(t, idp, askToken(t, caller, "token.request.crm-prod", ""), secCredential, secClientID)

	// caller reads _INBOX.>, and none of caller-crm's replies: they go to
	// _INBOX_crm. The reply is routed to every matching subscription at
	// once, so once caller-crm has it, a Flush of caller has read any copy.
	snoop, err := caller.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := caller.Flush(); err != nil {
		t.Fatal(err)
	}
	askToken(t, crm, "token.request.crm-prod", `{"force_refresh":true}`)
	if err := caller.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := snoop.Pending(); n != 0 {
		t.Fatalf("caller read %d of caller-crm's replies", n)
	}

	assertNoSecretIn(t, logs.String(), secBrokerPassword, secCallerPassword, secCallerCRMPassword,
		secClientSecret, hrClientSecret, brokertest.Password, crmToken)
}

// connectRefused fails t unless the server at url refuses to let user in
// with password ("" user: no credentials at all), and returns its error.
func connectRefused(t *testing.T, url, user, password string) error {
	t.Helper()
	var opts []nats.Option
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		nc.Close()
		t.Fatal("connected")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("want an authorization violation, got %v", err)
	}
	return err
}
