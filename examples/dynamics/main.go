// Command dynamics calls the Dynamics 365 Web API with a token from the
// token broker: the Go version of the original helper's Dynamics sample,
// which asked the HTTP service for a token and called WhoAmI.
//
// It asks a running broker over NATS for a TokenSource, for a named
// credential (--credential) or for a user of the default profile
// (--username, with the password in TOKENBROKER_PASSWORD, never in a flag),
// then GETs --api through oauth2.NewClient, which sends
// "Authorization: Bearer <token>" and gets a new token from the source
// whenever the one it holds is about to expire. It prints the HTTP status
// and the body.
//
//	NATS_URL=nats://127.0.0.1:4222 go run ./examples/dynamics --credential crm-prod
//	TOKENBROKER_PASSWORD=... go run ./examples/dynamics --username svc@contoso.com \
//	    --api https://contoso.crm.dynamics.com/api/data/v9.2/accounts?\$top=3
//
// Exit status: 0 when the API answered 2xx, 1 when it did not or a token
// could not be had, 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
)

const (
	defaultAPI = "https://contoso.crm.dynamics.com/api/data/v9.2/WhoAmI"
	// maxBody caps how much of the API's answer is printed.
	maxBody = 10 << 20
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// run is the whole program, with its environment passed in so that a test
// can run it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}

	fs := flag.NewFlagSet("dynamics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", or(getenv("NATS_URL"), "nats://127.0.0.1:4222"), "`URL` of the NATS server the broker uses (env NATS_URL)")
	prefix := fs.String("subject-prefix", or(getenv("SUBJECT_PREFIX"), "token"), "`prefix` of the broker's subjects (env SUBJECT_PREFIX)")
	credential := fs.String("credential", "", "named credential to get the token for")
	username := fs.String("username", "", "user of the default profile; the password is read from TOKENBROKER_PASSWORD")
	api := fs.String("api", defaultAPI, "Web API `URL` to GET")
	timeout := fs.Duration("timeout", 60*time.Second, "bound on the whole run")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dynamics (--credential NAME | --username USER) [--api URL] [--nats-url URL]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "dynamics:", msg)
		return 2
	}
	if fs.NArg() > 0 {
		return usage(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	var req tokenbroker.Request
	switch {
	case *credential != "" && *username != "":
		return usage("give --credential or --username, not both")
	case *credential != "":
		req.Credential = *credential
	case *username != "":
		pw := getenv("TOKENBROKER_PASSWORD")
		if pw == "" {
			return usage("--username needs the password in TOKENBROKER_PASSWORD")
		}
		req.Username, req.Password = *username, tokenbroker.Secret(pw)
	default:
		return usage("give --credential NAME, or --username USER with TOKENBROKER_PASSWORD")
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, err := nats.Connect(*natsURL, nats.Name("tokenbroker-dynamics-example"))
	if err != nil {
		fmt.Fprintf(stderr, "dynamics: connect to NATS at %s: %v\n", *natsURL, err)
		return 1
	}
	defer nc.Close()

	src, err := client.New(nc, client.WithSubjectPrefix(*prefix)).TokenSource(ctx, req)
	if err != nil {
		fmt.Fprintln(stderr, "dynamics: get a token:", err)
		return 1
	}
	defer src.Close()

	httpReq, err := http.NewRequestWithContext(ctx, http.MethodGet, *api, nil)
	if err != nil {
		return usage(fmt.Sprintf("--api: %v", err))
	}
	httpReq.Header.Set("Accept", "application/json")
	httpReq.Header.Set("OData-MaxVersion", "4.0")
	httpReq.Header.Set("OData-Version", "4.0")
	resp, err := oauth2.NewClient(ctx, src).Do(httpReq)
	if err != nil {
		fmt.Fprintln(stderr, "dynamics: GET", *api+":", err)
		return 1
	}
	defer resp.Body.Close()
	fmt.Fprintln(stdout, resp.Status)
	if _, err := io.Copy(stdout, io.LimitReader(resp.Body, maxBody)); err != nil {
		fmt.Fprintln(stderr, "dynamics: read the answer:", err)
		return 1
	}
	fmt.Fprintln(stdout)
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
