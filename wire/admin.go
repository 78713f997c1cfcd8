package wire

import "time"

// The admin endpoints: how `tokenbroker credential` and `tokenbroker
// login` talk to the brokers. They live on <prefix>.admin.> so that NATS
// permissions can give operators and callers different rights: a caller
// allowed token.request.crm-prod learns nothing here, and an operator's
// user needs nothing else. Requests and replies are JSON; errors come as
// the request endpoints' do, in the micro error headers with a
// tokenbroker.Error body.

// Admin subjects, below the prefix.
const (
	adminCredentialPut  = ".admin.credential.put"
	adminCredentialRm   = ".admin.credential.rm"
	adminCredentialLs   = ".admin.credential.ls"
	adminCredentialShow = ".admin.credential.show"
	adminLogin          = ".admin.login"
)

// AdminCredentialPut is the subject of AdminPutRequest.
func (s Subjects) AdminCredentialPut() string { return s.prefix() + adminCredentialPut }

// AdminCredentialRm is the subject of AdminNameRequest that removes a
// credential from the registry.
func (s Subjects) AdminCredentialRm() string { return s.prefix() + adminCredentialRm }

// AdminCredentialLs is the subject that lists the credentials a broker
// serves (an empty request), answered with AdminListReply.
func (s Subjects) AdminCredentialLs() string { return s.prefix() + adminCredentialLs }

// AdminCredentialShow is the subject of AdminNameRequest answered with one
// AdminCredentialInfo.
func (s Subjects) AdminCredentialShow() string { return s.prefix() + adminCredentialShow }

// AdminLogin is the subject that starts a device code enrolment.
func (s Subjects) AdminLogin() string { return s.prefix() + adminLogin }

// AdminAll matches every admin subject.
func (s Subjects) AdminAll() string { return s.prefix() + ".admin.>" }

// Error codes the admin endpoints add to the request endpoints' (in the
// OAuth error field of the body; the status is in the header).
const (
	// AdminRegistryOff (503): the brokers keep no registry, because they
	// run without TOKENBROKER_KEY, which encrypts its secrets.
	AdminRegistryOff = "registry_unavailable"
	// AdminInFile (409): the credential comes from TOKENBROKER_CONFIG,
	// which the registry cannot change.
	AdminInFile = "defined_in_file"
)

// Credential is a named credential as an operator declares it, in the
// shape TOKENBROKER_CONFIG gives it, with every secret's contents rather
// than its file. It is what `tokenbroker credential put` sends and what the
// registry keeps (encrypted). Its secret fields are in clear: it must never
// be logged, and goes only over connections an operator trusts (TLS).
type Credential struct {
	Name          string `json:"name"`
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	ClientAuth    string `json:"client_auth,omitempty"`
	ClientID      string `json:"client_id"`
	Grant         string `json:"grant"`
	Scope         string `json:"scope,omitempty"`
	Resource      string `json:"resource,omitempty"`
	Username      string `json:"username,omitempty"`
	// RefreshThreshold is in seconds; nil keeps the broker's default.
	RefreshThreshold *int64 `json:"refresh_threshold,omitempty"`
	KeepWarm         bool   `json:"keep_warm"`
	// AssertionFile is a path on the brokers' hosts (a projected service
	// account token), read there for every IdP call.
	AssertionFile string `json:"assertion_file,omitempty"`
	// ClientCapabilities are sent as xms_cc with claims requests.
	ClientCapabilities []string `json:"client_capabilities,omitempty"`

	// Secrets, in clear.
	ClientSecret     string `json:"client_secret,omitempty"`
	NextClientSecret string `json:"next_client_secret,omitempty"`
	Password         string `json:"password,omitempty"`
	NextPassword     string `json:"next_password,omitempty"`
	CertificatePEM   string `json:"certificate_pem,omitempty"`
	PrivateKeyPEM    string `json:"private_key_pem,omitempty"`
}

// String names the credential without its secrets, so that a Credential
// printed by mistake leaks nothing.
func (c Credential) String() string { return "credential " + c.Name }

// GoString is String, for %#v.
func (c Credential) GoString() string { return c.String() }

// AdminPutRequest adds or replaces credentials in the registry.
type AdminPutRequest struct {
	Credentials []Credential `json:"credentials"`
}

// AdminPutReply says which credentials were stored, and what the broker
// that stored them noticed: a name TOKENBROKER_CONFIG also declares (the
// file's wins on that broker).
type AdminPutReply struct {
	Put      []string `json:"put"`
	Warnings []string `json:"warnings,omitempty"`
}

// AdminNameRequest names one credential (rm, show, login).
type AdminNameRequest struct {
	Name string `json:"name"`
}

// AdminRmReply says which credential was removed.
type AdminRmReply struct {
	Removed string `json:"removed"`
}

// AdminListReply is every credential the answering broker serves, by name.
type AdminListReply struct {
	Broker      string                `json:"broker"`
	Credentials []AdminCredentialInfo `json:"credentials"`
}

// AdminCredentialInfo describes a credential without any secret: what
// `credential ls` and `credential show` print.
type AdminCredentialInfo struct {
	Name string `json:"name"`
	// Source is "file" (TOKENBROKER_CONFIG) or "registry".
	Source        string `json:"source"`
	Grant         string `json:"grant"`
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	ClientID      string `json:"client_id"`
	Scope         string `json:"scope,omitempty"`
	Resource      string `json:"resource,omitempty"`
	Username      string `json:"username,omitempty"`
	// RefreshThreshold is in seconds.
	RefreshThreshold int64 `json:"refresh_threshold"`
	KeepWarm         bool  `json:"keep_warm"`
	// Secrets says what the credential authenticates with, never a value:
	// "client_secret", "client_secret (2, rotating)", "certificate",
	// "assertion_file", "password", ...
	Secrets []string `json:"secrets,omitempty"`
	// CertificateNotAfter is the client certificate's expiry (RFC 3339),
	// for grant client_assertion with a certificate.
	CertificateNotAfter string `json:"certificate_not_after,omitempty"`
	// ExpiresOn is the Unix time (a string, as in replies) at which the
	// token the answering broker holds expires; "" when it holds none.
	ExpiresOn string `json:"expires_on,omitempty"`
	// UpdatedAt is when the registry entry was last written (RFC 3339).
	UpdatedAt string `json:"updated_at,omitempty"`
	// Shadowed says the registry holds a credential of this name too, which
	// the file's hides.
	Shadowed bool `json:"shadowed,omitempty"`
}

// adminLoginWait is followed by a broker's id: the login runs on the broker
// that started it, so only that one can say how it stands.
const adminLoginWait = ".admin.login.wait."

// AdminLoginWait is the subject of the broker called broker on which an
// AdminNameRequest waits for that broker's login of the credential, and is
// answered with AdminLoginStatus. Each broker listens on its own, outside
// the queue group.
func (s Subjects) AdminLoginWait(broker string) string { return s.prefix() + adminLoginWait + broker }

// AdminLoginReply is what a broker answers to AdminLogin (an
// AdminNameRequest): what to show the person who signs in, and where to
// wait for the outcome. It never holds the device code.
type AdminLoginReply struct {
	Name string `json:"name"`
	// VerificationURI is where to sign in; VerificationURIComplete, when
	// the IdP sent one, has the user code in it already.
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	UserCode                string `json:"user_code"`
	// Message is the IdP's own instructions, when it sent any (Azure AD).
	Message string `json:"message,omitempty"`
	// ExpiresIn is how long, in seconds, the user has to sign in.
	ExpiresIn int64 `json:"expires_in"`
	// Broker is the id of the broker that polls the IdP, and WaitSubject
	// its AdminLoginWait subject.
	Broker      string `json:"broker"`
	WaitSubject string `json:"wait_subject"`
}

// The states of AdminLoginStatus.
const (
	LoginPending = "pending" // not signed in yet: wait again
	LoginDone    = "done"    // signed in: the credential is served
	LoginDenied  = "denied"  // the user declined
	LoginExpired = "expired" // the code expired first: start again
	LoginFailed  = "failed"  // see Error and Description
)

// AdminLoginStatus is how a login stands. A wait is answered within
// LoginWaitMax, pending when the login has not ended by then.
type AdminLoginStatus struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Error       string `json:"error,omitempty"`
	Description string `json:"description,omitempty"`
}

// LoginWaitMax bounds how long a broker holds one login wait before it
// answers pending, well within a NATS request's patience.
const LoginWaitMax = 25 * time.Second
