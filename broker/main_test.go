package broker_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// suite gathers every log the package's brokers wrote and every token its
// fake IdPs issued, so that TestMain can check, once all tests have run,
// that no log line anywhere holds a password, a secret, or any access or
// refresh token.
var suite suiteState

type suiteState struct {
	mu    sync.Mutex
	sinks []*testkit.LogBuffer
	idps  []*fakeidp.Server
}

func newLogSink() *testkit.LogBuffer {
	s := &testkit.LogBuffer{}
	suite.mu.Lock()
	suite.sinks = append(suite.sinks, s)
	suite.mu.Unlock()
	return s
}

func (st *suiteState) addIdP(idp *fakeidp.Server) {
	st.mu.Lock()
	st.idps = append(st.idps, idp)
	st.mu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := scanLogs(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: secrets in logs:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func scanLogs() error {
	suite.mu.Lock()
	defer suite.mu.Unlock()
	secrets := []string{password, secret, user, "wrong-password"}
	for _, idp := range suite.idps {
		secrets = append(secrets, idp.IssuedTokens()...)
	}
	lines := 0
	for _, s := range suite.sinks {
		logs := s.String()
		lines += strings.Count(logs, "\n")
		for _, secret := range secrets {
			if strings.Contains(logs, secret) {
				return fmt.Errorf("a log holds %.8s...", secret)
			}
		}
	}
	switch {
	case len(suite.sinks) == 0:
		return nil // no broker ran (go test -run chose other tests)
	case lines == 0:
		return fmt.Errorf("brokers ran but no log line was captured: the check checked nothing")
	}
	fmt.Printf("scanned %d log lines of %d brokers for %d secrets and tokens: none found\n", lines, len(suite.sinks), len(secrets))
	return nil
}
