package client_test

import (
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// An application that only asks for tokens links nats.go and
// golang.org/x/oauth2, and nothing of the broker: not the embedded
// nats-server, not the actors (hollywood), not Prometheus, and no package of
// this module but the root one (the domain types) and wire. Importing
// messaging, say, would pull all of them in.
func TestLinksNothingOfTheServer(t *testing.T) {
	testkit.LinksNothingOfTheServer(t, testkit.Module+"/client", testkit.Module, testkit.Module+"/wire")
}
