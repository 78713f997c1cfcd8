package wire_test

import (
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

// wire is shared with the Go client, which must stay light: its
// dependencies hold no package of the broker's server side and no package
// of this module but the root one.
func TestLinksNothingOfTheServer(t *testing.T) {
	testkit.LinksNothingOfTheServer(t, testkit.Module+"/wire", testkit.Module)
}
