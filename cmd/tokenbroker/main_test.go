package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

func lookupIn(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// runDemo runs `tokenbroker demo` in-process until the test ends and
// returns its NATS URL and what it printed.
func runDemo(t *testing.T, args ...string) (url string, stdout *testkit.LogBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	stdout, stderr := &testkit.LogBuffer{}, &testkit.LogBuffer{}
	e := env{lookup: lookupIn(map[string]string{"HTTP_ADDR": ""}), stdout: stdout, stderr: stderr, ready: func(u string) { ready <- u }}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"demo", "--nats-listen", "127.0.0.1:0"}, args...), e) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("demo exited %d: %s", code, stderr.String())
		}
	})
	select {
	case url = <-ready:
	case code := <-done:
		t.Fatalf("demo exited %d: %s", code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not start")
	}
	return url, stdout
}

func runCmd(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	out, errb := &testkit.LogBuffer{}, &testkit.LogBuffer{}
	code = run(context.Background(), args, env{lookup: lookupIn(vars), stdout: out, stderr: errb})
	return code, out.String(), errb.String()
}

func TestDemoServesTokensToTheTokenCommand(t *testing.T) {
	url, printed := runDemo(t)
	for _, want := range []string{demoUser, demoPassword, url, "token --nats-url " + url + " --username " + demoUser} {
		if !strings.Contains(printed.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, printed.String())
		}
	}
	code, out, errs := runCmd(t, nil, "token", "--nats-url", url, "--username", demoUser, "--password", demoPassword)
	if code != exitOK {
		t.Fatalf("token exited %d: %s", code, errs)
	}
	var r tokenbroker.Reply
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.AccessToken == "" || r.Action != tokenbroker.ActionNew {
		t.Fatalf("token printed %q (%v)", out, err)
	}

	code, out, _ = runCmd(t, map[string]string{"NATS_URL": url}, "token", "--credential", demoApp, "--access-token")
	if code != exitOK || strings.Count(strings.TrimSpace(out), ".") != 2 {
		t.Fatalf("token --access-token exited %d, printed %q", code, out)
	}

	code, out, errs = runCmd(t, nil, "token", "--nats-url", url, "--username", demoUser, "--password", "wrong")
	if code != exitError || out != "" || !strings.Contains(errs, "401 invalid_grant") {
		t.Fatalf("wrong password: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestWatchPrintsRefreshEvents(t *testing.T) {
	url, _ := runDemo(t, "--lifetime", "3s")
	out := &testkit.LogBuffer{}
	watching := make(chan int, 1)
	go func() {
		watching <- run(context.Background(), []string{"watch", "--nats-url", url, "--count", "2", demoApp},
			env{lookup: lookupIn(nil), stdout: out, stderr: io.Discard})
	}()
	// The first request makes the credential warm; its timer refreshes it
	// with no further request. watch may subscribe after the first event,
	// so wait for two to be sure one is a proactive refresh.
	testkit.Until(t, 20*time.Second, "a token from the demo", func() bool {
		code, _, _ := runCmd(t, nil, "token", "--nats-url", url, "--credential", demoApp)
		return code == exitOK
	})
	select {
	case code := <-watching:
		if code != exitOK {
			t.Fatalf("watch exited %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("watch saw fewer than 2 events: %q", out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `refreshed demo-app action="refreshed existing token"`) {
		t.Fatalf("watch printed %q", out.String())
	}
	if strings.Contains(out.String(), "eyJ") {
		t.Fatal("watch printed an access token without --json")
	}
}

func TestStatusShowsTheBrokerAndItsCredentials(t *testing.T) {
	url, _ := runDemo(t)
	if code, _, errs := runCmd(t, nil, "token", "--nats-url", url, "--credential", demoApp); code != exitOK {
		t.Fatalf("token: %s", errs)
	}
	code, out, errs := runCmd(t, nil, "status", "--nats-url", url, "--wait", "500ms")
	if code != exitOK {
		t.Fatalf("status exited %d: %s", code, errs)
	}
	if !regexp.MustCompile(`(?m)^\S+\s+0\.1\.0\s+\S+\s+1\s+0\s+1\s+0\s*$`).MatchString(out) {
		t.Fatalf("want a broker line with 1 request, 0 errors, 1 credential, 0 users in:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)\sdemo-app\s+yes\s+\S+\s+\S+\s+-\s*$`).MatchString(out) {
		t.Fatalf("credential line in:\n%s", out)
	}
}

func TestDemoIdPServesTokens(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &testkit.LogBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo-idp", "--addr", "127.0.0.1:0"},
			env{lookup: lookupIn(map[string]string{"DEMO_APP_SECRET": "s3"}), stdout: out, stderr: io.Discard})
	}()
	var v2 string
	testkit.Until(t, 20*time.Second, "the demo IdP listening", func() bool {
		m := regexp.MustCompile(`v2: (\S+)`).FindStringSubmatch(out.String())
		if m != nil {
			v2 = m[1]
		}
		return m != nil
	})
	resp, err := http.PostForm(v2, url.Values{"grant_type": {"client_credentials"}, "client_id": {demoApp},
		"client_secret": {"s3"}, "scope": {demoResource + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"access_token"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("demo-idp exited %d", code)
	}
}

func TestBadConfigurationStopsStartUpWithOneLine(t *testing.T) {
	code, _, errs := runCmd(t, map[string]string{"REFRESH_THRESHOLD": "soon", "HTTP_ADDR": ""}, "serve", "--nats-listen", "127.0.0.1:0")
	if code != exitUsage || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "REFRESH_THRESHOLD") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, cmd := range []string{"serve", "demo", "token", "watch", "status", "credential", "demo-idp"} {
		t.Run(cmd, func(t *testing.T) {
			code, _, errs := runCmd(t, nil, cmd, "--help")
			if code != exitOK || !strings.Contains(errs, "Usage: tokenbroker") {
				t.Fatalf("exit %d, help %q", code, errs)
			}
		})
	}
}

// TestDemoBinary builds the command and runs `tokenbroker demo` as the
// README does, asks it for a token, and stops it with SIGTERM.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "tokenbroker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "demo", "--nats-listen", "127.0.0.1:0", "--http-addr", "")
	cmd.Env = append(os.Environ(), "NATS_URL=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testkit.LogBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	urls := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`NATS server:\s+(nats://\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		exited <- cmd.Wait()
	}()
	var url string
	select {
	case url = <-urls:
	case err := <-exited:
		t.Fatalf("demo exited: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo printed no NATS URL")
	}
	out, err := exec.Command(bin, "token", "--nats-url", url, "--username", demoUser, "--password", demoPassword).Output()
	if err != nil || !strings.Contains(string(out), `"accesstoken":"`) {
		t.Fatalf("token: %v: %s", err, out)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo did not stop on SIGTERM")
	}
	if !strings.Contains(stderr.String(), "msg=stopped") || strings.Contains(stderr.String(), demoPassword) {
		t.Fatalf("logs:\n%s", stderr.String())
	}
}
