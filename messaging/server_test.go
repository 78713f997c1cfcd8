package messaging_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
