package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker/wire"
)

const loginHelp = `Usage: tokenbroker login [flags] NAME

Enrols a user for the device_code credential NAME (RFC 8628): asks a broker
(SUBJECT_PREFIX.admin.login) to start the device authorization grant, prints
where to sign in and the code to type, and waits until the user has signed in,
declined, or the code expired. The broker keeps the refresh token (encrypted
when it keeps its state in JetStream), refreshes it from then on, and serves the
credential like any other. Run it again when token.failed.NAME says a new login
is needed.

Exit status: 0 signed in, 1 declined, expired or failed, 2 usage.

`

// loginCmd runs `tokenbroker login NAME`.
func loginCmd(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker login", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	pos, ok, code := parseWithArgs(fs, args, e, loginHelp, 1, "NAME")
	if !ok {
		return code
	}
	name := pos[0]
	data, _ := json.Marshal(wire.AdminNameRequest{Name: name})
	var rep wire.AdminLoginReply
	r := adminReq{subject: wire.Subjects{Prefix: *cf.prefix}.AdminLogin(), data: data, name: name}
	if _, code := adminRequest(ctx, e, cf, r, &rep); code != exitOK {
		return code
	}
	if rep.VerificationURIComplete != "" {
		fmt.Fprintf(e.stdout, "To sign in for %s, open %s\n(or open %s and enter the code %s).\n",
			name, rep.VerificationURIComplete, rep.VerificationURI, rep.UserCode)
	} else {
		fmt.Fprintf(e.stdout, "To sign in for %s, open %s and enter the code %s\n", name, rep.VerificationURI, rep.UserCode)
	}
	if rep.Message != "" {
		fmt.Fprintf(e.stdout, "%s\n", rep.Message)
	}
	fmt.Fprintf(e.stdout, "The code expires in %s. Waiting...\n", time.Duration(rep.ExpiresIn)*time.Second)
	return waitLogin(ctx, e, cf, rep, data)
}

// waitLogin asks the broker that runs the login how it stands until it
// ends: each wait is answered within wire.LoginWaitMax, pending or not.
func waitLogin(ctx context.Context, e env, cf clientFlags, rep wire.AdminLoginReply, data []byte) int {
	nc, err := cf.connect(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return exitError
	}
	defer nc.Close()
	subject := rep.WaitSubject
	if subject == "" {
		subject = wire.Subjects{Prefix: *cf.prefix}.AdminLoginWait(rep.Broker)
	}
	deadline := time.Now().Add(time.Duration(rep.ExpiresIn)*time.Second + 2*wire.LoginWaitMax)
	for time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(ctx, max(*cf.timeout, wire.LoginWaitMax+10*time.Second))
		msg, err := nc.RequestWithContext(rctx, subject, data)
		cancel()
		switch {
		case ctx.Err() != nil:
			fmt.Fprintln(e.stderr, "tokenbroker: stopped waiting; the broker goes on polling until the code expires")
			return exitError
		case errors.Is(err, nats.ErrNoResponders):
			fmt.Fprintf(e.stderr, "tokenbroker: the broker that started the login (%s) is gone; run login again\n", rep.Broker)
			return exitError
		case err != nil:
			fmt.Fprintf(e.stderr, "tokenbroker: %s: %v\n", subject, err)
			return exitError
		}
		if te := wire.DecodeError(msg); te != nil {
			fmt.Fprintf(e.stderr, "tokenbroker: %s\n", describe(te))
			return exitError
		}
		var st wire.AdminLoginStatus
		if err := json.Unmarshal(msg.Data, &st); err != nil {
			fmt.Fprintf(e.stderr, "tokenbroker: the answer on %s is not what a broker sends: %v\n", subject, err)
			return exitError
		}
		switch st.State {
		case wire.LoginPending:
			continue
		case wire.LoginDone:
			fmt.Fprintf(e.stdout, "signed in: %s is served\n", rep.Name)
			return exitOK
		case wire.LoginDenied:
			fmt.Fprintln(e.stderr, "tokenbroker: the user declined the sign-in")
		case wire.LoginExpired:
			fmt.Fprintln(e.stderr, "tokenbroker: the code expired before the user signed in; run login again")
		default:
			fmt.Fprintf(e.stderr, "tokenbroker: login failed: %s: %s\n", st.Error, st.Description)
		}
		return exitError
	}
	fmt.Fprintln(e.stderr, "tokenbroker: the login did not end in time")
	return exitError
}
