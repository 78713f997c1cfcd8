package messaging_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// TestExampleConfigsLetTheBrokerReadItsEvents: the HTTP gateway's
// GET /events subscribes to token.refreshed.<id> and token.failed.<id> on
// the broker's own connection, so in both example configs the broker user
// may subscribe to them and receives what is published there, while a user
// that is not the broker still may not, and gets nothing.
func TestExampleConfigsLetTheBrokerReadItsEvents(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		setPasswords func(*testing.T)
		// other is a user of the broker's account that is not the
		// broker: a plain caller, or in the accounts example (where no
		// caller shares the broker's account) the operators' user.
		other, otherPassword string
	}{
		{"nats-auth", exampleNATSConfig, setExamplePasswords, "caller", secCallerPassword},
		{"nats-auth consumer of crm-prod", exampleNATSConfig, setExamplePasswords, "consumer-crm", secConsumerPassword},
		{"nats-accounts", exampleAccountsConfig, setAccountsPasswords, "admin", secAdminPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setPasswords(t)
			example := loadConfigFile(t, tc.config)
			s := natstest.StartServer(t, func(o *server.Options) {
				example.Host, example.Port, example.NoLog, example.NoSigs = o.Host, o.Port, o.NoLog, o.NoSigs
				*o = *example
			})
			url := s.ClientURL()

			// One broker connection reads, as the gateway does; another
			// publishes, as the broker's publisher (or a peer broker) does.
			reader := connectAs(t, url, "broker", secBrokerPassword, nil)
			publisher := connectAs(t, url, "broker", secBrokerPassword, nil)
			const foreign = "hr-prod" // a credential consumer-crm may not watch either
			subjects := []string{"token.refreshed." + secCredential, "token.failed." + secCredential,
				"token.refreshed." + foreign, "token.failed." + foreign}
			subs := make([]*nats.Subscription, len(subjects))
			for i, subject := range subjects {
				subs[i] = subscribeSync(t, reader, subject)
			}
			flush(t, reader) // fails on a refused subscription

			otherErrs := make(asyncErrors, 8)
			snooper := connectAs(t, url, tc.other, tc.otherPassword, otherErrs)
			denied := subscribeDenied(t, snooper, otherErrs, "token.refreshed."+foreign)

			for _, subject := range subjects {
				if err := publisher.Publish(subject, []byte(`{"credential_id":"`+subject+`"}`)); err != nil {
					t.Fatal(err)
				}
			}
			flush(t, publisher)
			for i, sub := range subs {
				m, err := sub.NextMsg(10 * time.Second)
				if err != nil {
					t.Fatalf("broker on %s: %v", subjects[i], err)
				}
				if want := `{"credential_id":"` + subjects[i] + `"}`; string(m.Data) != want {
					t.Fatalf("broker on %s got %s, want %s", subjects[i], m.Data, want)
				}
			}
			// Every delivery the server made was sent before its answer
			// to this Flush: the refused subscription got none.
			if err := snooper.Flush(); err != nil {
				t.Fatal(err)
			}
			if m, err := denied.NextMsg(50 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
				t.Fatalf("%s received %v (%v) on a refused subscription", tc.other, m, err)
			}
		})
	}
}

// TestExampleConfigEventsStreamOverHTTP runs a broker with its HTTP gateway
// on the nats-auth example, logged in as "broker": GET /events starts with
// the current token and then carries the token of a refresh a caller forced
// over NATS, which reaches the stream only through the broker's
// subscription to token.refreshed.crm-prod; and nothing was refused to the
// broker.
func TestExampleConfigEventsStreamOverHTTP(t *testing.T) {
	setExamplePasswords(t)
	loadExampleConfig(t)
	idp := startSecIdP(t)

	cfg := exampleBrokerConfig(exampleNATSConfig, "broker", secBrokerPassword)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Credentials = secCredentials(idp)
	logs := &testkit.LogBuffer{}
	b := brokertest.StartBroker(t, cfg, broker.Options{Logger: logs.Logger()})
	caller := connectAs(t, b.ClientURL(), "caller", secCallerPassword, nil)
	ask := func(body string) tokenbroker.Reply {
		t.Helper()
		msg, err := caller.Request("token.request", []byte(body), 10*time.Second)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		var r tokenbroker.Reply
		if err := json.Unmarshal(msg.Data, &r); err != nil || r.AccessToken == "" {
			t.Fatalf("reply %s (%v)", msg.Data, err)
		}
		return r
	}
	first := ask(`{"credential":"crm-prod"}`)

	events := streamEvents(t, "http://"+b.HTTPAddr()+"/events?credential="+secCredential)
	if ev := nextStreamed(t, events); ev.AccessToken != first.AccessToken {
		t.Fatal("the stream did not start with the current token")
	}
	second := ask(`{"credential":"crm-prod","force_refresh":true}`)
	if second.AccessToken == first.AccessToken {
		t.Fatal("force_refresh returned the same token")
	}
	if ev := nextStreamed(t, events); ev.AccessToken != second.AccessToken || ev.CredentialID != secCredential {
		t.Fatalf("streamed event of %s is not the refreshed token", ev.CredentialID)
	}
	if l := logs.String(); strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Fatalf("the broker was refused a subject:\n%s", l)
	}
	assertNoSecretIn(t, logs.String(), secBrokerPassword, secCallerPassword, secClientSecret, first.AccessToken, second.AccessToken)
}

// streamEvents opens an /events stream at url and returns the data of its
// refreshed events, read by a goroutine until the test ends.
func streamEvents(t *testing.T, url string) <-chan []byte {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	ch := make(chan []byte, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				event = ""
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "refreshed":
				ch <- []byte(strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return ch
}

// nextStreamed returns the next refreshed event of a stream of
// streamEvents, within 10 seconds.
func nextStreamed(t *testing.T, ch <-chan []byte) tokenbroker.RefreshedEvent {
	t.Helper()
	select {
	case data, ok := <-ch:
		if !ok {
			t.Fatal("the stream ended")
		}
		var ev tokenbroker.RefreshedEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatalf("event %.200s: %v", data, err)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no refreshed event in 10s")
	}
	panic("unreachable")
}
