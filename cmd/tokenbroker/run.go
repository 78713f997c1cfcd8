package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/tokenbroker/tokenbroker/config"
)

// env is what a command sees of the process, so that tests run commands
// in-process with their own environment and output.
type env struct {
	lookup func(string) (string, bool)
	stdout io.Writer
	stderr io.Writer
	// ready, when set, receives the broker's NATS URL once it serves.
	ready func(natsURL string)
}

func (e env) getenv(name string) string {
	v, _ := e.lookup(name)
	return v
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed
	exitUsage = 2 // bad flags or configuration
)

const usage = `Usage: tokenbroker [command] [flags]

Commands:
  serve   run the broker (the default when no command is given)
  demo    run the broker with an embedded NATS server and a built-in
          Azure-AD-style identity provider, and print how to get a token
  token   ask a running broker for a token and print the reply
  watch   print token.refreshed and token.failed events as they arrive
  status  print every running broker's requests, errors and credentials
  demo-idp  serve only the demo's identity provider (for docker-compose.yml)
  credential  put, rm, ls or show the named credentials in the brokers' registry
  login   sign a user in for a device_code credential (RFC 8628)

Run 'tokenbroker COMMAND --help' for the flags of a command.
`

func run(ctx context.Context, args []string, e env) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, e)
	case "demo":
		return demo(ctx, args, e)
	case "token":
		return token(ctx, args, e)
	case "watch":
		return watch(ctx, args, e)
	case "status":
		return status(ctx, args, e)
	case "demo-idp":
		return demoIdP(ctx, args, e)
	case "credential":
		return credential(ctx, args, e)
	case "login":
		return loginCmd(ctx, args, e)
	case "help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(e.stderr, "tokenbroker: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// parse parses a command's flags, printing its help on --help.
func parse(fs *flag.FlagSet, args []string, e env, help string, defaults func(io.Writer)) (ok bool, code int) {
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), help)
		if defaults != nil {
			defaults(fs.Output())
		} else {
			fs.PrintDefaults()
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, exitOK
		}
		return false, exitUsage
	}
	return true, exitOK
}

// newLogger builds the process logger from LOG_LEVEL and LOG_FORMAT.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
