package broker_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/registry"
	"github.com/tokenbroker/tokenbroker/wire"
)

// seen is how soon every broker must act on a change of the registry.
const seen = time.Second

// admin sends an admin request and returns the reply, or the error the
// broker answered.
func admin(t *testing.T, nc *nats.Conn, subject string, body any, reply any) *tokenbroker.Error {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subject, data, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if e := wire.DecodeError(msg); e != nil {
		return e
	}
	if reply != nil {
		if err := json.Unmarshal(msg.Data, reply); err != nil {
			t.Fatalf("%s: reply %q: %v", subject, msg.Data, err)
		}
	}
	return nil
}

// askNamed asks for a named credential on its own subject and returns the
// error code answered, 0 for a token.
func askNamed(nc *nats.Conn, name string) (int, tokenbroker.Reply) {
	msg, err := nc.Request("token.request."+name, nil, 5*time.Second)
	if err != nil {
		return -1, tokenbroker.Reply{}
	}
	return codeOf(msg)
}

func TestRegistryPutAndRmReachEveryBrokerWithinASecond(t *testing.T) {
	ns := natstest.StartJetStream(t)
	idp := newIdP(t)
	idp.AddClient("hr-client", "hr-secret-value")
	bs := brokers(t, 2, idp, ns.ClientURL(), 0)
	callers := []*nats.Conn{connectTo(t, bs[0]), connectTo(t, bs[1])}
	nc := natstest.Connect(t, ns)
	failed, err := nc.SubscribeSync("token.failed.hr")
	if err != nil {
		t.Fatal(err)
	}
	subjects := wire.Subjects{}

	hr := config.Credential{Name: "hr", Grant: config.GrantClientCredentials, TokenEndpoint: idp.V2TokenURL(),
		ClientID: "hr-client", ClientSecret: "hr-secret-value", Scope: brokertest.Resource + "/.default", KeepWarm: true}
	var put wire.AdminPutReply
	if e := admin(t, nc, subjects.AdminCredentialPut(), wire.AdminPutRequest{Credentials: []wire.Credential{hr.Wire()}}, &put); e != nil {
		t.Fatalf("put: %+v", e)
	}
	if len(put.Put) != 1 || put.Put[0] != "hr" || len(put.Warnings) != 0 {
		t.Fatalf("put reply: %+v", put)
	}
	// Each broker answers on its own connection, which NATS may route to
	// either: ask through both until each has served it.
	for i, c := range callers {
		testkit.Until(t, seen, "broker "+string(rune('0'+i))+" serves the put credential", func() bool {
			code, r := askNamed(c, "hr")
			return code == 0 && r.AccessToken != ""
		})
	}
	for _, b := range bs {
		if got := b.Router().Status().Named; len(got) != 2 || got[1].CredentialID != "hr" {
			t.Fatalf("a broker does not serve hr: %+v", got)
		}
	}

	// The stored value holds no secret in clear.
	raw := rawRegistry(t, ns.ClientURL())
	if v, ok := raw["hr"]; !ok || strings.Contains(string(v), "hr-secret-value") {
		t.Fatalf("registry value missing or in clear: %q", v)
	}

	var ls wire.AdminListReply
	if e := admin(t, nc, subjects.AdminCredentialLs(), struct{}{}, &ls); e != nil {
		t.Fatalf("ls: %+v", e)
	}
	if len(ls.Credentials) != 2 || ls.Credentials[0].Name != "app" || ls.Credentials[1].Source != "registry" ||
		ls.Credentials[1].Secrets[0] != "client_secret" {
		t.Fatalf("ls: %+v", ls)
	}
	if data, _ := json.Marshal(ls); strings.Contains(string(data), "hr-secret-value") {
		t.Fatal("ls shows a secret")
	}

	var rm wire.AdminRmReply
	if e := admin(t, nc, subjects.AdminCredentialRm(), wire.AdminNameRequest{Name: "hr"}, &rm); e != nil || rm.Removed != "hr" {
		t.Fatalf("rm: %+v %+v", rm, e)
	}
	for i, c := range callers {
		testkit.Until(t, seen, "broker "+string(rune('0'+i))+" answers 404 for the removed credential", func() bool {
			code, _ := askNamed(c, "hr")
			return code == tokenbroker.CodeNotFound
		})
	}
	msg, err := failed.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no token.failed.hr after rm: %v", err)
	}
	if !strings.Contains(string(msg.Data), tokenbroker.OAuthUnknownCredential) {
		t.Fatalf("failed event: %s", msg.Data)
	}
	if _, ok := rawRecords(t, ns.ClientURL())["hr"]; ok {
		t.Fatal("the removed credential's stored token is still there")
	}
	if e := admin(t, nc, subjects.AdminCredentialRm(), wire.AdminNameRequest{Name: "hr"}, nil); e == nil || e.Code != tokenbroker.CodeNotFound {
		t.Fatalf("second rm: %+v, want 404", e)
	}
	// A credential of the file cannot be removed from the registry.
	if e := admin(t, nc, subjects.AdminCredentialRm(), wire.AdminNameRequest{Name: brokertest.App}, nil); e == nil || e.Code != 409 || e.OAuth != wire.AdminInFile {
		t.Fatalf("rm of a file credential: %+v, want 409", e)
	}
}

func TestRegistryPutIsValidatedAsTheFileIs(t *testing.T) {
	ns := natstest.StartJetStream(t)
	idp := newIdP(t)
	bs := brokers(t, 1, idp, ns.ClientURL(), 0)
	nc := connectTo(t, bs[0])
	subjects := wire.Subjects{}
	bad := wire.Credential{Name: "bad", ClientID: "x", Grant: "client_credentials", ClientSecret: "leak-me-not"}
	e := admin(t, nc, subjects.AdminCredentialPut(), wire.AdminPutRequest{Credentials: []wire.Credential{bad}}, nil)
	if e == nil || e.Code != tokenbroker.CodeInvalidRequest || !strings.Contains(e.Description, `credential "bad": token_endpoint is required`) {
		t.Fatalf("invalid put: %+v", e)
	}
	if strings.Contains(e.Description, "leak-me-not") {
		t.Fatal("the error quotes the secret")
	}
	if e := admin(t, nc, subjects.AdminCredentialPut(), json.RawMessage(`{"credentials":[{"name":1}]}`), nil); e == nil || e.Code != tokenbroker.CodeInvalidRequest {
		t.Fatalf("wrong type: %+v", e)
	}
	if e := admin(t, nc, subjects.AdminCredentialShow(), wire.AdminNameRequest{Name: "nope"}, nil); e == nil || e.Code != tokenbroker.CodeNotFound {
		t.Fatalf("show unknown: %+v", e)
	}
	// A name the file declares: stored, with a warning, and the file's served.
	dup := config.Credential{Name: brokertest.App, Grant: config.GrantClientCredentials, TokenEndpoint: idp.V2TokenURL(),
		ClientID: "other", ClientSecret: "other-secret"}
	var put wire.AdminPutReply
	if e := admin(t, nc, subjects.AdminCredentialPut(), wire.AdminPutRequest{Credentials: []wire.Credential{dup.Wire()}}, &put); e != nil {
		t.Fatalf("put over a file credential: %+v", e)
	}
	if len(put.Warnings) != 1 || !strings.Contains(put.Warnings[0], "TOKENBROKER_CONFIG") {
		t.Fatalf("no warning for a name the file declares: %+v", put)
	}
	var info wire.AdminCredentialInfo
	if e := admin(t, nc, subjects.AdminCredentialShow(), wire.AdminNameRequest{Name: brokertest.App}, &info); e != nil {
		t.Fatal(e)
	}
	if info.Source != "file" || info.ClientID != brokertest.App || !info.Shadowed {
		t.Fatalf("the file's credential is not the one served: %+v", info)
	}
}

func TestWithoutAKeyTheRegistryIsRefusedClearly(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	subjects := wire.Subjects{}
	hr := wire.Credential{Name: "hr", ClientID: "x"}
	got := admin(t, e.nc, subjects.AdminCredentialPut(), wire.AdminPutRequest{Credentials: []wire.Credential{hr}}, nil)
	if got == nil || got.Code != tokenbroker.CodeUnavailable || got.OAuth != wire.AdminRegistryOff || !strings.Contains(got.Description, "TOKENBROKER_KEY") {
		t.Fatalf("put without a key: %+v", got)
	}
	// ls still shows what the file declares.
	var ls wire.AdminListReply
	if err := admin(t, e.nc, subjects.AdminCredentialLs(), struct{}{}, &ls); err != nil || len(ls.Credentials) != 1 {
		t.Fatalf("ls without a key: %+v %+v", ls, err)
	}
}

// connectTo connects to a broker's NATS.
func connectTo(t *testing.T, b interface{ ClientURL() string }) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// rawRegistry reads the registry bucket's values as stored.
func rawRegistry(t *testing.T, url string) map[string][]byte {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstreamNew(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, ctx := bucketOf(t, js, registry.DefaultBucket)
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = e.Value()
	}
	return out
}

// replaceFile writes a file for a test, replacing it by a rename as
// Kubernetes and most deploy tools do.
func replaceFile(t *testing.T, path, contents string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func jetstreamNew(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.New(nc) }

func bucketOf(t *testing.T, js jetstream.JetStream, bucket string) (jetstream.KeyValue, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv, ctx
}
