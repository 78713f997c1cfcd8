package testkit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Module is this module's path.
const Module = "github.com/tokenbroker/tokenbroker"

// LinksNothingOfTheServer fails t if the package in the current directory,
// whose import path is self, depends on the broker's server side: the
// embedded nats-server, hollywood, Prometheus, or any package of this
// module but self and allowed. It is for the packages a light client
// links: an application that only asks for tokens must not link a broker.
func LinksNothingOfTheServer(t *testing.T, self string, allowed ...string) {
	t.Helper()
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
	ok := map[string]bool{self: true}
	for _, p := range allowed {
		ok[p] = true
	}
	var found bool
	for _, pkg := range strings.Fields(string(out)) {
		found = found || pkg == self
		switch {
		case strings.HasPrefix(pkg, "github.com/nats-io/nats-server"),
			strings.HasPrefix(pkg, "github.com/anthdm/hollywood"),
			strings.HasPrefix(pkg, "github.com/prometheus/"),
			strings.HasPrefix(pkg, Module) && !ok[pkg]:
			t.Errorf("%s depends on %s", self, pkg)
		}
	}
	if !found {
		t.Fatalf("go list -deps did not list %s itself:\n%s", self, out)
	}
}
