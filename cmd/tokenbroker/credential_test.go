package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/wire"
)

// fakeAdmin answers the admin subjects as a broker would, with canned
// answers, and records what it was sent.
type fakeAdmin struct {
	t        *testing.T
	subjects wire.Subjects
	mu       sync.Mutex
	answers  map[string]answer // by subject
	got      []received
}

// answer is a canned answer: err, when set, else data.
type answer struct {
	data []byte
	err  *tokenbroker.Error
}

type received struct {
	subject string
	data    []byte
}

// startFakeAdmin serves the admin subjects under prefix on a NATS server of
// its own, and returns its URL.
func startFakeAdmin(t *testing.T, prefix string) (*fakeAdmin, string) {
	t.Helper()
	s := natstest.StartServer(t)
	f := &fakeAdmin{t: t, subjects: wire.Subjects{Prefix: prefix}, answers: make(map[string]answer)}
	nc := natstest.Connect(t, s)
	svc, err := micro.AddService(nc, micro.Config{Name: "tokenbroker-admin-fake", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	for _, subject := range []string{f.subjects.AdminCredentialPut(), f.subjects.AdminCredentialRm(),
		f.subjects.AdminCredentialLs(), f.subjects.AdminCredentialShow()} {
		name := strings.ReplaceAll(strings.TrimPrefix(subject, f.subjects.Prefix+".admin."), ".", "-")
		if err := svc.AddEndpoint(name, micro.HandlerFunc(f.handle), micro.WithEndpointSubject(subject)); err != nil {
			t.Fatal(err)
		}
	}
	// Once the server has the subscriptions, a command on another
	// connection finds the endpoints rather than no responders.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f, s.ClientURL()
}

func (f *fakeAdmin) handle(r micro.Request) {
	f.mu.Lock()
	f.got = append(f.got, received{subject: r.Subject(), data: append([]byte(nil), r.Data()...)})
	a, ok := f.answers[r.Subject()]
	f.mu.Unlock()
	if !ok {
		a.err = tokenbroker.Errorf(tokenbroker.CodeInternal, tokenbroker.OAuthServerError, "the test set no answer on %s", r.Subject())
	}
	var err error
	if a.err != nil {
		err = r.Error(strconv.Itoa(a.err.Code), wire.HeaderValue(a.err.Description), tokenbroker.EncodeError(a.err))
	} else {
		err = r.Respond(a.data)
	}
	if err != nil {
		// Unanswered, the command would wait out its timeout.
		f.t.Errorf("the fake could not answer on %s: %v", r.Subject(), err)
	}
}

// answer has the fake answer v (a value to encode, or a *tokenbroker.Error)
// on subject.
func (f *fakeAdmin) answer(subject string, v any) {
	f.t.Helper()
	var a answer
	if e, ok := v.(*tokenbroker.Error); ok {
		a.err = e
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			f.t.Fatal(err)
		}
		a.data = b
	}
	f.mu.Lock()
	f.answers[subject] = a
	f.mu.Unlock()
}

// received returns what the fake was sent so far, and forgets it. A
// command's request is in before the command returns: the fake records
// it before it answers.
func (f *fakeAdmin) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	got := f.got
	f.got = nil
	return got
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// noSecret fails t when any output holds any secret.
func noSecret(t *testing.T, secrets []string, outputs ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, out := range outputs {
			if strings.Contains(out, s) {
				t.Fatalf("a secret was printed: %q", out)
			}
		}
	}
}

const (
	currentSecret = "s3cr3t-current-from-file"
	nextSecret    = "s3cr3t-next-from-file"
	inlinePass    = "inline-pa55w0rd"
)

var putSecrets = []string{currentSecret, nextSecret, inlinePass}

// credentialsFile writes a file of two credentials, the first with a secret
// file in rotation (two secrets), the second with an inline password and a
// refresh_threshold of its own, and a nats section that must stay here.
func credentialsFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "crm-prod.secret", currentSecret+"\n"+nextSecret+"\n")
	return writeFile(t, dir, "credentials.yaml", `x-common: &common
  token_endpoint: https://login.example.com/tenant/oauth2/v2.0/token
nats:
  url: nats://nats.internal.example:4222
credentials:
  - name: crm-prod
    <<: *common
    client_id: crm-client
    client_secret_file: `+secretFile+`
    scope: https://crm.example.com/.default
  - name: erp
    <<: *common
    client_id: erp-client
    grant: password
    username: svc-erp
    password: `+inlinePass+`
    refresh_threshold: 120
`)
}

func TestCredentialPutSendsTheFileWithItsSecrets(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	fake.answer(fake.subjects.AdminCredentialPut(), wire.AdminPutReply{Put: []string{"crm-prod", "erp"},
		Warnings: []string{`TOKENBROKER_CONFIG also declares "erp"; its own wins on broker b1`}})
	path := credentialsFile(t)

	code, out, errs := runCmd(t, map[string]string{"NATS_URL": url}, "credential", "put", path)
	if code != exitOK || out != "put crm-prod\nput erp\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if errs != "warning: TOKENBROKER_CONFIG also declares \"erp\"; its own wins on broker b1\n" {
		t.Fatalf("stderr %q", errs)
	}
	noSecret(t, putSecrets, out, errs)

	got := fake.received()
	if len(got) != 1 || got[0].subject != "token.admin.credential.put" {
		t.Fatalf("received %v", got)
	}
	if strings.Contains(string(got[0].data), "nats.internal.example") {
		t.Fatalf("the nats section was sent: %s", got[0].data)
	}
	var req wire.AdminPutRequest
	if err := json.Unmarshal(got[0].data, &req); err != nil || len(req.Credentials) != 2 {
		t.Fatalf("request %s (%v)", got[0].data, err)
	}
	crm, erp := req.Credentials[0], req.Credentials[1]
	if crm.Name != "crm-prod" || crm.ClientSecret != currentSecret || crm.NextClientSecret != nextSecret ||
		crm.TokenEndpoint != "https://login.example.com/tenant/oauth2/v2.0/token" || crm.ClientID != "crm-client" ||
		crm.Grant != "client_credentials" || crm.Scope != "https://crm.example.com/.default" ||
		crm.RefreshThreshold == nil || *crm.RefreshThreshold != 600 || !crm.KeepWarm {
		t.Fatalf("crm-prod sent as %s", got[0].data)
	}
	if erp.Name != "erp" || erp.Grant != "password" || erp.Username != "svc-erp" || erp.Password != inlinePass ||
		erp.RefreshThreshold == nil || *erp.RefreshThreshold != 120 {
		t.Fatalf("erp sent as %s", got[0].data)
	}
}

// The default refresh_threshold is the broker's setting, as a variable or
// a flag; the flag wins.
func TestCredentialPutRefreshThresholdDefault(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	fake.answer(fake.subjects.AdminCredentialPut(), wire.AdminPutReply{Put: []string{"crm-prod", "erp"}})
	path := credentialsFile(t)
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want int64
	}{
		{map[string]string{"NATS_URL": url, "REFRESH_THRESHOLD": "300"}, nil, 300},
		{map[string]string{"NATS_URL": url, "REFRESH_THRESHOLD": "300"}, []string{"--refresh-threshold", "200"}, 200},
		{nil, []string{"--nats-url", url, "--refresh-threshold=0"}, 0},
	} {
		args := append(append([]string{"credential", "put"}, tc.args...), path)
		if code, _, errs := runCmd(t, tc.vars, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		got := fake.received()
		var req wire.AdminPutRequest
		if len(got) != 1 || json.Unmarshal(got[0].data, &req) != nil || len(req.Credentials) != 2 {
			t.Fatalf("%v: received %d requests", args, len(got))
		}
		if rt := req.Credentials[0].RefreshThreshold; rt == nil || *rt != tc.want {
			t.Fatalf("%v: refresh_threshold %v, want %d", args, rt, tc.want)
		}
		if rt := req.Credentials[1].RefreshThreshold; rt == nil || *rt != 120 {
			t.Fatalf("%v: the file's own refresh_threshold became %v", args, rt)
		}
	}
	code, _, errs := runCmd(t, map[string]string{"NATS_URL": url, "REFRESH_THRESHOLD": "soon"}, "credential", "put", path)
	if code != exitUsage || !strings.Contains(errs, "REFRESH_THRESHOLD") {
		t.Fatalf("REFRESH_THRESHOLD=soon: exit %d, %q", code, errs)
	}
	if got := fake.received(); len(got) != 0 {
		t.Fatalf("sent %d requests with a bad REFRESH_THRESHOLD", len(got))
	}
}

// startupError runs the broker's start-up on TOKENBROKER_CONFIG=path and
// returns what it printed. The context is done already, so that a file
// start-up accepted would stop the broker at once rather than hang.
func startupErrorFor(t *testing.T, path string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, errs := &testkit.LogBuffer{}, &testkit.LogBuffer{}
	vars := map[string]string{"TOKENBROKER_CONFIG": path, "HTTP_ADDR": "", "DATA_DIR": t.TempDir()}
	code := run(ctx, []string{"serve", "--nats-listen", "127.0.0.1:0"}, env{lookup: lookupIn(vars), stdout: out, stderr: errs})
	if code != exitUsage {
		t.Fatalf("start-up accepted %s: exit %d, %s", path, code, errs.String())
	}
	return errs.String()
}

func TestCredentialPutRefusesAnInvalidFileAsStartUpDoes(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	dir := t.TempDir()
	const inline = "inline-hunter2"
	for name, content := range map[string]string{
		"unknown key": "credentials:\n  - name: crm-prod\n    token_endpoint: https://login.example.com/t\n" +
			"    client_id: c\n    client_secret: " + inline + "\n    scop: x\n",
		"missing secret file": "credentials:\n  - name: crm-prod\n    token_endpoint: https://login.example.com/t\n" +
			"    client_id: c\n    client_secret_file: " + filepath.Join(dir, "no-such-file") + "\n",
		"yaml syntax": "credentials:\n  - name: [crm-prod\n",
		"no client_id": "credentials:\n  - name: crm-prod\n    token_endpoint: https://login.example.com/t\n" +
			"    client_secret: " + inline + "\n",
		"nats section": "nats:\n  password: " + inline + "\ncredentials: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(name, " ", "-")+".yaml", content)
			want := startupErrorFor(t, path)
			code, out, errs := runCmd(t, map[string]string{"NATS_URL": url}, "credential", "put", path)
			if code != exitError || out != "" || errs != want {
				t.Fatalf("exit %d, stdout %q, stderr\n%q\nwant start-up's\n%q", code, out, errs, want)
			}
			if !strings.HasPrefix(errs, "tokenbroker: config: "+path) || strings.Count(errs, "\n") != 1 {
				t.Fatalf("not one line naming the file: %q", errs)
			}
			noSecret(t, []string{inline}, out, errs)
			if got := fake.received(); len(got) != 0 {
				t.Fatalf("an invalid file was sent: %d requests", len(got))
			}
		})
	}
}

func TestCredentialPutUnreadableOrEmptyFile(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	code, _, errs := runCmd(t, map[string]string{"NATS_URL": url}, "credential", "put", missing)
	if code != exitError || errs != "tokenbroker: cannot read \""+missing+"\": no such file or directory\n" {
		t.Fatalf("missing file: exit %d, %q", code, errs)
	}
	empty := writeFile(t, dir, "empty.yaml", "nats:\n  url: nats://elsewhere:4222\n")
	code, _, errs = runCmd(t, map[string]string{"NATS_URL": url}, "credential", "put", empty)
	if code != exitError || errs != "tokenbroker: "+empty+" declares no credentials\n" {
		t.Fatalf("no credentials: exit %d, %q", code, errs)
	}
	if got := fake.received(); len(got) != 0 {
		t.Fatalf("sent %d requests", len(got))
	}
}

func TestCredentialRm(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	vars := map[string]string{"NATS_URL": url}
	subject := fake.subjects.AdminCredentialRm()

	fake.answer(subject, wire.AdminRmReply{Removed: "crm-prod"})
	code, out, errs := runCmd(t, vars, "credential", "rm", "crm-prod")
	if code != exitOK || out != "removed crm-prod\n" || errs != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := fake.received(); len(got) != 1 || string(got[0].data) != `{"name":"crm-prod"}` {
		t.Fatalf("received %v", got)
	}

	for _, tc := range []struct {
		err  *tokenbroker.Error
		want string
	}{
		{&tokenbroker.Error{Code: 404, OAuth: tokenbroker.OAuthUnknownCredential, Description: "no such credential"},
			"tokenbroker: no credential named \"crm-prod\"\n"},
		{&tokenbroker.Error{Code: 409, OAuth: wire.AdminInFile, Description: "in the file"},
			"tokenbroker: credential \"crm-prod\" is defined in TOKENBROKER_CONFIG; change it there\n"},
		{&tokenbroker.Error{Code: 400, OAuth: tokenbroker.OAuthInvalidRequest, Description: "bad name"},
			"tokenbroker: error 400 invalid_request: bad name\n"},
	} {
		fake.answer(subject, tc.err)
		code, out, errs := runCmd(t, vars, "credential", "rm", "crm-prod")
		if code != exitError || out != "" || errs != tc.want {
			t.Fatalf("%d: exit %d, stdout %q, stderr %q", tc.err.Code, code, out, errs)
		}
	}
}

func TestCredentialRegistryUnavailable(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	off := &tokenbroker.Error{Code: 503, OAuth: wire.AdminRegistryOff, Description: "no TOKENBROKER_KEY"}
	for _, s := range []string{fake.subjects.AdminCredentialPut(), fake.subjects.AdminCredentialRm(),
		fake.subjects.AdminCredentialLs(), fake.subjects.AdminCredentialShow()} {
		fake.answer(s, off)
	}
	const want = "tokenbroker: the brokers keep no credential registry: start them with TOKENBROKER_KEY (it encrypts the registry's secrets)\n"
	path := credentialsFile(t)
	for _, args := range [][]string{{"put", path}, {"rm", "x"}, {"ls"}, {"show", "x"}} {
		code, out, errs := runCmd(t, map[string]string{"NATS_URL": url}, append([]string{"credential"}, args...)...)
		if code != exitError || out != "" || errs != want {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
		noSecret(t, putSecrets, out, errs)
	}
}

func TestCredentialLs(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	expires := time.Now().Add(52*time.Minute + 30*time.Second).Unix()
	rep := wire.AdminListReply{Broker: "b1", Credentials: []wire.AdminCredentialInfo{
		{Name: "zeta", Source: "registry", Grant: "client_credentials", TokenEndpoint: "https://login.example.com/z",
			ClientID: "zeta-client", RefreshThreshold: 600, KeepWarm: true, ExpiresOn: strconv.FormatInt(expires, 10)},
		{Name: "alpha", Source: "file", Grant: "password", TokenEndpoint: "https://login.example.com/a",
			ClientID: "alpha-client", Username: "svc", Shadowed: true},
	}}
	fake.answer(fake.subjects.AdminCredentialLs(), rep)

	code, out, errs := runCmd(t, map[string]string{"NATS_URL": url}, "credential", "ls")
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 lines:\n%s", out)
	}
	for i, re := range []string{
		`^NAME\s+SOURCE\s+GRANT\s+ENDPOINT\s+CLIENT ID\s+EXPIRES$`,
		`^alpha\s+file \(hides registry\)\s+password\s+https://login\.example\.com/a\s+alpha-client\s+-$`,
		`^zeta\s+registry\s+client_credentials\s+https://login\.example\.com/z\s+zeta-client\s+52m$`,
	} {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Fatalf("line %d %q does not match %s in:\n%s", i, lines[i], re, out)
		}
	}
	if got := fake.received(); len(got) != 1 || len(got[0].data) != 0 {
		t.Fatalf("received %v", got)
	}

	code, out, _ = runCmd(t, map[string]string{"NATS_URL": url}, "credential", "ls", "--json")
	want, _ := json.Marshal(rep)
	if code != exitOK || out != string(want)+"\n" {
		t.Fatalf("--json: exit %d, %q", code, out)
	}
}

func TestCredentialShow(t *testing.T) {
	fake, url := startFakeAdmin(t, "")
	expires := time.Now().Add(2*time.Hour + 5*time.Minute + 30*time.Second).Unix()
	info := wire.AdminCredentialInfo{Name: "crm-prod", Source: "registry", Grant: "client_credentials",
		TokenEndpoint: "https://login.example.com/t", ClientID: "crm-client", Scope: "https://crm.example.com/.default",
		RefreshThreshold: 600, KeepWarm: true, Secrets: []string{"client_secret (2, rotating)"},
		ExpiresOn: strconv.FormatInt(expires, 10), UpdatedAt: "2026-12-02T18:00:00Z"}
	fake.answer(fake.subjects.AdminCredentialShow(), info)

	// The name after a flag, and a flag after the name.
	code, out, errs := runCmd(t, nil, "credential", "show", "--nats-url", url, "crm-prod", "--timeout", "10s")
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := "name: crm-prod\nsource: registry\ngrant: client_credentials\ntoken_endpoint: https://login.example.com/t\n" +
		"client_id: crm-client\nscope: https://crm.example.com/.default\nrefresh_threshold: 10m0s\nkeep_warm: true\n" +
		"secrets: client_secret (2, rotating)\nexpires_on: " + time.Unix(expires, 0).UTC().Format(time.RFC3339) + " (in 2h5m)\n" +
		"updated_at: 2026-12-02T18:00:00Z\n"
	if out != want {
		t.Fatalf("printed\n%s\nwant\n%s", out, want)
	}
	if got := fake.received(); len(got) != 1 || string(got[0].data) != `{"name":"crm-prod"}` {
		t.Fatalf("received %v", got)
	}

	code, out, _ = runCmd(t, map[string]string{"NATS_URL": url}, "credential", "show", "--json", "crm-prod")
	raw, _ := json.Marshal(info)
	if code != exitOK || out != string(raw)+"\n" {
		t.Fatalf("--json: exit %d, %q", code, out)
	}

	fake.answer(fake.subjects.AdminCredentialShow(), &tokenbroker.Error{Code: 404, OAuth: tokenbroker.OAuthUnknownCredential, Description: "unknown"})
	code, out, errs = runCmd(t, map[string]string{"NATS_URL": url}, "credential", "show", "nope")
	if code != exitError || out != "" || errs != "tokenbroker: no credential named \"nope\"\n" {
		t.Fatalf("404: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// SUBJECT_PREFIX and --subject-prefix both move the admin subjects.
func TestCredentialSubjectPrefix(t *testing.T) {
	fake, url := startFakeAdmin(t, "acme")
	fake.answer(fake.subjects.AdminCredentialLs(), wire.AdminListReply{})
	for _, tc := range []struct {
		vars map[string]string
		args []string
	}{
		{map[string]string{"NATS_URL": url, "SUBJECT_PREFIX": "acme"}, nil},
		{map[string]string{"NATS_URL": url}, []string{"--subject-prefix", "acme"}},
		{nil, []string{"--nats-url", url, "--subject-prefix=acme"}},
	} {
		code, out, errs := runCmd(t, tc.vars, append([]string{"credential", "ls"}, tc.args...)...)
		if code != exitOK || !strings.HasPrefix(out, "NAME") {
			t.Fatalf("%v %v: exit %d, %q %q", tc.vars, tc.args, code, out, errs)
		}
		if got := fake.received(); len(got) != 1 || got[0].subject != "acme.admin.credential.ls" {
			t.Fatalf("received %v", got)
		}
	}
}

func TestCredentialWithoutBroker(t *testing.T) {
	s := natstest.StartServer(t)
	code, out, errs := runCmd(t, map[string]string{"NATS_URL": s.ClientURL()}, "credential", "ls")
	want := "tokenbroker: no broker answers on token.admin.credential.ls (is one running, and may this NATS user publish there?)\n"
	if code != exitError || out != "" || errs != want {
		t.Fatalf("no responders: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A subscriber that never answers: the command waits --timeout.
	silent := natstest.Connect(t, s)
	if _, err := silent.Subscribe(wire.Subjects{}.AdminCredentialRm(), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := silent.Flush(); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCmd(t, map[string]string{"NATS_URL": s.ClientURL()}, "credential", "rm", "x", "--timeout", "200ms")
	if code != exitError || errs != "tokenbroker: no broker answered on token.admin.credential.rm within 200ms\n" {
		t.Fatalf("timeout: exit %d, %q", code, errs)
	}
}

// A NATS user that may not publish on the admin subjects learns why its
// request went unanswered.
func TestCredentialPermissionDenied(t *testing.T) {
	s := natstest.StartServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "app", Password: "app-pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"token.request.>"}},
		}}}
	})
	vars := map[string]string{"NATS_URL": s.ClientURL(), "NATS_USER": "app", "NATS_PASSWORD": "app-pw"}
	code, _, errs := runCmd(t, vars, "credential", "ls", "--timeout", "500ms")
	if code != exitError || !strings.Contains(errs, "within 500ms") || !strings.Contains(strings.ToLower(errs), "permissions violation") {
		t.Fatalf("exit %d, %q", code, errs)
	}
	noSecret(t, []string{"app-pw"}, errs)
}

func TestCredentialUsage(t *testing.T) {
	for _, args := range [][]string{
		{"credential", "--help"}, {"credential", "help"},
		{"credential", "put", "--help"}, {"credential", "rm", "-h"}, {"credential", "ls", "--help"}, {"credential", "show", "--help"},
	} {
		code, out, errs := runCmd(t, nil, args...)
		if code != exitOK || out != "" || !strings.HasPrefix(errs, "Usage: tokenbroker credential") {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	for _, args := range [][]string{
		{"credential"}, {"credential", "cp"}, {"credential", "put"}, {"credential", "put", "a.yaml", "b.yaml"},
		{"credential", "rm"}, {"credential", "show"}, {"credential", "ls", "extra"}, {"credential", "ls", "--bogus"},
	} {
		code, out, errs := runCmd(t, nil, args...)
		if code != exitUsage || out != "" || errs == "" {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, out, _ := runCmd(t, nil, "help"); code != exitOK || !strings.Contains(out, "credential") {
		t.Fatalf("tokenbroker help does not list credential: %q", out)
	}
}
