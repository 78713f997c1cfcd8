package messaging_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/wire"
)

// benchReply is a token reply of realistic size, encoded once.
var benchReply = func() []byte {
	token := make([]byte, 400)
	for i := range token {
		token[i] = 'a' + byte(i%26)
	}
	c := tokenbroker.NewCachedReply("bench", &tokenbroker.Token{AccessToken: string(token), TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
	return c.AppendTo(nil, tokenbroker.ActionExisting, time.Now())
}()

// cachedBackend answers every request at once with benchReply, as a cache
// hit does: the cost left is messaging's and NATS's.
type cachedBackend struct{}

func (cachedBackend) Serve(_ tokenbroker.Request, rep tokenbroker.Replier) {
	rep.Respond(tokenbroker.ActionExisting, benchReply)
}

// roundTrips sends requests to subject from b.RunParallel goroutines over
// one connection.
func roundTrips(b *testing.B, caller *nats.Conn, subject string) {
	body := []byte(`{"credential":"bench"}`)
	if _, err := caller.Request(subject, body, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchReply)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			msg, err := caller.Request(subject, body, 5*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			if len(msg.Data) != len(benchReply) {
				b.Errorf("reply of %d bytes, want %d", len(msg.Data), len(benchReply))
				return
			}
		}
	})
}

// BenchmarkTokenRequestRoundTrip is token.request through the micro service
// and DecodeRequest, answered synchronously from a pre-encoded reply.
func BenchmarkTokenRequestRoundTrip(b *testing.B) {
	s := natstest.StartServer(b)
	svc, err := messaging.NewService(natstest.Connect(b, s), wire.Subjects{Prefix: "token"}, cachedBackend{}, messaging.ServiceOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Stop() })
	roundTrips(b, natstest.Connect(b, s), "token.request")
}

// BenchmarkEchoRoundTrip is the floor: a plain responder of the same reply
// size, on the same kind of server and connections.
func BenchmarkEchoRoundTrip(b *testing.B) {
	s := natstest.StartServer(b)
	responder := natstest.Connect(b, s)
	if _, err := responder.QueueSubscribe("bench.echo", "bench", func(m *nats.Msg) { _ = m.Respond(benchReply) }); err != nil {
		b.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		b.Fatal(err)
	}
	roundTrips(b, natstest.Connect(b, s), "bench.echo")
}
