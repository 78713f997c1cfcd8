package config

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Setting describes one setting: where it comes from, its default and its
// help text. Settings returns the table of all of them.
type Setting struct {
	// Env is the environment variable. For a secret it holds the value
	// itself.
	Env string
	// Aliases are other accepted variable names, for compatibility; Env
	// wins over them, and earlier aliases over later ones.
	Aliases []string
	// Flag is the flag name, without dashes. It is empty for a secret: a
	// flag value shows in ps.
	Flag string
	// FileEnv and FileFlag name the variable and the flag that give the
	// path of a file holding a secret. Both are empty for other settings.
	FileEnv, FileFlag string
	// Default is the value used when neither the flag nor the environment
	// sets it, in the same syntax as the variable.
	Default string
	// Usage is the help text. A word in back quotes names the flag's
	// argument, as in the flag package.
	Usage string
	// Secret reports that the value is a secret: it has no value flag and
	// never appears in errors.
	Secret bool
	// Bool reports that the setting is true or false, and its flag a
	// boolean flag: --name alone means true, --name=false false.
	Bool bool

	// apply parses v and stores it in c. Its error is a message without the
	// setting's name; for a secret it must not contain v.
	apply func(c *Config, v string) error
}

// settings is the table: add a setting here and it gets its flag, its
// variable, its help line and its error messages.
var settings = []Setting{
	{Env: "TOKEN_ENDPOINT", Flag: "token-endpoint",
		Usage: "OAuth2 token endpoint `URL` of the default profile, e.g. https://login.microsoftonline.com/TENANT/oauth2/token",
		apply: func(c *Config, v string) error { c.Default.TokenEndpoint = v; return nil }},
	{Env: "CLIENTID", Flag: "client-id",
		Usage: "OAuth2 client `id` of the default profile",
		apply: func(c *Config, v string) error { c.Default.ClientID = v; return nil }},
	{Env: "RESOURCE", Flag: "resource",
		Usage: "Azure AD v1 `resource` of the default profile",
		apply: func(c *Config, v string) error { c.Default.Resource = v; return nil }},
	{Env: "SCOPE", Flag: "scope",
		Usage: "OAuth2 `scope` of the default profile, space separated (Azure AD v2, generic IdPs)",
		apply: func(c *Config, v string) error { c.Default.Scope = v; return nil }},
	{Env: "CLIENT_AUTH", Flag: "client-auth",
		Usage: "how the default profile sends its client secret: `auto` (the default), basic (HTTP Basic) or post (form body)",
		apply: func(c *Config, v string) error {
			switch v {
			case "", ClientAuthAuto, ClientAuthBasic, ClientAuthPost:
				c.Default.ClientAuth = v
				return nil
			}
			return fmt.Errorf("%q is not one of auto, basic, post", v)
		}},
	{Env: "CLIENT_SECRET", FileEnv: "CLIENT_SECRET_FILE", FileFlag: "client-secret-file", Secret: true,
		Usage: "client secret of the default profile (confidential clients)",
		apply: func(c *Config, v string) error { c.Default.ClientSecret = tokenbroker.Secret(v); return nil }},
	{Env: "REFRESH_THRESHOLD", Aliases: []string{"REFRESH_TIME"}, Flag: "refresh-threshold", Default: "600",
		Usage: "refresh a token this many `seconds` before it expires; also the default of named credentials",
		apply: func(c *Config, v string) error {
			d, err := parseSeconds(v)
			c.Default.RefreshThreshold = d
			return err
		}},
	{Env: "NATS_URL", Flag: "nats-url",
		Usage: "connect to this NATS server or cluster (comma separated `URLs`); unset starts an embedded server",
		apply: func(c *Config, v string) error { c.NATSURL = v; return nil }},
	{Env: "NATS_LISTEN", Flag: "nats-listen", Default: "127.0.0.1:4222",
		Usage: "`host:port` of the embedded NATS server",
		apply: func(c *Config, v string) error { c.NATSListen = v; return nil }},
	{Env: "HTTP_ADDR", Flag: "http-addr", Default: "127.0.0.1:5000",
		Usage: "`host:port` of the HTTP gateway, /healthz, /readyz and /metrics; empty disables it",
		apply: func(c *Config, v string) error { c.HTTPAddr = v; return nil }},
	{Env: "TOKENBROKER_CONFIG", Flag: "config",
		Usage: "YAML `file` declaring named credentials",
		apply: func(c *Config, v string) error { c.ConfigFile = v; return nil }},
	{Env: "SUBJECT_PREFIX", Flag: "subject-prefix", Default: "token",
		Usage: "`prefix` of every NATS subject (token.request, token.refreshed.ID, ...)",
		apply: func(c *Config, v string) error { c.SubjectPrefix = v; return nil }},
	{Env: "REPLY_PREFIXES", Flag: "reply-prefixes", Default: "_INBOX.",
		Usage: "comma-separated inbox `prefixes` a request's reply subject must start with to be answered (nats.CustomInboxPrefix of the callers); never under SUBJECT_PREFIX or $",
		apply: func(c *Config, v string) error { c.ReplyPrefixes = splitList(v); return nil }},
	{Env: "NAMED_ON_SHARED_SUBJECT", Flag: "named-on-shared-subject", Default: "true", Bool: true,
		Usage: "token.request also serves named credentials; false: only username/password requests, named credentials on token.request.NAME alone, so NATS permissions can grant each caller its credentials",
		apply: func(c *Config, v string) (err error) { c.NamedOnSharedSubject, err = parseBool(v); return err }},
	{Env: "AUDIT", Flag: "audit", Default: AuditLog,
		Usage: "audit trail of every answer: `off`, log (a line \"audit\" in the broker's log) or nats (also published on PREFIX.audit.CREDENTIAL_ID)",
		apply: func(c *Config, v string) error {
			switch v = strings.ToLower(strings.TrimSpace(v)); v {
			case AuditOff, AuditLog, AuditNATS:
				c.Audit = v
				return nil
			}
			return fmt.Errorf("must be off, log or nats")
		}},
	{Env: "DATA_DIR", Flag: "data-dir", Default: "./data",
		Usage: "`directory` where the embedded NATS server keeps JetStream data (the durable token state)",
		apply: func(c *Config, v string) error { c.DataDir = v; return nil }},
	{Env: "TOKENBROKER_KEY", FileEnv: "TOKENBROKER_KEY_FILE", FileFlag: "key-file", Secret: true,
		Usage: "broker key, base64 of 32 random bytes: encrypts stored token state and keys credential ids",
		apply: func(c *Config, v string) error {
			k, err := decodeKey(v)
			c.Key = k
			return err
		}},
	{Env: "TOKENBROKER_PREVIOUS_KEY", FileEnv: "TOKENBROKER_PREVIOUS_KEY_FILE", FileFlag: "previous-key-file", Secret: true,
		Usage: "the key being rotated away from, base64 of 32 bytes: stored records written with it stay readable",
		apply: func(c *Config, v string) error {
			k, err := decodeKey(v)
			c.PreviousKey = k
			return err
		}},
	{Env: "IDP_MAX_CONCURRENT", Flag: "idp-max-concurrent", Default: "16",
		Usage: "at most `n` calls in flight to one token endpoint, so a refresh storm cannot flood the IdP",
		apply: func(c *Config, v string) (err error) {
			c.IdPMaxConcurrent, err = strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			return nil
		}},
	{Env: "LEASE_TTL", Flag: "lease-ttl", Default: "15s",
		Usage: "how long a broker that died calling the IdP for a credential holds the others back, in seconds or a Go `duration`",
		apply: func(c *Config, v string) (err error) { c.LeaseTTL, err = parseTimeout(v); return err }},
	{Env: "STATE_REPLICAS", Flag: "state-replicas", Default: "1",
		Usage: "`replicas` of the JetStream buckets holding token state (3 on a three-node cluster)",
		apply: func(c *Config, v string) (err error) {
			c.StateReplicas, err = strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			return nil
		}},
	{Env: "NATS_CONFIG", Flag: "nats-config",
		Usage: "nats-server configuration `file` for the embedded server (accounts, users, permissions, TLS)",
		apply: func(c *Config, v string) error { c.NATSConfig = v; return nil }},
	{Env: "NATS_ALLOW_NO_AUTH", Flag: "nats-allow-no-auth", Default: "false", Bool: true,
		Usage: "let the embedded NATS server listen beyond loopback without authentication, though any client that reaches it could then read the passwords sent on token.request",
		apply: func(c *Config, v string) (err error) { c.NATSAllowNoAuth, err = parseBool(v); return err }},
	{Env: "STATE_SYNC", Flag: "state-sync",
		Usage: "how the embedded NATS server syncs JetStream writes (the durable token state) to disk: `always` (each write, before it is acknowledged) or every interval, in seconds or a Go duration; unset: the server's default, every 2 minutes",
		apply: func(c *Config, v string) (err error) {
			c.StateSyncAlways, c.StateSyncInterval, err = parseSync(v)
			return err
		}},
	{Env: "NATS_CREDS", Flag: "nats-creds",
		Usage: "NATS user credentials `file` (JWT and nkey seed) for an external NATS",
		apply: func(c *Config, v string) error { c.NATSCreds = v; return nil }},
	{Env: "NATS_NKEY", Flag: "nats-nkey",
		Usage: "nkey seed `file` for an external NATS",
		apply: func(c *Config, v string) error { c.NATSNKey = v; return nil }},
	{Env: "NATS_USER", Flag: "nats-user",
		Usage: "NATS `user` for an external NATS; needs NATS_PASSWORD",
		apply: func(c *Config, v string) error { c.NATSUser = v; return nil }},
	{Env: "NATS_PASSWORD", FileEnv: "NATS_PASSWORD_FILE", FileFlag: "nats-password-file", Secret: true,
		Usage: "password of NATS_USER",
		apply: func(c *Config, v string) error { c.NATSPassword = tokenbroker.Secret(v); return nil }},
	{Env: "NATS_TOKEN", FileEnv: "NATS_TOKEN_FILE", FileFlag: "nats-token-file", Secret: true,
		Usage: "NATS authentication token for an external NATS",
		apply: func(c *Config, v string) error { c.NATSToken = tokenbroker.Secret(v); return nil }},
	{Env: "NATS_CA", Flag: "nats-ca",
		Usage: "PEM `file` of CAs that sign the NATS server's certificate",
		apply: func(c *Config, v string) error { c.NATSCA = v; return nil }},
	{Env: "NATS_CERT", Flag: "nats-cert",
		Usage: "PEM client certificate `file` for NATS; needs NATS_KEY",
		apply: func(c *Config, v string) error { c.NATSCert = v; return nil }},
	{Env: "NATS_KEY", Flag: "nats-key",
		Usage: "PEM private key `file` of NATS_CERT",
		apply: func(c *Config, v string) error { c.NATSKey = v; return nil }},
	{Env: "HTTP_ALLOWED_HOSTS", Flag: "http-allowed-hosts",
		Usage: "comma-separated `hosts` the HTTP gateway answers (the Host header, without port) besides its own address and the loopback names",
		apply: func(c *Config, v string) error { c.HTTPAllowedHosts = splitList(v); return nil }},
	{Env: "HTTP_TLS_CERT", Flag: "http-tls-cert",
		Usage: "PEM certificate `file`: serve the HTTP gateway over TLS; needs HTTP_TLS_KEY",
		apply: func(c *Config, v string) error { c.HTTPTLSCert = v; return nil }},
	{Env: "HTTP_TLS_KEY", Flag: "http-tls-key",
		Usage: "PEM private key `file` of HTTP_TLS_CERT",
		apply: func(c *Config, v string) error { c.HTTPTLSKey = v; return nil }},
	{Env: "IDP_TIMEOUT", Flag: "idp-timeout", Default: "10s",
		Usage: "bound on one call to an IdP, in seconds or a Go `duration` (10s, 1500ms)",
		apply: func(c *Config, v string) (err error) { c.IdPTimeout, err = parseTimeout(v); return err }},
	{Env: "REQUEST_TIMEOUT", Flag: "request-timeout", Default: "30s",
		Usage: "bound on answering one request (504 after), in seconds or a Go `duration`",
		apply: func(c *Config, v string) (err error) { c.RequestTimeout, err = parseTimeout(v); return err }},
	{Env: "IDLE_TIMEOUT", Flag: "idle-timeout", Default: "30m",
		Usage: "username/password credentials unused this long leave memory, in seconds or a Go `duration`",
		apply: func(c *Config, v string) (err error) { c.IdleTimeout, err = parseTimeout(v); return err }},
	{Env: "LOG_LEVEL", Flag: "log-level", Default: "info",
		Usage: "log `level`: debug, info, warn or error",
		apply: func(c *Config, v string) error { c.LogLevel = strings.ToLower(v); return nil }},
	{Env: "LOG_FORMAT", Flag: "log-format", Default: "text",
		Usage: "log `format`: text or json",
		apply: func(c *Config, v string) error { c.LogFormat = strings.ToLower(v); return nil }},
}

// Settings returns a copy of the table of settings, in a stable order, for
// documentation.
func Settings() []Setting {
	out := make([]Setting, len(settings))
	copy(out, settings)
	for i := range out {
		out[i].Aliases = append([]string(nil), out[i].Aliases...)
	}
	return out
}

// lookupSetting returns the setting whose variable is env, or a bare one.
func lookupSetting(env string) *Setting {
	for i := range settings {
		if settings[i].Env == env {
			return &settings[i]
		}
	}
	return &Setting{Env: env}
}

// label names the setting as its variable src (Env, an alias or FileEnv)
// with its flag: `REFRESH_TIME (--refresh-threshold)`.
func (s *Setting) label(src string) string {
	switch {
	case s.Secret && src == s.Env:
		return fmt.Sprintf("%s / %s (--%s)", s.Env, s.FileEnv, s.FileFlag)
	case s.Secret:
		return fmt.Sprintf("%s (--%s)", s.FileEnv, s.FileFlag)
	case s.Flag != "":
		return fmt.Sprintf("%s (--%s)", src, s.Flag)
	}
	return src
}

// flagName is the flag registered for s: Flag, or FileFlag for a secret.
func (s *Setting) flagName() string {
	if s.Secret {
		return s.FileFlag
	}
	return s.Flag
}

// flagUsage is the usage text of s's flag, naming its variables.
func (s *Setting) flagUsage() string {
	if s.Secret {
		return fmt.Sprintf("`file` holding the %s (env %s; the value itself only as env %s, never a flag)",
			stripQuotes(s.Usage), s.FileEnv, s.Env)
	}
	return fmt.Sprintf("%s (env %s)", s.Usage, strings.Join(append([]string{s.Env}, s.Aliases...), " or "))
}

func stripQuotes(s string) string { return strings.ReplaceAll(s, "`", "") }

// Flags is the set of setting flags registered on one FlagSet by Register.
type Flags struct {
	fs     *flag.FlagSet
	values map[string]*string // by flag name
}

// Register defines a flag for every setting on fs and returns the handle to
// resolve them once fs is parsed. Secrets get only their file flag. The flags
// are string flags whose default is the setting's default; their usage names
// the environment variable.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, values: make(map[string]*string)}
	for i := range settings {
		s := &settings[i]
		name := s.flagName()
		if name == "" {
			continue
		}
		p := new(string)
		def := s.Default
		if s.Secret {
			def = ""
		}
		if s.Bool {
			*p = def
			fs.Var(boolFlag{p}, name, s.flagUsage())
		} else {
			fs.StringVar(p, name, def, s.flagUsage())
		}
		f.values[name] = p
	}
	return f
}

// boolFlag is a boolean flag that keeps its value as the string given, so
// that the setting's apply parses it, and its error names the setting, like
// every other setting's.
type boolFlag struct{ p *string }

func (b boolFlag) String() string {
	if b.p == nil {
		return ""
	}
	return *b.p
}
func (b boolFlag) Set(v string) error { *b.p = v; return nil }
func (b boolFlag) IsBoolFlag() bool   { return true }

// Resolve builds the Config from the flags set on the command line (call it
// after parsing the FlagSet; before, it sees no flags), the environment read
// through lookup (os.LookupEnv semantics; nil means an empty environment) and
// the defaults, loads the named credentials from the file named by
// TOKENBROKER_CONFIG or --config, and validates the result. Every error wraps
// ErrInvalid and is one line naming the setting.
func (f *Flags) Resolve(lookup func(string) (string, bool)) (*Config, error) {
	c, err := f.resolve(lookup)
	if err != nil {
		return nil, err
	}
	if c.ConfigFile != "" {
		if err := c.loadFile(); err != nil {
			return nil, err
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (f *Flags) resolve(lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	set := make(map[string]bool)
	if f != nil && f.fs != nil {
		f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	}
	flagValue := func(name string) (string, bool) {
		if name == "" || !set[name] || f.values[name] == nil {
			return "", false
		}
		return *f.values[name], true
	}
	c := &Config{Default: Credential{Name: DefaultName, Grant: GrantPassword}}
	for i := range settings {
		s := &settings[i]
		if s.Secret {
			if err := resolveSecret(c, s, lookup, flagValue); err != nil {
				return nil, err
			}
			continue
		}
		v, src := s.Default, s.Env
		if fv, ok := flagValue(s.Flag); ok {
			v = fv
		} else {
			for _, env := range append([]string{s.Env}, s.Aliases...) {
				if ev, ok := lookup(env); ok {
					v, src = ev, env
					break
				}
			}
		}
		if err := s.apply(c, v); err != nil {
			return nil, invalidf(0, "%s: %s", s.label(src), err)
		}
	}
	return c, nil
}

// resolveSecret sets s from its file flag, else its variable, else its file
// variable. An empty value counts as unset.
func resolveSecret(c *Config, s *Setting, lookup func(string) (string, bool), flagValue func(string) (string, bool)) error {
	path, _ := flagValue(s.FileFlag)
	if path == "" {
		v, _ := lookup(s.Env)
		p, _ := lookup(s.FileEnv)
		switch {
		case v != "" && p != "":
			return invalidf(0, "%s and %s are both set; use one", s.Env, s.FileEnv)
		case v != "":
			if err := s.apply(c, v); err != nil {
				return invalidf(0, "%s: %s", s.label(s.Env), err)
			}
			return nil
		}
		path = p
	}
	if path == "" {
		return nil
	}
	if s.Env == "CLIENT_SECRET" {
		// The default profile's secret rotates like a named credential's:
		// two lines during a rotation, and the file is watched.
		first, next, msg := readSecretFile(path)
		if msg != "" {
			return invalidf(0, "%s: %s", s.label(s.FileEnv), msg)
		}
		d := &c.Default
		d.ClientSecret, d.NextClientSecret, d.ClientSecretFile = tokenbroker.Secret(first), tokenbroker.Secret(next), path
		return nil
	}
	v, msg := readFile(path)
	if msg != "" {
		return invalidf(0, "%s: %s", s.label(s.FileEnv), msg)
	}
	if err := s.apply(c, v); err != nil {
		return invalidf(0, "%s: %q: %s", s.label(s.FileEnv), path, err)
	}
	return nil
}

// loadFile reads the named credentials from c.ConfigFile.
func (c *Config) loadFile() error {
	f, err := os.Open(c.ConfigFile)
	if err != nil {
		return settingErr("TOKENBROKER_CONFIG", "%s", readErr(c.ConfigFile, err))
	}
	defer f.Close()
	file, err := LoadFile(f, Credential{RefreshThreshold: c.Default.RefreshThreshold})
	var ie *invalidError
	if errors.As(err, &ie) {
		ie.file = c.ConfigFile
		return ie
	}
	if err != nil {
		return settingErr("TOKENBROKER_CONFIG", "%q: %v", c.ConfigFile, err)
	}
	if file == nil {
		return nil
	}
	c.Credentials = file.Credentials
	return c.applyNATSFile(file.NATS)
}

// applyNATSFile fills the NATS settings the environment and flags left
// empty from the file's nats section.
func (c *Config) applyNATSFile(n NATSFile) error {
	for _, f := range []struct {
		dst *string
		val string
	}{
		{&c.NATSURL, n.URL}, {&c.NATSCreds, n.CredsFile}, {&c.NATSNKey, n.NKeyFile}, {&c.NATSUser, n.User},
		{&c.NATSCA, n.CAFile}, {&c.NATSCert, n.CertFile}, {&c.NATSKey, n.KeyFile},
	} {
		if *f.dst == "" {
			*f.dst = f.val
		}
	}
	for _, f := range []struct {
		dst  *tokenbroker.Secret
		path string
		key  string
	}{{&c.NATSPassword, n.PasswordFile, "password_file"}, {&c.NATSToken, n.TokenFile, "token_file"}} {
		if f.path == "" || !f.dst.IsZero() {
			continue
		}
		v, msg := readFile(f.path)
		if msg != "" {
			return settingErr("TOKENBROKER_CONFIG", "nats: %s: %s", f.key, msg)
		}
		*f.dst = tokenbroker.Secret(v)
	}
	return nil
}

// PrintDefaults writes the help text of every flag of the FlagSet, with two
// dashes and the environment variable of each setting, then the secrets that
// exist only as environment variables, and a note on duration syntax.
func (f *Flags) PrintDefaults(w io.Writer) {
	f.fs.VisitAll(func(fl *flag.Flag) {
		arg, usage := flag.UnquoteUsage(fl)
		line := "  --" + fl.Name
		if arg != "" {
			line += " " + arg
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); !(ok && bf.IsBoolFlag() && fl.DefValue == "false") && fl.DefValue != "" {
			line += fmt.Sprintf(" (default %q)", fl.DefValue)
		}
		fmt.Fprintln(w, line)
	})
	fmt.Fprintln(w, "\nSecrets have no flag that takes the value (it would show in ps); set the variable or name a file:")
	for i := range settings {
		s := &settings[i]
		if s.Secret {
			fmt.Fprintf(w, "  %s\n    \t%s (or a file: env %s, --%s)\n", s.Env, stripQuotes(s.Usage), s.FileEnv, s.FileFlag)
		}
	}
	fmt.Fprintln(w, "\nFlags win over the environment. REFRESH_THRESHOLD is whole seconds; the *_TIMEOUT settings take")
	fmt.Fprintln(w, "seconds or a Go duration (10s, 1500ms, 30m). An empty HTTP_ADDR disables the HTTP gateway.")
}

// Load reads the settings for the program name: it parses args with a new
// FlagSet (errors and --help text go to out), reads the environment through
// lookup (os.LookupEnv semantics; nil means an empty environment), loads the
// named credentials file and validates. It returns the Config and the
// arguments left after the flags. With -h or --help it prints the help text
// and returns flag.ErrHelp. Every other error wraps ErrInvalid and is one
// line naming the setting.
func Load(name string, args []string, lookup func(string) (string, bool), out io.Writer) (*Config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	f := Register(fs)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage of %s:\n", name)
		f.PrintDefaults(out)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, invalidf(0, "%v", err)
	}
	c, err := f.Resolve(lookup)
	if err != nil {
		return nil, nil, err
	}
	return c, fs.Args(), nil
}

// Defaults returns a Config holding every setting's default and nothing else:
// no default profile, no named credentials, no key. It is a starting point
// for tests and the demo; it passes Validate as it is.
func Defaults() *Config {
	c, err := (*Flags)(nil).resolve(nil)
	if err != nil {
		panic("config: bad default: " + err.Error())
	}
	return c
}

// maxSeconds keeps a number of seconds within time.Duration.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// parseSeconds parses a whole, non-negative number of seconds.
func parseSeconds(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange), err == nil && n > maxSeconds:
		return 0, fmt.Errorf("%q is too large", v)
	case err != nil:
		return 0, fmt.Errorf("%q is not a whole number of seconds", v)
	case n < 0:
		return 0, fmt.Errorf("%q must not be negative", v)
	}
	return time.Duration(n) * time.Second, nil
}

// parseTimeout parses whole seconds or a Go duration; it must be positive.
func parseTimeout(v string) (time.Duration, error) {
	t := strings.TrimSpace(v)
	var d time.Duration
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n > maxSeconds || n < -maxSeconds {
			return 0, fmt.Errorf("%q is too large", v)
		}
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(t); err != nil {
		return 0, fmt.Errorf("%q is not a number of seconds or a duration such as 10s", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be greater than zero", v)
	}
	return d, nil
}

// parseBool parses true or false (and 1, 0, t, f in any case, as
// strconv.ParseBool does).
func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}

// parseSync parses STATE_SYNC: empty for the server's default, "always", or
// a positive interval as parseTimeout takes it.
func parseSync(v string) (always bool, interval time.Duration, err error) {
	switch t := strings.TrimSpace(v); {
	case t == "":
		return false, 0, nil
	case strings.EqualFold(t, "always"):
		return true, 0, nil
	}
	interval, err = parseTimeout(v)
	if err != nil && !looksLikeDuration(strings.TrimSpace(v)) {
		err = fmt.Errorf("%q is not always, a number of seconds or a duration such as 10s", v)
	}
	return false, interval, err
}

// looksLikeDuration reports whether t is a number or a duration at all, so
// that parseSync passes on parseTimeout's reason (zero, too large) for one.
func looksLikeDuration(t string) bool {
	_, ierr := strconv.ParseInt(t, 10, 64)
	_, derr := time.ParseDuration(t)
	return ierr == nil || derr == nil || errors.Is(ierr, strconv.ErrRange)
}

// decodeKey decodes base64 (standard or URL alphabet, padded or not) of
// exactly KeySize bytes. Its errors never contain the key.
func decodeKey(v string) ([]byte, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.DecodeString(v)
		if err != nil {
			continue
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("decodes to %d bytes, want exactly %d", len(k), KeySize)
		}
		return k, nil
	}
	return nil, errors.New("is not valid base64")
}

// splitList splits a comma-separated setting, dropping empty items and the
// white space around each.
func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
