package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// sseEvent is one event of an /events stream.
type sseEvent struct {
	event, id string
	data      []byte
}

// openEvents opens GET /events?credential=name with Last-Event-ID last
// (when not empty) and returns its events, read by a goroutine; the
// channel is closed at the end of the stream.
func openEvents(t *testing.T, base, name, last string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?credential="+name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /events?credential=%s: %d %s", name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					ch <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				cur.data = []byte(strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return ch
}

// nextRefreshed returns the stream's next event, which must be a refreshed
// one, within 10 seconds.
func nextRefreshed(t *testing.T, ch <-chan sseEvent) (sseEvent, tokenbroker.RefreshedEvent) {
	t.Helper()
	select {
	case it, ok := <-ch:
		if !ok {
			t.Fatal("the stream ended")
		}
		var ev tokenbroker.RefreshedEvent
		if it.event != "refreshed" || json.Unmarshal(it.data, &ev) != nil || ev.EventID != it.id {
			t.Fatalf("event %q id %q: %.200s", it.event, it.id, it.data)
		}
		return it, ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event in 10s")
	}
	panic("unreachable")
}

// The whole path: the Router's cached token starts the stream, a token the
// actor obtains arrives as its event, a reconnect with Last-Event-ID gets
// what it missed, and the broker's shutdown ends the streams it has open.
func TestEventsEndToEnd(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute, withHTTP)
	base := "http://" + e.broker.HTTPAddr()

	code, body := post(t, base+"/requesttoken", `{"credential":"`+app+`"}`)
	var first tokenbroker.Reply
	if code != http.StatusOK || json.Unmarshal(body, &first) != nil {
		t.Fatalf("token: %d %s", code, body)
	}

	// The stream starts with the token in cache; its event went out
	// before anyone streamed, so its id is synthesized.
	a := openEvents(t, base, app, "")
	it, cur := nextRefreshed(t, a)
	if cur.AccessToken != first.AccessToken || cur.ExpiresOn != first.ExpiresOn || cur.CredentialID != app ||
		!strings.HasPrefix(it.id, "current-") || cur.Action != tokenbroker.ActionExisting {
		t.Fatalf("first event %s: %+v", it.id, cur)
	}

	// A new token is pushed as the broker publishes it.
	forceRefresh := func() tokenbroker.Reply {
		code, body := post(t, base+"/requesttoken", `{"credential":"`+app+`","force_refresh":true}`)
		var r tokenbroker.Reply
		if code != http.StatusOK || json.Unmarshal(body, &r) != nil {
			t.Fatalf("force_refresh: %d %s", code, body)
		}
		return r
	}
	second := forceRefresh()
	it2, ev2 := nextRefreshed(t, a)
	if ev2.AccessToken != second.AccessToken || ev2.AccessToken == first.AccessToken || strings.HasPrefix(it2.id, "current-") {
		t.Fatalf("pushed event %s: token is the reply's %v, the first's %v", it2.id, ev2.AccessToken == second.AccessToken, ev2.AccessToken == first.AccessToken)
	}

	// While a is away, the token changes again; reconnecting with the
	// last id it saw replays what came since.
	third := forceRefresh()
	_, ev3 := nextRefreshed(t, a)
	b := openEvents(t, base, app, it2.id)
	if _, got := nextRefreshed(t, b); got.EventID != ev3.EventID || got.AccessToken != third.AccessToken {
		t.Fatalf("replayed %s, want %s", got.EventID, ev3.EventID)
	}
	// An id it has never seen: the current token, as published.
	c := openEvents(t, base, app, "no-such-id")
	if _, got := nextRefreshed(t, c); got.EventID != ev3.EventID {
		t.Fatalf("after an unknown id: %s, want the current token's event %s", got.EventID, ev3.EventID)
	}

	// Named credentials only, and the gateway's own Host only.
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/events?credential=nope", "", http.StatusNotFound},
		{"/events", "", http.StatusBadRequest},
		{"/events?credential=" + first.CredentialID + "x", "", http.StatusNotFound},
		{"/events?credential=" + app, "rebound.example", http.StatusMisdirectedRequest},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s (Host %q): %d %s, want %d JSON", tc.path, tc.host, resp.StatusCode, resp.Header.Get("Content-Type"), tc.want)
		}
	}
	// A username's credential is not streamed, under its credential_id.
	code, body = post(t, base+"/requesttoken", `{"username":"`+user+`","password":"`+password+`"}`)
	var ur tokenbroker.Reply
	if code != http.StatusOK || json.Unmarshal(body, &ur) != nil {
		t.Fatalf("user token: %d %s", code, body)
	}
	resp, err := http.Get(base + "/events?credential=" + ur.CredentialID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a username's credential_id: %d, want 404", resp.StatusCode)
	}

	// Shutdown with three streams open returns, without waiting out its
	// context, and ends them.
	if err := brokertest.Stop(e.broker); err != nil {
		t.Fatalf("shutdown with streams open: %v", err)
	}
	for _, ch := range []<-chan sseEvent{a, b, c} {
		select {
		case it, ok := <-ch:
			if ok {
				t.Fatalf("an event after shutdown: %s", it.id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a stream outlived the broker by 10s")
		}
	}
}
