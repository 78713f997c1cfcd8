package client_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLinksNothingOfTheServer: an application that only asks for tokens
// links nats.go and golang.org/x/oauth2, and nothing of the broker: not the
// embedded nats-server, not the actors (hollywood), not Prometheus, and no
// package of this module but the root one (the domain types) and wire.
// Importing messaging, say, would pull all of them in.
func TestLinksNothingOfTheServer(t *testing.T) {
	gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gotool); err != nil {
		if gotool, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool to list the dependencies with")
		}
	}
	out, err := exec.Command(gotool, "list", "-deps", ".").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{
		"github.com/tokenbroker/tokenbroker":        true,
		"github.com/tokenbroker/tokenbroker/wire":   true,
		"github.com/tokenbroker/tokenbroker/client": true,
	}
	var found bool
	for _, pkg := range strings.Fields(string(out)) {
		found = found || pkg == "github.com/tokenbroker/tokenbroker/client"
		switch {
		case strings.HasPrefix(pkg, "github.com/nats-io/nats-server"),
			strings.HasPrefix(pkg, "github.com/anthdm/hollywood"),
			strings.HasPrefix(pkg, "github.com/prometheus/"),
			strings.HasPrefix(pkg, "github.com/tokenbroker/tokenbroker") && !allowed[pkg]:
			t.Errorf("client depends on %s", pkg)
		}
	}
	if !found {
		t.Fatalf("go list -deps did not list the package itself:\n%s", out)
	}
}
