// Command tokenbroker runs the token broker and talks to a running one.
//
//	tokenbroker [serve] [flags]   run the broker
//	tokenbroker demo [flags]      run it with an embedded NATS and a built-in Azure-AD-style IdP
//	tokenbroker token [flags]     ask a running broker for a token
//	tokenbroker watch [ID]        print token.refreshed and token.failed events
//	tokenbroker status            show every broker's state
//	tokenbroker credential ...    put, rm, ls or show credentials in the brokers' registry
//	tokenbroker login NAME        sign a user in for a device_code credential
//
// Every command takes --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{lookup: os.LookupEnv, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}
