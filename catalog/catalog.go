// Package catalog keeps the broker's set of named credentials while it
// runs. They come from two places: TOKENBROKER_CONFIG, read at start-up and
// again on SIGHUP, and the credential registry, a JetStream bucket every
// broker watches and operators change with `tokenbroker credential put|rm`.
// The catalog merges the two (the file wins a name both declare, with a
// warning), turns each credential into the actors' Spec, and tells the
// Router what changed: a new credential is served at once, a changed one
// keeps its token when it still asks the same question, a removed one
// stops.
//
// It also watches every secret file the credentials were read from, and
// reads one again when it changes, with no signal: a rotated client secret
// or password takes effect at the next IdP call, a renewed certificate at
// the next assertion.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/discovery"
	"github.com/tokenbroker/tokenbroker/filewatch"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/registry"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Where a credential comes from.
const (
	SourceFile     = "file"
	SourceRegistry = "registry"
)

// CertificateWarning is how long before its certificate expires a
// credential is warned about, at start-up, at each reload and daily.
const CertificateWarning = 30 * 24 * time.Hour

// Router is what the catalog changes: the actors' Router.
type Router interface {
	Put(s actors.Spec) error
	Remove(ctx context.Context, name string, final bool) bool
	Status() actors.Status
}

// Options configure a Catalog.
type Options struct {
	// ConfigFile is TOKENBROKER_CONFIG, read again by Reload; "" for none.
	ConfigFile string
	// Defaults gives the credentials' default refresh threshold.
	Defaults config.Credential
	// File are the credentials read from ConfigFile at start-up.
	File []config.Credential
	// Default is the default profile's spec, and DefaultSecretFile the
	// file its client secret was read from ("" for none): its Secrets are
	// updated when the file changes.
	Default           *actors.Spec
	DefaultSecretFile string
	// Registry is the credential registry; nil when the broker keeps none
	// (no TOKENBROKER_KEY).
	Registry *registry.Registry
	// Broker names this broker in the registry's records of who changed
	// what, and in ls.
	Broker string
	// ID is this broker's unique id (a subject token), for the admin
	// subjects only this broker answers; default Broker.
	ID string
	// PollInterval is how often secret files are checked; default 1 s.
	PollInterval time.Duration
	// Discovery resolves the credentials that give an issuer instead of a
	// token endpoint; nil fetches with a default HTTP client.
	Discovery *discovery.Cache
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	Now       func() time.Time
}

// Catalog is the merged set of named credentials. It is safe for
// concurrent use.
type Catalog struct {
	o      Options
	log    *slog.Logger
	router Router
	watch  *filewatch.Watcher

	mu   sync.Mutex
	file map[string]config.Credential
	reg  map[string]*registry.Entry
	live map[string]*live

	cancel context.CancelFunc
	done   chan struct{}
}

// live is a credential as the Router serves it.
type live struct {
	cred   config.Credential
	source string
	spec   *actors.Spec
}

// New returns a Catalog over the credentials of o.File and builds their
// specs, so that a credential that cannot be used (a certificate that does
// not parse) stops start-up. Nothing is served before Start.
func New(o Options) (*Catalog, error) {
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Discovery == nil {
		o.Discovery = discovery.NewCache(nil, discovery.Options{})
	}
	c := &Catalog{o: o, log: o.Logger, file: map[string]config.Credential{}, reg: map[string]*registry.Entry{}, live: map[string]*live{}}
	for _, cr := range o.File {
		c.file[cr.Name] = cr
		if _, err := c.build(cr); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Specs returns the specs of the file's credentials, for the Router's
// start: they are served before the registry is read.
func (c *Catalog) Specs() []actors.Spec {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []actors.Spec
	for _, cr := range c.o.File {
		l := c.newLive(cr, SourceFile)
		c.live[cr.Name] = l
		out = append(out, *l.spec)
	}
	return out
}

// Start serves the registry's credentials, returning once its current
// entries are applied (or ctx ends), and starts watching the registry and
// the secret files, until Stop.
func (c *Catalog) Start(ctx context.Context, router Router) error {
	c.router = router
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	c.watch = filewatch.New(filewatch.Options{Interval: c.o.PollInterval, OnChange: c.secretFilesChanged, Logger: c.log})
	c.mu.Lock()
	c.watchFiles()
	c.warnCertificates()
	c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.watch.Run(runCtx) }()
	wg.Add(1)
	go func() { defer wg.Done(); c.daily(runCtx) }()
	if c.o.Registry != nil {
		updates, err := c.o.Registry.Watch(runCtx)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("catalog: watch the credential registry: %w", err)
		}
		initial := make(chan struct{})
		wg.Add(1)
		go func() { defer wg.Done(); c.follow(updates, initial) }()
		select {
		case <-initial:
		case <-ctx.Done():
			cancel()
			wg.Wait()
			return fmt.Errorf("catalog: read the credential registry: %w", ctx.Err())
		}
	}
	go func() { wg.Wait(); close(c.done) }()
	return nil
}

// Stop ends the watches and waits for them.
func (c *Catalog) Stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
}

// follow applies the registry's updates as they come; initial is closed
// once its entries at the start are applied.
func (c *Catalog) follow(updates <-chan registry.Update, initial chan struct{}) {
	for u := range updates {
		if u.Name == "" { // the end of the entries at the start
			if initial != nil {
				close(initial)
				initial = nil
			}
			continue
		}
		c.mu.Lock()
		if u.Entry == nil {
			delete(c.reg, u.Name)
		} else {
			c.reg[u.Name] = u.Entry
		}
		c.apply(context.Background(), false)
		c.mu.Unlock()
	}
	if initial != nil {
		close(initial) // the watch ended before its end marker: do not hang start-up
	}
}

// want is one credential the merge of file and registry declares.
type want struct {
	cred   config.Credential
	source string
}

// merged returns what the file and the registry declare together. The
// file wins a name both declare: it is what the operator of this broker
// wrote, and what an operator reading it expects to be served.
func (c *Catalog) merged() map[string]want {
	out := make(map[string]want, len(c.file)+len(c.reg))
	for name, e := range c.reg {
		cr, err := config.FromWire(e.Credential, c.o.Defaults)
		if err != nil {
			c.log.Warn("a credential of the registry does not validate; it is not served", "credential_id", name, "err", err)
			continue
		}
		out[name] = want{cred: cr, source: SourceRegistry}
	}
	for name, cr := range c.file {
		if _, both := out[name]; both {
			c.log.Warn("the credential is in TOKENBROKER_CONFIG and in the registry; the file's is served", "credential_id", name)
		}
		out[name] = want{cred: cr, source: SourceFile}
	}
	return out
}

// apply brings the Router in line with what file and registry declare.
// final says a removal is for good (see Router.Remove). c.mu is held.
func (c *Catalog) apply(ctx context.Context, final bool) {
	want := c.merged()
	for name, w := range want {
		cur := c.live[name]
		switch {
		case cur != nil && reflect.DeepEqual(cur.cred, w.cred):
			cur.source = w.source
		case cur != nil && onlySecretsDiffer(cur.cred, w.cred):
			cur.cred, cur.source = w.cred, w.source
			cur.spec.Secrets.Set(w.cred.ClientSecret, w.cred.NextClientSecret, w.cred.Password, w.cred.NextPassword)
			c.log.Info("credential's secrets changed", "credential_id", name)
		default:
			if _, err := c.build(w.cred); err != nil {
				c.log.Error("credential not changed: it cannot be used", "credential_id", name, "err", err)
				continue
			}
			l := c.newLive(w.cred, w.source)
			if err := c.router.Put(*l.spec); err != nil {
				c.log.Error("credential not changed", "credential_id", name, "err", err)
				continue
			}
			verb := "credential added"
			if cur != nil {
				verb = "credential changed"
			}
			c.live[name] = l
			c.log.Info(verb, "credential_id", name, "source", w.source)
		}
	}
	for name := range c.live {
		if _, ok := want[name]; ok {
			continue
		}
		delete(c.live, name)
		c.o.Metrics.CertificateExpiry(name, time.Time{})
		c.router.Remove(ctx, name, final)
		c.log.Info("credential removed", "credential_id", name)
	}
	c.watchFiles()
	c.warnCertificates()
}

// onlySecretsDiffer reports whether a and b differ in their client secret
// or password alone (or in where these were read from), which the
// credential's Secrets take without a new Spec.
func onlySecretsDiffer(a, b config.Credential) bool {
	for _, c := range []*config.Credential{&a, &b} {
		c.ClientSecret, c.NextClientSecret, c.Password, c.NextPassword = "", "", "", ""
	}
	return reflect.DeepEqual(a, b)
}

// newLive builds the spec of a credential known to build.
func (c *Catalog) newLive(cr config.Credential, source string) *live {
	s, _ := c.build(cr)
	c.o.Metrics.CertificateExpiry(cr.Name, time.Time{})
	if s.Assertion != nil {
		c.o.Metrics.CertificateExpiry(cr.Name, s.Assertion.Certificate().NotAfter)
	}
	return &live{cred: cr, source: source, spec: &s}
}

// build turns a named credential into the actors' Spec, finding its
// endpoints by discovery when it gives an issuer.
func (c *Catalog) build(cr config.Credential) (actors.Spec, error) {
	s := SpecOf(cr, true)
	if cr.Issuer != "" {
		ctx, cancel := context.WithTimeout(context.Background(), discovery.DefaultTimeout)
		doc, err := c.o.Discovery.Get(ctx, cr.Issuer)
		cancel()
		if err != nil {
			return actors.Spec{}, fmt.Errorf("credential %q: issuer: %w", cr.Name, err)
		}
		s.Endpoint.TokenURL, s.Endpoint.AuthMethods, s.DeviceURL = doc.TokenEndpoint, doc.TokenEndpointAuthMethods, doc.DeviceAuthorizationEndpoint
	}
	if cr.Grant == config.GrantDeviceCode && s.DeviceURL == "" {
		return actors.Spec{}, fmt.Errorf("credential %q: grant device_code: no device authorization endpoint: give the IdP's issuer, whose discovery document lists it (Azure AD's token endpoint implies it)", cr.Name)
	}
	if cr.AssertionFile != "" {
		// Read again for every IdP call, but it must be there to begin
		// with: a typo is a start-up error, not a 401 later.
		f, err := os.Open(cr.AssertionFile)
		if err != nil {
			return actors.Spec{}, fmt.Errorf("credential %q: assertion_file: %w", cr.Name, err)
		}
		f.Close()
	}
	if cr.Grant == config.GrantClientAssertion && cr.AssertionFile == "" {
		if cr.CertificatePEM == "" {
			// Built by hand with the paths alone, not by the config loader.
			signer, err := oauth.LoadAssertionSigner(cr.CertificateFile, cr.PrivateKeyFile)
			if err != nil {
				return actors.Spec{}, fmt.Errorf("credential %q: certificate_file/private_key_file: %w", cr.Name, err)
			}
			s.Assertion = signer
			return s, nil
		}
		signer, err := oauth.ParseAssertionSigner([]byte(cr.CertificatePEM), []byte(cr.PrivateKeyPEM.Reveal()))
		if err != nil {
			return actors.Spec{}, fmt.Errorf("credential %q: certificate_file/private_key_file: %w", cr.Name, err)
		}
		s.Assertion = signer
	}
	return s, nil
}

// SpecOf turns a credential into the actors' Spec, without its
// certificate or what discovery finds (see Catalog): the default
// profile's, or a named one's.
func SpecOf(cr config.Credential, named bool) actors.Spec {
	return actors.Spec{
		Name: cr.Name,
		Endpoint: oauth.Endpoint{
			TokenURL: cr.TokenEndpoint, ClientID: cr.ClientID, ClientSecret: cr.ClientSecret,
			Resource: cr.Resource, Scope: cr.Scope, AuthStyle: authStyle(cr.ClientAuth),
		},
		DeviceURL:        deviceURL(cr.TokenEndpoint),
		Capabilities:     cr.ClientCapabilities,
		Grant:            actors.Grant(cr.Grant),
		Username:         cr.Username,
		Password:         cr.Password,
		Secrets:          actors.NewSecrets(cr.ClientSecret, cr.NextClientSecret, cr.Password, cr.NextPassword),
		AssertionFile:    cr.AssertionFile,
		RefreshThreshold: cr.RefreshThreshold,
		// A device code credential's refresh token is all it has: it is
		// kept refreshed, used or not, so that it does not lapse.
		KeepWarm: named && (cr.KeepWarm || cr.Grant == config.GrantDeviceCode),
	}
}

func authStyle(clientAuth string) oauth.AuthStyle {
	switch clientAuth {
	case config.ClientAuthBasic:
		return oauth.AuthBasic
	case config.ClientAuthPost:
		return oauth.AuthPost
	}
	return oauth.AuthAuto
}

// deviceURL is the device authorization endpoint beside an Azure AD token
// endpoint (.../oauth2/v2.0/token → .../oauth2/v2.0/devicecode, and v1's
// .../oauth2/token → .../oauth2/devicecode), or "" for another IdP's,
// whose discovery document says where it is.
func deviceURL(tokenURL string) string {
	for _, suffix := range []string{"/oauth2/v2.0/token", "/oauth2/token"} {
		if strings.HasSuffix(tokenURL, suffix) {
			return strings.TrimSuffix(tokenURL, "token") + "devicecode"
		}
	}
	return ""
}

// rediscover finds again the endpoints of the credentials that give an
// issuer (daily, as the cache's documents age), and applies any change.
// c.mu is held.
func (c *Catalog) rediscover() {
	for name, l := range c.live {
		if l.cred.Issuer == "" {
			continue
		}
		s, err := c.build(l.cred)
		if err != nil {
			c.log.Warn("discovery failed; the endpoints found before stay in use", "credential_id", name, "err", err)
			continue
		}
		old := l.spec
		if s.Endpoint.TokenURL == old.Endpoint.TokenURL && s.DeviceURL == old.DeviceURL &&
			slices.Equal(s.Endpoint.AuthMethods, old.Endpoint.AuthMethods) {
			continue
		}
		s.Secrets = old.Secrets
		if err := c.router.Put(s); err == nil {
			l.spec = &s
			c.log.Info("the issuer's discovery document changed; the credential follows it", "credential_id", name, "token_endpoint", s.Endpoint.TokenURL)
		}
	}
}

// warnCertificates logs every certificate that expires within
// CertificateWarning. c.mu is held.
func (c *Catalog) warnCertificates() {
	now := c.o.Now()
	for name, l := range c.live {
		if l.spec.Assertion == nil {
			continue
		}
		notAfter := l.spec.Assertion.Certificate().NotAfter
		if left := notAfter.Sub(now); left < CertificateWarning {
			c.log.Warn("the client certificate expires soon; renew it and replace its files (they are read again when they change)",
				"credential_id", name, "not_after", notAfter.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
		}
	}
}

// daily repeats the certificate warning every day, so that a broker that
// runs for weeks still says it in time.
func (c *Catalog) daily(ctx context.Context) {
	t := time.NewTicker(24 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.mu.Lock()
			c.warnCertificates()
			c.rediscover()
			c.mu.Unlock()
		}
	}
}

// Reload reads TOKENBROKER_CONFIG and every secret file again (SIGHUP).
// A file that does not validate leaves everything as it was and is
// returned; credentials it no longer declares are removed for good.
func (c *Catalog) Reload(ctx context.Context) error {
	if c.o.ConfigFile == "" {
		// No file to read again (credentials given by a program, as the
		// demo does): their secret files are all there is to reload.
		c.reloadDefaultSecret()
		c.mu.Lock()
		defer c.mu.Unlock()
		file := make(map[string]config.Credential, len(c.file))
		for name, cr := range c.file {
			next, err := reread(cr)
			if err != nil {
				return fmt.Errorf("credential %q: %w", name, err)
			}
			file[name] = next
		}
		c.file = file
		c.apply(ctx, true)
		return nil
	}
	var creds []config.Credential
	{
		f, err := os.Open(c.o.ConfigFile)
		if err != nil {
			return fmt.Errorf("TOKENBROKER_CONFIG: %w", err)
		}
		file, err := config.LoadFile(f, c.o.Defaults)
		f.Close()
		if err != nil {
			return fmt.Errorf("TOKENBROKER_CONFIG %s: %w", c.o.ConfigFile, err)
		}
		if file != nil {
			creds = file.Credentials
		}
	}
	for _, cr := range creds {
		if _, err := c.build(cr); err != nil {
			return err
		}
	}
	c.reloadDefaultSecret()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.file = make(map[string]config.Credential, len(creds))
	for _, cr := range creds {
		c.file[cr.Name] = cr
	}
	c.apply(ctx, true)
	return nil
}

// reloadDefaultSecret reads the default profile's secret file again.
func (c *Catalog) reloadDefaultSecret() {
	if c.o.Default == nil || c.o.DefaultSecretFile == "" || c.o.Default.Secrets == nil {
		return
	}
	first, next, err := config.ReadSecretFile(c.o.DefaultSecretFile)
	if err != nil {
		c.log.Error("CLIENT_SECRET_FILE could not be read again; the secret read before stays in use", "err", err)
		return
	}
	c.o.Default.Secrets.Set(first, next, "", "")
}

// watchFiles makes the watcher follow the secret files of the credentials
// served from the file, and the default profile's. c.mu is held.
func (c *Catalog) watchFiles() {
	if c.watch == nil {
		return
	}
	var paths []string
	if c.o.DefaultSecretFile != "" {
		paths = append(paths, c.o.DefaultSecretFile)
	}
	for _, l := range c.live {
		if l.source != SourceFile {
			continue
		}
		for _, p := range secretFiles(l.cred) {
			paths = append(paths, p)
		}
	}
	c.watch.Set(paths)
}

func secretFiles(cr config.Credential) []string {
	var out []string
	for _, p := range []string{cr.ClientSecretFile, cr.PasswordFile, cr.CertificateFile, cr.PrivateKeyFile} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// secretFilesChanged reads again the secret files that changed, for every
// credential that uses them. A file that cannot be read, or a certificate
// and key that no longer match (one file replaced before the other), keep
// what was read before: the next change, or the partner file's, tries
// again.
func (c *Catalog) secretFilesChanged(paths []string) {
	changed := make(map[string]bool, len(paths))
	for _, p := range paths {
		changed[p] = true
	}
	if changed[c.o.DefaultSecretFile] {
		c.reloadDefaultSecret()
		c.log.Info("CLIENT_SECRET_FILE read again")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	touched := false
	for name, cr := range c.file {
		uses := false
		for _, p := range secretFiles(cr) {
			uses = uses || changed[p]
		}
		if !uses {
			continue
		}
		next, err := reread(cr)
		if err != nil {
			c.log.Warn("a secret file changed but cannot be used yet; the secret read before stays in use", "credential_id", name, "err", err)
			continue
		}
		c.file[name] = next
		touched = true
	}
	if touched {
		c.apply(context.Background(), true)
	}
}

// reread reads a credential's secret files again.
func reread(cr config.Credential) (config.Credential, error) {
	for _, s := range []struct {
		path      string
		dst, next *tokenbroker.Secret
	}{
		{cr.ClientSecretFile, &cr.ClientSecret, &cr.NextClientSecret},
		{cr.PasswordFile, &cr.Password, &cr.NextPassword},
	} {
		if s.path == "" {
			continue
		}
		first, next, err := config.ReadSecretFile(s.path)
		if err != nil {
			return cr, err
		}
		*s.dst, *s.next = first, next
	}
	if cr.CertificateFile != "" {
		cert, err := os.ReadFile(cr.CertificateFile)
		if err != nil {
			return cr, err
		}
		key, err := os.ReadFile(cr.PrivateKeyFile)
		if err != nil {
			return cr, err
		}
		defer clear(key)
		if _, err := oauth.ParseAssertionSigner(cert, key); err != nil {
			return cr, err
		}
		cr.CertificatePEM, cr.PrivateKeyPEM = string(cert), tokenbroker.Secret(key)
	}
	return cr, nil
}

// errRegistryOff answers the registry's commands on a broker without one.
var errRegistryOff = &tokenbroker.Error{Code: tokenbroker.CodeUnavailable, OAuth: wire.AdminRegistryOff,
	Description: "the brokers keep no credential registry: start them with TOKENBROKER_KEY, which encrypts the registry's secrets"}

// Put validates every credential of req, as start-up validates the file,
// and stores them in the registry; nothing is stored unless all are valid.
// This broker serves them before it answers; the others within moments,
// as their watches see the change.
func (c *Catalog) Put(ctx context.Context, req wire.AdminPutRequest, caller string) (wire.AdminPutReply, *tokenbroker.Error) {
	if c.o.Registry == nil {
		return wire.AdminPutReply{}, errRegistryOff
	}
	if len(req.Credentials) == 0 {
		return wire.AdminPutReply{}, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest, "no credentials to put")
	}
	seen := map[string]bool{}
	for _, w := range req.Credentials {
		cr, err := config.FromWire(w, c.o.Defaults)
		if err != nil {
			return wire.AdminPutReply{}, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest, "%s", err)
		}
		if seen[cr.Name] {
			return wire.AdminPutReply{}, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest, "credential %q: duplicate name", cr.Name)
		}
		seen[cr.Name] = true
		if _, err := c.build(cr); err != nil {
			return wire.AdminPutReply{}, tokenbroker.Errorf(tokenbroker.CodeInvalidRequest, tokenbroker.OAuthInvalidRequest, "%s", err)
		}
	}
	by := caller
	if by == "" {
		by = "broker " + c.o.Broker
	}
	var reply wire.AdminPutReply
	for _, w := range req.Credentials {
		if _, err := c.o.Registry.Put(ctx, w, by); err != nil {
			return reply, tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "credential %q not stored: %s", w.Name, err)
		}
		entry, err := c.o.Registry.Get(ctx, w.Name)
		c.mu.Lock()
		if err == nil {
			c.reg[w.Name] = entry
			c.apply(ctx, false)
		}
		_, inFile := c.file[w.Name]
		c.mu.Unlock()
		reply.Put = append(reply.Put, w.Name)
		if inFile {
			reply.Warnings = append(reply.Warnings, fmt.Sprintf("credential %q is also in TOKENBROKER_CONFIG of broker %s, which serves the file's", w.Name, c.o.Broker))
		}
		c.log.Info("credential put in the registry", "credential_id", w.Name, "by", by)
	}
	return reply, nil
}

// Remove deletes a credential from the registry. This broker stops serving
// it, deletes its stored token and publishes token.failed before it
// answers; the others stop within moments.
func (c *Catalog) Remove(ctx context.Context, name, caller string) (wire.AdminRmReply, *tokenbroker.Error) {
	if c.o.Registry == nil {
		return wire.AdminRmReply{}, errRegistryOff
	}
	c.mu.Lock()
	_, inFile := c.file[name]
	_, inReg := c.reg[name]
	c.mu.Unlock()
	if inFile && !inReg {
		return wire.AdminRmReply{}, &tokenbroker.Error{Code: 409, OAuth: wire.AdminInFile,
			Description: fmt.Sprintf("credential %q is defined in TOKENBROKER_CONFIG; change it there and reload (SIGHUP)", name)}
	}
	err := c.o.Registry.Delete(ctx, name)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return wire.AdminRmReply{}, tokenbroker.Errorf(tokenbroker.CodeNotFound, tokenbroker.OAuthUnknownCredential, "no credential named %q in the registry", name)
	case err != nil:
		return wire.AdminRmReply{}, tokenbroker.Errorf(tokenbroker.CodeUnavailable, tokenbroker.OAuthTemporarilyUnavailable, "credential %q not removed: %s", name, err)
	}
	c.mu.Lock()
	_, wasLive := c.live[name]
	delete(c.reg, name)
	c.apply(ctx, true)
	c.mu.Unlock()
	if !wasLive && !inFile {
		// This broker's watch saw the delete first and stopped the
		// credential without the final part, which falls to this broker.
		c.router.Remove(ctx, name, true)
	}
	by := caller
	if by == "" {
		by = "broker " + c.o.Broker
	}
	c.log.Info("credential removed from the registry", "credential_id", name, "by", by)
	return wire.AdminRmReply{Removed: name}, nil
}

// List describes every credential this broker serves.
func (c *Catalog) List(ctx context.Context) (wire.AdminListReply, *tokenbroker.Error) {
	st := c.statusByName()
	c.mu.Lock()
	defer c.mu.Unlock()
	reply := wire.AdminListReply{Broker: c.o.Broker, Credentials: []wire.AdminCredentialInfo{}}
	for name := range c.live {
		reply.Credentials = append(reply.Credentials, c.info(name, st))
	}
	sort.Slice(reply.Credentials, func(i, j int) bool { return reply.Credentials[i].Name < reply.Credentials[j].Name })
	return reply, nil
}

// Show describes one credential.
func (c *Catalog) Show(ctx context.Context, name string) (wire.AdminCredentialInfo, *tokenbroker.Error) {
	st := c.statusByName()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live[name] == nil {
		return wire.AdminCredentialInfo{}, tokenbroker.Errorf(tokenbroker.CodeNotFound, tokenbroker.OAuthUnknownCredential, "no credential named %q", name)
	}
	return c.info(name, st), nil
}

func (c *Catalog) statusByName() map[string]actors.CredentialStatus {
	out := map[string]actors.CredentialStatus{}
	if c.router == nil {
		return out
	}
	for _, s := range c.router.Status().Named {
		out[s.CredentialID] = s
	}
	return out
}

// info describes a live credential without any secret. c.mu is held.
func (c *Catalog) info(name string, st map[string]actors.CredentialStatus) wire.AdminCredentialInfo {
	l := c.live[name]
	cr := l.cred
	i := wire.AdminCredentialInfo{
		Name: name, Source: l.source, Grant: cr.Grant, TokenEndpoint: l.spec.Endpoint.TokenURL, Issuer: cr.Issuer, ClientID: cr.ClientID,
		Scope: cr.Scope, Resource: cr.Resource, Username: cr.Username,
		RefreshThreshold: int64(cr.RefreshThreshold / time.Second), KeepWarm: cr.KeepWarm,
		Secrets: secretKinds(cr),
	}
	if l.spec.Assertion != nil {
		i.CertificateNotAfter = l.spec.Assertion.Certificate().NotAfter.UTC().Format(time.RFC3339)
	}
	if s, ok := st[name]; ok && s.ExpiresOn != nil {
		i.ExpiresOn = strconv.FormatInt(s.ExpiresOn.Unix(), 10)
	}
	if e := c.reg[name]; e != nil {
		i.UpdatedAt = e.UpdatedAt.UTC().Format(time.RFC3339)
		i.Shadowed = l.source == SourceFile
	}
	return i
}

// secretKinds names what a credential authenticates with.
func secretKinds(cr config.Credential) []string {
	var out []string
	add := func(what string, first, next tokenbroker.Secret) {
		switch {
		case first.IsZero():
		case next.IsZero():
			out = append(out, what)
		default:
			out = append(out, what+" (2, rotating)")
		}
	}
	add("client_secret", cr.ClientSecret, cr.NextClientSecret)
	add("password", cr.Password, cr.NextPassword)
	if cr.CertificatePEM != "" {
		out = append(out, "certificate")
	}
	if cr.AssertionFile != "" {
		out = append(out, "assertion_file")
	}
	return out
}
