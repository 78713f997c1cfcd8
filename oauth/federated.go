package oauth

// Workload identity federation: the client credentials grant authenticated
// by a JWT that another issuer signed (RFC 7523 section 2.2 again), as Azure
// AD (Entra ID) has it for Kubernetes workload identity
// (AZURE_FEDERATED_TOKEN_FILE, a projected service account token), GitHub
// Actions and other OIDC issuers. The broker does not sign the assertion and
// does not hold the issuer's key: it reads what the issuer wrote to a file,
// checks it is worth sending, and sends it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"
)

// maxAssertionFile bounds how much of an assertion file is read. A projected
// service account token is one or two KiB; a path pointing at something else
// (a log, a device) must neither be buffered whole nor sent.
const maxAssertionFile = 64 << 10

// AssertionFileError is returned by FederatedAssertion, before any call to
// the IdP, when its assertion file cannot be used: missing, unreadable,
// empty, not a JWT, without exp, or expired. Its message names the file and
// what is wrong and never quotes the file's contents, which are a
// credential.
//
// It is a refusal of the credential, not an IdP failure: Classify answers
// 401 invalid_client and OutcomeOf OutcomeRejected, as the IdP would for the
// same JWT, so a caller does not retry and a breaker does not count it. It
// also wraps ErrInvalidArgument (no call was made) and, for a read error,
// the *os.PathError's cause, so errors.Is(err, fs.ErrNotExist) works.
type AssertionFileError struct {
	// File is the path as given.
	File string
	// Reason says what is wrong with it, without the path or its contents:
	// "is empty", "holds an expired JWT (exp 2026-01-02T03:04:05Z)", ...
	Reason string
	// Err is the read error's cause, nil when the file was read.
	Err error
}

// Error returns "oauth: assertion file PATH: REASON".
func (e *AssertionFileError) Error() string {
	if e.File == "" {
		return "oauth: assertion file: " + e.Reason
	}
	return "oauth: assertion file " + e.File + ": " + e.Reason
}

// Unwrap returns ErrInvalidArgument and Err.
func (e *AssertionFileError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidArgument}
	}
	return []error{ErrInvalidArgument, e.Err}
}

// FederatedAssertion runs the client credentials grant (RFC 6749 4.4)
// authenticated by the JWT in assertionFile (RFC 7523 2.2): the form carries
// client_id, client_assertion_type (ClientAssertionType), client_assertion
// and ep's scope or resource, and never a client secret (ep.ClientSecret is
// ignored). The file is read for every call, as its issuer replaces it
// before the JWT expires (kubelet rewrites a projected token at 80% of its
// lifetime), and white space around the JWT is ignored.
//
// Before calling the IdP it checks the JWT is a compact JWS whose payload
// has an exp still in the future on the Client's clock; its signature is
// not checked, as only the issuer's keys could, and the IdP does. A file
// that fails this is an *AssertionFileError and no request is sent: Azure AD
// would only refuse it (AADSTS700024 for an expired one), and a file the
// issuer stopped rotating is worth an error that names it. An empty
// ClientID or a bad TokenURL is an ErrInvalidArgument, as for the other
// grants, and the rest of the errors are Exchange's.
//
// Azure AD refuses a JWT whose issuer and subject match no federated
// identity credential of the app with invalid_client AADSTS70021, and one
// for another audience than api://AzureADTokenExchange with AADSTS700212.
func (c *Client) FederatedAssertion(ctx context.Context, ep Endpoint, assertionFile string) (*Token, error) {
	if ep.ClientID == "" {
		return nil, fmt.Errorf("%w: a client assertion needs a client ID", ErrInvalidArgument)
	}
	if _, err := checkTokenURL(ep.TokenURL); err != nil {
		return nil, err
	}
	assertion, err := readAssertionFile(assertionFile, c.now())
	if err != nil {
		return nil, err
	}
	return c.assertionGrant(ctx, ep, assertion)
}

// readAssertionFile reads and checks the JWT in file; see
// FederatedAssertion.
func readAssertionFile(file string, now time.Time) (string, error) {
	fail := func(reason string, err error) (string, error) {
		return "", &AssertionFileError{File: file, Reason: reason, Err: err}
	}
	if file == "" {
		return fail("no path given", nil)
	}
	f, err := os.Open(file)
	if err != nil {
		return fail("cannot be read: "+pathCause(err).Error(), pathCause(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAssertionFile+1))
	if err != nil {
		return fail("cannot be read: "+pathCause(err).Error(), pathCause(err))
	}
	if len(data) > maxAssertionFile {
		return fail(fmt.Sprintf("is over %d KiB, too large for a JWT", maxAssertionFile>>10), nil)
	}
	jwt := bytes.TrimSpace(data)
	if len(jwt) == 0 {
		return fail("is empty", nil)
	}
	exp, reason := jwtExpiry(jwt)
	if reason != "" {
		return fail(reason, nil)
	}
	if !now.Before(exp) {
		return fail(fmt.Sprintf("holds an expired JWT (exp %s); is its issuer still replacing it?", exp.UTC().Format(time.RFC3339)), nil)
	}
	return string(jwt), nil
}

// pathCause returns err without the *os.PathError around it, whose message
// repeats the path the AssertionFileError names already.
func pathCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// jwtExpiry returns the exp of a compact JWS, or why it has none to give.
// The reasons describe the shape of the token, never its contents.
func jwtExpiry(jwt []byte) (time.Time, string) {
	parts := bytes.Split(jwt, []byte("."))
	if len(parts) != 3 {
		return time.Time{}, fmt.Sprintf("does not hold a compact JWT: %d dot-separated parts, want 3", len(parts))
	}
	if len(parts[2]) == 0 {
		return time.Time{}, "holds an unsigned JWT"
	}
	if _, err := base64.RawURLEncoding.DecodeString(string(parts[2])); err != nil {
		return time.Time{}, "does not hold a compact JWT: the signature is not base64url"
	}
	var header, claims map[string]json.RawMessage
	if decodeJWTPart(parts[0], &header) != nil {
		return time.Time{}, "does not hold a compact JWT: the header is not a base64url JSON object"
	}
	if decodeJWTPart(parts[1], &claims) != nil {
		return time.Time{}, "does not hold a compact JWT: the payload is not a base64url JSON object"
	}
	rawExp, ok := claims["exp"]
	if !ok {
		return time.Time{}, "holds a JWT without an exp claim"
	}
	// exp is a NumericDate (RFC 7519 2): a JSON number of seconds, possibly
	// fractional; a string or null is not one.
	var secs float64
	if json.Unmarshal(rawExp, &secs) != nil || bytes.Equal(bytes.TrimSpace(rawExp), []byte("null")) ||
		math.IsNaN(secs) || math.IsInf(secs, 0) || secs < 0 || secs > 1<<40 {
		return time.Time{}, "holds a JWT whose exp claim is not a time"
	}
	whole, frac := math.Modf(secs)
	return time.Unix(int64(whole), int64(frac*1e9)), ""
}

// decodeJWTPart decodes a base64url (unpadded) JSON object into m; JSON
// null, which would leave m nil, is not an object either.
func decodeJWTPart(part []byte, m *map[string]json.RawMessage) error {
	data, err := base64.RawURLEncoding.DecodeString(string(part))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, m); err != nil {
		return err
	}
	if *m == nil {
		return errors.New("not a JSON object")
	}
	return nil
}
