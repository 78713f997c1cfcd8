package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
)

// Ask a broker for a named credential's token once, and tell its refusals
// apart by their contract codes.
func ExampleClient_Token() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := client.New(nc).Token(ctx, tokenbroker.Request{Credential: "crm-prod"})
	var tbErr *tokenbroker.Error
	switch {
	case err == nil:
		fmt.Println(rep.Action, "valid for", rep.ExpiresIn, "s")
	case errors.As(err, &tbErr) && tbErr.Code == tokenbroker.CodeRejected:
		log.Fatalf("the IdP refused the credential: %s: %s", tbErr.OAuth, tbErr.Description)
	case errors.Is(err, context.DeadlineExceeded):
		log.Fatal("the broker did not answer in time")
	default:
		log.Fatal(err)
	}
}

// Call an API with tokens the broker keeps fresh: the source takes the
// tokens the broker refreshes ahead of expiry, and asks the broker only
// when the one it holds is about to expire.
func ExampleClient_TokenSource() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	ctx := context.Background()
	src, err := client.New(nc).TokenSource(ctx, tokenbroker.Request{
		Username: "svc@contoso.com",
		Password: tokenbroker.Secret(os.Getenv("TOKENBROKER_PASSWORD")),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	resp, err := oauth2.NewClient(ctx, src).Get("https://contoso.crm.dynamics.com/api/data/v9.2/WhoAmI")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))
}

// Send the newest token on every request, pushed ones included, by using
// the source in an oauth2.Transport directly instead of oauth2.NewClient
// (which reuses a token until 10 s before its expiry).
func ExampleTokenSource_transport() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	src, err := client.New(nc).TokenSource(context.Background(), tokenbroker.Request{Credential: "crm-prod"},
		client.WithEarlyExpiry(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	hc := &http.Client{Transport: &oauth2.Transport{Source: src}, Timeout: 30 * time.Second}
	_ = hc
}

// Follow a credential's refreshes and failures, for an alert when a
// refresh fails for good (the IdP revoked the credential, say).
func ExampleClient_Watch() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	w, err := client.New(nc).Watch(ctx, "crm-prod", func(ev client.Event) {
		switch {
		case ev.Failed != nil:
			log.Printf("%s: refresh failed: %s: %s", ev.CredentialID(), ev.Failed.Error, ev.Failed.Description)
		case ev.Refreshed != nil:
			log.Printf("%s: new token, expires in %d s", ev.CredentialID(), ev.Refreshed.ExpiresIn)
		default:
			log.Printf("unreadable event on %s: %v", ev.Subject, ev.Err)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	<-ctx.Done()
}
