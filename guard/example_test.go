package guard_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker/guard"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// A guard wraps the plain client; the broker hands it to the actors in place
// of the *oauth.Client.
func Example() {
	idp, err := fakeidp.Start(fakeidp.WithClient("app", "s3cret"))
	if err != nil {
		panic(err)
	}
	defer idp.Close()

	c := guard.New(oauth.NewClient(nil, 5*time.Second), guard.Options{
		MaxAttempts:      3,
		BaseBackoff:      10 * time.Millisecond, // short, for the example
		FailureThreshold: 2,
		OnAttempt: func(grant string, outcome oauth.Outcome, _ time.Duration) {
			fmt.Println("attempt:", grant, outcome)
		},
	})
	ep := oauth.Endpoint{TokenURL: idp.V2TokenURL(), ClientID: "app", ClientSecret: "s3cret", Scope: "api://x/.default"}

	// A 503 with Retry-After 0 is retried after a short jittered backoff.
	idp.Fail(fakeidp.FailHTML(503), 1)
	if _, err := c.ClientCredentials(context.Background(), ep); err == nil {
		fmt.Println("token after one retry")
	}

	// An outage opens the breaker after FailureThreshold failures; then
	// calls fail fast without reaching the IdP.
	idp.Fail(fakeidp.FailHTML(503), -1)
	_, err = c.ClientCredentials(context.Background(), ep)
	fmt.Println("outage:", err != nil, c.State(ep.TokenURL))
	_, err = c.ClientCredentials(context.Background(), ep)
	fmt.Println("fail fast:", errors.Is(err, guard.ErrCircuitOpen))
	// Output:
	// attempt: client_credentials unavailable
	// attempt: client_credentials ok
	// token after one retry
	// attempt: client_credentials unavailable
	// attempt: client_credentials unavailable
	// outage: true open
	// fail fast: true
}
