package config

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tokenbroker/tokenbroker"
)

// credentialKeys are the keys a credential may have in the YAML file.
var credentialKeys = []string{
	"name", "token_endpoint", "client_id", "client_secret", "client_secret_file", "grant",
	"scope", "resource", "username", "password", "password_file", "certificate_file",
	"private_key_file", "assertion_file", "refresh_threshold", "keep_warm",
	"issuer", "client_auth", "client_capabilities",
}

// LoadCredentials reads the named credentials file from r:
//
//	credentials:
//	  - name: crm-prod
//	    token_endpoint: https://login.microsoftonline.com/TENANT/oauth2/v2.0/token
//	    client_id: 00000000-0000-0000-0000-000000000000
//	    client_secret_file: /run/secrets/crm-prod   # or client_secret
//	    grant: client_credentials                   # the default; or password, client_assertion
//	    scope: https://contoso.crm.dynamics.com/.default   # or resource (Azure AD v1)
//	    refresh_threshold: 600                      # seconds; default defaults.RefreshThreshold
//	    keep_warm: true                             # the default
//
// Keys: name, token_endpoint, client_id, client_secret, client_secret_file,
// grant, scope, resource, username, password, password_file,
// certificate_file, private_key_file, refresh_threshold, keep_warm.
// name, token_endpoint and client_id are required; grant defaults to
// client_credentials. Grant client_credentials needs client_secret or
// client_secret_file; password needs username and password or password_file;
// client_assertion needs certificate_file and private_key_file, which must be
// readable. A secret and its *_file may not both be given; a *_file is read
// now and its contents trimmed of surrounding white space. Paths are used as
// given (relative to the working directory). Names are 1 to 64 of
// A-Z a-z 0-9 - _, unique, and not "default" (the profile from
// TOKEN_ENDPOINT). From defaults only RefreshThreshold is used, as the
// default of refresh_threshold. YAML anchors, aliases and merge keys (<<)
// work; top-level keys starting with "x-" are ignored, as a place for
// anchors shared by several credentials.
//
// An unknown key (at the top level or in a credential), a missing required
// key, an unreadable file or a duplicate name returns a one-line error naming
// the credential, the key and the line, wrapping ErrInvalid, e.g.
// `config: credential "crm-prod": unknown key "scop" (line 7)`. Values of
// client_secret and password never appear in errors. An empty document holds
// no credentials.
func LoadCredentials(r io.Reader, defaults Credential) ([]Credential, error) {
	f, err := LoadFile(r, defaults)
	if err != nil || f == nil {
		return nil, err
	}
	return f.Credentials, nil
}

// File is what the TOKENBROKER_CONFIG file declares.
type File struct {
	Credentials []Credential
	NATS        NATSFile
}

// NATSFile is the file's optional nats section: how the broker connects to
// NATS, for deployments that keep it beside the credentials. Each key
// stands for the environment variable of the same name (url for NATS_URL,
// creds_file for NATS_CREDS, ...); a variable or flag that is set wins.
// Secrets come only from files (password_file, token_file).
type NATSFile struct {
	URL          string `yaml:"url"`
	CredsFile    string `yaml:"creds_file"`
	NKeyFile     string `yaml:"nkey_file"`
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	TokenFile    string `yaml:"token_file"`
	CAFile       string `yaml:"ca_file"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
}

var natsKeys = map[string]bool{"url": true, "creds_file": true, "nkey_file": true, "user": true,
	"password_file": true, "token_file": true, "ca_file": true, "cert_file": true, "key_file": true}

// LoadFile reads a whole TOKENBROKER_CONFIG file: the credentials, as
// LoadCredentials does, and the nats section. An empty document is a nil
// File.
func LoadFile(r io.Reader, defaults Credential) (*File, error) {
	root, err := readDocument(r)
	if err != nil || root == nil {
		return nil, err
	}
	if root.Kind != yaml.MappingNode {
		return nil, invalidf(root.Line, "the file must be a mapping with a credentials key")
	}
	file := &File{}
	list, err := decodeTopLevel(root, &file.NATS)
	if err != nil {
		return nil, err
	}
	if list == nil || isNull(list) {
		return file, nil
	}
	if file.Credentials, err = decodeCredentials(list, defaults); err != nil {
		return nil, err
	}
	return file, nil
}

// readDocument reads the file's one YAML document and returns its root
// node, or nil when the document is empty. A second document is refused
// rather than ignored, since its credentials would silently not exist.
func readDocument(r io.Reader) (*yaml.Node, error) {
	dec := yaml.NewDecoder(r)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, invalidf(0, "%s", yamlErr(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, invalidf(0, "%s", yamlErr(err))
		}
		return nil, invalidf(extra.Line, "only one YAML document is allowed")
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = deref(root.Content[0])
	}
	if isNull(root) {
		return nil, nil
	}
	return root, nil
}

// decodeTopLevel reads the top-level mapping root: it decodes the nats
// section into nats and returns the credentials list, nil when there is
// none.
func decodeTopLevel(root *yaml.Node, nats *NATSFile) (list *yaml.Node, err error) {
	pairs, err := mappingPairs(root, "top level")
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		switch {
		case strings.HasPrefix(p.key, "x-"):
			continue // a place for shared anchors
		case p.key == "credentials":
			list = deref(p.val)
		case p.key == "nats":
			if err := decodeNATS(deref(p.val), nats); err != nil {
				return nil, err
			}
		default:
			return nil, invalidf(p.line, "unknown top-level key %q", p.key)
		}
	}
	return list, nil
}

// decodeCredentials decodes the credentials list, refusing a name given
// twice: it names the first one's line too, since either may be the typo.
func decodeCredentials(list *yaml.Node, defaults Credential) ([]Credential, error) {
	if list.Kind != yaml.SequenceNode {
		return nil, invalidf(list.Line, "credentials must be a list")
	}
	creds := make([]Credential, 0, len(list.Content))
	firstLine := make(map[string]int)
	for i, n := range list.Content {
		c, line, err := decodeCredential(deref(n), i, defaults)
		if err != nil {
			return nil, err
		}
		if first, dup := firstLine[c.Name]; dup {
			return nil, invalidf(line, "credential %q: duplicate name (first at line %d)", c.Name, first)
		}
		firstLine[c.Name] = line
		creds = append(creds, c)
	}
	return creds, nil
}

// decodeNATS reads the nats section, refusing unknown keys.
func decodeNATS(n *yaml.Node, out *NATSFile) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return invalidf(n.Line, "nats must be a mapping")
	}
	pairs, err := mappingPairs(n, "nats")
	if err != nil {
		return err
	}
	for _, p := range pairs {
		if !natsKeys[p.key] {
			hint := ""
			if p.key == "password" || p.key == "token" {
				hint = " (secrets come from files: " + p.key + "_file)"
			}
			return invalidf(p.line, "nats: unknown key %q%s", p.key, hint)
		}
	}
	if err := n.Decode(out); err != nil {
		return invalidf(n.Line, "nats: %s", yamlErr(err))
	}
	return nil
}

// pair is one key and value of a YAML mapping.
type pair struct {
	key  string
	line int
	val  *yaml.Node
}

// mappingPairs returns the pairs of mapping m, merge keys (<<) expanded: keys
// of m itself win over merged ones. A key given twice in m is an error.
func mappingPairs(m *yaml.Node, what string) ([]pair, error) {
	var own, merged []pair
	seen := make(map[string]bool)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, invalidf(k.Line, "%s: keys must be strings", what)
		}
		if k.Value == "<<" && (k.Tag == "!!merge" || k.Tag == "") {
			src := deref(v)
			var maps []*yaml.Node
			switch src.Kind {
			case yaml.MappingNode:
				maps = []*yaml.Node{src}
			case yaml.SequenceNode:
				for _, s := range src.Content {
					maps = append(maps, deref(s))
				}
			}
			for _, mm := range maps {
				if mm.Kind != yaml.MappingNode {
					return nil, invalidf(k.Line, "%s: << must merge a mapping", what)
				}
				ps, err := mappingPairs(mm, what)
				if err != nil {
					return nil, err
				}
				merged = append(merged, ps...)
			}
			continue
		}
		if seen[k.Value] {
			return nil, invalidf(k.Line, "%s: key %q given twice", what, k.Value)
		}
		seen[k.Value] = true
		own = append(own, pair{key: k.Value, line: k.Line, val: v})
	}
	out := own
	for _, p := range merged {
		if !seen[p.key] {
			seen[p.key] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// decodeCredential decodes the i-th credential node n. It returns the
// credential and the line of its name (or of the node).
func decodeCredential(n *yaml.Node, i int, defaults Credential) (Credential, int, error) {
	cn, err := readCredentialNode(n, i)
	if err != nil {
		return Credential{}, 0, err
	}
	for _, p := range cn.pairs {
		if !isKnownKey(p.key) {
			return Credential{}, 0, cn.fail(p.key, "unknown key %q", p.key)
		}
	}
	c := Credential{
		Grant:            GrantClientCredentials,
		RefreshThreshold: defaults.RefreshThreshold,
		KeepWarm:         true,
	}
	raw, err := cn.decodeStrings(&c)
	if err != nil {
		return Credential{}, 0, err
	}
	if err := cn.decodeOptions(&c); err != nil {
		return Credential{}, 0, err
	}
	if err := cn.decodeSecrets(&c, raw); err != nil {
		return Credential{}, 0, err
	}
	if key, msg := checkCredential(c); msg != "" {
		return Credential{}, 0, cn.fail(raw.keyGiven(key), "%s", msg)
	}
	return c, cn.nameLine, nil
}

// credentialNode is one credential's YAML mapping, with what an error about
// it needs: the credential's label and the line of each key.
type credentialNode struct {
	node     *yaml.Node
	pairs    []pair
	lines    map[string]int        // by key
	vals     map[string]*yaml.Node // by key, aliases followed
	label    string                // credential "name", or credential #i until the name is known
	nameLine int                   // the line of name, or of the node
}

// readCredentialNode reads the i-th credential's mapping n and its name, so
// that every later error names the credential as its author wrote it.
func readCredentialNode(n *yaml.Node, i int) (*credentialNode, error) {
	cn := &credentialNode{node: n, label: fmt.Sprintf("credential #%d", i+1), nameLine: n.Line}
	if n.Kind != yaml.MappingNode {
		return nil, invalidf(n.Line, "%s: must be a mapping of keys", cn.label)
	}
	var err error
	if cn.pairs, err = mappingPairs(n, cn.label); err != nil {
		return nil, err
	}
	cn.lines = make(map[string]int, len(cn.pairs))
	cn.vals = make(map[string]*yaml.Node, len(cn.pairs))
	for _, p := range cn.pairs {
		cn.lines[p.key] = p.line
		cn.vals[p.key] = deref(p.val)
	}
	if v, ok := cn.vals["name"]; ok {
		cn.nameLine = cn.lines["name"]
		if v.Kind != yaml.ScalarNode {
			return nil, invalidf(cn.nameLine, "%s: name must be a string", cn.label)
		}
		if !isNull(v) && v.Value != "" {
			cn.label = fmt.Sprintf("credential %q", v.Value)
		}
	}
	return cn, nil
}

// fail returns an error about key, on its line (or the credential's when
// the key is missing).
func (cn *credentialNode) fail(key, format string, args ...any) error {
	line, ok := cn.lines[key]
	if !ok {
		line = cn.node.Line
	}
	return invalidf(line, "%s: %s", cn.label, fmt.Sprintf(format, args...))
}

// value returns key's value, or nil when the key is missing or null.
func (cn *credentialNode) value(key string) *yaml.Node {
	if v, ok := cn.vals[key]; ok && !isNull(v) {
		return v
	}
	return nil
}

// rawSecrets are the secrets as given: each one's value or the file that
// holds it. Which of the two was given decides the key an error names.
type rawSecrets struct {
	secret, secretFile, password, passwordFile string
}

// keyGiven turns the key checkCredential blames for a secret into the key
// the author wrote, so that the error points at the right line:
// client_secret_file rather than client_secret when the secret came from a
// file.
func (r rawSecrets) keyGiven(key string) string {
	switch {
	case key == "client_secret" && r.secretFile != "":
		return "client_secret_file"
	case key == "password" && r.passwordFile != "":
		return "password_file"
	}
	return key
}

// decodeStrings sets c's string keys, and returns the secrets as given,
// which are read only once all keys are known to be well formed.
func (cn *credentialNode) decodeStrings(c *Credential) (rawSecrets, error) {
	var raw rawSecrets
	// A grant given as "" keeps the default, so it is read aside.
	var grant string
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"name", &c.Name},
		{"token_endpoint", &c.TokenEndpoint},
		{"client_id", &c.ClientID},
		{"client_secret", &raw.secret},
		{"client_secret_file", &raw.secretFile},
		{"grant", &grant},
		{"scope", &c.Scope},
		{"resource", &c.Resource},
		{"username", &c.Username},
		{"password", &raw.password},
		{"password_file", &raw.passwordFile},
		{"certificate_file", &c.CertificateFile},
		{"private_key_file", &c.PrivateKeyFile},
		{"assertion_file", &c.AssertionFile},
		{"issuer", &c.Issuer},
		{"client_auth", &c.ClientAuth},
	} {
		v := cn.value(f.key)
		if v == nil {
			continue
		}
		if v.Kind != yaml.ScalarNode {
			return rawSecrets{}, cn.fail(f.key, "%s must be a string", f.key)
		}
		*f.dst = v.Value
	}
	if grant != "" {
		c.Grant = grant
	}
	return raw, nil
}

// decodeOptions sets refresh_threshold and keep_warm, which keep their
// defaults when missing or null.
func (cn *credentialNode) decodeOptions(c *Credential) error {
	if v := cn.value("refresh_threshold"); v != nil {
		d, err := parseSeconds(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			return cn.fail("refresh_threshold", "refresh_threshold must be a whole, non-negative number of seconds")
		}
		c.RefreshThreshold = d
	}
	if v := cn.value("client_capabilities"); v != nil {
		if v.Kind != yaml.SequenceNode {
			return cn.fail("client_capabilities", "client_capabilities must be a list of strings, e.g. [cp1]")
		}
		for _, item := range v.Content {
			item = deref(item)
			if item.Kind != yaml.ScalarNode || item.Value == "" {
				return cn.fail("client_capabilities", "client_capabilities must be a list of strings, e.g. [cp1]")
			}
			c.ClientCapabilities = append(c.ClientCapabilities, item.Value)
		}
	}
	if v := cn.value("keep_warm"); v != nil {
		if v.Kind != yaml.ScalarNode || v.Decode(&c.KeepWarm) != nil {
			return cn.fail("keep_warm", "keep_warm must be true or false")
		}
	}
	return nil
}

// decodeSecrets sets c's client secret and password from their values or
// files, and reads the certificate and key files. A secret and its file at
// once is refused: which one wins would be a guess.
func (cn *credentialNode) decodeSecrets(c *Credential, raw rawSecrets) error {
	for _, s := range []struct {
		key, fileKey string
		value, file  string
		dst, next    *tokenbroker.Secret
		path         *string
	}{
		{"client_secret", "client_secret_file", raw.secret, raw.secretFile, &c.ClientSecret, &c.NextClientSecret, &c.ClientSecretFile},
		{"password", "password_file", raw.password, raw.passwordFile, &c.Password, &c.NextPassword, &c.PasswordFile},
	} {
		switch {
		case s.value != "" && s.file != "":
			return cn.fail(s.fileKey, "%s and %s are both set; use one", s.key, s.fileKey)
		case s.value != "":
			*s.dst = tokenbroker.Secret(s.value)
		case s.file != "":
			v, next, msg := readSecretFile(s.file)
			if msg != "" {
				return cn.fail(s.fileKey, "%s: %s", s.fileKey, msg)
			}
			*s.dst, *s.next, *s.path = tokenbroker.Secret(v), tokenbroker.Secret(next), s.file
		}
	}
	return cn.readPEMFiles(c)
}

// readPEMFiles reads the certificate and key files of grant
// client_assertion into the credential, so that it carries what it signs
// with (and can be put in the registry as it is).
func (cn *credentialNode) readPEMFiles(c *Credential) error {
	if c.Grant != GrantClientAssertion {
		return nil // checkKeysOfOtherGrants names the stray key
	}
	for _, f := range []struct {
		key, path string
		set       func(string)
	}{
		{"certificate_file", c.CertificateFile, func(v string) { c.CertificatePEM = v }},
		{"private_key_file", c.PrivateKeyFile, func(v string) { c.PrivateKeyPEM = tokenbroker.Secret(v) }},
	} {
		if f.path == "" {
			continue
		}
		v, msg := readFile(f.path)
		if msg != "" {
			return cn.fail(f.key, "%s: %s", f.key, msg)
		}
		f.set(v)
	}
	return nil
}

func isKnownKey(k string) bool {
	for _, known := range credentialKeys {
		if k == known {
			return true
		}
	}
	return false
}

// deref follows YAML aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// yamlErr makes a YAML syntax error one line without the "yaml: " prefix.
func yamlErr(err error) string {
	return strings.TrimPrefix(oneLine.Replace(err.Error()), "yaml: ")
}
