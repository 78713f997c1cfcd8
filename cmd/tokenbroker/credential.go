package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/wire"
)

const credentialHelp = `Usage: tokenbroker credential COMMAND [flags] [ARG]

Manages the named credentials the brokers keep in their registry, over NATS
(SUBJECT_PREFIX.admin.credential.*). The registry exists only on brokers
started with TOKENBROKER_KEY, which encrypts its secrets. Credentials declared
in TOKENBROKER_CONFIG are listed too, but change only in that file.

Commands:
  put FILE    add or replace the credentials FILE declares, in TOKENBROKER_CONFIG's
              format; secrets are read from their *_file here and sent
  rm NAME     remove a credential from the registry
  ls          list the credentials a broker serves
  show NAME   print one credential, without its secrets

Every command takes the NATS settings of the broker (NATS_URL, NATS_CREDS,
NATS_NKEY, NATS_USER and NATS_PASSWORD, NATS_TOKEN, NATS_CA, NATS_CERT and
NATS_KEY) and --help. Exit status: 0 done, 1 failed, 2 usage.
`

const credentialPutHelp = `Usage: tokenbroker credential put [flags] FILE

Reads FILE, a YAML file in TOKENBROKER_CONFIG's format (its credentials list;
a nats section is ignored and not sent), checks it as a broker's start-up does,
reads the secrets its *_file keys name, and stores its credentials in the
brokers' registry, replacing those of the same names. Prints "put NAME" for each
one, and the broker's warnings on stderr. The secrets travel in the request:
connect with TLS (a tls:// NATS_URL, or NATS_CA) unless NATS is on this host.

`

const credentialRmHelp = `Usage: tokenbroker credential rm [flags] NAME

Removes the credential NAME from the brokers' registry and prints "removed NAME".
A credential declared in TOKENBROKER_CONFIG cannot be removed this way.

`

const credentialLsHelp = `Usage: tokenbroker credential ls [flags]

Prints the credentials a broker serves, from TOKENBROKER_CONFIG and from the
registry, sorted by name: where each comes from, its grant, token endpoint,
client id, and how long the token that broker holds stays valid ("-": none).

`

const credentialShowHelp = `Usage: tokenbroker credential show [flags] NAME

Prints what a broker knows of the credential NAME as "key: value" lines. No
secret is ever shown: only which kinds of secret the credential has.

`

// credential runs `tokenbroker credential SUBCOMMAND`.
func credential(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, "tokenbroker credential: give a command\n\n"+credentialHelp)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "put":
		return credentialPut(ctx, args, e)
	case "rm":
		return credentialRm(ctx, args, e)
	case "ls":
		return credentialLs(ctx, args, e)
	case "show":
		return credentialShow(ctx, args, e)
	case "-h", "-help", "--help", "help":
		// On stderr, as every command's --help is (flag's convention).
		fmt.Fprint(e.stderr, credentialHelp)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "tokenbroker credential: unknown command %q\n\n%s", sub, credentialHelp)
	return exitUsage
}

// parseWithArgs parses fs and returns exactly want positional arguments,
// which may come before, between or after the flags: operators type
// `credential show crm-prod --json` as readily as the other way round.
func parseWithArgs(fs *flag.FlagSet, args []string, e env, help string, want int, what string) (pos []string, ok bool, code int) {
	for {
		if ok, code := parse(fs, args, e, help, nil); !ok {
			return nil, false, code
		}
		// After "--" everything is an argument, even what looks like a flag.
		consumed := len(args) - fs.NArg()
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, fs.Args()...)
			break
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != want {
		if want == 0 {
			fmt.Fprintf(e.stderr, "%s: unexpected argument %q\n", fs.Name(), pos[0])
		} else {
			fmt.Fprintf(e.stderr, "%s: give one %s\n", fs.Name(), what)
		}
		return nil, false, exitUsage
	}
	return pos, true, exitOK
}

// refreshThresholdDefault is the refresh_threshold of the file's
// credentials that set none, as for the broker: REFRESH_THRESHOLD (or its
// older name REFRESH_TIME), else 600 seconds.
func refreshThresholdDefault(e env) string {
	for _, name := range []string{"REFRESH_THRESHOLD", "REFRESH_TIME"} {
		if v, ok := e.lookup(name); ok {
			return v
		}
	}
	return "600"
}

func credentialPut(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker credential put", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	threshold := fs.String("refresh-threshold", refreshThresholdDefault(e),
		"refresh_threshold, in `seconds`, of the file's credentials that set none (env REFRESH_THRESHOLD)")
	pos, ok, code := parseWithArgs(fs, args, e, credentialPutHelp, 1, "FILE")
	if !ok {
		return code
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(*threshold), 10, 64)
	if err != nil || secs < 0 {
		fmt.Fprintf(e.stderr, "tokenbroker credential put: --refresh-threshold / REFRESH_THRESHOLD: %q is not a whole, non-negative number of seconds\n", *threshold)
		return exitUsage
	}
	path := pos[0]
	creds, msg := loadCredentialFile(path, config.Credential{RefreshThreshold: time.Duration(secs) * time.Second})
	if msg != "" {
		fmt.Fprintf(e.stderr, "tokenbroker: %s\n", msg)
		return exitError
	}
	req := wire.AdminPutRequest{Credentials: make([]wire.Credential, len(creds))}
	for i, c := range creds {
		req.Credentials[i] = c.Wire()
	}
	data, err := json.Marshal(req)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return exitError
	}
	// The request holds the secrets in clear: wipe the bytes once sent, so
	// that they do not linger in the heap (the strings they were made of
	// cannot be wiped, but this copy at least need not survive).
	defer clear(data)

	// A refusal about the one credential of a file can name it.
	name := ""
	if len(creds) == 1 {
		name = creds[0].Name
	}
	var rep wire.AdminPutReply
	r := adminReq{subject: wire.Subjects{Prefix: *cf.prefix}.AdminCredentialPut(), data: data, name: name, secrets: true}
	if _, code := adminRequest(ctx, e, cf, r, &rep); code != exitOK {
		return code
	}
	for _, name := range rep.Put {
		fmt.Fprintf(e.stdout, "put %s\n", name)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	return exitOK
}

// loadCredentialFile loads path's credentials as a broker's start-up loads
// TOKENBROKER_CONFIG, and returns the one-line error start-up would print
// (after "tokenbroker: "), or "".
func loadCredentialFile(path string, defaults config.Credential) ([]config.Credential, string) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Sprintf("cannot read %q: %v", path, err)
	}
	defer f.Close()
	file, err := config.LoadFile(f, defaults)
	if err != nil {
		return nil, startupError(path, err)
	}
	if file == nil || len(file.Credentials) == 0 {
		return nil, fmt.Sprintf("%s declares no credentials", path)
	}
	return file.Credentials, ""
}

// lineSuffix is how config.LoadFile places a line: at the end.
var lineSuffix = regexp.MustCompile(`^config: (.*) \(line (\d+)\)$`)

// startupError turns config.LoadFile's error, which does not know the
// file's name, into the one a broker's start-up prints for the same file,
// which names it as FILE:LINE: an operator sees the same mistake described
// the same way wherever the file is read.
func startupError(path string, err error) string {
	msg := err.Error()
	if !errors.Is(err, config.ErrInvalid) {
		return msg
	}
	if m := lineSuffix.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("config: %s:%s: %s", path, m[2], m[1])
	}
	if rest, ok := strings.CutPrefix(msg, "config: "); ok {
		return fmt.Sprintf("config: %s: %s", path, rest)
	}
	return msg
}

func credentialRm(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker credential rm", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	pos, ok, code := parseWithArgs(fs, args, e, credentialRmHelp, 1, "NAME")
	if !ok {
		return code
	}
	name := pos[0]
	data, _ := json.Marshal(wire.AdminNameRequest{Name: name})
	var rep wire.AdminRmReply
	r := adminReq{subject: wire.Subjects{Prefix: *cf.prefix}.AdminCredentialRm(), data: data, name: name}
	if _, code := adminRequest(ctx, e, cf, r, &rep); code != exitOK {
		return code
	}
	if rep.Removed == "" {
		rep.Removed = name
	}
	fmt.Fprintf(e.stdout, "removed %s\n", rep.Removed)
	return exitOK
}

func credentialLs(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker credential ls", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	asJSON := fs.Bool("json", false, "print the broker's reply as JSON")
	if _, ok, code := parseWithArgs(fs, args, e, credentialLsHelp, 0, ""); !ok {
		return code
	}
	var rep wire.AdminListReply
	raw, code := adminRequest(ctx, e, cf, adminReq{subject: wire.Subjects{Prefix: *cf.prefix}.AdminCredentialLs()}, &rep)
	if code != exitOK {
		return code
	}
	if *asJSON {
		fmt.Fprintln(e.stdout, strings.TrimSpace(string(raw)))
		return exitOK
	}
	sort.Slice(rep.Credentials, func(i, j int) bool { return rep.Credentials[i].Name < rep.Credentials[j].Name })
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSOURCE\tGRANT\tENDPOINT\tCLIENT ID\tEXPIRES")
	now := time.Now()
	for _, c := range rep.Credentials {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, source(c), dash(c.Grant),
			dash(endpoint(c)), dash(c.ClientID), timeLeft(c.ExpiresOn, now))
	}
	_ = w.Flush()
	return exitOK
}

func credentialShow(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("tokenbroker credential show", flag.ContinueOnError)
	cf := registerClientFlags(fs, e)
	asJSON := fs.Bool("json", false, "print the broker's reply as JSON")
	pos, ok, code := parseWithArgs(fs, args, e, credentialShowHelp, 1, "NAME")
	if !ok {
		return code
	}
	name := pos[0]
	data, _ := json.Marshal(wire.AdminNameRequest{Name: name})
	var c wire.AdminCredentialInfo
	r := adminReq{subject: wire.Subjects{Prefix: *cf.prefix}.AdminCredentialShow(), data: data, name: name}
	raw, code := adminRequest(ctx, e, cf, r, &c)
	if code != exitOK {
		return code
	}
	if *asJSON {
		fmt.Fprintln(e.stdout, strings.TrimSpace(string(raw)))
		return exitOK
	}
	lines := [][2]string{
		{"name", c.Name},
		{"source", source(c)},
		{"grant", c.Grant},
		{"token_endpoint", c.TokenEndpoint},
		{"issuer", c.Issuer},
		{"client_id", c.ClientID},
		{"scope", c.Scope},
		{"resource", c.Resource},
		{"username", c.Username},
		{"refresh_threshold", (time.Duration(c.RefreshThreshold) * time.Second).String()},
		{"keep_warm", strconv.FormatBool(c.KeepWarm)},
		{"secrets", strings.Join(c.Secrets, ", ")},
		{"certificate_not_after", c.CertificateNotAfter},
		{"expires_on", expiresOn(c.ExpiresOn, time.Now())},
		{"updated_at", c.UpdatedAt},
	}
	for _, l := range lines {
		// Keys without a value are left out, as the JSON leaves them out.
		if l[1] != "" {
			fmt.Fprintf(e.stdout, "%s: %s\n", l[0], l[1])
		}
	}
	return exitOK
}

// adminReq is one request to the admin endpoints.
type adminReq struct {
	subject string
	data    []byte
	// name is the credential the request is about, for the messages of
	// 404 and 409; "" when there is not one.
	name string
	// secrets says data holds some, which a plain-text connection to
	// another host would expose.
	secrets bool
}

// adminRequest sends r and decodes the broker's answer into out. It prints
// any failure as one line and returns the exit code, and the answer's raw
// bytes for --json.
func adminRequest(ctx context.Context, e env, cf clientFlags, r adminReq, out any) (raw []byte, code int) {
	nc, err := cf.connect(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %v\n", err)
		return nil, exitError
	}
	defer nc.Close()
	if r.secrets && !tlsOrLocal(nc) {
		fmt.Fprintf(e.stderr, "warning: the secrets go to %s without TLS (use a tls:// NATS_URL, or NATS_CA)\n", nc.ConnectedUrlRedacted())
	}
	rctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, r.subject, r.data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		fmt.Fprintf(e.stderr, "tokenbroker: no broker answers on %s (is one running, and may this NATS user publish there?)\n", r.subject)
		return nil, exitError
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		// NATS drops a request this user may not publish, or a reply it
		// may not receive, and says why only on the side: in LastError.
		why := ""
		if le := nc.LastError(); le != nil {
			why = " (" + le.Error() + ")"
		}
		fmt.Fprintf(e.stderr, "tokenbroker: no broker answered on %s within %s%s\n", r.subject, *cf.timeout, why)
		return nil, exitError
	case err != nil:
		fmt.Fprintf(e.stderr, "tokenbroker: %s: %v\n", r.subject, err)
		return nil, exitError
	}
	if te := wire.DecodeError(msg); te != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: %s\n", adminError(te, r.name))
		return nil, exitError
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		fmt.Fprintf(e.stderr, "tokenbroker: the answer on %s is not what a broker sends: %v\n", r.subject, err)
		return nil, exitError
	}
	return msg.Data, exitOK
}

// adminError says what a broker's refusal means for the operator, and what
// to do about it.
func adminError(te *tokenbroker.Error, name string) string {
	switch {
	case te.Code == tokenbroker.CodeUnavailable && te.OAuth == wire.AdminRegistryOff:
		return "the brokers keep no credential registry: start them with TOKENBROKER_KEY (it encrypts the registry's secrets)"
	case te.Code == tokenbroker.CodeNotFound && name != "":
		return fmt.Sprintf("no credential named %q", name)
	case te.Code == 409 && te.OAuth == wire.AdminInFile && name != "":
		return fmt.Sprintf("credential %q is defined in TOKENBROKER_CONFIG; change it there", name)
	}
	return describe(te)
}

// tlsOrLocal reports whether what nc sends stays private: over TLS, or to a
// server on this host.
func tlsOrLocal(nc *nats.Conn) bool {
	if _, err := nc.TLSConnectionState(); err == nil {
		return true
	}
	u, err := url.Parse(nc.ConnectedUrl())
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// source is where a credential comes from, and whether the file's hides a
// registry credential of the same name.
func source(c wire.AdminCredentialInfo) string {
	if c.Shadowed {
		return c.Source + " (hides registry)"
	}
	return dash(c.Source)
}

// endpoint is where the credential gets its tokens: its token endpoint, or
// the issuer that stands for it.
func endpoint(c wire.AdminCredentialInfo) string {
	if c.TokenEndpoint != "" {
		return c.TokenEndpoint
	}
	return c.Issuer
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// timeLeft is how long the token expiring at the Unix time expiresOn stays
// valid after now, coarsely ("52m", "3h5m"), "expired", or "-" when there
// is no token.
func timeLeft(expiresOn string, now time.Time) string {
	sec, err := strconv.ParseInt(strings.TrimSpace(expiresOn), 10, 64)
	if err != nil {
		return "-"
	}
	d := time.Unix(sec, 0).Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// expiresOn is show's expires_on: the time, and how long is left; "" when
// there is no token.
func expiresOn(v string, now time.Time) string {
	sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return ""
	}
	left := timeLeft(v, now)
	if left != "expired" {
		left = "in " + left
	}
	return fmt.Sprintf("%s (%s)", time.Unix(sec, 0).UTC().Format(time.RFC3339), left)
}
