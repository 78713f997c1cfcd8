package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

const (
	user     = brokertest.User
	password = brokertest.Password
)

// start runs brokertest's broker over a fake IdP (the named credential
// brokertest.App and a default profile for users) and a stand-in for the
// Dynamics Web API that answers WhoAmI only for a token the IdP issued.
func start(t *testing.T) (natsURL, apiURL string) {
	t.Helper()
	e := brokertest.Start(t, brokertest.Options{})
	idp := e.IdP
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range map[string]string{"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"} {
			if got := r.Header.Get(k); got != v {
				http.Error(w, k+": "+got, http.StatusBadRequest)
				return
			}
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !idp.Valid(tok) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/forbidden") {
			http.Error(w, `{"error":{"code":"0x80040220","message":"no privilege"}}`, http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
		_, _ = w.Write([]byte(`{"UserId":"00000000-0000-0000-0000-000000000001"}`))
	}))
	t.Cleanup(api.Close)
	if !strings.HasPrefix(api.URL, "http://127.0.0.1:") {
		t.Fatalf("API stand-in not on 127.0.0.1: %s", api.URL)
	}
	return e.Broker.ClientURL(), api.URL + "/api/data/v9.2/WhoAmI"
}

type result struct {
	code           int
	stdout, stderr string
}

func runWith(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return result{code, out.String(), errOut.String()}
}

func TestWhoAmI(t *testing.T) {
	natsURL, apiURL := start(t)
	const whoami = `{"UserId":"00000000-0000-0000-0000-000000000001"}`
	t.Run("named credential", func(t *testing.T) {
		r := runWith(t, nil, "--nats-url", natsURL, "--credential", brokertest.App, "--api", apiURL)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "200 OK\n") || !strings.Contains(r.stdout, whoami) {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("username from the environment", func(t *testing.T) {
		r := runWith(t, map[string]string{"NATS_URL": natsURL, "TOKENBROKER_PASSWORD": password},
			"--username", user, "--api", apiURL)
		if r.code != 0 || !strings.Contains(r.stdout, whoami) {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		r := runWith(t, map[string]string{"NATS_URL": natsURL, "TOKENBROKER_PASSWORD": "wrong"},
			"--username", user, "--api", apiURL)
		if r.code != 1 || !strings.Contains(r.stderr, "401 invalid_grant") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if strings.Contains(r.stderr, "wrong") {
			t.Fatalf("the password shows in: %s", r.stderr)
		}
	})
	t.Run("API refuses", func(t *testing.T) {
		r := runWith(t, nil, "--nats-url", natsURL, "--credential", brokertest.App, "--api", strings.Replace(apiURL, "WhoAmI", "forbidden", 1))
		if r.code != 1 || !strings.HasPrefix(r.stdout, "403 Forbidden\n") || !strings.Contains(r.stdout, "no privilege") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"nothing", nil, nil, "give --credential NAME"},
		{"both", nil, []string{"--credential", "a", "--username", "u"}, "not both"},
		{"no password", nil, []string{"--username", "u"}, "TOKENBROKER_PASSWORD"},
		{"bad flag", nil, []string{"--nope"}, "flag provided but not defined"},
		{"extra argument", nil, []string{"--credential", "a", "extra"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runWith(t, tc.env, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q, want 2 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}
