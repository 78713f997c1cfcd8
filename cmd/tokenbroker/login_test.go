package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// `tokenbroker login` against a real broker and the fake IdP: it prints
// where to sign in, and ends when the user has.
func TestLoginPrintsTheCodeAndWaitsForTheSignIn(t *testing.T) {
	for _, tc := range []struct {
		name     string
		decide   func(idp *fakeidp.Server, code string) error
		wantCode int
		wantOut  string
	}{
		{"approved", func(idp *fakeidp.Server, code string) error { return idp.ApproveDevice(code, "bob@contoso.example") }, exitOK, "signed in: mail is served"},
		{"declined", func(idp *fakeidp.Server, code string) error { return idp.DenyDevice(code) }, exitError, "declined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := brokertest.Start(t, brokertest.Options{
				IdP: []fakeidp.Option{fakeidp.WithDeviceInterval(time.Second)},
				Adjust: func(c *config.Config, idp *fakeidp.Server) {
					c.Credentials = append(c.Credentials, config.Credential{Name: "mail", Grant: config.GrantDeviceCode,
						TokenEndpoint: idp.V2TokenURL(), ClientID: brokertest.PublicClient,
						Scope: brokertest.Resource + "/.default offline_access", RefreshThreshold: 10 * time.Minute})
				},
			})
			type result struct {
				code     int
				out, err string
			}
			done := make(chan result, 1)
			go func() {
				code, out, errs := runCmd(t, map[string]string{"NATS_URL": e.Broker.ClientURL()}, "login", "mail")
				done <- result{code, out, errs}
			}()
			var userCode string
			testkit.Until(t, 10*time.Second, "a device code awaiting the user", func() bool {
				codes := e.IdP.PendingDeviceCodes()
				if len(codes) == 1 {
					userCode = codes[0]
				}
				return userCode != ""
			})
			if err := tc.decide(e.IdP, userCode); err != nil {
				t.Fatal(err)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute):
				t.Fatal("login did not end")
			}
			if r.code != tc.wantCode || !strings.Contains(r.out+r.err, tc.wantOut) || !strings.Contains(r.out, userCode) ||
				!strings.Contains(r.out, e.IdP.DeviceVerificationURL()) {
				t.Fatalf("login: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
			}
		})
	}
}

func TestLoginOfACredentialOfAnotherGrant(t *testing.T) {
	e := brokertest.Start(t, brokertest.Options{})
	code, _, errs := runCmd(t, map[string]string{"NATS_URL": e.Broker.ClientURL()}, "login", brokertest.App)
	if code != exitError || !strings.Contains(errs, "only a device_code credential") {
		t.Fatalf("login of a client_credentials credential: exit %d: %s", code, errs)
	}
	code, _, errs = runCmd(t, map[string]string{"NATS_URL": e.Broker.ClientURL()}, "login")
	if code != exitUsage {
		t.Fatalf("login without a name: exit %d: %s", code, errs)
	}
}
