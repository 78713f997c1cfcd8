package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// runServe runs `tokenbroker serve` in-process with vars until the test
// ends, and returns its NATS URL and its log.
func runServe(t *testing.T, vars map[string]string) (string, *testkit.LogBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	stderr := &testkit.LogBuffer{}
	e := env{lookup: lookupIn(vars), stdout: &testkit.LogBuffer{}, stderr: stderr, ready: func(u string) { ready <- u }}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--nats-listen", "127.0.0.1:0"}, e) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	})
	select {
	case url := <-ready:
		return url, stderr
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	return "", nil
}

func writeCredentials(t *testing.T, path, endpoint, secretDir string, names ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("credentials:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    token_endpoint: %s\n    client_id: %s\n    client_secret_file: %s\n    scope: https://resource.example/.default\n",
			n, endpoint, n, filepath.Join(secretDir, n+".secret"))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialCommandsAndSIGHUPAgainstARunningBroker is issue 14 as an
// operator meets it: a broker with a key, credentials put, listed and
// removed with the command, and the file reloaded on SIGHUP.
func TestCredentialCommandsAndSIGHUPAgainstARunningBroker(t *testing.T) {
	idp, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	dir := t.TempDir()
	for _, n := range []string{"crm", "hr", "ops"} {
		idp.AddClient(n, n+"-secret-value")
		if err := os.WriteFile(filepath.Join(dir, n+".secret"), []byte(n+"-secret-value\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	configFile := filepath.Join(dir, "brokers.yaml")
	writeCredentials(t, configFile, idp.V2TokenURL(), dir, "crm")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	url, logs := runServe(t, map[string]string{
		"TOKENBROKER_KEY": base64.StdEncoding.EncodeToString(key), "DATA_DIR": filepath.Join(dir, "data"),
		"TOKENBROKER_CONFIG": configFile, "HTTP_ADDR": "",
	})
	nats := map[string]string{"NATS_URL": url}

	teamFile := filepath.Join(dir, "team-hr.yaml")
	writeCredentials(t, teamFile, idp.V2TokenURL(), dir, "hr")
	code, out, errs := runCmd(t, nats, "credential", "put", teamFile)
	if code != exitOK || !strings.Contains(out, "put hr") {
		t.Fatalf("credential put: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := runCmd(t, nats, "token", "--credential", "hr"); code != exitOK {
		t.Fatalf("token for the put credential: %s", errs)
	}
	code, out, _ = runCmd(t, nats, "credential", "ls")
	if code != exitOK || !strings.Contains(out, "crm") || !regexp.MustCompile(`hr\s+registry\s+client_credentials`).MatchString(out) {
		t.Fatalf("credential ls:\n%s", out)
	}
	if strings.Contains(out, "hr-secret-value") || strings.Contains(logs.String(), "hr-secret-value") {
		t.Fatal("a secret was printed or logged")
	}

	// SIGHUP: the file gains ops and loses crm.
	writeCredentials(t, configFile, idp.V2TokenURL(), dir, "ops")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 10*time.Second, "ops served after SIGHUP", func() bool {
		code, _, _ := runCmd(t, nats, "token", "--credential", "ops")
		return code == exitOK
	})
	if code, _, errs := runCmd(t, nats, "token", "--credential", "crm"); code != exitError || !strings.Contains(errs, "404") {
		t.Fatalf("crm after it left the file: exit %d %q", code, errs)
	}

	code, out, errs = runCmd(t, nats, "credential", "rm", "hr")
	if code != exitOK || !strings.Contains(out, "removed hr") {
		t.Fatalf("credential rm: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := runCmd(t, nats, "token", "--credential", "hr"); code != exitError || !strings.Contains(errs, "404") {
		t.Fatalf("hr after rm: exit %d %q", code, errs)
	}
	if code, _, errs := runCmd(t, nats, "credential", "rm", "ops"); code != exitError || !strings.Contains(errs, "TOKENBROKER_CONFIG") {
		t.Fatalf("rm of a file credential: exit %d %q", code, errs)
	}
}
