package broker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

func TestAFederatedCredentialReadsItsAssertionFileForEachCall(t *testing.T) {
	issuer, err := fakeidp.NewFederatedIssuer("https://oidc.cluster.example")
	if err != nil {
		t.Fatal(err)
	}
	const subject = "system:serviceaccount:crm:broker"
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	replaceFile(t, file, issuer.Mint(subject, time.Hour))
	e := start(t, time.Hour, 10*time.Minute, func(c *config.Config, idp *fakeidp.Server) {
		idp.AddFederatedClient("wi-app", issuer.Issuer(), subject, issuer.PublicKey())
		c.Credentials = append(c.Credentials, config.Credential{Name: "wi", Grant: config.GrantClientAssertion,
			TokenEndpoint: idp.V2TokenURL(), ClientID: "wi-app", AssertionFile: file,
			Scope: brokertest.Resource + "/.default", RefreshThreshold: 10 * time.Minute, KeepWarm: true})
	})
	askName(t, e, "wi")

	// The issuer rotated the token: the next call sends the new one.
	replaceFile(t, file, issuer.Mint(subject, time.Hour))
	if code, _ := askNamedForced(e, "wi"); code != 0 {
		t.Fatalf("after the file was rewritten: %d", code)
	}
	// Not rewritten: the same assertion again, which the IdP refuses as a
	// replay; so each call did read the file.
	code, _ := askNamedForced(e, "wi")
	if code != tokenbroker.CodeRejected {
		t.Fatalf("a replayed assertion: %d, want 401", code)
	}

	// Expired, then missing: refused before the IdP, naming the file in the log.
	calls := e.idp.Calls()
	replaceFile(t, file, issuer.Mint(subject, -time.Minute))
	if code, _ := askNamedForced(e, "wi"); code != tokenbroker.CodeRejected {
		t.Fatalf("an expired assertion: %d, want 401", code)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if code, _ := askNamedForced(e, "wi"); code != tokenbroker.CodeRejected {
		t.Fatalf("a missing assertion file: %d, want 401", code)
	}
	if got := e.idp.Calls(); got != calls {
		t.Fatalf("the IdP was asked with an expired or missing assertion: %d calls, want %d", got, calls)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "assertion_file="+file) || !strings.Contains(logs, "credential_id=wi") {
		t.Fatalf("the log does not name the credential and the file:\n%s", logs)
	}
}
