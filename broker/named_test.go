package broker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// Each named credential is also served on its own subject,
// token.request.<name>, so that NATS permissions can grant a caller exactly
// its credentials; NAMED_ON_SHARED_SUBJECT=false leaves token.request to
// username/password requests.
func TestNamedCredentialsOnTheirOwnSubjects(t *testing.T) {
	for _, shared := range []bool{true, false} {
		env := brokertest.Start(t, brokertest.Options{Adjust: func(cfg *config.Config, _ *fakeidp.Server) {
			cfg.NamedOnSharedSubject = shared
		}})
		nc, err := nats.Connect(env.Broker.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		for _, tc := range []struct {
			subject, body, code string
		}{
			{"token.request." + brokertest.App, ``, ""},
			{"token.request." + brokertest.App, `{}`, ""},
			{"token.request." + brokertest.App, `{"force_refresh":true,"min_ttl":60}`, ""},
			{"token.request." + brokertest.App, `{"credential":"` + brokertest.App + `"}`, ""},
			{"token.request." + brokertest.App, `{"credential":"other"}`, "400"},
			{"token.request." + brokertest.App, `{"username":"` + brokertest.User + `","password":"` + brokertest.Password + `"}`, "400"},
			{"token.request.nope", ``, "404"},
			{"token.request", `{"username":"` + brokertest.User + `","password":"` + brokertest.Password + `"}`, ""},
			{"token.request", `{"credential":"` + brokertest.App + `"}`, map[bool]string{true: "", false: "400"}[shared]},
		} {
			msg, err := nc.Request(tc.subject, []byte(tc.body), 10*time.Second)
			if err != nil {
				t.Fatalf("shared %t, %s %s: %v", shared, tc.subject, tc.body, err)
			}
			if got := msg.Header.Get(micro.ErrorCodeHeader); got != tc.code {
				t.Errorf("shared %t, %s %s: code %q, want %q (%s)", shared, tc.subject, tc.body, got, tc.code, msg.Data)
			}
		}
	}
}
