package config_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
)

// env is a fake environment with os.LookupEnv semantics.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// expand replaces $DIR in every value with dir.
func (e env) expand(dir string) env {
	out := make(env, len(e))
	for k, v := range e {
		out[k] = strings.ReplaceAll(v, "$DIR", dir)
	}
	return out
}

func load(t testing.TB, args []string, e env) (*config.Config, []string, error) {
	t.Helper()
	return config.Load("tokenbroker", args, e.lookup, io.Discard)
}

func mustLoad(t testing.TB, args []string, e env) *config.Config {
	t.Helper()
	c, _, err := load(t, args, e)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// key32 is a valid TOKENBROKER_KEY.
var key32 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

func TestDefaults(t *testing.T) {
	c := mustLoad(t, nil, env{})
	want := &config.Config{
		Default:              config.Credential{Name: "default", Grant: "password", RefreshThreshold: 600 * time.Second},
		NATSListen:           "127.0.0.1:4222",
		HTTPAddr:             "127.0.0.1:5000",
		SubjectPrefix:        "token",
		ReplyPrefixes:        []string{"_INBOX."},
		NamedOnSharedSubject: true,
		Audit:                "log",
		DataDir:              "./data",
		StateReplicas:        1,
		LeaseTTL:             15 * time.Second,
		IdPTimeout:           10 * time.Second,
		IdPMaxConcurrent:     16,
		RequestTimeout:       30 * time.Second,
		IdleTimeout:          30 * time.Minute,
		LogLevel:             "info",
		LogFormat:            "text",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load with empty environment:\n got %+v\nwant %+v", c, want)
	}
	if c.HasDefault() {
		t.Error("HasDefault() = true without TOKEN_ENDPOINT")
	}
	if d := config.Defaults(); !reflect.DeepEqual(d, want) {
		t.Errorf("Defaults():\n got %+v\nwant %+v", d, want)
	}
	if err := config.Defaults().Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
	// A nil lookup is an empty environment.
	if c, _, err := config.Load("x", nil, nil, io.Discard); err != nil || !reflect.DeepEqual(c, want) {
		t.Errorf("Load with nil lookup = %+v, %v", c, err)
	}
}

func TestSeedNames(t *testing.T) {
	c := mustLoad(t, nil, env{
		"TOKEN_ENDPOINT":    "https://login.microsoftonline.com/contoso/oauth2/token",
		"CLIENTID":          "00000000-0000-0000-0000-000000000001",
		"RESOURCE":          "https://contoso.crm.dynamics.com",
		"REFRESH_THRESHOLD": "300",
		"SCOPE":             "openid offline_access",
		"CLIENT_SECRET":     "s3cret",
	})
	want := config.Credential{
		Name:             "default",
		Grant:            "password",
		TokenEndpoint:    "https://login.microsoftonline.com/contoso/oauth2/token",
		ClientID:         "00000000-0000-0000-0000-000000000001",
		Resource:         "https://contoso.crm.dynamics.com",
		Scope:            "openid offline_access",
		ClientSecret:     "s3cret",
		RefreshThreshold: 300 * time.Second,
	}
	if !reflect.DeepEqual(c.Default, want) {
		t.Errorf("Default =\n %+v\nwant %+v", c.Default, want)
	}
	if !c.HasDefault() {
		t.Error("HasDefault() = false")
	}
}

func TestRefreshTimeAlias(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  env
		want time.Duration
	}{
		{"default", nil, env{}, 600 * time.Second},
		{"REFRESH_TIME alone", nil, env{"REFRESH_TIME": "120"}, 120 * time.Second},
		{"REFRESH_THRESHOLD wins", nil, env{"REFRESH_TIME": "120", "REFRESH_THRESHOLD": "60"}, 60 * time.Second},
		{"flag wins over both", []string{"--refresh-threshold", "30"}, env{"REFRESH_TIME": "120", "REFRESH_THRESHOLD": "60"}, 30 * time.Second},
		{"zero", nil, env{"REFRESH_THRESHOLD": "0"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustLoad(t, tc.args, tc.env).Default.RefreshThreshold; got != tc.want {
				t.Errorf("RefreshThreshold = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFlagBeatsEnv(t *testing.T) {
	tests := []struct {
		env, flag, value string
		get              func(*config.Config) any
		want             any
	}{
		{"TOKEN_ENDPOINT", "token-endpoint", "https://flag.example/token", func(c *config.Config) any { return c.Default.TokenEndpoint }, "https://flag.example/token"},
		{"CLIENTID", "client-id", "flag-client", func(c *config.Config) any { return c.Default.ClientID }, "flag-client"},
		{"RESOURCE", "resource", "flag-res", func(c *config.Config) any { return c.Default.Resource }, "flag-res"},
		{"SCOPE", "scope", "flag-scope", func(c *config.Config) any { return c.Default.Scope }, "flag-scope"},
		{"NATS_URL", "nats-url", "nats://flag:4222", func(c *config.Config) any { return c.NATSURL }, "nats://flag:4222"},
		{"NATS_LISTEN", "nats-listen", "0.0.0.0:14222", func(c *config.Config) any { return c.NATSListen }, "0.0.0.0:14222"},
		{"HTTP_ADDR", "http-addr", ":8080", func(c *config.Config) any { return c.HTTPAddr }, ":8080"},
		{"SUBJECT_PREFIX", "subject-prefix", "acme.tokens", func(c *config.Config) any { return c.SubjectPrefix }, "acme.tokens"},
		{"DATA_DIR", "data-dir", "/var/lib/tb", func(c *config.Config) any { return c.DataDir }, "/var/lib/tb"},
		{"NATS_USER", "nats-user", "flaguser", func(c *config.Config) any { return c.NATSUser }, "flaguser"},
		{"IDP_TIMEOUT", "idp-timeout", "1500ms", func(c *config.Config) any { return c.IdPTimeout }, 1500 * time.Millisecond},
		{"REQUEST_TIMEOUT", "request-timeout", "45", func(c *config.Config) any { return c.RequestTimeout }, 45 * time.Second},
		{"IDLE_TIMEOUT", "idle-timeout", "10m", func(c *config.Config) any { return c.IdleTimeout }, 10 * time.Minute},
		{"LOG_LEVEL", "log-level", "debug", func(c *config.Config) any { return c.LogLevel }, "debug"},
		{"LOG_FORMAT", "log-format", "json", func(c *config.Config) any { return c.LogFormat }, "json"},
	}
	// The environment gives a valid base, so each case changes one setting.
	base := env{
		"TOKEN_ENDPOINT": "https://env.example/token", "CLIENTID": "env-client", "RESOURCE": "env-res",
		"SCOPE": "env-scope", "NATS_URL": "nats://env:4222", "NATS_LISTEN": "127.0.0.1:24222",
		"HTTP_ADDR": "127.0.0.1:9", "SUBJECT_PREFIX": "env", "DATA_DIR": "/env", "NATS_USER": "envuser",
		"NATS_PASSWORD": "pw", "IDP_TIMEOUT": "3", "REQUEST_TIMEOUT": "4", "IDLE_TIMEOUT": "5",
		"LOG_LEVEL": "warn", "LOG_FORMAT": "text",
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			c, rest, err := load(t, []string{"--" + tc.flag + "=" + tc.value, "token", "--credential", "x"}, base)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(c); got != tc.want {
				t.Errorf("with %s=%q and --%s=%q: got %v, want %v", tc.env, base[tc.env], tc.flag, tc.value, got, tc.want)
			}
			if want := []string{"token", "--credential", "x"}; !reflect.DeepEqual(rest, want) {
				t.Errorf("remaining args = %q, want %q", rest, want)
			}
			// Without the flag, the environment is used.
			c = mustLoad(t, nil, base)
			if got := tc.get(c); got == tc.want {
				t.Errorf("without the flag: got the flag's value %v", got)
			}
		})
	}
}

// NATS_ALLOW_NO_AUTH is a boolean flag: given alone it means true, and the
// flag wins over the variable either way.
func TestAllowNoAuth(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  env
		want bool
	}{
		{"default", nil, env{}, false},
		{"variable", nil, env{"NATS_ALLOW_NO_AUTH": "true"}, true},
		{"variable in capitals", nil, env{"NATS_ALLOW_NO_AUTH": "TRUE"}, true},
		{"variable off", nil, env{"NATS_ALLOW_NO_AUTH": "false"}, false},
		{"bare flag", []string{"--nats-allow-no-auth"}, env{}, true},
		{"bare flag before another", []string{"--nats-allow-no-auth", "--nats-listen", "0.0.0.0:4222"}, env{}, true},
		{"flag off beats variable", []string{"--nats-allow-no-auth=false"}, env{"NATS_ALLOW_NO_AUTH": "true"}, false},
		{"flag on beats variable", []string{"--nats-allow-no-auth=true"}, env{"NATS_ALLOW_NO_AUTH": "false"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, rest, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.NATSAllowNoAuth != tc.want || len(rest) != 0 {
				t.Errorf("NATSAllowNoAuth = %v (arguments left %q), want %v", c.NATSAllowNoAuth, rest, tc.want)
			}
		})
	}
}

func TestStateSync(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      env
		always   bool
		interval time.Duration
	}{
		{"default: the server's", nil, env{}, false, 0},
		{"empty: the server's", nil, env{"STATE_SYNC": ""}, false, 0},
		{"always", nil, env{"STATE_SYNC": "always"}, true, 0},
		{"Always", nil, env{"STATE_SYNC": " Always "}, true, 0},
		{"seconds", nil, env{"STATE_SYNC": "5"}, false, 5 * time.Second},
		{"duration", nil, env{"STATE_SYNC": "500ms"}, false, 500 * time.Millisecond},
		{"flag wins", []string{"--state-sync", "always"}, env{"STATE_SYNC": "1m"}, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.args, tc.env)
			if c.StateSyncAlways != tc.always || c.StateSyncInterval != tc.interval {
				t.Errorf("StateSyncAlways, StateSyncInterval = %v, %v; want %v, %v", c.StateSyncAlways, c.StateSyncInterval, tc.always, tc.interval)
			}
		})
	}
}

func TestEmptyHTTPAddrDisables(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  env
		want string
	}{
		{"unset gives the default", nil, env{}, "127.0.0.1:5000"},
		{"empty variable disables", nil, env{"HTTP_ADDR": ""}, ""},
		{"empty flag disables", []string{"--http-addr="}, env{"HTTP_ADDR": "127.0.0.1:1"}, ""},
		{"flag re-enables", []string{"--http-addr", ":5001"}, env{"HTTP_ADDR": ""}, ":5001"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustLoad(t, tc.args, tc.env).HTTPAddr; got != tc.want {
				t.Errorf("HTTPAddr = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"15", 15 * time.Second},
		{"1500ms", 1500 * time.Millisecond},
		{"10m", 10 * time.Minute},
		{" 2s ", 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			c := mustLoad(t, nil, env{"IDP_TIMEOUT": tc.in, "REQUEST_TIMEOUT": tc.in, "IDLE_TIMEOUT": tc.in})
			if c.IdPTimeout != tc.want || c.RequestTimeout != tc.want || c.IdleTimeout != tc.want {
				t.Errorf("timeouts = %v, %v, %v; want %v", c.IdPTimeout, c.RequestTimeout, c.IdleTimeout, tc.want)
			}
		})
	}
}

func TestKeyEncodings(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb}, 32) // encodes differently in std and URL alphabets
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		s := enc.EncodeToString(raw)
		t.Run(s, func(t *testing.T) {
			if got := mustLoad(t, nil, env{"TOKENBROKER_KEY": s}).Key; !bytes.Equal(got, raw) {
				t.Errorf("Key = %x, want %x", got, raw)
			}
		})
	}
}

// checkInvalid asserts err is one line, wraps ErrInvalid and contains every want.
func checkInvalid(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !errors.Is(err, config.ErrInvalid) {
		t.Errorf("error %q does not wrap ErrInvalid", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.HasPrefix(msg, "config: ") {
		t.Errorf("error %q does not start with \"config: \"", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	ep := "https://login.example/token"
	tests := []struct {
		name string
		args []string
		env  env
		want []string
	}{
		{"endpoint not a URL", nil, env{"TOKEN_ENDPOINT": "login.example/token", "CLIENTID": "c"}, []string{"TOKEN_ENDPOINT (--token-endpoint)", `"login.example/token" is not an absolute http(s) URL`}},
		{"endpoint not http", nil, env{"TOKEN_ENDPOINT": "ftp://login.example/token", "CLIENTID": "c"}, []string{"TOKEN_ENDPOINT (--token-endpoint)"}},
		{"endpoint flag", []string{"--token-endpoint", "nope"}, env{"CLIENTID": "c"}, []string{"TOKEN_ENDPOINT (--token-endpoint)"}},
		{"endpoint without client id", nil, env{"TOKEN_ENDPOINT": ep}, []string{"CLIENTID (--client-id)", "TOKEN_ENDPOINT"}},
		{"client id without endpoint", nil, env{"CLIENTID": "c"}, []string{"TOKEN_ENDPOINT (--token-endpoint)", "CLIENTID"}},
		{"resource without endpoint", nil, env{"RESOURCE": "r"}, []string{"TOKEN_ENDPOINT (--token-endpoint)", "RESOURCE"}},
		{"scope without endpoint", nil, env{"SCOPE": "s"}, []string{"TOKEN_ENDPOINT (--token-endpoint)", "SCOPE"}},
		{"client secret without endpoint", nil, env{"CLIENT_SECRET": "s"}, []string{"TOKEN_ENDPOINT (--token-endpoint)", "CLIENT_SECRET"}},
		{"refresh threshold not a number", nil, env{"REFRESH_THRESHOLD": "abc"}, []string{`REFRESH_THRESHOLD (--refresh-threshold): "abc" is not a whole number of seconds`}},
		{"refresh threshold a duration", nil, env{"REFRESH_THRESHOLD": "10m"}, []string{"REFRESH_THRESHOLD (--refresh-threshold)", "whole number of seconds"}},
		{"refresh threshold negative", nil, env{"REFRESH_THRESHOLD": "-1"}, []string{"REFRESH_THRESHOLD (--refresh-threshold)", "negative"}},
		{"refresh threshold empty", nil, env{"REFRESH_THRESHOLD": ""}, []string{"REFRESH_THRESHOLD (--refresh-threshold)"}},
		{"refresh threshold huge", nil, env{"REFRESH_THRESHOLD": "99999999999999999999"}, []string{"REFRESH_THRESHOLD (--refresh-threshold)", "too large"}},
		{"refresh time alias", nil, env{"REFRESH_TIME": "x"}, []string{"REFRESH_TIME (--refresh-threshold)"}},
		{"refresh threshold flag", []string{"--refresh-threshold=x"}, env{}, []string{"REFRESH_THRESHOLD (--refresh-threshold)"}},
		{"key not base64", nil, env{"TOKENBROKER_KEY": "not base64!"}, []string{"TOKENBROKER_KEY", "--key-file", "not valid base64"}},
		{"key too short", nil, env{"TOKENBROKER_KEY": base64.StdEncoding.EncodeToString(make([]byte, 16))}, []string{"TOKENBROKER_KEY", "decodes to 16 bytes, want exactly 32"}},
		{"key file too long", nil, env{"TOKENBROKER_KEY_FILE": "$DIR/key64"}, []string{"TOKENBROKER_KEY_FILE (--key-file)", "key64", "64 bytes"}},
		{"subject prefix empty", nil, env{"SUBJECT_PREFIX": ""}, []string{"SUBJECT_PREFIX (--subject-prefix)", "empty"}},
		{"subject prefix space", nil, env{"SUBJECT_PREFIX": "a b"}, []string{"SUBJECT_PREFIX (--subject-prefix)", "spaces"}},
		{"subject prefix star", nil, env{"SUBJECT_PREFIX": "a.*"}, []string{"SUBJECT_PREFIX (--subject-prefix)", "wildcards"}},
		{"subject prefix gt", nil, env{"SUBJECT_PREFIX": "a.>"}, []string{"SUBJECT_PREFIX (--subject-prefix)", "wildcards"}},
		{"subject prefix leading dot", nil, env{"SUBJECT_PREFIX": ".a"}, []string{"SUBJECT_PREFIX (--subject-prefix)", "empty token"}},
		{"subject prefix trailing dot", nil, env{"SUBJECT_PREFIX": "a."}, []string{"SUBJECT_PREFIX (--subject-prefix)", "empty token"}},
		{"subject prefix double dot", nil, env{"SUBJECT_PREFIX": "a..b"}, []string{"SUBJECT_PREFIX (--subject-prefix)"}},
		{"log level", nil, env{"LOG_LEVEL": "verbose"}, []string{"LOG_LEVEL (--log-level)", `"verbose"`}},
		{"log format", []string{"--log-format", "xml"}, env{}, []string{"LOG_FORMAT (--log-format)", `"xml"`}},
		{"idp timeout zero", nil, env{"IDP_TIMEOUT": "0"}, []string{"IDP_TIMEOUT (--idp-timeout)", "greater than zero"}},
		{"request timeout negative", nil, env{"REQUEST_TIMEOUT": "-5s"}, []string{"REQUEST_TIMEOUT (--request-timeout)", "greater than zero"}},
		{"idle timeout garbage", nil, env{"IDLE_TIMEOUT": "soon"}, []string{"IDLE_TIMEOUT (--idle-timeout)", `"soon"`}},
		{"nats user without password", nil, env{"NATS_USER": "u"}, []string{"NATS_PASSWORD", "NATS_USER"}},
		{"nats password without user", nil, env{"NATS_PASSWORD": "p"}, []string{"NATS_USER (--nats-user)", "NATS_PASSWORD"}},
		{"nats cert without key", nil, env{"NATS_CERT": "$DIR/cert.pem"}, []string{"NATS_KEY (--nats-key)", "NATS_CERT"}},
		{"nats key without cert", nil, env{"NATS_KEY": "$DIR/key.pem"}, []string{"NATS_CERT (--nats-cert)", "NATS_KEY"}},
		{"http tls cert without key", nil, env{"HTTP_TLS_CERT": "$DIR/cert.pem"}, []string{"HTTP_TLS_KEY (--http-tls-key)", "HTTP_TLS_CERT"}},
		{"http tls key without cert", nil, env{"HTTP_TLS_KEY": "$DIR/key.pem"}, []string{"HTTP_TLS_CERT (--http-tls-cert)", "HTTP_TLS_KEY"}},
		{"http tls cert unreadable", nil, env{"HTTP_TLS_CERT": "$DIR/missing.pem", "HTTP_TLS_KEY": "$DIR/key.pem"}, []string{"HTTP_TLS_CERT (--http-tls-cert)", "missing.pem"}},
		{"nats ca unreadable", nil, env{"NATS_CA": "$DIR/nope.pem"}, []string{"NATS_CA (--nats-ca)", "nope.pem"}},
		{"nats creds is a directory", nil, env{"NATS_CREDS": "$DIR"}, []string{"NATS_CREDS (--nats-creds)", "directory"}},
		{"nats config unreadable", []string{"--nats-config", "$DIR/nats.conf"}, env{}, []string{"NATS_CONFIG (--nats-config)", "nats.conf"}},
		{"http addr", nil, env{"HTTP_ADDR": "localhost"}, []string{"HTTP_ADDR (--http-addr)", `"localhost"`}},
		{"nats listen empty", nil, env{"NATS_LISTEN": ""}, []string{"NATS_LISTEN (--nats-listen)"}},
		{"nats listen bad", nil, env{"NATS_LISTEN": "4222"}, []string{"NATS_LISTEN (--nats-listen)"}},
		{"allow no auth not a boolean", nil, env{"NATS_ALLOW_NO_AUTH": "maybe"}, []string{`NATS_ALLOW_NO_AUTH (--nats-allow-no-auth): "maybe" is not true or false`}},
		{"allow no auth flag not a boolean", []string{"--nats-allow-no-auth=yes"}, env{}, []string{"NATS_ALLOW_NO_AUTH (--nats-allow-no-auth)", `"yes"`}},
		{"state sync garbage", nil, env{"STATE_SYNC": "sometimes"}, []string{`STATE_SYNC (--state-sync): "sometimes" is not always`}},
		{"state sync zero", nil, env{"STATE_SYNC": "0"}, []string{"STATE_SYNC (--state-sync)", "greater than zero"}},
		{"state sync negative", []string{"--state-sync=-5s"}, env{}, []string{"STATE_SYNC (--state-sync)", "greater than zero"}},
		{"state sync with an external NATS", nil, env{"STATE_SYNC": "always", "NATS_URL": "nats://nats-1:4222"}, []string{"STATE_SYNC (--state-sync)", "embedded NATS server", "NATS_URL"}},
		{"data dir empty", nil, env{"DATA_DIR": ""}, []string{"DATA_DIR (--data-dir)"}},
		{"client secret file unreadable", nil, env{"CLIENT_SECRET_FILE": "$DIR/missing"}, []string{"CLIENT_SECRET_FILE (--client-secret-file)", "/missing", "cannot read"}},
		{"client secret file flag unreadable", []string{"--client-secret-file", "$DIR/missing"}, env{}, []string{"CLIENT_SECRET_FILE (--client-secret-file)", "/missing"}},
		{"client secret file empty", nil, env{"CLIENT_SECRET_FILE": "$DIR/blank"}, []string{"CLIENT_SECRET_FILE (--client-secret-file)", "blank", "empty"}},
		{"client secret and file", nil, env{"CLIENT_SECRET": "a", "CLIENT_SECRET_FILE": "$DIR/secret"}, []string{"CLIENT_SECRET and CLIENT_SECRET_FILE are both set"}},
		{"nats password file unreadable", nil, env{"NATS_PASSWORD_FILE": "$DIR/missing"}, []string{"NATS_PASSWORD_FILE (--nats-password-file)"}},
		{"nats token file unreadable", nil, env{"NATS_TOKEN_FILE": "$DIR/missing"}, []string{"NATS_TOKEN_FILE (--nats-token-file)"}},
		{"config file unreadable", nil, env{"TOKENBROKER_CONFIG": "$DIR/missing.yaml"}, []string{"TOKENBROKER_CONFIG (--config)", "missing.yaml"}},
		{"config file bad credential", []string{"--config", "$DIR/bad.yaml"}, env{}, []string{"bad.yaml:2:", `credential "crm"`, "token_endpoint is required"}},
		{"unknown flag", []string{"--no-such-flag"}, env{}, []string{"no-such-flag"}},
	}
	dir := t.TempDir()
	writeFile(t, dir, "cert.pem", "cert")
	writeFile(t, dir, "key.pem", "key")
	writeFile(t, dir, "blank", " \n\t")
	writeFile(t, dir, "secret", "s")
	writeFile(t, dir, "key64", base64.StdEncoding.EncodeToString(make([]byte, 64)))
	writeFile(t, dir, "bad.yaml", "credentials:\n  - name: crm\n    client_id: c\n    client_secret: s\n")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "$DIR", dir)
			}
			_, _, err := load(t, args, tc.env.expand(dir))
			checkInvalid(t, err, tc.want...)
		})
	}
}

func TestValidateHandBuilt(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*config.Config)
		want   string
	}{
		{"ok", func(*config.Config) {}, ""},
		{"short key", func(c *config.Config) { c.Key = make([]byte, 31) }, "TOKENBROKER_KEY"},
		{"negative refresh", func(c *config.Config) { c.Default.RefreshThreshold = -time.Second }, "REFRESH_THRESHOLD (--refresh-threshold)"},
		{"zero idle timeout", func(c *config.Config) { c.IdleTimeout = 0 }, "IDLE_TIMEOUT (--idle-timeout)"},
		{"credential without endpoint", func(c *config.Config) {
			c.Credentials = []config.Credential{{Name: "a", ClientID: "c", Grant: "client_credentials", ClientSecret: "s"}}
		}, `credential "a": token_endpoint is required`},
		{"duplicate credential", func(c *config.Config) {
			cr := config.Credential{Name: "a", TokenEndpoint: "https://x/t", ClientID: "c", Grant: "client_credentials", ClientSecret: "s"}
			c.Credentials = []config.Credential{cr, cr}
		}, `credential "a": duplicate name`},
		{"state sync with NATS_URL", func(c *config.Config) { c.NATSURL, c.StateSyncInterval = "nats://nats-1:4222", time.Second }, "STATE_SYNC (--state-sync)"},
		{"unnamed credential", func(c *config.Config) {
			c.Credentials = []config.Credential{{TokenEndpoint: "https://x/t"}}
		}, "credential #1: name is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Defaults()
			tc.modify(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			checkInvalid(t, err, tc.want)
		})
	}
}

// TestSecretsNeverInErrors sets secrets to distinctive values in settings that
// fail and checks that no error repeats them.
func TestSecretsNeverInErrors(t *testing.T) {
	const s = "Zq9-SECRET-VALUE-Zq9"
	dir := t.TempDir()
	shortKey := base64.StdEncoding.EncodeToString([]byte(s)) // valid base64, wrong length
	yamlWith := func(body string) string {
		return writeFile(t, dir, fmt.Sprintf("c%d.yaml", len(body)), "credentials:\n"+body)
	}
	tests := []struct {
		name   string
		args   []string
		env    env
		secret string
	}{
		{"client secret without endpoint", nil, env{"CLIENT_SECRET": s}, s},
		{"client secret and file", nil, env{"CLIENT_SECRET": s, "CLIENT_SECRET_FILE": writeFile(t, dir, "cs", s)}, s},
		{"key not base64", nil, env{"TOKENBROKER_KEY": s + "!"}, s},
		{"key wrong length", nil, env{"TOKENBROKER_KEY": shortKey}, shortKey},
		{"key file wrong length", nil, env{"TOKENBROKER_KEY_FILE": writeFile(t, dir, "k", shortKey)}, shortKey},
		{"key file flag not base64", []string{"--key-file", writeFile(t, dir, "k2", s+"!")}, env{}, s},
		{"nats password without user", nil, env{"NATS_PASSWORD": s}, s},
		{"nats password file without user", nil, env{"NATS_PASSWORD_FILE": writeFile(t, dir, "np", s)}, s},
		{"nats token with bad setting", nil, env{"NATS_TOKEN": s, "LOG_LEVEL": "loud"}, s},
		{"endpoint with user info", nil, env{"TOKEN_ENDPOINT": "https://u:" + s + "@login.example/token", "CLIENTID": "c"}, s},
		{"endpoint with user info, unparsable", nil, env{"TOKEN_ENDPOINT": "x:" + s + "@%zz", "CLIENTID": "c"}, s},
		{"yaml client secret, missing client id", nil, env{"TOKENBROKER_CONFIG": yamlWith("  - name: a\n    token_endpoint: https://x/t\n    client_secret: " + s + "\n")}, s},
		{"yaml client secret not a string", nil, env{"TOKENBROKER_CONFIG": yamlWith("  - name: a\n    token_endpoint: https://x/t\n    client_id: c\n    client_secret: [" + s + "]\n")}, s},
		{"yaml password with wrong grant", nil, env{"TOKENBROKER_CONFIG": yamlWith("  - name: a\n    token_endpoint: https://x/t\n    client_id: c\n    client_secret: x\n    password: " + s + "\n")}, s},
		{"yaml password and password_file", nil, env{"TOKENBROKER_CONFIG": yamlWith("  - name: a\n    token_endpoint: https://x/t\n    client_id: c\n    grant: password\n    username: u\n    password: " + s + "\n    password_file: /nonexistent\n")}, s},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(t, tc.args, tc.env)
			checkInvalid(t, err)
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error reveals the secret: %q", err)
			}
		})
	}
	// A loaded Config does not reveal its secrets when printed either.
	c := mustLoad(t, nil, env{"TOKEN_ENDPOINT": "https://x/t", "CLIENTID": "c", "CLIENT_SECRET": s, "NATS_USER": "u", "NATS_PASSWORD": s, "NATS_TOKEN": s})
	for _, format := range []string{"%v", "%+v", "%#v"} {
		if out := fmt.Sprintf(format, c); strings.Contains(out, s) {
			t.Errorf("%s of Config reveals the secret: %s", format, out)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{3}, 32)
	secretFile := writeFile(t, dir, "secret", "  s3cret \n")
	keyFile := writeFile(t, dir, "key", "\n"+base64.StdEncoding.EncodeToString(key)+"\n")
	otherFile := writeFile(t, dir, "other", "from-flag\n")
	npFile := writeFile(t, dir, "np", "natspw\n")
	ntFile := writeFile(t, dir, "nt", "\tnatstoken\t")
	base := env{"TOKEN_ENDPOINT": "https://x/t", "CLIENTID": "c"}
	with := func(kv ...string) env {
		e := env{}
		for k, v := range base {
			e[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			e[kv[i]] = kv[i+1]
		}
		return e
	}
	tests := []struct {
		name string
		args []string
		env  env
		get  func(*config.Config) string
		want string
	}{
		{"client secret from env", nil, with("CLIENT_SECRET", "plain"), func(c *config.Config) string { return c.Default.ClientSecret.Reveal() }, "plain"},
		{"client secret file trimmed", nil, with("CLIENT_SECRET_FILE", secretFile), func(c *config.Config) string { return c.Default.ClientSecret.Reveal() }, "s3cret"},
		{"client secret file flag", []string{"--client-secret-file", secretFile}, with(), func(c *config.Config) string { return c.Default.ClientSecret.Reveal() }, "s3cret"},
		{"file flag beats env", []string{"--client-secret-file", otherFile}, with("CLIENT_SECRET", "plain"), func(c *config.Config) string { return c.Default.ClientSecret.Reveal() }, "from-flag"},
		{"empty variable is unset", nil, with("CLIENT_SECRET", "", "CLIENT_SECRET_FILE", secretFile), func(c *config.Config) string { return c.Default.ClientSecret.Reveal() }, "s3cret"},
		{"key file", nil, with("TOKENBROKER_KEY_FILE", keyFile), func(c *config.Config) string { return string(c.Key) }, string(key)},
		{"key file flag", []string{"--key-file=" + keyFile}, with("TOKENBROKER_KEY", key32), func(c *config.Config) string { return string(c.Key) }, string(key)},
		{"nats password file", nil, with("NATS_USER", "u", "NATS_PASSWORD_FILE", npFile), func(c *config.Config) string { return c.NATSPassword.Reveal() }, "natspw"},
		{"nats token file", []string{"--nats-token-file", ntFile}, with(), func(c *config.Config) string { return c.NATSToken.Reveal() }, "natstoken"},
		{"nats token env", nil, with("NATS_TOKEN", "tok"), func(c *config.Config) string { return c.NATSToken.Reveal() }, "tok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(c); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "crm-secret", "crm-s3cret\n")
	pw := writeFile(t, dir, "svc-pw", " svc-pass ")
	cert := writeFile(t, dir, "cert.pem", "-----BEGIN CERTIFICATE-----\n")
	key := writeFile(t, dir, "key.pem", "-----BEGIN PRIVATE KEY-----\n")
	doc := `
# named credentials; x- keys hold shared anchors
x-azure: &azure
  token_endpoint: https://login.microsoftonline.com/contoso/oauth2/v2.0/token
  client_id: 00000000-0000-0000-0000-000000000000
credentials:
  - name: crm-prod
    <<: *azure
    client_secret_file: ` + secret + `
    grant: client_credentials
    scope: https://contoso.crm.dynamics.com/.default
    refresh_threshold: 300
  - name: legacy_v1
    token_endpoint: https://login.microsoftonline.com/contoso/oauth2/token
    client_id: abc
    client_secret: inline
    resource: https://graph.windows.net
    keep_warm: false
  - name: svc-user
    token_endpoint: https://idp.example/oauth/token
    client_id: public-app
    grant: password
    username: svc@contoso.com
    password_file: ` + pw + `
  - name: cert-app
    <<: *azure
    client_id: cert-client
    grant: client_assertion
    certificate_file: ` + cert + `
    private_key_file: ` + key + `
`
	got, err := config.LoadCredentials(strings.NewReader(doc), config.Credential{RefreshThreshold: 120 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	azureEP := "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
	want := []config.Credential{
		{Name: "crm-prod", TokenEndpoint: azureEP, ClientID: "00000000-0000-0000-0000-000000000000",
			ClientSecret: "crm-s3cret", ClientSecretFile: secret, Grant: "client_credentials", Scope: "https://contoso.crm.dynamics.com/.default",
			RefreshThreshold: 300 * time.Second, KeepWarm: true},
		{Name: "legacy_v1", TokenEndpoint: "https://login.microsoftonline.com/contoso/oauth2/token", ClientID: "abc",
			ClientSecret: "inline", Grant: "client_credentials", Resource: "https://graph.windows.net",
			RefreshThreshold: 120 * time.Second, KeepWarm: false},
		{Name: "svc-user", TokenEndpoint: "https://idp.example/oauth/token", ClientID: "public-app", Grant: "password",
			Username: "svc@contoso.com", Password: "svc-pass", PasswordFile: pw, RefreshThreshold: 120 * time.Second, KeepWarm: true},
		{Name: "cert-app", TokenEndpoint: azureEP, ClientID: "cert-client", Grant: "client_assertion",
			CertificateFile: cert, PrivateKeyFile: key, CertificatePEM: "-----BEGIN CERTIFICATE-----",
			PrivateKeyPEM: "-----BEGIN PRIVATE KEY-----", RefreshThreshold: 120 * time.Second, KeepWarm: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d credentials, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("credential %d:\n got %+v (secret %q, password %q)\nwant %+v", i, got[i],
				got[i].ClientSecret.Reveal(), got[i].Password.Reveal(), want[i])
		}
	}

	t.Run("empty documents", func(t *testing.T) {
		for _, doc := range []string{"", "# nothing\n", "credentials:\n", "credentials: []\n", "~\n"} {
			got, err := config.LoadCredentials(strings.NewReader(doc), config.Credential{})
			if err != nil || len(got) != 0 {
				t.Errorf("LoadCredentials(%q) = %v, %v; want none", doc, got, err)
			}
		}
	})

	t.Run("through Load", func(t *testing.T) {
		path := writeFile(t, dir, "tb.yaml", doc)
		c := mustLoad(t, nil, env{"TOKENBROKER_CONFIG": path, "REFRESH_TIME": "60"})
		if len(c.Credentials) != 4 || c.ConfigFile != path {
			t.Fatalf("Credentials = %+v, ConfigFile = %q", c.Credentials, c.ConfigFile)
		}
		if cr, ok := c.Credential("legacy_v1"); !ok || cr.RefreshThreshold != time.Minute {
			t.Errorf(`Credential("legacy_v1") = %+v, %v; want refresh threshold from REFRESH_TIME`, cr, ok)
		}
		if _, ok := c.Credential("nope"); ok {
			t.Error(`Credential("nope") found`)
		}
	})
}

func TestLoadCredentialsErrors(t *testing.T) {
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem", "c")
	head := "credentials:\n  - name: crm-prod\n    token_endpoint: https://x/token\n    client_id: c\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown key", head + "    client_secret: s\n    scop: x\n", []string{`credential "crm-prod": unknown key "scop"`, "line 6"}},
		{"unknown key before name", "credentials:\n  - scop: x\n    name: crm-prod\n", []string{`credential "crm-prod": unknown key "scop"`, "line 2"}},
		{"unknown top-level key", "credential:\n  - name: a\n", []string{`unknown top-level key "credential"`, "line 1"}},
		{"missing name", "credentials:\n  - token_endpoint: https://x/t\n", []string{"credential #1: name is required"}},
		{"missing token_endpoint", "credentials:\n  - name: crm-prod\n    client_id: c\n", []string{`credential "crm-prod": token_endpoint is required`}},
		{"missing client_id", "credentials:\n  - name: crm-prod\n    token_endpoint: https://x/t\n", []string{`credential "crm-prod": client_id is required`}},
		{"missing client secret", head, []string{`credential "crm-prod": client_secret or client_secret_file is required`}},
		{"missing username", head + "    grant: password\n    password: p\n", []string{`credential "crm-prod": username is required`}},
		{"missing password", head + "    grant: password\n    username: u\n", []string{`credential "crm-prod": password or password_file is required`}},
		{"missing private key", head + "    grant: client_assertion\n    certificate_file: " + cert + "\n", []string{`credential "crm-prod": private_key_file is required`}},
		{"unreadable client_secret_file", head + "    client_secret_file: " + dir + "/nope\n", []string{`credential "crm-prod": client_secret_file: cannot read`, "/nope", "line 5"}},
		{"unreadable password_file", head + "    grant: password\n    username: u\n    password_file: " + dir + "/nope\n", []string{`credential "crm-prod": password_file: cannot read`, "/nope"}},
		{"unreadable certificate_file", head + "    grant: client_assertion\n    certificate_file: " + dir + "/nope.pem\n    private_key_file: " + cert + "\n", []string{`credential "crm-prod": certificate_file: cannot read`, "nope.pem", "line 6"}},
		{"empty client_secret_file", head + "    client_secret_file: " + writeFile(t, dir, "blank", "\n") + "\n", []string{`credential "crm-prod": client_secret_file:`, "empty"}},
		{"duplicate name", head + "    client_secret: s\n  - name: crm-prod\n    token_endpoint: https://y/t\n    client_id: d\n    client_secret: t\n", []string{`credential "crm-prod": duplicate name`, "line 6", "first at line 2"}},
		{"reserved name", "credentials:\n  - name: default\n", []string{`credential "default": name "default" is reserved`}},
		{"reserved audit name", "credentials:\n  - name: _none\n", []string{`credential "_none": name "_none" is reserved`}},
		{"bad name", "credentials:\n  - name: crm.prod\n", []string{`credential "crm.prod": name must be`}},
		{"secret and file", head + "    client_secret: s\n    client_secret_file: /x\n", []string{`credential "crm-prod": client_secret and client_secret_file are both set`}},
		{"bad grant", head + "    grant: implicit\n", []string{`credential "crm-prod": grant "implicit" is not one of`}},
		{"username with client_credentials", head + "    client_secret: s\n    username: u\n", []string{`credential "crm-prod": username is only used with grant password`}},
		{"bad endpoint", "credentials:\n  - name: crm-prod\n    token_endpoint: /token\n", []string{`credential "crm-prod": token_endpoint:`, "absolute"}},
		{"bad refresh_threshold", head + "    client_secret: s\n    refresh_threshold: 10m\n", []string{`credential "crm-prod": refresh_threshold must be`}},
		{"negative refresh_threshold", head + "    client_secret: s\n    refresh_threshold: -1\n", []string{`credential "crm-prod": refresh_threshold must be`}},
		{"bad keep_warm", head + "    client_secret: s\n    keep_warm: sometimes\n", []string{`credential "crm-prod": keep_warm must be true or false`}},
		{"non-string scope", head + "    client_secret: s\n    scope: [a, b]\n", []string{`credential "crm-prod": scope must be a string`}},
		{"key given twice", head + "    client_id: d\n", []string{`credential #1: key "client_id" given twice`}},
		{"credential not a mapping", "credentials:\n  - crm-prod\n", []string{"credential #1: must be a mapping"}},
		{"credentials not a list", "credentials:\n  name: a\n", []string{"credentials must be a list"}},
		{"not a mapping", "- a\n", []string{"must be a mapping"}},
		{"syntax error", "credentials:\n  - name: a\n   bad: [\n", []string{"line"}},
		{"two documents", "credentials: []\n---\ncredentials: []\n", []string{"only one YAML document"}},
		{"issuer and token_endpoint", head + "    client_secret: s\n    issuer: https://idp.example\n", []string{`credential "crm-prod": token_endpoint and issuer are both set`, "line 6"}},
		{"bad issuer", "credentials:\n  - name: crm-prod\n    issuer: idp.example\n    client_id: c\n", []string{`credential "crm-prod": issuer:`, "absolute"}},
		{"bad client_auth", head + "    client_secret: s\n    client_auth: jwt\n", []string{`credential "crm-prod": client_auth "jwt" is not one of auto, basic, post`}},
		{"client_capabilities not a list", head + "    client_secret: s\n    client_capabilities: cp1\n", []string{`credential "crm-prod": client_capabilities must be a list`}},
		{"device_code without scope", head + "    grant: device_code\n", []string{`credential "crm-prod": scope (or resource) is required for grant device_code`}},
		{"three secrets in a file", head + "    client_secret_file: " + writeFile(t, dir, "three", "a\nb\nc\n") + "\n", []string{`credential "crm-prod": client_secret_file:`, "holds 3 lines"}},
		{"assertion_file and certificate", head + "    grant: client_assertion\n    assertion_file: /t\n    certificate_file: " + cert + "\n    private_key_file: " + cert + "\n", []string{`credential "crm-prod": assertion_file and certificate_file/private_key_file are both set`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.LoadCredentials(strings.NewReader(tc.doc), config.Credential{RefreshThreshold: time.Minute})
			checkInvalid(t, err, tc.want...)
		})
	}
}

func TestRegisterOnOwnFlagSet(t *testing.T) {
	fs := flag.NewFlagSet("tokenbroker serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	verbose := fs.Bool("v", false, "verbose")
	cf := config.Register(fs)
	if err := fs.Parse([]string{"-v", "--subject-prefix", "acme", "rest"}); err != nil {
		t.Fatal(err)
	}
	c, err := cf.Resolve(env{"SUBJECT_PREFIX": "env", "LOG_LEVEL": "DEBUG"}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !*verbose || c.SubjectPrefix != "acme" || c.LogLevel != "debug" || !reflect.DeepEqual(fs.Args(), []string{"rest"}) {
		t.Errorf("verbose=%v SubjectPrefix=%q LogLevel=%q args=%q", *verbose, c.SubjectPrefix, c.LogLevel, fs.Args())
	}
	var out bytes.Buffer
	cf.PrintDefaults(&out)
	if !strings.Contains(out.String(), "  -v\n") && !strings.Contains(out.String(), "  --v\n") {
		t.Errorf("PrintDefaults omits the command's own flag:\n%s", out.String())
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	_, _, err := config.Load("tokenbroker", []string{"--help"}, nil, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load(--help) error = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	flags := []string{"token-endpoint", "client-id", "resource", "scope", "client-secret-file", "refresh-threshold",
		"nats-url", "nats-listen", "http-addr", "config", "subject-prefix", "data-dir", "key-file", "nats-config",
		"nats-creds", "nats-nkey", "nats-user", "nats-ca", "nats-cert", "nats-key", "http-tls-cert", "http-tls-key",
		"idp-timeout", "request-timeout", "idle-timeout", "log-level", "log-format"}
	for _, f := range flags {
		if !strings.Contains(help, "--"+f+" ") {
			t.Errorf("--help does not list --%s", f)
		}
	}
	for _, s := range config.Settings() {
		names := append([]string{s.Env, s.FileEnv}, s.Aliases...)
		for _, n := range names {
			if n != "" && !strings.Contains(help, n) {
				t.Errorf("--help does not name the variable %s", n)
			}
		}
		if s.Secret && s.Flag != "" {
			t.Errorf("secret %s has a value flag --%s", s.Env, s.Flag)
		}
	}
	// A boolean flag takes no argument, so its line names none.
	if !strings.Contains(help, "  --nats-allow-no-auth\n") || !strings.Contains(help, "  --state-sync always\n") {
		t.Errorf("--help does not list --nats-allow-no-auth without an argument and --state-sync always:\n%s", help)
	}
	for _, secret := range []string{"client-secret", "key", "nats-password", "nats-token"} {
		if strings.Contains(help, "--"+secret+" ") {
			t.Errorf("--help offers a flag --%s that would take a secret's value", secret)
		}
	}
}

func TestNATSSectionOfTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "nats-password", "file-password-value\n")
	file := writeFile(t, dir, "tb.yaml", `nats:
  url: nats://nats-1:4222,nats://nats-2:4222
  user: broker
  password_file: `+pw+`
credentials: []
`)
	c := mustLoad(t, nil, env{"TOKENBROKER_CONFIG": file})
	if c.NATSURL != "nats://nats-1:4222,nats://nats-2:4222" || c.NATSUser != "broker" || c.NATSPassword.Reveal() != "file-password-value" {
		t.Fatalf("nats section not applied: url %q user %q", c.NATSURL, c.NATSUser)
	}
	// The environment wins over the file.
	c = mustLoad(t, nil, env{"TOKENBROKER_CONFIG": file, "NATS_URL": "nats://other:4222", "NATS_USER": "ops", "NATS_PASSWORD": "env-password"})
	if c.NATSURL != "nats://other:4222" || c.NATSUser != "ops" || c.NATSPassword.Reveal() != "env-password" {
		t.Fatalf("environment did not win: url %q user %q", c.NATSURL, c.NATSUser)
	}

	for name, body := range map[string]string{
		"secret in clear": "nats:\n  password: hunter2-in-yaml\n",
		"unknown key":     "nats:\n  server: nats://x:4222\n",
		"not a mapping":   "nats: [1, 2]\n",
		"missing file":    "nats:\n  user: b\n  token_file: " + filepath.Join(dir, "nope") + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := load(t, nil, env{"TOKENBROKER_CONFIG": writeFile(t, dir, "bad.yaml", body)})
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "nats") || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestReplyPrefixesAndAllowedHosts(t *testing.T) {
	c := mustLoad(t, nil, env{"REPLY_PREFIXES": " _INBOX., _INBOX_crm ,", "HTTP_ALLOWED_HOSTS": "broker.internal, tokens.example"})
	if got := strings.Join(c.ReplyPrefixes, "|"); got != "_INBOX.|_INBOX_crm" {
		t.Errorf("ReplyPrefixes %q", c.ReplyPrefixes)
	}
	if got := strings.Join(c.HTTPAllowedHosts, "|"); got != "broker.internal|tokens.example" {
		t.Errorf("HTTPAllowedHosts %q", c.HTTPAllowedHosts)
	}
	for _, bad := range []string{"$KV", "token.refreshed", "_INBOX.>", "token"} {
		c, _, err := load(t, nil, env{"REPLY_PREFIXES": bad})
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "REPLY_PREFIXES") {
			t.Errorf("REPLY_PREFIXES=%s: %v, want an error naming the setting", bad, err)
		}
	}
}

func TestLoadCredentialsOfIssue15(t *testing.T) {
	doc := `credentials:
  - name: hydra-app
    issuer: https://hydra.example/
    client_id: app
    client_secret: s
    client_auth: basic
  - name: me
    token_endpoint: https://login.microsoftonline.com/contoso/oauth2/v2.0/token
    client_id: public-app
    grant: device_code
    scope: offline_access https://graph.microsoft.com/.default
    client_capabilities: [cp1]
`
	got, err := config.LoadCredentials(strings.NewReader(doc), config.Credential{RefreshThreshold: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Issuer != "https://hydra.example/" || got[0].ClientAuth != config.ClientAuthBasic || got[0].TokenEndpoint != "" {
		t.Fatalf("hydra-app: %+v", got[0])
	}
	if got[1].Grant != config.GrantDeviceCode || !reflect.DeepEqual(got[1].ClientCapabilities, []string{"cp1"}) {
		t.Fatalf("me: %+v", got[1])
	}
	// The registry's shape carries them too.
	back, err := config.FromWire(got[1].Wire(), config.Credential{})
	if err != nil || !reflect.DeepEqual(back.ClientCapabilities, []string{"cp1"}) || back.Grant != config.GrantDeviceCode {
		t.Fatalf("through the wire: %+v %v", back, err)
	}
}
