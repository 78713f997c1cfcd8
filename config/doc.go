// Package config turns the environment, the command line and the named
// credentials file into one validated Config.
//
// # Sources and precedence
//
// Every setting is described once, in the table returned by Settings: its
// environment variable (and older aliases), its flag, its default, its usage
// text and whether it is a secret. That one table drives the flags, the
// environment lookup, the --help text and the error messages, so a new setting
// is added in one place.
//
// For each setting the value comes from, in order: the flag when it was given
// on the command line; else the environment variable (the first of Env and its
// Aliases that is present: REFRESH_THRESHOLD wins over its alias REFRESH_TIME);
// else the default. A variable that is present but empty counts as set and is
// taken literally: HTTP_ADDR="" (or --http-addr="") disables the HTTP gateway,
// while REFRESH_THRESHOLD="" is an error. The environment is read through a
// lookup function with the semantics of os.LookupEnv, so tests pass a map and
// never touch the process environment.
//
// # Secrets
//
// CLIENT_SECRET, TOKENBROKER_KEY, NATS_PASSWORD and NATS_TOKEN have no flag
// that takes the value itself, because a flag value is visible to every user
// of the host through ps. Each is read from its environment variable or from a
// file named by its *_FILE variable or flag (--client-secret-file, --key-file,
// --nats-password-file, --nats-token-file). A file's contents are trimmed of
// surrounding white space. The file flag wins over the environment; setting
// both the variable and its *_FILE variable is an error. An empty secret
// variable counts as unset. Secret values never appear in an error message:
// errors name the setting and, for files, the path.
//
// # Durations
//
// REFRESH_THRESHOLD (and refresh_threshold in the credentials file) is a whole
// number of seconds, as in the original helper. IDP_TIMEOUT, REQUEST_TIMEOUT,
// IDLE_TIMEOUT and LEASE_TTL accept whole seconds ("30") or a Go duration
// ("10s", "1500ms", "30m"); so does STATE_SYNC, which also takes "always".
//
// # Booleans
//
// NATS_ALLOW_NO_AUTH is true or false (also 1, 0, t, f, in any case). Its
// flag is a boolean flag: --nats-allow-no-auth alone means true, and
// --nats-allow-no-auth=false turns off what the variable turned on.
//
// # Using it from a command
//
// The simple way is Load, which builds its own flag.FlagSet:
//
//	cfg, args, err := config.Load("tokenbroker", os.Args[1:], os.LookupEnv, os.Stderr)
//	if errors.Is(err, flag.ErrHelp) { os.Exit(0) }
//	if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(2) }
//
// A command that has flags of its own registers the settings on its FlagSet
// with Register, parses, then calls Resolve; Flags.PrintDefaults prints the
// --help text (every flag with its environment variable, then the secrets
// that exist only as environment variables):
//
//	fs := flag.NewFlagSet("tokenbroker serve", flag.ContinueOnError)
//	cf := config.Register(fs)
//	fs.Usage = func() { cf.PrintDefaults(fs.Output()) }
//	if err := fs.Parse(args); err != nil { ... }
//	cfg, err := cf.Resolve(os.LookupEnv)
//
// # Errors
//
// Every error from Load, Resolve, Validate and LoadCredentials is one line
// that names the setting (variable and flag) or, for the credentials file, the
// credential and the key, and wraps ErrInvalid:
//
//	config: REFRESH_THRESHOLD (--refresh-threshold): "abc" is not a whole number of seconds
//	config: /etc/tokenbroker.yaml:7: credential "crm-prod": unknown key "scop"
//
// # Named credentials
//
// TOKENBROKER_CONFIG (--config) names a YAML file with a top-level
// "credentials" list; see LoadCredentials for its keys and rules. Paths inside
// it (client_secret_file, password_file, certificate_file, private_key_file)
// are used as given: a relative path is relative to the broker's working
// directory, not to the file.
package config
