package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/registry"
	"github.com/tokenbroker/tokenbroker/wire"
)

// router records what the catalog asks of the Router.
type router struct {
	puts    []actors.Spec
	removes []string // name, and "!" after it when final
}

func (r *router) Put(s actors.Spec) error { r.puts = append(r.puts, s); return nil }
func (r *router) Remove(_ context.Context, name string, final bool) bool {
	if final {
		name += "!"
	}
	r.removes = append(r.removes, name)
	return true
}
func (r *router) Status() actors.Status { return actors.Status{} }

func cred(name, clientID, secret string) config.Credential {
	return config.Credential{Name: name, Grant: config.GrantClientCredentials, TokenEndpoint: "https://idp.example/token",
		ClientID: clientID, ClientSecret: tokenbroker.Secret(secret), RefreshThreshold: time.Minute}
}

func newCatalog(t *testing.T, file ...config.Credential) (*Catalog, *router, *testkit.LogBuffer) {
	t.Helper()
	logs := &testkit.LogBuffer{}
	c, err := New(Options{File: file, Logger: logs.Logger(), Defaults: config.Credential{RefreshThreshold: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	c.Specs()
	r := &router{}
	c.router = r
	return c, r, logs
}

func TestTheFileWinsANameTheRegistryAlsoDeclares(t *testing.T) {
	c, r, logs := newCatalog(t, cred("crm", "file-client", "s1"))
	c.mu.Lock()
	c.reg["crm"] = &registry.Entry{Credential: cred("crm", "registry-client", "s2").Wire()}
	c.reg["hr"] = &registry.Entry{Credential: cred("hr", "hr-client", "s3").Wire()}
	c.apply(context.Background(), false)
	c.mu.Unlock()
	if len(r.puts) != 1 || r.puts[0].Name != "hr" {
		t.Fatalf("puts: %+v, want hr alone", r.puts)
	}
	if c.live["crm"].cred.ClientID != "file-client" || c.live["crm"].source != SourceFile {
		t.Fatalf("crm served from %+v", c.live["crm"])
	}
	if !strings.Contains(logs.String(), "the file's is served") {
		t.Fatal("no warning for the clash")
	}
	// The registry's copy goes: the file's stays, untouched.
	c.mu.Lock()
	delete(c.reg, "crm")
	c.apply(context.Background(), false)
	c.mu.Unlock()
	if len(r.puts) != 1 || len(r.removes) != 0 {
		t.Fatalf("puts %+v removes %v after the shadowed copy left", r.puts, r.removes)
	}
}

func TestASecretChangeReachesTheSecretsWithoutANewSpec(t *testing.T) {
	c, r, _ := newCatalog(t, cred("crm", "crm-client", "old"))
	secrets := c.live["crm"].spec.Secrets
	c.mu.Lock()
	c.file["crm"] = cred("crm", "crm-client", "new")
	c.apply(context.Background(), true)
	c.mu.Unlock()
	if len(r.puts) != 0 {
		t.Fatalf("a secret change put a new spec: %+v", r.puts)
	}
	if c.live["crm"].spec.Secrets != secrets {
		t.Fatal("the secrets holder was replaced, so running jobs would not see the change")
	}
	// Anything else is a new spec; a name that goes is removed, for good
	// when final.
	c.mu.Lock()
	c.file["crm"] = cred("crm", "other-client", "new")
	c.apply(context.Background(), true)
	delete(c.file, "crm")
	c.apply(context.Background(), true)
	c.mu.Unlock()
	if len(r.puts) != 1 || r.puts[0].Endpoint.ClientID != "other-client" {
		t.Fatalf("puts: %+v", r.puts)
	}
	if len(r.removes) != 1 || r.removes[0] != "crm!" {
		t.Fatalf("removes: %v, want crm, final", r.removes)
	}
}

func TestAPutIsValidatedBeforeAnythingIsStored(t *testing.T) {
	c, _, _ := newCatalog(t)
	if _, e := c.Put(context.Background(), wire.AdminPutRequest{Credentials: []wire.Credential{{Name: "x"}}}, ""); e == nil || e.OAuth != wire.AdminRegistryOff {
		t.Fatalf("put without a registry: %+v", e)
	}
	if _, e := c.Remove(context.Background(), "x", ""); e == nil || e.Code != 503 {
		t.Fatalf("rm without a registry: %+v", e)
	}
	if got := secretKinds(config.Credential{ClientSecret: "a", NextClientSecret: "b", AssertionFile: "/f"}); strings.Join(got, ",") != "client_secret (2, rotating),assertion_file" {
		t.Fatalf("secret kinds: %q", got)
	}
}
