package messaging_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/messaging"
)

// The embedded server's own complaints, a refused login above all, reach
// the broker's log instead of vanishing.
func TestEmbeddedServerLogsRefusedLogins(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte("authorization { user: broker, password: right-password-123 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testkit.LogBuffer{}
	s, err := messaging.StartEmbedded(messaging.EmbeddedOptions{Listen: "127.0.0.1:0", ConfigFile: conf, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("a config without listen must keep NATS_LISTEN's host: %s", s.ClientURL())
	}
	if _, err := messaging.Connect(s.ClientURL(), messaging.ConnectOptions{User: "broker", Password: "wrong-password-456"}); err == nil {
		t.Fatal("a wrong password connected")
	}
	testkit.Until(t, 10*time.Second, "the refused login logged", func() bool {
		return strings.Contains(strings.ToLower(logs.String()), "authentication error")
	})
	if strings.Contains(logs.String(), "wrong-password-456") || strings.Contains(logs.String(), "right-password-123") {
		t.Fatalf("a password in the server's log:\n%s", logs.String())
	}
}

// writeNATSConfig writes a nats-server configuration file for one test.
func writeNATSConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsBlock writes a CA and a server certificate it signs, and returns the
// tls block of a nats-server configuration that uses them.
func tlsBlock(t *testing.T, verify bool) string {
	t.Helper()
	ca := testkit.NewCertificate(t, testkit.CertOptions{IsCA: true})
	serverCert := testkit.NewCertificate(t, testkit.CertOptions{Issuer: ca})
	dir := t.TempDir()
	caFile, _ := ca.WriteFiles(t, dir, "ca")
	certFile, keyFile := serverCert.WriteFiles(t, dir, "server")
	return fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: %t }\n", certFile, keyFile, caFile, verify)
}

// An embedded server beyond loopback that lets any client in would hand the
// passwords on token.request to whoever reaches it: it does not start, and
// says why on one line. The refusal comes before the server listens, so
// these addresses are never bound.
func TestEmbeddedServerBeyondLoopbackNeedsAuthentication(t *testing.T) {
	tests := []struct {
		name, listen, config string
		says                 []string
	}{
		{name: "every IPv4 interface", listen: "0.0.0.0:0", says: []string{`NATS_LISTEN "0.0.0.0:0"`}},
		{name: "every interface, empty host", listen: ":0", says: []string{`NATS_LISTEN ":0"`}},
		{name: "every IPv6 interface", listen: "[::]:0", says: []string{`NATS_LISTEN "[::]:0"`}},
		{name: "one address", listen: "192.0.2.10:0", says: []string{`NATS_LISTEN "192.0.2.10:0"`}},
		{name: "a host name", listen: "tokenbroker.example:0", says: []string{`NATS_LISTEN "tokenbroker.example:0"`}},
		{name: "a config without authorization", listen: "0.0.0.0:0", config: "max_payload: 1MB\n",
			says: []string{`NATS_LISTEN "0.0.0.0:0"`}},
		{name: "a config's own listen", listen: "127.0.0.1:0", config: "listen: 0.0.0.0:4222\n",
			says: []string{"NATS_CONFIG", `listens on "0.0.0.0"`, "wins over NATS_LISTEN"}},
		{name: "a config's own host", listen: "127.0.0.1:0", config: "host: 0.0.0.0\n",
			says: []string{"NATS_CONFIG", `listens on "0.0.0.0"`}},
		{name: "accounts without users", listen: "0.0.0.0:0", config: "accounts { APP: {} }\n",
			says: []string{`NATS_LISTEN "0.0.0.0:0"`}},
		// TLS alone encrypts; it proves nothing about the client.
		{name: "TLS that does not verify clients", listen: "0.0.0.0:0", config: tlsBlock(t, false),
			says: []string{`NATS_LISTEN "0.0.0.0:0"`}},
		// no_auth_user lets a client that presents nothing in as that user.
		{name: "users and no_auth_user", listen: "0.0.0.0:0",
			config: "authorization { users: [ { user: broker, password: pw-1234567890 } ] }\nno_auth_user: broker\n",
			says:   []string{`NATS_LISTEN "0.0.0.0:0"`}},
		// Users of the system account only: the server adds a user of its
		// own that lets anyone into the global account, token.request's.
		{name: "users of the system account only", listen: "0.0.0.0:0",
			config: "accounts { SYS: { users: [ { user: admin, password: pw-1234567890 } ] } }\nsystem_account: SYS\n",
			says:   []string{`NATS_LISTEN "0.0.0.0:0"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := messaging.EmbeddedOptions{Listen: tc.listen}
			if tc.config != "" {
				o.ConfigFile = writeNATSConfig(t, tc.config)
			}
			s, err := messaging.StartEmbedded(o)
			if err == nil {
				s.Shutdown()
				t.Fatalf("started on %s without authentication", s.ClientURL())
			}
			msg := err.Error()
			for _, want := range append(tc.says, "beyond loopback", "NATS_ALLOW_NO_AUTH=true (--nats-allow-no-auth)") {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if strings.ContainsAny(msg, "\r\n") || strings.Contains(msg, "pw-1234567890") {
				t.Errorf("error is not one line, or holds a password: %q", msg)
			}
		})
	}
}

// What may start: loopback whatever the authentication, and beyond it a
// server that authenticates every client or an explicit NATS_ALLOW_NO_AUTH.
// Beyond loopback the test listens on 192.0.2.10 (TEST-NET-1), no address
// of this host: a server let through fails only there, on binding, so the
// test never opens a port beyond loopback.
func TestEmbeddedServerThatMayStart(t *testing.T) {
	tests := []struct {
		name, config string
		allow        bool
	}{
		{name: "a user and password", config: "authorization { user: broker, password: pw-1234567890 }\n"},
		{name: "a token", config: "authorization { token: tok-1234567890 }\n"},
		{name: "users", config: "authorization { users: [ { user: broker, password: pw-1234567890 } ] }\n"},
		{name: "nkeys", config: "authorization { users: [ { nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4 } ] }\n"},
		{name: "accounts with users", config: "accounts { APP: { users: [ { user: broker, password: pw-1234567890 } ] } }\n"},
		{name: "TLS that verifies clients", config: tlsBlock(t, true)},
		{name: "NATS_ALLOW_NO_AUTH", allow: true},
		{name: "NATS_ALLOW_NO_AUTH with a config", config: "max_payload: 1MB\n", allow: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testkit.LogBuffer{}
			o := messaging.EmbeddedOptions{Listen: "192.0.2.10:0", AllowNoAuth: tc.allow, ReadyTimeout: 100 * time.Millisecond, Logger: logs.Logger()}
			if tc.config != "" {
				o.ConfigFile = writeNATSConfig(t, tc.config)
			}
			s, err := messaging.StartEmbedded(o)
			if err == nil {
				s.Shutdown() // 192.0.2.10 is an address of this host after all
				return
			}
			if strings.Contains(err.Error(), "beyond loopback") || !strings.Contains(err.Error(), "did not start") {
				t.Fatalf("refused: %v", err)
			}
			// Allowed without authentication, it is said at start-up.
			if warned := strings.Contains(logs.String(), "NATS_ALLOW_NO_AUTH"); warned != tc.allow {
				t.Errorf("warned about NATS_ALLOW_NO_AUTH: %v, want %v\n%s", warned, tc.allow, logs.String())
			}
		})
	}
	for _, listen := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		t.Run(listen, func(t *testing.T) {
			if strings.HasPrefix(listen, "[::1]") {
				l, err := net.Listen("tcp", listen)
				if err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				l.Close()
			}
			logs := &testkit.LogBuffer{}
			s, err := messaging.StartEmbedded(messaging.EmbeddedOptions{Listen: listen, Logger: logs.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			s.Shutdown()
			if strings.Contains(logs.String(), "NATS_ALLOW_NO_AUTH") {
				t.Errorf("warned about loopback:\n%s", logs.String())
			}
		})
	}
}

// The broker hands NATS_LISTEN to the check and stops there: start-up fails
// with the one line, before anything else is started.
func TestBrokerRefusesAnEmbeddedServerOpenToAll(t *testing.T) {
	cfg := config.Defaults()
	cfg.NATSListen, cfg.HTTPAddr = "0.0.0.0:0", ""
	err := startRefused(t, cfg)
	if msg := err.Error(); !strings.Contains(msg, `NATS_LISTEN "0.0.0.0:0"`) || !strings.Contains(msg, "NATS_ALLOW_NO_AUTH") {
		t.Fatalf("got %q, want the refusal naming NATS_LISTEN and NATS_ALLOW_NO_AUTH", msg)
	}
}

// STATE_SYNC reaches the JetStream the embedded server runs, and wins over
// NATS_CONFIG's sync_interval; unset, the file's or the server's default
// (every 2 minutes) stays.
func TestEmbeddedJetStreamSync(t *testing.T) {
	const serverDefault = 2 * time.Minute
	tests := []struct {
		name       string
		always     bool
		interval   time.Duration
		config     string
		wantAlways bool
		wantEvery  time.Duration
	}{
		{name: "default", wantEvery: serverDefault},
		{name: "always", always: true, wantAlways: true, wantEvery: serverDefault},
		{name: "every second", interval: time.Second, wantEvery: time.Second},
		{name: "the file's always", config: "jetstream { sync_interval: always }\n", wantAlways: true, wantEvery: serverDefault},
		{name: "the file's interval", config: "jetstream { sync_interval: 10s }\n", wantEvery: 10 * time.Second},
		{name: "always over the file's interval", always: true, config: "jetstream { sync_interval: 10s }\n", wantAlways: true, wantEvery: 10 * time.Second},
		{name: "an interval over the file's always", interval: 5 * time.Second, config: "jetstream { sync_interval: always }\n", wantEvery: 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testkit.LogBuffer{}
			o := messaging.EmbeddedOptions{
				Listen: "127.0.0.1:0", JetStream: true, StoreDir: t.TempDir(),
				SyncAlways: tc.always, SyncInterval: tc.interval, Logger: logs.Logger(),
			}
			if tc.config != "" {
				o.ConfigFile = writeNATSConfig(t, tc.config)
			}
			s, err := messaging.StartEmbedded(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Shutdown)
			jc := s.JetStreamConfig()
			if jc == nil {
				t.Fatal("JetStream is not running")
			}
			if jc.SyncAlways != tc.wantAlways || jc.SyncInterval != tc.wantEvery {
				t.Errorf("SyncAlways, SyncInterval = %v, %v; want %v, %v", jc.SyncAlways, jc.SyncInterval, tc.wantAlways, tc.wantEvery)
			}
			want := "sync=always"
			if !tc.wantAlways {
				want = `sync="every ` + tc.wantEvery.String() + `"`
			}
			if !strings.Contains(logs.String(), want) {
				t.Errorf("start-up log does not say %s:\n%s", want, logs.String())
			}
		})
	}
}

// The broker hands STATE_SYNC to its embedded server.
func TestBrokerPassesStateSync(t *testing.T) {
	cfg := config.Defaults()
	cfg.NATSListen, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "", t.TempDir()
	cfg.Key = make([]byte, config.KeySize) // durable state: JetStream on
	cfg.StateSyncAlways = true
	logs := &testkit.LogBuffer{}
	b, err := broker.Start(cfg, broker.Options{Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = brokertest.Stop(b) })
	if !strings.Contains(logs.String(), "sync=always") {
		t.Fatalf("the embedded JetStream does not sync always:\n%s", logs.String())
	}
}
