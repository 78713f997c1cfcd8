package messaging_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/wire"
)

// holdingAdmin holds every login wait until release is closed (or the
// wait's own bound ends).
type holdingAdmin struct {
	release chan struct{}
	held    chan struct{}
}

func (holdingAdmin) Put(context.Context, wire.AdminPutRequest, string) (wire.AdminPutReply, *tokenbroker.Error) {
	return wire.AdminPutReply{}, nil
}
func (holdingAdmin) Remove(context.Context, string, string) (wire.AdminRmReply, *tokenbroker.Error) {
	return wire.AdminRmReply{}, nil
}
func (holdingAdmin) List(context.Context) (wire.AdminListReply, *tokenbroker.Error) {
	return wire.AdminListReply{}, nil
}
func (holdingAdmin) Show(context.Context, string) (wire.AdminCredentialInfo, *tokenbroker.Error) {
	return wire.AdminCredentialInfo{}, nil
}
func (holdingAdmin) Login(context.Context, string, string) (wire.AdminLoginReply, *tokenbroker.Error) {
	return wire.AdminLoginReply{Broker: "b1"}, nil
}
func (a holdingAdmin) LoginWait(ctx context.Context, name string) (wire.AdminLoginStatus, *tokenbroker.Error) {
	a.held <- struct{}{}
	select {
	case <-a.release:
		return wire.AdminLoginStatus{Name: name, State: wire.LoginDone}, nil
	case <-ctx.Done():
		return wire.AdminLoginStatus{Name: name, State: wire.LoginPending}, nil
	}
}
func (holdingAdmin) BrokerID() string { return "b1" }

// Login waits are answered on goroutines of their own, so one wait does not
// hold up another, and no more than MaxLoginWaits at once: the next is a
// 429 at once.
func TestLoginWaitsAreConcurrentAndBounded(t *testing.T) {
	s := natstest.StartServer(t)
	admin := holdingAdmin{release: make(chan struct{}), held: make(chan struct{}, messaging.MaxLoginWaits)}
	svc, err := messaging.NewService(natstest.Connect(t, s), wire.Subjects{}, stub{}, messaging.ServiceOptions{Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	nc := natstest.Connect(t, s)
	subject := wire.Subjects{}.AdminLoginWait("b1")
	body, _ := json.Marshal(wire.AdminNameRequest{Name: "mail"})

	replies := make(chan *nats.Msg, messaging.MaxLoginWaits)
	for i := 0; i < messaging.MaxLoginWaits; i++ {
		inbox := nats.NewInbox()
		if _, err := nc.ChanSubscribe(inbox, replies); err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest(subject, inbox, body); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < messaging.MaxLoginWaits; i++ {
		select {
		case <-admin.held:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d waits held at once", i)
		}
	}
	msg, err := nc.Request(subject, body, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if te := wire.DecodeError(msg); te == nil || te.Code != tokenbroker.CodeTooMany {
		t.Fatalf("a wait past the bound: %s", msg.Data)
	}
	close(admin.release)
	for i := 0; i < messaging.MaxLoginWaits; i++ {
		select {
		case m := <-replies:
			var st wire.AdminLoginStatus
			if err := json.Unmarshal(m.Data, &st); err != nil || st.State != wire.LoginDone {
				t.Fatalf("held wait answered %s", m.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d held waits answered", i)
		}
	}
}
