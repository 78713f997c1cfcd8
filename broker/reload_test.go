package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/wire"
)

// credentialsFile writes a TOKENBROKER_CONFIG file of client credentials at
// idp, one per name, each reading its secret from <dir>/<name>.secret.
func credentialsFile(t *testing.T, dir string, idp *fakeidp.Server, threshold int, names ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("credentials:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    token_endpoint: %s\n    client_id: %s\n    client_secret_file: %s\n    scope: %s/.default\n    refresh_threshold: %d\n",
			n, idp.V2TokenURL(), n, filepath.Join(dir, n+".secret"), brokertest.Resource, threshold)
	}
	path := filepath.Join(dir, "credentials.yaml")
	replaceFile(t, path, b.String())
	return path
}

// fileBroker starts a broker whose named credentials come from the
// TOKENBROKER_CONFIG file that prepare writes for the broker's IdP.
func fileBroker(t *testing.T, prepare func(idp *fakeidp.Server) (path string)) *env {
	t.Helper()
	return start(t, time.Hour, 10*time.Minute, func(c *config.Config, idp *fakeidp.Server) {
		path := prepare(idp)
		c.ConfigFile = path
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if c.Credentials, err = config.LoadCredentials(f, config.Credential{RefreshThreshold: 10 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReloadAppliesAGoodFileAndKeepsRunningOnABadOne(t *testing.T) {
	dir := t.TempDir()
	var path string
	e := fileBroker(t, func(idp *fakeidp.Server) string {
		for _, n := range []string{"crm", "hr", "ops"} {
			idp.AddClient(n, n+"-secret")
			replaceFile(t, filepath.Join(dir, n+".secret"), n+"-secret\n")
		}
		path = credentialsFile(t, dir, idp, 600, "crm", "hr")
		return path
	})
	idp := e.idp
	first := askName(t, e, "crm")
	if code, _ := askNamed(e.nc, "ops"); code != tokenbroker.CodeNotFound {
		t.Fatalf("ops before reload: %d, want 404", code)
	}
	failed, err := e.nc.SubscribeSync("token.failed.hr")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil { // the server has the subscription before the broker publishes
		t.Fatal(err)
	}

	// crm changes only its threshold, hr goes, ops comes.
	credentialsFile(t, dir, idp, 300, "crm", "ops")
	if err := e.broker.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := askName(t, e, "crm"); got.AccessToken != first.AccessToken {
		t.Fatal("a changed threshold dropped crm's token")
	}
	askName(t, e, "ops")
	if code, _ := askNamed(e.nc, "hr"); code != tokenbroker.CodeNotFound {
		t.Fatalf("hr after reload: %d, want 404", code)
	}
	if _, err := failed.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no token.failed.hr: %v", err)
	}

	// A file that does not validate changes nothing, and says why in one line.
	replaceFile(t, path, "credentials:\n  - name: crm\n    scop: typo\n")
	err = e.broker.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `unknown key "scop"`) {
		t.Fatalf("reload of a bad file: %v", err)
	}
	askName(t, e, "crm")
	askName(t, e, "ops")
	lines := 0
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "reload refused") {
			lines++
			if !strings.Contains(l, "scop") {
				t.Errorf("the log line does not name the error: %s", l)
			}
		}
	}
	if lines != 1 {
		t.Fatalf("%d log lines for a refused reload, want 1", lines)
	}
}

func TestASecretFileReplacedByRenameIsUsedWithoutASignal(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "crm.secret")
	e := fileBroker(t, func(idp *fakeidp.Server) string {
		idp.AddClient("crm", "old-secret")
		replaceFile(t, secret, "old-secret\n")
		return credentialsFile(t, dir, idp, 600, "crm")
	})
	idp := e.idp
	askName(t, e, "crm")

	idp.AddClient("crm", "new-secret") // the IdP refuses the old one from now on
	replaceFile(t, secret, "new-secret\n")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := askNamedForced(e, "crm")
		if code == 0 {
			break
		}
		if code != tokenbroker.CodeRejected || time.Now().After(deadline) {
			t.Fatalf("forced refresh after the secret file changed: %d", code)
		}
	}
	if !strings.Contains(e.logs.String(), "credential's secrets changed") {
		t.Fatal("the change was not logged")
	}
	if strings.Contains(e.logs.String(), "new-secret") || strings.Contains(e.logs.String(), "old-secret") {
		t.Fatal("a secret reached the log")
	}
}

func TestASecretFileWithTwoSecretsServesDuringARotation(t *testing.T) {
	dir := t.TempDir()
	e := fileBroker(t, func(idp *fakeidp.Server) string {
		idp.AddClient("crm", "new-secret")
		replaceFile(t, filepath.Join(dir, "crm.secret"), "old-secret\nnew-secret\n")
		return credentialsFile(t, dir, idp, 600, "crm")
	})
	idp := e.idp
	askName(t, e, "crm")
	askNamedForced(e, "crm")
	// The first call tried the old secret, then the new one; the second went
	// straight to the new one.
	if got := idp.CallsFor("client_credentials"); got != 3 {
		t.Fatalf("IdP calls: %d, want 3", got)
	}
}

// askName asks for a named credential and fails the test unless it gets a token.
func askName(t *testing.T, e *env, name string) tokenbroker.Reply {
	t.Helper()
	return decodeReply(t, e.request(t, `{"credential":"`+name+`"}`))
}

// askNamedForced asks for a fresh token of a named credential and returns
// the error code answered, 0 for a token.
func askNamedForced(e *env, name string) (int, tokenbroker.Reply) {
	msg, err := e.nc.Request("token.request."+name, []byte(`{"force_refresh":true}`), 10*time.Second)
	if err != nil {
		return -1, tokenbroker.Reply{}
	}
	return codeOf(msg)
}

// codeOf reads an answer: the error code, or 0 and the token.
func codeOf(msg *nats.Msg) (int, tokenbroker.Reply) {
	if e := wire.DecodeError(msg); e != nil {
		return e.Code, tokenbroker.Reply{}
	}
	var r tokenbroker.Reply
	_ = json.Unmarshal(msg.Data, &r)
	return 0, r
}
