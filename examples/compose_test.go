package examples_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokenbroker/tokenbroker/config"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = ".."

// composeFile is docker-compose.yml, relative to repoRoot.
const composeFile = "docker-compose.yml"

// expectedAbsent are files the compose file references that are not in the
// repository because the user makes them, each with where that is said.
// They must be named in the README, and nothing else may be missing: an
// optional env_file with a misspelt name would otherwise be ignored without
// a word.
var expectedAbsent = map[string]string{
	// The broker key: README's docker compose steps create it with
	// openssl rand, and .gitignore keeps secrets/ out of the repository.
	"secrets/tokenbroker.key": "openssl rand -base64 32 > secrets/tokenbroker.key",
	// A real IdP's settings, which the README says to put there; the
	// compose file lists it with required: false.
	"tokenbroker.env": "tokenbroker.env",
}

// goRuntimeEnv are variables the broker's binary reads through the Go
// runtime and standard library rather than config: the scheduler and the
// garbage collector, time zones, the root certificates of crypto/x509, and
// the proxy of net/http's default transport, which the IdP client and
// discovery clone.
var goRuntimeEnv = []string{"GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "GOTRACEBACK", "TZ",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}

// TestComposeFileMatchesTheBroker checks docker-compose.yml against the
// code without a Docker engine: every variable a service sets is one its
// program reads, every file it references exists (or is one the user
// makes), every published port and every URL naming a service reaches
// something that listens there on more than loopback, and each broker's
// environment is one the broker accepts.
func TestComposeFileMatchesTheBroker(t *testing.T) {
	cf := readCompose(t)
	if len(cf.Services) == 0 {
		t.Fatalf("%s has no services", composeFile)
	}
	demo := readDemoIdP(t)
	brokerEnv := map[string]bool{}
	for _, s := range config.Settings() {
		for _, name := range append([]string{s.Env, s.FileEnv}, s.Aliases...) {
			if name != "" {
				brokerEnv[name] = true
			}
		}
	}
	for _, name := range goRuntimeEnv {
		brokerEnv[name] = true
	}
	demoEnv := map[string]bool{}
	for _, name := range append(demo.env, goRuntimeEnv...) {
		demoEnv[name] = true
	}

	listeners := map[string][]listener{}
	for _, name := range sortedKeys(cf.Services) {
		s := cf.Services[name]
		where := "service " + name
		checkFiles(t, where, cf, s)
		for _, dep := range s.DependsOn {
			if _, ok := cf.Services[dep]; !ok {
				t.Errorf("%s: depends_on %q, which is no service", where, dep)
			}
		}
		kind, args, err := programOf(s)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		var known map[string]bool
		switch kind {
		case programBroker:
			known = brokerEnv
			listeners[name] = brokerListeners(t, where, cf, s, args)
		case programDemoIdP:
			known = demoEnv
			listeners[name] = demoIdPListeners(t, where, args, demo.addrDefault)
		case programNATS:
			// The nats image runs nats-server, which reads no
			// environment variable: its ports come from its flags.
			known = map[string]bool{}
			listeners[name] = natsListeners(t, where, args)
		}
		for _, v := range serviceEnvNames(t, where, s) {
			if !known[v] {
				t.Errorf("%s: sets %s, which %s does not read", where, v, kind)
			}
		}
	}

	for _, name := range sortedKeys(cf.Services) {
		s := cf.Services[name]
		where := "service " + name
		for _, p := range s.Ports {
			if err := reachable(listeners[name], p.target); err != nil {
				t.Errorf("%s: publishes container port %d, but %v", where, p.target, err)
			}
		}
		// Every URL naming another service, in the environment or the
		// command, must reach a listener of that service.
		var texts []string
		for _, v := range s.Environment {
			if v != nil {
				texts = append(texts, *v)
			}
		}
		texts = append(texts, s.Command...)
		for _, text := range texts {
			for _, raw := range urlPattern.FindAllString(text, -1) {
				host, port, err := urlHostPort(raw)
				if err != nil {
					t.Errorf("%s: %s: %v", where, raw, err)
					continue
				}
				if _, ok := cf.Services[host]; !ok {
					continue
				}
				if err := reachable(listeners[host], port); err != nil {
					t.Errorf("%s: %s: service %s: %v", where, raw, host, err)
				}
			}
		}
	}
}

// TestExpectedAbsentFilesAreDocumented keeps expectedAbsent honest: each
// file in it is one the README tells the user to make.
func TestExpectedAbsentFilesAreDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for file, said := range expectedAbsent {
		if !strings.Contains(string(readme), said) {
			t.Errorf("%s is expected to be made by the user, but the README does not say %q", file, said)
		}
	}
}

// compose is the part of a compose file the test reads.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Configs map[string]struct {
		File string `yaml:"file"`
	} `yaml:"configs"`
}

type service struct {
	Image       string     `yaml:"image"`
	Build       *build     `yaml:"build"`
	Command     stringList `yaml:"command"`
	Entrypoint  stringList `yaml:"entrypoint"`
	Environment envMap     `yaml:"environment"`
	EnvFile     envFiles   `yaml:"env_file"`
	Volumes     []volume   `yaml:"volumes"`
	Ports       []port     `yaml:"ports"`
	Secrets     []fileRef  `yaml:"secrets"`
	Configs     []fileRef  `yaml:"configs"`
	DependsOn   dependsOn  `yaml:"depends_on"`
}

func readCompose(t *testing.T) *compose {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, composeFile))
	if err != nil {
		t.Fatal(err)
	}
	var cf compose
	if err := yaml.Unmarshal(data, &cf); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return &cf
}

// stringList is a command: a list, or a string split on white space.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = strings.Fields(n.Value)
		return nil
	}
	return n.Decode((*[]string)(l))
}

// envMap is environment: a map, or a list of NAME=value and NAME. A nil
// value is a variable passed through from where compose runs.
type envMap map[string]*string

func (m *envMap) UnmarshalYAML(n *yaml.Node) error {
	*m = envMap{}
	if n.Kind == yaml.MappingNode {
		var raw map[string]*string
		if err := n.Decode(&raw); err != nil {
			return err
		}
		for k, v := range raw {
			(*m)[k] = v
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	for _, item := range list {
		k, v, ok := strings.Cut(item, "=")
		if ok {
			(*m)[k] = &v
		} else {
			(*m)[k] = nil
		}
	}
	return nil
}

// envFiles is env_file: a path, or a list of paths and {path, required}.
type envFiles []struct {
	Path     string
	Required bool
}

func (f *envFiles) UnmarshalYAML(n *yaml.Node) error {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	for _, item := range items {
		e := struct {
			Path     string `yaml:"path"`
			Required *bool  `yaml:"required"`
		}{}
		if item.Kind == yaml.ScalarNode {
			e.Path = item.Value
		} else if err := item.Decode(&e); err != nil {
			return err
		}
		*f = append(*f, struct {
			Path     string
			Required bool
		}{e.Path, e.Required == nil || *e.Required})
	}
	return nil
}

// build is build: a context, or {context, dockerfile}.
type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *build) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain build
	return n.Decode((*plain)(b))
}

// volume is one of volumes: SOURCE:TARGET[:MODE], or the long syntax.
type volume struct {
	Type   string `yaml:"type"`
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

func (v *volume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		switch {
		case len(parts) == 1:
			v.Type, v.Target = "volume", parts[0] // anonymous
		case isHostPath(parts[0]):
			v.Type, v.Source, v.Target = "bind", parts[0], parts[1]
		default:
			v.Type, v.Source, v.Target = "volume", parts[0], parts[1]
		}
		return nil
	}
	type plain volume
	return n.Decode((*plain)(v))
}

// isHostPath reports whether a short volume's source is a path on the host
// rather than the name of a volume.
func isHostPath(s string) bool {
	return strings.HasPrefix(s, ".") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "~")
}

// port is one of ports: [[IP:]PUBLISHED:]TARGET[/PROTOCOL], or the long
// syntax; only the container's port matters here.
type port struct {
	target int
}

func (p *port) UnmarshalYAML(n *yaml.Node) error {
	s := n.Value
	if n.Kind == yaml.MappingNode {
		var long struct {
			Target string `yaml:"target"`
		}
		if err := n.Decode(&long); err != nil {
			return err
		}
		s = long.Target
	}
	s, _, _ = strings.Cut(s, "/")
	if i := strings.LastIndex(s, ":"); i >= 0 {
		s = s[i+1:]
	}
	target, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("port %q: only single container ports are understood", n.Value)
	}
	p.target = target
	return nil
}

// fileRef is one of a service's secrets or configs: a name, or
// {source, target}.
type fileRef struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

func (r *fileRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		r.Source = n.Value
		return nil
	}
	type plain fileRef
	return n.Decode((*plain)(r))
}

// dependsOn is depends_on: a list of services, or a map keyed by them.
type dependsOn []string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			*d = append(*d, n.Content[i].Value)
		}
		return nil
	}
	return n.Decode((*[]string)(d))
}

// checkFiles reports each file s references, on the host, that the
// repository lacks and the user is not told to make.
func checkFiles(t *testing.T, where string, cf *compose, s service) {
	t.Helper()
	// need reports path unless it exists as kind: a file, a directory, or
	// either (a bind mount takes both).
	need := func(what, path, kind string) {
		t.Helper()
		if filepath.IsAbs(path) || strings.HasPrefix(path, "~") {
			t.Errorf("%s: %s %s is outside the repository", where, what, path)
			return
		}
		rel := filepath.ToSlash(filepath.Clean(path))
		info, err := os.Stat(filepath.Join(repoRoot, rel))
		switch {
		case errors.Is(err, os.ErrNotExist):
			if _, ok := expectedAbsent[rel]; !ok {
				t.Errorf("%s: %s %s does not exist", where, what, rel)
			}
		case err != nil:
			t.Errorf("%s: %s %s: %v", where, what, rel, err)
		case kind == "file" && info.IsDir():
			t.Errorf("%s: %s %s is a directory", where, what, rel)
		case kind == "directory" && !info.IsDir():
			t.Errorf("%s: %s %s is not a directory", where, what, rel)
		}
	}
	if b := s.Build; b != nil {
		need("build context", b.Context, "directory")
		dockerfile := b.Dockerfile
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		need("Dockerfile", filepath.Join(b.Context, dockerfile), "file")
	}
	for _, f := range s.EnvFile {
		need("env_file", f.Path, "file")
	}
	for _, v := range s.Volumes {
		switch {
		case v.Type == "bind":
			need("volume", v.Source, "either")
		case v.Type == "volume" && v.Source != "":
			if _, ok := cf.Volumes[v.Source]; !ok {
				t.Errorf("%s: volume %s is not declared under volumes", where, v.Source)
			}
		}
	}
	for _, r := range s.Secrets {
		sec, ok := cf.Secrets[r.Source]
		switch {
		case !ok:
			t.Errorf("%s: secret %s is not declared under secrets", where, r.Source)
		case sec.File != "":
			need("secret "+r.Source, sec.File, "file")
		}
	}
	for _, r := range s.Configs {
		c, ok := cf.Configs[r.Source]
		switch {
		case !ok:
			t.Errorf("%s: config %s is not declared under configs", where, r.Source)
		case c.File != "":
			need("config "+r.Source, c.File, "file")
		}
	}
}

// serviceEnvNames returns the variables s sets: its environment and those
// of its env_files that the repository holds. A variable in both is
// reported: Compose gives environment precedence over env_file, so the
// env_file's value would never be used.
func serviceEnvNames(t *testing.T, where string, s service) []string {
	t.Helper()
	names := sortedKeys(s.Environment)
	for _, f := range s.EnvFile {
		data, err := os.ReadFile(filepath.Join(repoRoot, f.Path))
		if errors.Is(err, os.ErrNotExist) {
			continue // reported by checkFiles, unless expected
		}
		if err != nil {
			t.Errorf("%s: env_file %s: %v", where, f.Path, err)
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
			name = strings.TrimSpace(name)
			if _, ok := s.Environment[name]; ok {
				t.Errorf("%s: env_file %s sets %s, which environment sets too and wins", where, f.Path, name)
			}
			names = append(names, name)
		}
	}
	return names
}

// The programs a service can run.
const (
	programBroker  = "the broker"
	programDemoIdP = "the demo IdP (tokenbroker demo-idp)"
	programNATS    = "nats-server (the nats image)"
)

// programOf says what s runs, and with which arguments: the image built
// from this repository's Dockerfile (tokenbroker, serve by default) or the
// nats image (nats-server).
func programOf(s service) (string, []string, error) {
	ours := strings.HasPrefix(s.Image, "tokenbroker")
	if s.Build != nil {
		if filepath.Clean(filepath.Join(repoRoot, s.Build.Context)) != filepath.Clean(repoRoot) {
			return "", nil, fmt.Errorf("builds %s, which this test knows nothing of", s.Build.Context)
		}
		ours = true
	}
	switch {
	case len(s.Entrypoint) > 0:
		return "", nil, fmt.Errorf("entrypoint %q replaces the image's program", s.Entrypoint)
	case ours:
		args := []string(s.Command)
		cmd := "serve"
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			cmd, args = args[0], args[1:]
		}
		switch cmd {
		case "serve":
			return programBroker, args, nil
		case "demo-idp":
			return programDemoIdP, args, nil
		}
		return "", nil, fmt.Errorf("runs tokenbroker %s, which serves nothing this test checks", cmd)
	case s.Image == "nats" || strings.HasPrefix(s.Image, "nats:"):
		return programNATS, s.Command, nil
	}
	return "", nil, fmt.Errorf("image %q: this test knows nothing of it", s.Image)
}

// listener is an address a service's program listens on.
type listener struct {
	host string // "" or an unspecified address: every interface
	port int
	what string
}

// reachable says why port is not one that another container, or a port
// published to the host, reaches among ls.
func reachable(ls []listener, port int) error {
	for _, l := range ls {
		if l.port != port {
			continue
		}
		if ip := net.ParseIP(l.host); l.host == "localhost" || ip != nil && ip.IsLoopback() {
			return fmt.Errorf("%s listens on %s inside its container, out of reach of other containers and published ports",
				l.what, net.JoinHostPort(l.host, strconv.Itoa(l.port)))
		}
		return nil
	}
	var on []string
	for _, l := range ls {
		on = append(on, fmt.Sprintf("%s on %d", l.what, l.port))
	}
	if len(on) == 0 {
		return fmt.Errorf("nothing listens there")
	}
	return fmt.Errorf("nothing listens on %d (%s)", port, strings.Join(on, ", "))
}

func hostPort(addr, what string) (listener, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return listener{}, fmt.Errorf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return listener{}, fmt.Errorf("%s %q: port %q", what, addr, p)
	}
	return listener{host, n, what}, nil
}

// brokerListeners resolves the broker's configuration from the service's
// environment and flags, as the broker itself would, and returns its HTTP
// gateway and, without NATS_URL, its embedded NATS server. Only the
// environment key is read, not env_files: those the user makes are not
// there to read, and the shipped defaults are what must be right.
// A *_FILE variable naming a mounted secret that the user makes is given a
// stand-in file, so that resolving it does not fail for want of it.
func brokerListeners(t *testing.T, where string, cf *compose, s service, args []string) []listener {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			continue // from the shell of whoever runs compose: unknown
		}
		env[k] = *v
		name, ok := strings.CutPrefix(*v, "/run/secrets/")
		if !ok {
			continue
		}
		mounted := slices.ContainsFunc(s.Secrets, func(r fileRef) bool {
			return r.Source == name && (r.Target == "" || r.Target == name)
		})
		if !mounted {
			t.Errorf("%s: %s=%s, but no secret of the service is mounted there", where, k, *v)
			continue
		}
		file := filepath.Join(repoRoot, cf.Secrets[name].File)
		if _, err := os.Stat(file); err == nil {
			env[k] = file
			continue
		}
		if k != "TOKENBROKER_KEY_FILE" && k != "TOKENBROKER_PREVIOUS_KEY_FILE" {
			t.Errorf("%s: %s names secret %s, whose file is missing and has no stand-in here", where, k, name)
			continue
		}
		// What the README's openssl rand -base64 32 makes.
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			t.Fatal(err)
		}
		env[k] = filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(env[k], []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, rest, err := config.Load("tokenbroker", args, lookup, io.Discard)
	if err != nil {
		t.Errorf("%s: the broker refuses its configuration: %v", where, err)
		return nil
	}
	if len(rest) > 0 {
		t.Errorf("%s: arguments %q after the flags", where, rest)
	}
	var ls []listener
	add := func(addr, what string) {
		l, err := hostPort(addr, what)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		ls = append(ls, l)
	}
	if cfg.HTTPAddr != "" {
		add(cfg.HTTPAddr, "the HTTP gateway (HTTP_ADDR)")
	}
	if cfg.NATSURL == "" {
		add(cfg.NATSListen, "the embedded NATS server (NATS_LISTEN)")
	}
	return ls
}

// demoIdPListeners returns the demo IdP's --addr.
func demoIdPListeners(t *testing.T, where string, args []string, addrDefault string) []listener {
	t.Helper()
	addr := addrDefault
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if name != "addr" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		addr = value
	}
	l, err := hostPort(addr, "the demo IdP (--addr)")
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	return []listener{l}
}

// natsListeners returns where nats-server listens given its arguments.
// With none the image runs its own nats-server.conf, which listens for
// clients on 4222, monitoring on 8222 and routes on 6222 (nats-io/
// nats-docker). Arguments replace that: clients on --port (4222 by
// default) on --addr, monitoring only with --http_port, routes only with
// --cluster or --cluster_listen.
func natsListeners(t *testing.T, where string, args []string) []listener {
	t.Helper()
	if len(args) == 0 {
		return []listener{{"", 4222, "nats clients"}, {"", 8222, "nats monitoring"}, {"", 6222, "nats routes"}}
	}
	host, clientPort := "", 4222
	var ls []listener
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(args[i], "=")
		takes := func() string {
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			return value
		}
		switch name {
		case "-c", "--config", "-config":
			t.Errorf("%s: nats-server --config %s: this test cannot read its ports", where, takes())
		case "-p", "--port":
			n, err := strconv.Atoi(takes())
			if err != nil {
				t.Errorf("%s: nats-server --port %q", where, value)
			}
			clientPort = n
		case "-a", "--addr", "--net":
			host = takes()
		case "-m", "--http_port":
			n, err := strconv.Atoi(takes())
			if err != nil {
				t.Errorf("%s: nats-server --http_port %q", where, value)
			}
			ls = append(ls, listener{"", n, "nats monitoring (--http_port)"})
		case "--cluster", "--cluster_listen":
			u, err := url.Parse(takes())
			if err != nil {
				t.Errorf("%s: nats-server %s %q: %v", where, name, value, err)
				continue
			}
			l, err := hostPort(u.Host, "nats routes ("+name+")")
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			ls = append(ls, l)
		}
	}
	return append(ls, listener{host, clientPort, "nats clients (--port)"})
}

// urlPattern finds URLs in a value: NATS_URL's comma separated list,
// TOKEN_ENDPOINT, nats-server's --routes.
var urlPattern = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^\s,"']+`)

// schemePorts are the ports a URL without one means.
var schemePorts = map[string]int{"http": 80, "https": 443, "nats": 4222, "tls": 4222, "nats-route": 6222}

func urlHostPort(raw string) (string, int, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, err
	}
	if u.Port() == "" {
		p, ok := schemePorts[u.Scheme]
		if !ok {
			return "", 0, fmt.Errorf("no port, and no default for %s", u.Scheme)
		}
		return u.Hostname(), p, nil
	}
	p, err := strconv.Atoi(u.Port())
	return u.Hostname(), p, err
}

// demoIdP is what cmd/tokenbroker/demoidp.go reads: the variables it
// passes to getenv and the default of its --addr flag. It is package main,
// so it is read as source rather than imported.
type demoIdP struct {
	env         []string
	addrDefault string
}

func readDemoIdP(t *testing.T) demoIdP {
	t.Helper()
	file := filepath.Join(repoRoot, "cmd", "tokenbroker", "demoidp.go")
	f, err := parser.ParseFile(gotoken.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var d demoIdP
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 1 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		first, ok := stringLit(call.Args[0])
		switch {
		case !ok:
		case sel.Sel.Name == "getenv" || sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv":
			d.env = append(d.env, first)
		case sel.Sel.Name == "String" && first == "addr" && len(call.Args) > 1:
			d.addrDefault, _ = stringLit(call.Args[1])
		}
		return true
	})
	// Finding nothing means the source changed shape, not that the demo
	// IdP reads nothing: say so rather than let every variable fail.
	if len(d.env) == 0 || d.addrDefault == "" {
		t.Fatalf("%s: found variables %q and --addr default %q; the test must learn its new shape", file, d.env, d.addrDefault)
	}
	return d
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != gotoken.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
