// Package typescript_test runs the TypeScript client's own tests (npm test
// in clients/typescript) against a broker built from this module, so that
// `go test ./...` covers the TypeScript client as well and a change to the
// broker that breaks it fails here.
package typescript_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestTypeScriptClient builds the broker and runs `npm test` with
// TOKENBROKER_BIN naming it. Without node_modules (npm ci not run) or npm it
// skips, so that a Go-only checkout still passes; with CI set it fails
// instead, so that CI cannot skip the TypeScript client by accident.
func TestTypeScriptClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the broker and runs npm test")
	}
	ci := os.Getenv("CI") != ""
	cannotRun := func(why string) {
		t.Helper()
		if ci {
			t.Fatalf("%s: CI is set, so the TypeScript client must be tested: run `npm ci` in clients/typescript first", why)
		}
		t.Skipf("%s: run `npm ci` in clients/typescript to test the TypeScript client", why)
	}
	if _, err := os.Stat("node_modules"); err != nil {
		cannotRun("clients/typescript/node_modules is missing")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		cannotRun("npm is not installed")
	}

	ctx := context.Background()
	if deadline, ok := t.Deadline(); ok {
		// Leave time to report the output before go test's own timeout.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-30*time.Second))
		defer cancel()
	}

	bin := filepath.Join(t.TempDir(), "tokenbroker")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tokenbroker")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tokenbroker: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(ctx, npm, "test")
	cmd.Env = append(os.Environ(), "TOKENBROKER_BIN="+bin)
	// npm's children may hold the output pipe after npm is killed.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm test in clients/typescript: %v\n%s", err, out)
	}
	t.Logf("npm test in clients/typescript:\n%s", out)
}
