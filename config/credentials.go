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
	"private_key_file", "refresh_threshold", "keep_warm",
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
	if root.Kind != yaml.MappingNode {
		return nil, invalidf(root.Line, "the file must be a mapping with a credentials key")
	}
	var list *yaml.Node
	file := &File{}
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
			if err := decodeNATS(deref(p.val), &file.NATS); err != nil {
				return nil, err
			}
		default:
			return nil, invalidf(p.line, "unknown top-level key %q", p.key)
		}
	}
	if list == nil || isNull(list) {
		return file, nil
	}
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
	file.Credentials = creds
	return file, nil
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
	label := fmt.Sprintf("credential #%d", i+1)
	if n.Kind != yaml.MappingNode {
		return Credential{}, n.Line, invalidf(n.Line, "%s: must be a mapping of keys", label)
	}
	pairs, err := mappingPairs(n, label)
	if err != nil {
		return Credential{}, 0, err
	}
	lines := make(map[string]int, len(pairs))
	vals := make(map[string]*yaml.Node, len(pairs))
	for _, p := range pairs {
		lines[p.key] = p.line
		vals[p.key] = deref(p.val)
	}
	nameLine := n.Line
	if v, ok := vals["name"]; ok {
		nameLine = lines["name"]
		if v.Kind != yaml.ScalarNode {
			return Credential{}, 0, invalidf(nameLine, "%s: name must be a string", label)
		}
		if !isNull(v) && v.Value != "" {
			label = fmt.Sprintf("credential %q", v.Value)
		}
	}
	fail := func(key, format string, args ...any) (Credential, int, error) {
		line, ok := lines[key]
		if !ok {
			line = n.Line
		}
		return Credential{}, 0, invalidf(line, "%s: %s", label, fmt.Sprintf(format, args...))
	}
	for _, p := range pairs {
		if !isKnownKey(p.key) {
			return fail(p.key, "unknown key %q", p.key)
		}
	}

	c := Credential{
		Grant:            GrantClientCredentials,
		RefreshThreshold: defaults.RefreshThreshold,
		KeepWarm:         true,
	}
	str := func(key string, dst *string) bool {
		v, ok := vals[key]
		if !ok || isNull(v) {
			return true
		}
		if v.Kind != yaml.ScalarNode {
			return false
		}
		*dst = v.Value
		return true
	}
	var secret, secretFile, password, passwordFile, grant string
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"name", &c.Name},
		{"token_endpoint", &c.TokenEndpoint},
		{"client_id", &c.ClientID},
		{"client_secret", &secret},
		{"client_secret_file", &secretFile},
		{"grant", &grant},
		{"scope", &c.Scope},
		{"resource", &c.Resource},
		{"username", &c.Username},
		{"password", &password},
		{"password_file", &passwordFile},
		{"certificate_file", &c.CertificateFile},
		{"private_key_file", &c.PrivateKeyFile},
	} {
		if !str(f.key, f.dst) {
			return fail(f.key, "%s must be a string", f.key)
		}
	}
	if grant != "" {
		c.Grant = grant
	}
	if v, ok := vals["refresh_threshold"]; ok && !isNull(v) {
		d, err := parseSeconds(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			return fail("refresh_threshold", "refresh_threshold must be a whole, non-negative number of seconds")
		}
		c.RefreshThreshold = d
	}
	if v, ok := vals["keep_warm"]; ok && !isNull(v) {
		if v.Kind != yaml.ScalarNode || v.Decode(&c.KeepWarm) != nil {
			return fail("keep_warm", "keep_warm must be true or false")
		}
	}
	for _, s := range []struct {
		key, fileKey string
		value, file  string
		dst          *tokenbroker.Secret
	}{
		{"client_secret", "client_secret_file", secret, secretFile, &c.ClientSecret},
		{"password", "password_file", password, passwordFile, &c.Password},
	} {
		switch {
		case s.value != "" && s.file != "":
			return fail(s.fileKey, "%s and %s are both set; use one", s.key, s.fileKey)
		case s.value != "":
			*s.dst = tokenbroker.Secret(s.value)
		case s.file != "":
			v, msg := readFile(s.file)
			if msg != "" {
				return fail(s.fileKey, "%s: %s", s.fileKey, msg)
			}
			*s.dst = tokenbroker.Secret(v)
		}
	}
	if key, msg := checkCredential(c); msg != "" {
		if key == "client_secret" && secretFile != "" {
			key = "client_secret_file"
		}
		if key == "password" && passwordFile != "" {
			key = "password_file"
		}
		return fail(key, "%s", msg)
	}
	return c, nameLine, nil
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
