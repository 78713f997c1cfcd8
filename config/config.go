package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/wire"
)

// DefaultName is the name of the default profile built from TOKEN_ENDPOINT,
// CLIENTID, RESOURCE, SCOPE, CLIENT_SECRET and REFRESH_THRESHOLD. It is
// reserved: no named credential may use it.
const DefaultName = "default"

// NoCredentialName is reserved: the audit trail publishes the records of
// requests that name no credential on <prefix>.audit._none.
const NoCredentialName = "_none"

// Grants a Credential may use.
const (
	// GrantClientCredentials is the OAuth2 client credentials grant with a
	// client secret; the default for named credentials.
	GrantClientCredentials = "client_credentials"
	// GrantPassword is the resource owner password grant; the default
	// profile's grant.
	GrantPassword = "password"
	// GrantClientAssertion is client credentials with a certificate-signed
	// client assertion (private_key_jwt) instead of a secret.
	GrantClientAssertion = "client_assertion"
	// GrantDeviceCode is a delegated user credential enrolled once with
	// the device authorization grant (RFC 8628, `tokenbroker login`) and
	// kept warm with its refresh token.
	GrantDeviceCode = "device_code"
)

// Client authentication methods (client_auth, CLIENT_AUTH): how a client
// secret is sent.
const (
	ClientAuthAuto  = "auto"  // post for Azure AD, discovery's first otherwise, else Basic then post
	ClientAuthBasic = "basic" // HTTP Basic, RFC 6749 2.3.1 (client_secret_basic)
	ClientAuthPost  = "post"  // in the form body (client_secret_post)
)

// The values of AUDIT.
const (
	AuditOff  = "off"  // no audit trail
	AuditLog  = "log"  // one "audit" line per answer in the broker's log
	AuditNATS = "nats" // the log line, and a record on <prefix>.audit.<credential_id>
)

// KeySize is the length in bytes of Config.Key once decoded.
const KeySize = 32

// Config is everything the broker needs at start-up. Build it with Load or
// Register/Resolve, which validate it; a Config built by hand should be
// checked with Validate.
type Config struct {
	// Default is the default profile for username/password requests, from
	// TOKEN_ENDPOINT, CLIENTID, RESOURCE, SCOPE, CLIENT_SECRET(_FILE) and
	// REFRESH_THRESHOLD. Its Name is DefaultName and its Grant GrantPassword.
	// It is optional (see HasDefault): the broker can serve named
	// credentials only.
	Default Credential
	// Credentials are the named credentials from the file at ConfigFile, in
	// file order. Names are unique.
	Credentials []Credential

	NATSURL       string // NATS_URL: external NATS server(s); empty starts the embedded server
	NATSListen    string // NATS_LISTEN: host:port of the embedded NATS server
	HTTPAddr      string // HTTP_ADDR: host:port of the HTTP gateway; empty disables it
	ConfigFile    string // TOKENBROKER_CONFIG: path of the named credentials file; empty for none
	SubjectPrefix string // SUBJECT_PREFIX: first token(s) of every subject, e.g. "token"
	// ReplyPrefixes are REPLY_PREFIXES: the inbox prefixes a request's
	// reply subject must start with for the broker to answer it.
	ReplyPrefixes []string
	// NamedOnSharedSubject is NAMED_ON_SHARED_SUBJECT: token.request also
	// serves named credentials, besides token.request.<name>.
	NamedOnSharedSubject bool
	// Audit is AUDIT: AuditOff, AuditLog or AuditNATS.
	Audit string
	// HTTPAllowedHosts are HTTP_ALLOWED_HOSTS: Host values the HTTP gateway
	// answers besides its own address and the loopback names.
	HTTPAllowedHosts []string
	DataDir          string // DATA_DIR: JetStream storage of the embedded server
	NATSConfig       string // NATS_CONFIG: nats-server configuration file for the embedded server

	// NATSAllowNoAuth is NATS_ALLOW_NO_AUTH: the embedded NATS server may
	// listen beyond loopback without authentication. Without it such a
	// server refuses to start (messaging.StartEmbedded decides, since only
	// it sees NATS_CONFIG's own listen and authorization), because every
	// client that reached it could read the passwords sent on token.request.
	NATSAllowNoAuth bool
	// StateSyncAlways and StateSyncInterval are STATE_SYNC: how the embedded
	// server fsyncs JetStream writes, where the durable token state lives.
	// StateSyncAlways syncs each write before it is acknowledged; a positive
	// StateSyncInterval syncs that often; both zero leave it to NATS_CONFIG
	// or the server's default (every 2 minutes), which can lose the newest
	// writes, a rotated refresh token among them, in a host crash.
	StateSyncAlways   bool
	StateSyncInterval time.Duration

	// Key is the decoded TOKENBROKER_KEY (or the contents of
	// TOKENBROKER_KEY_FILE): exactly KeySize bytes, or nil when unset.
	// With it the broker keeps token state, encrypted, in JetStream.
	Key []byte
	// PreviousKey is the decoded TOKENBROKER_PREVIOUS_KEY(_FILE): the key
	// being rotated away from, still used to read records written with it.
	PreviousKey []byte
	// LeaseTTL is LEASE_TTL: how long a broker that died while calling the
	// IdP for a credential keeps the other brokers from calling it instead.
	LeaseTTL time.Duration
	// StateReplicas is STATE_REPLICAS: the replicas of the JetStream buckets
	// that hold token state (3 on a three-node cluster).
	StateReplicas int

	NATSCreds    string             // NATS_CREDS: path of a .creds file (JWT and nkey seed)
	NATSNKey     string             // NATS_NKEY: path of an nkey seed file
	NATSUser     string             // NATS_USER: user name; needs NATSPassword
	NATSPassword tokenbroker.Secret // NATS_PASSWORD or NATS_PASSWORD_FILE
	NATSToken    tokenbroker.Secret // NATS_TOKEN or NATS_TOKEN_FILE
	NATSCA       string             // NATS_CA: PEM file of CAs to trust for the NATS server
	NATSCert     string             // NATS_CERT: PEM client certificate for NATS; needs NATSKey
	NATSKey      string             // NATS_KEY: PEM private key of NATSCert

	HTTPTLSCert string // HTTP_TLS_CERT: PEM certificate of the HTTP gateway; needs HTTPTLSKey
	HTTPTLSKey  string // HTTP_TLS_KEY: PEM private key of HTTPTLSCert

	IdPTimeout time.Duration // IDP_TIMEOUT: bound on one call to an IdP (default 10s)
	// IdPMaxConcurrent is IDP_MAX_CONCURRENT: calls in flight to one token
	// endpoint at most (default 16), so a refresh storm cannot flood it.
	IdPMaxConcurrent int
	RequestTimeout   time.Duration // REQUEST_TIMEOUT: bound on answering one request, 504 after (default 30s)
	IdleTimeout      time.Duration // IDLE_TIMEOUT: username/password credentials unused this long leave memory (default 30m)

	LogLevel  string // LOG_LEVEL: debug, info, warn or error (default info)
	LogFormat string // LOG_FORMAT: text or json (default text)
}

// Credential is one set of client credentials at one token endpoint: the
// default profile or a named credential.
type Credential struct {
	// Name identifies the credential in requests ("credential") and is its
	// credential_id, so it is a single NATS subject token:
	// 1 to 64 of A-Z a-z 0-9 - _.
	Name          string
	TokenEndpoint string // absolute http(s) URL of the OAuth2 token endpoint; or Issuer
	// Issuer, instead of TokenEndpoint, is an OpenID Connect issuer whose
	// discovery document gives the token endpoint (and the device
	// authorization endpoint, and the client authentication methods).
	Issuer string
	// ClientAuth is how a client secret is sent: ClientAuthAuto ("" too),
	// ClientAuthBasic or ClientAuthPost.
	ClientAuth string
	// ClientCapabilities are declared to the IdP with each claims request
	// (Azure AD's xms_cc, e.g. "cp1" for continuous access evaluation).
	ClientCapabilities []string
	ClientID           string             // OAuth2 client_id
	ClientSecret       tokenbroker.Secret // client_secret; zero for a public client
	Grant              string             // GrantClientCredentials, GrantPassword or GrantClientAssertion
	Scope              string             // OAuth2 scope, space separated (Azure AD v2, generic IdPs)
	Resource           string             // Azure AD v1 resource; v1 endpoints use it when both are set
	Username           string             // resource owner, grant password (named credentials only)
	Password           tokenbroker.Secret // resource owner's password, grant password (named credentials only)

	// ClientSecretFile and PasswordFile are the files ClientSecret and
	// Password were read from, "" when given inline or not at all: the
	// broker reads them again when they change.
	ClientSecretFile string
	PasswordFile     string
	// NextClientSecret and NextPassword are the second line of their file
	// during a rotation: the secret tried once when the first is refused
	// (invalid_client, or invalid_grant for a password), then preferred.
	NextClientSecret tokenbroker.Secret
	NextPassword     tokenbroker.Secret

	// CertificateFile and PrivateKeyFile are PEM files for grant
	// client_assertion, read when the credential is loaded into
	// CertificatePEM and PrivateKeyPEM, which are what the broker uses (a
	// credential from the registry has the contents and no paths). They are
	// checked to be present, not parsed.
	CertificateFile string
	PrivateKeyFile  string
	CertificatePEM  string
	PrivateKeyPEM   tokenbroker.Secret
	// AssertionFile is, for grant client_assertion without a certificate,
	// a file holding a JWT that another issuer signed (workload identity
	// federation: a Kubernetes projected service account token, a CI
	// system's OIDC token). It is read again for every IdP call, because
	// its issuer rotates it.
	AssertionFile string

	// RefreshThreshold is how long before expiry a token is refreshed.
	// Zero refreshes only once a token has expired.
	RefreshThreshold time.Duration
	// KeepWarm reports that the token is refreshed ahead of expiry for as
	// long as the broker runs. True by default for named credentials (yaml
	// keep_warm); false for the default profile, whose username/password
	// credentials stay warm only while used.
	KeepWarm bool
}

// HasDefault reports whether the default profile is configured
// (TOKEN_ENDPOINT is set). Without it, username/password requests are refused.
func (c *Config) HasDefault() bool { return c.Default.TokenEndpoint != "" }

// Credential returns the named credential called name, and whether there is one.
func (c *Config) Credential(name string) (Credential, bool) {
	for _, cr := range c.Credentials {
		if cr.Name == name {
			return cr, true
		}
	}
	return Credential{}, false
}

// Validate checks c and returns the first problem as a one-line error that
// names the setting and wraps ErrInvalid, or nil. It never includes a secret's
// value. Files that c names (TLS material, NATS credentials, client assertion
// certificates and keys) must be readable.
func (c *Config) Validate() error {
	// In this order: which problem is reported first, when there are
	// several, is part of what Validate promises.
	for _, check := range []func() error{
		c.validateDefault,
		c.validateAddresses,
		c.validateKeys,
		c.validateLimits,
		c.validatePairs,
		c.validateFiles,
		c.validateTimeouts,
		c.validateLogging,
		c.validateCredentials,
		c.validateEmbedded,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateDefault checks the default profile. Without TOKEN_ENDPOINT it is
// off, so any other of its settings is refused rather than silently unused.
func (c *Config) validateDefault() error {
	d := c.Default
	switch {
	case d.TokenEndpoint != "":
		if msg := checkEndpoint(d.TokenEndpoint); msg != "" {
			return settingErr("TOKEN_ENDPOINT", "%s", msg)
		}
		if d.ClientID == "" {
			return settingErr("CLIENTID", "is required when TOKEN_ENDPOINT is set")
		}
	case d.ClientID != "":
		return settingErr("TOKEN_ENDPOINT", "is required when CLIENTID is set")
	case d.Resource != "":
		return settingErr("TOKEN_ENDPOINT", "is required when RESOURCE is set")
	case d.Scope != "":
		return settingErr("TOKEN_ENDPOINT", "is required when SCOPE is set")
	case !d.ClientSecret.IsZero():
		return settingErr("TOKEN_ENDPOINT", "is required when CLIENT_SECRET is set")
	}
	if d.RefreshThreshold < 0 {
		return settingErr("REFRESH_THRESHOLD", "must not be negative")
	}
	return nil
}

// validateAddresses checks where the broker listens and the subjects it
// uses.
func (c *Config) validateAddresses() error {
	if c.NATSURL == "" {
		if c.NATSListen == "" {
			return settingErr("NATS_LISTEN", "must not be empty when NATS_URL is unset (the embedded server needs an address)")
		}
		if c.DataDir == "" {
			return settingErr("DATA_DIR", "must not be empty when NATS_URL is unset (the embedded server stores JetStream data there)")
		}
	}
	if c.NATSListen != "" {
		if msg := checkHostPort(c.NATSListen); msg != "" {
			return settingErr("NATS_LISTEN", "%s", msg)
		}
	}
	if c.HTTPAddr != "" {
		if msg := checkHostPort(c.HTTPAddr); msg != "" {
			return settingErr("HTTP_ADDR", "%s", msg)
		}
	}
	if _, err := wire.CheckReplyPrefixes(c.ReplyPrefixes, c.SubjectPrefix); err != nil {
		return settingErr("REPLY_PREFIXES", "%s", strings.TrimPrefix(err.Error(), "wire: "))
	}
	if msg := checkSubjectPrefix(c.SubjectPrefix); msg != "" {
		return settingErr("SUBJECT_PREFIX", "%s", msg)
	}
	return nil
}

// validateKeys checks the keys of the stored token state. A previous key
// alone is refused: it only serves to read records while rotating to a new
// one.
func (c *Config) validateKeys() error {
	if c.Key != nil && len(c.Key) != KeySize {
		return settingErr("TOKENBROKER_KEY", "must decode to exactly %d bytes", KeySize)
	}
	if c.PreviousKey != nil && c.Key == nil {
		return settingErr("TOKENBROKER_PREVIOUS_KEY", "is set without TOKENBROKER_KEY: rotation needs the new key")
	}
	return nil
}

func (c *Config) validateLimits() error {
	if c.IdPMaxConcurrent < 1 || c.IdPMaxConcurrent > 1024 {
		return settingErr("IDP_MAX_CONCURRENT", "must be between 1 and 1024")
	}
	if c.StateReplicas < 1 || c.StateReplicas > 5 {
		return settingErr("STATE_REPLICAS", "must be between 1 and 5")
	}
	return nil
}

// validatePairs checks the settings that only work together: a user needs
// its password and a certificate its key, so half a pair is a mistake.
func (c *Config) validatePairs() error {
	switch {
	case c.NATSUser != "" && c.NATSPassword.IsZero():
		return settingErr("NATS_PASSWORD", "is required when NATS_USER is set")
	case c.NATSUser == "" && !c.NATSPassword.IsZero():
		return settingErr("NATS_USER", "is required when NATS_PASSWORD is set")
	case c.NATSCert != "" && c.NATSKey == "":
		return settingErr("NATS_KEY", "is required when NATS_CERT is set")
	case c.NATSCert == "" && c.NATSKey != "":
		return settingErr("NATS_CERT", "is required when NATS_KEY is set")
	case c.HTTPTLSCert != "" && c.HTTPTLSKey == "":
		return settingErr("HTTP_TLS_KEY", "is required when HTTP_TLS_CERT is set")
	case c.HTTPTLSCert == "" && c.HTTPTLSKey != "":
		return settingErr("HTTP_TLS_CERT", "is required when HTTP_TLS_KEY is set")
	}
	return nil
}

// validateFiles checks that every file the broker opens at start-up can be
// read now, so that a typo stops it here with the setting's name rather
// than deep inside the NATS or TLS set-up.
func (c *Config) validateFiles() error {
	for _, f := range []struct{ env, path string }{
		{"NATS_CONFIG", c.NATSConfig},
		{"NATS_CREDS", c.NATSCreds},
		{"NATS_NKEY", c.NATSNKey},
		{"NATS_CA", c.NATSCA},
		{"NATS_CERT", c.NATSCert},
		{"NATS_KEY", c.NATSKey},
		{"HTTP_TLS_CERT", c.HTTPTLSCert},
		{"HTTP_TLS_KEY", c.HTTPTLSKey},
	} {
		if f.path == "" {
			continue
		}
		if msg := checkReadable(f.path); msg != "" {
			return settingErr(f.env, "%s", msg)
		}
	}
	return nil
}

// validateTimeouts checks that every bound is positive: zero does not mean
// "no bound" for any of them.
func (c *Config) validateTimeouts() error {
	for _, t := range []struct {
		env string
		d   time.Duration
	}{
		{"IDP_TIMEOUT", c.IdPTimeout},
		{"REQUEST_TIMEOUT", c.RequestTimeout},
		{"IDLE_TIMEOUT", c.IdleTimeout},
	} {
		if t.d <= 0 {
			return settingErr(t.env, "must be greater than zero, got %s", t.d)
		}
	}
	return nil
}

func (c *Config) validateLogging() error {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return settingErr("LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return settingErr("LOG_FORMAT", "%q is not one of text, json", c.LogFormat)
	}
	return nil
}

// validateCredentials checks each named credential on its own, then that
// no two share a name (a name is a subject token and a request's key).
func (c *Config) validateCredentials() error {
	seen := make(map[string]bool, len(c.Credentials))
	for i, cr := range c.Credentials {
		if _, msg := checkCredential(cr); msg != "" {
			return invalidf(0, "%s: %s", credentialLabel(cr.Name, i), msg)
		}
		if seen[cr.Name] {
			return invalidf(0, "%s: duplicate name", credentialLabel(cr.Name, i))
		}
		seen[cr.Name] = true
	}
	return nil
}

// validateEmbedded refuses a setting of the embedded NATS server when there
// is none: STATE_SYNC with NATS_URL would promise durability that only the
// external servers' own configuration can give.
func (c *Config) validateEmbedded() error {
	if c.NATSURL != "" && (c.StateSyncAlways || c.StateSyncInterval != 0) {
		return settingErr("STATE_SYNC", "applies only to the embedded NATS server; with NATS_URL set, it is the NATS servers' own setting (jetstream { sync_interval: always })")
	}
	return nil
}

// settingErr names a setting by its variable and flag: `NAME (--flag): msg`.
// A message that reads as a predicate ("is required ...", "must ...") follows
// the name without the colon.
func settingErr(env, format string, args ...any) error {
	msg, sep := fmt.Sprintf(format, args...), ": "
	if strings.HasPrefix(msg, "is ") || strings.HasPrefix(msg, "must ") {
		sep = " "
	}
	return invalidf(0, "%s%s%s", lookupSetting(env).label(env), sep, msg)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// checkCredential checks one credential on its own and returns the yaml key
// at fault and a message naming it, or "", "".
func checkCredential(c Credential) (key, msg string) {
	for _, check := range []func(Credential) (string, string){
		checkCommonKeys, checkKeysOfOtherGrants, checkGrant,
	} {
		if key, msg := check(c); msg != "" {
			return key, msg
		}
	}
	return "", ""
}

// checkCommonKeys checks the keys every grant needs.
func checkCommonKeys(c Credential) (key, msg string) {
	switch {
	case c.Name == "":
		return "name", "name is required"
	case !nameRE.MatchString(c.Name):
		return "name", "name must be 1 to 64 letters, digits, '-' or '_' (it becomes a NATS subject token)"
	case c.Name == DefaultName:
		return "name", `name "default" is reserved for the profile from TOKEN_ENDPOINT`
	case c.Name == NoCredentialName:
		return "name", `name "_none" is reserved for the audit records of requests that name no credential`
	case c.TokenEndpoint == "" && c.Issuer == "":
		return "token_endpoint", "token_endpoint is required (or issuer, to find it by OIDC discovery)"
	case c.TokenEndpoint != "" && c.Issuer != "":
		return "issuer", "token_endpoint and issuer are both set; use one (issuer finds the token endpoint by discovery)"
	}
	if c.TokenEndpoint != "" {
		if m := checkEndpoint(c.TokenEndpoint); m != "" {
			return "token_endpoint", "token_endpoint: " + m
		}
	}
	if c.Issuer != "" {
		if m := checkEndpoint(c.Issuer); m != "" {
			return "issuer", "issuer: " + m
		}
	}
	switch c.ClientAuth {
	case "", ClientAuthAuto, ClientAuthBasic, ClientAuthPost:
	default:
		return "client_auth", fmt.Sprintf("client_auth %q is not one of auto, basic, post", c.ClientAuth)
	}
	if c.ClientID == "" {
		return "client_id", "client_id is required"
	}
	if c.RefreshThreshold < 0 {
		return "refresh_threshold", "refresh_threshold must not be negative"
	}
	return "", ""
}

// checkKeysOfOtherGrants refuses a key that only another grant uses: it
// would be silently unused, hiding a wrong grant or a stray key.
func checkKeysOfOtherGrants(c Credential) (key, msg string) {
	if c.Grant != GrantPassword {
		switch {
		case c.Username != "":
			return "username", "username is only used with grant password"
		case !c.Password.IsZero():
			return "password", "password is only used with grant password"
		}
	}
	if c.Grant != GrantClientAssertion {
		switch {
		case c.CertificateFile != "" || c.CertificatePEM != "":
			return "certificate_file", "certificate_file is only used with grant client_assertion"
		case c.PrivateKeyFile != "" || !c.PrivateKeyPEM.IsZero():
			return "private_key_file", "private_key_file is only used with grant client_assertion"
		case c.AssertionFile != "":
			return "assertion_file", "assertion_file is only used with grant client_assertion"
		}
	}
	if c.Grant == GrantClientAssertion || c.Grant == GrantPassword {
		if !c.ClientSecret.IsZero() && c.Grant == GrantClientAssertion {
			return "client_secret", "client_secret is not used with grant client_assertion, which authenticates with a certificate or an assertion_file"
		}
	}
	return "", ""
}

// checkGrant checks the grant and the keys it needs.
func checkGrant(c Credential) (key, msg string) {
	switch c.Grant {
	case GrantClientCredentials:
		if c.ClientSecret.IsZero() {
			return "client_secret", "client_secret or client_secret_file is required for grant client_credentials"
		}
	case GrantPassword:
		if c.Username == "" {
			return "username", "username is required for grant password"
		}
		if c.Password.IsZero() {
			return "password", "password or password_file is required for grant password"
		}
	case GrantClientAssertion:
		return checkAssertionKeys(c)
	case GrantDeviceCode:
		if c.Scope == "" && c.Resource == "" {
			return "scope", "scope (or resource) is required for grant device_code: what the user consents to"
		}
	case "":
		return "grant", "grant is required"
	default:
		return "grant", fmt.Sprintf("grant %q is not one of client_credentials, password, client_assertion, device_code", c.Grant)
	}
	return "", ""
}

// checkAssertionKeys checks what grant client_assertion signs with: a
// certificate and its key, or an assertion file, never both.
func checkAssertionKeys(c Credential) (key, msg string) {
	haveCert := c.CertificateFile != "" || c.CertificatePEM != ""
	haveKey := c.PrivateKeyFile != "" || !c.PrivateKeyPEM.IsZero()
	switch {
	case c.AssertionFile != "" && (haveCert || haveKey):
		return "assertion_file", "assertion_file and certificate_file/private_key_file are both set; use one"
	case c.AssertionFile != "":
		// A path on the brokers' hosts: the broker checks it can read it
		// (catalog), not a command that puts it in the registry from
		// elsewhere.
		return "", ""
	case !haveCert:
		return "certificate_file", "certificate_file (or assertion_file) is required for grant client_assertion"
	case !haveKey:
		return "private_key_file", "private_key_file is required for grant client_assertion"
	}
	return "", ""
}

// CheckCredential checks a named credential on its own, as loading the
// file does, and returns a one-line error that names it and the key at
// fault, wrapping ErrInvalid, or nil. It is for credentials that arrive by
// another way than the file: the registry's.
func CheckCredential(c Credential) error {
	if key, msg := checkCredential(c); msg != "" {
		_ = key
		return invalidf(0, "%s: %s", credentialLabel(c.Name, 0), msg)
	}
	return nil
}

func credentialLabel(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("credential #%d", i+1)
	}
	return fmt.Sprintf("credential %q", name)
}

// checkEndpoint returns why u is not an absolute http(s) URL, or "". It echoes
// u only when u holds no user info, which could be a password.
func checkEndpoint(u string) string {
	show := fmt.Sprintf("%q ", u)
	if strings.Contains(u, "@") {
		show = ""
	}
	p, err := url.Parse(u)
	switch {
	case err != nil, p.Scheme != "http" && p.Scheme != "https", p.Host == "":
		return show + "is not an absolute http(s) URL"
	case p.User != nil:
		return "must not contain user info"
	}
	return ""
}

func checkHostPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Sprintf("%q is not a host:port address", addr)
	}
	return ""
}

// checkSubjectPrefix returns why p is not a sequence of literal NATS subject
// tokens, or "".
func checkSubjectPrefix(p string) string {
	if p == "" {
		return "must not be empty"
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Sprintf("%q must not contain spaces or control characters", p)
	}
	for _, tok := range strings.Split(p, ".") {
		switch {
		case tok == "":
			return fmt.Sprintf("%q has an empty token (leading, trailing or double dot)", p)
		case strings.ContainsAny(tok, "*>"):
			return fmt.Sprintf("%q must not contain the wildcards * or >", p)
		}
	}
	return ""
}

// checkReadable returns why path cannot be opened for reading, or "". The
// message names the path and the reason, never the contents.
func checkReadable(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return readErr(path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fmt.Sprintf("cannot read %q: is a directory", path)
	}
	return ""
}

// readSecretFile reads a secret's file: one secret, or two during a
// rotation, one a line. Blank lines and surrounding white space are
// ignored; a third secret is refused, since which two to try would be a
// guess.
func readSecretFile(path string) (first, next string, msg string) {
	v, msg := readFile(path)
	if msg != "" {
		return "", "", msg
	}
	var lines []string
	for _, l := range strings.Split(v, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	switch len(lines) {
	case 1:
		return lines[0], "", ""
	case 2:
		return lines[0], lines[1], ""
	}
	return "", "", fmt.Sprintf("%q holds %d lines; a secret file holds one secret, or two (one a line) during a rotation", path, len(lines))
}

// ReadSecretFile is readSecretFile for the broker, which reads secret
// files again when they change: it returns the secret and the next one,
// or an error naming the file (never its contents).
func ReadSecretFile(path string) (first, next tokenbroker.Secret, err error) {
	f, n, msg := readSecretFile(path)
	if msg != "" {
		return "", "", errors.New(msg)
	}
	return tokenbroker.Secret(f), tokenbroker.Secret(n), nil
}

// readFile reads a secret's file and trims surrounding white space.
func readFile(path string) (string, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", readErr(path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Sprintf("%q is empty", path)
	}
	return s, ""
}

func readErr(path string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("cannot read %q: %v", path, err)
}
