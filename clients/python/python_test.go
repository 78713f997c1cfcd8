// Package python_test runs the Python client's own tests (python3 -m
// unittest in clients/python) against a broker built from this module, so
// that `go test ./...` covers the Python client as well and a change to the
// broker that breaks it fails here.
package python_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestPythonClient builds the broker and runs the unittest suite with
// TOKENBROKER_BIN naming it. Without python3 (3.9 or later) it skips, so that
// a Go-only machine still passes; with CI set it fails instead, so that CI
// cannot skip the Python client by accident.
func TestPythonClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the broker and runs the Python tests")
	}
	ci := os.Getenv("CI") != ""
	python, err := exec.LookPath("python3")
	if err == nil {
		// The package's floor: older ones lack what it uses.
		err = exec.Command(python, "-c", "import sys; sys.exit(sys.version_info < (3, 9))").Run()
	}
	if err != nil {
		if ci {
			t.Fatalf("python3 3.9 or later is not available (%v): CI is set, so the Python client must be tested", err)
		}
		t.Skipf("python3 3.9 or later is not available (%v): the Python client is not tested", err)
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

	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "discover", "-s", "tests", "-v")
	// No __pycache__ left in the source tree.
	cmd.Env = append(os.Environ(), "TOKENBROKER_BIN="+bin, "PYTHONDONTWRITEBYTECODE=1")
	// The broker the tests start may hold the output pipe if python is
	// killed.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest in clients/python: %v\n%s", err, out)
	}
	t.Logf("python3 -m unittest in clients/python:\n%s", out)
}
