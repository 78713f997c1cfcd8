package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// The fixture every topology serves: a named credential for cache hits, a
// default profile for username/password callers, and the echo responder.
const (
	benchCredential = "bench"
	benchSecret     = "bench-client-secret"
	publicClient    = "11111111-2222-3333-4444-555555555555"
	benchResource   = "https://resource.example"
	userPassword    = "bench-Passw0rd!"
	echoSubject     = "tokenbench.echo"
	echoQueue       = "tokenbench"
	requestSubject  = "token.request"
	readyPrefix     = "READY "
)

// namedBody is the request of a cache hit on the named credential.
var namedBody = []byte(`{"credential":"` + benchCredential + `"}`)

// userBody is the request of username/password caller user%d.
func userBody(i int) []byte { return appendUserBody(nil, i) }

// appendUserBody appends the request of user%d to dst.
func appendUserBody(dst []byte, i int) []byte {
	dst = append(dst, `{"username":"user`...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	return append(append(append(dst, `","password":"`...), userPassword...), `"}`...)
}

// startNATS starts a bare NATS server on listen (host:port, port 0 for a
// free one) and waits until it accepts clients.
func startNATS(listen string) (*server.Server, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: %w", listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: bad port", listen)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{Host: host, Port: p, NoLog: true, NoSigs: true, ServerName: "tokenbench"})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready in 10s")
	}
	return s, nil
}

// idp is the fake Azure AD behind a handler of our own that adds a delay
// (the IdP's round trip) and counts the calls in flight, as the IdP sees them.
type idp struct {
	fake     *fakeidp.Server
	handler  http.Handler
	srv      *http.Server
	url      string
	delay    atomic.Int64 // nanoseconds each call waits before it is answered
	inflight atomic.Int64
	peak     atomic.Int64
}

func startIdP(opts ...fakeidp.Option) (*idp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &idp{fake: fakeidp.New(opts...)}
	s.handler = s.fake.Handler()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.url = "http://" + ln.Addr().String()
	go s.srv.Serve(ln)
	return s, nil
}

func (s *idp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if d := time.Duration(s.delay.Load()); d > 0 {
		sleep(r.Context(), d)
	}
	s.handler.ServeHTTP(w, r)
}

func (s *idp) v1URL() string { return s.url + "/" + s.fake.Tenant() + "/oauth2/token" }
func (s *idp) v2URL() string { return s.url + "/" + s.fake.Tenant() + "/oauth2/v2.0/token" }

func (s *idp) close() {
	s.srv.Close()
	s.fake.Close()
}

// backendOptions shape the broker side of a run.
type backendOptions struct {
	users     int           // username/password users user0..user{n-1} known to the IdP
	lifetime  time.Duration // token lifetime the IdP grants (default 1h)
	threshold time.Duration // refresh threshold (default 10m; halved for short lifetimes)
	// memory, when set, is the default profile's IdP, in the broker's HTTP
	// client (the named credential still uses the fake IdP over HTTP).
	memory *memoryIdP
	// audit is the broker's AUDIT; "" is off.
	audit string
	// http starts the broker's HTTP gateway on a free loopback port, for
	// /events streams held open during the run; off, as before there were
	// any, it costs nothing.
	http bool
}

// backend is what sits behind NATS: the fake IdP, the broker and the echo
// responder, in one process, so that the broker and the echo pay the same
// hops to the load generator.
type backend struct {
	idp        *idp
	broker     *broker.Broker
	echoConn   *nats.Conn
	replyBytes int
	httpAddr   string // the broker's HTTP gateway; "" without backendOptions.http
}

// startBackend starts the fake IdP, a broker on natsURL, warms the named
// credential, and starts the echo responder with a reply the size of the
// broker's.
func startBackend(natsURL string, o backendOptions) (_ *backend, err error) {
	if o.lifetime <= 0 {
		o.lifetime = time.Hour
	}
	if o.threshold <= 0 {
		o.threshold = 10 * time.Minute
	}
	opts := []fakeidp.Option{fakeidp.WithLifetime(o.lifetime),
		fakeidp.WithClient(publicClient, ""), fakeidp.WithClient(benchCredential, benchSecret)}
	for i := range o.users {
		opts = append(opts, fakeidp.WithUser("user"+strconv.Itoa(i), userPassword))
	}
	b := &backend{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.idp, err = startIdP(opts...); err != nil {
		return nil, err
	}
	cfg := config.Defaults()
	cfg.NATSURL, cfg.HTTPAddr = natsURL, ""
	if o.http {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	cfg.Default = config.Credential{Name: config.DefaultName, Grant: config.GrantPassword,
		TokenEndpoint: b.idp.v1URL(), ClientID: publicClient, Resource: benchResource, RefreshThreshold: o.threshold}
	var bo broker.Options
	cfg.Audit = config.AuditOff
	if o.audit != "" && o.audit != config.AuditOff {
		// A real handler, so that the audit lines are formatted as a
		// broker with LOG_FORMAT=json formats them, and only their
		// writing is skipped: a discarding handler would skip the work.
		cfg.Audit = o.audit
		bo.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if o.memory != nil {
		cfg.Default.TokenEndpoint = o.memory.url()
		bo.IdPHTTPClient = &http.Client{Transport: o.memory}
	}
	cfg.Credentials = []config.Credential{{Name: benchCredential, Grant: config.GrantClientCredentials,
		TokenEndpoint: b.idp.v2URL(), ClientID: benchCredential, ClientSecret: benchSecret,
		Scope: benchResource + "/.default", RefreshThreshold: o.threshold, KeepWarm: true}}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b.broker, err = broker.Start(cfg, bo); err != nil {
		return nil, err
	}
	b.httpAddr = b.broker.HTTPAddr()
	if b.echoConn, err = nats.Connect(natsURL, nats.Name("tokenbench-echo")); err != nil {
		return nil, err
	}
	// The first request gets the token; the second is a cache hit, the
	// reply the echo mimics.
	var reply []byte
	for range 2 {
		msg, err := b.echoConn.Request(requestSubject, namedBody, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("warm %s: %w", benchCredential, err)
		}
		reply = msg.Data
	}
	if !strings.Contains(string(reply), `"accesstoken"`) {
		return nil, fmt.Errorf("warm %s: unexpected reply %.200s", benchCredential, reply)
	}
	b.replyBytes = len(reply)
	payload := make([]byte, len(reply))
	copy(payload, reply)
	if _, err := b.echoConn.QueueSubscribe(echoSubject, echoQueue, func(m *nats.Msg) { _ = m.Respond(payload) }); err != nil {
		return nil, err
	}
	if err := b.echoConn.Flush(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *backend) close() {
	if b.echoConn != nil {
		b.echoConn.Close()
	}
	if b.broker != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = b.broker.Shutdown(ctx)
		cancel()
	}
	if b.idp != nil {
		b.idp.close()
	}
}

// env is a running topology: where to send load, and how to tear it down.
type env struct {
	name       string
	url        string
	replyBytes int
	httpAddr   string // the broker's HTTP gateway, when asked for
	conns      []*nats.Conn
	backend    *backend // in-process topologies only
	stop       func()
}

func (e *env) close() {
	for _, nc := range e.conns {
		nc.Close()
	}
	if e.stop != nil {
		e.stop()
	}
}

// connect opens n load connections to e.
func (e *env) connect(n int) error {
	for i := range max(n, 1) {
		nc, err := nats.Connect(e.url, nats.Name("tokenbench-load-"+strconv.Itoa(i)))
		if err != nil {
			return err
		}
		e.conns = append(e.conns, nc)
	}
	return nil
}

// startInproc runs everything in this process: the NATS server, the broker,
// the echo responder, the fake IdP and the load generator, over TCP loopback.
func startInproc(conns int, o backendOptions) (*env, error) {
	ns, err := startNATS("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b, err := startBackend(ns.ClientURL(), o)
	if err != nil {
		ns.Shutdown()
		return nil, err
	}
	e := &env{name: "inproc", url: ns.ClientURL(), replyBytes: b.replyBytes, httpAddr: b.httpAddr, backend: b, stop: func() {
		b.close()
		ns.Shutdown()
		ns.WaitForShutdown()
	}}
	if err := e.connect(conns); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// startProcs runs three processes: `tokenbench nats`, `tokenbench serve`
// (broker, echo and fake IdP, with AUDIT auditMode, and with httpGateway its
// HTTP gateway) and this one, the load generator.
func startProcs(conns int, auditMode string, httpGateway bool, stderr io.Writer) (*env, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	natsProc, line, err := startChild(exe, stderr, "nats", "--listen", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start nats child: %w", err)
	}
	url := strings.TrimSpace(line)
	args := []string{"serve", "--nats", url, "--audit", auditMode}
	if httpGateway {
		args = append(args, "--http")
	}
	serveProc, line, err := startChild(exe, stderr, args...)
	if err != nil {
		stopChild(natsProc)
		return nil, fmt.Errorf("start serve child: %w", err)
	}
	var (
		size     int
		httpAddr string
	)
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			switch k {
			case "reply_bytes":
				size, _ = strconv.Atoi(v)
			case "http":
				httpAddr = v
			}
		}
	}
	e := &env{name: "procs", url: url, replyBytes: size, httpAddr: httpAddr, stop: func() {
		stopChild(serveProc)
		stopChild(natsProc)
	}}
	if err := e.connect(conns); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// startChild runs exe with args and waits for the READY line on its stdout,
// returning what follows READY.
func startChild(exe string, stderr io.Writer, args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if l := sc.Text(); !sent && strings.HasPrefix(l, readyPrefix) {
				lines <- strings.TrimPrefix(l, readyPrefix)
				sent = true
			}
		}
		if !sent {
			close(lines)
		}
	}()
	select {
	case l, ok := <-lines:
		if ok {
			return cmd, l, nil
		}
		err = errors.New("exited before it was ready")
	case <-time.After(30 * time.Second):
		err = errors.New("not ready in 30s")
	}
	stopChild(cmd)
	return nil, "", err
}

// stopChild sends SIGTERM and waits, killing the child after 10s.
func stopChild(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// serveNATS is the `tokenbench nats` subcommand.
func serveNATS(ctx context.Context, listen string, stdout io.Writer) error {
	s, err := startNATS(listen)
	if err != nil {
		return err
	}
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	fmt.Fprintln(stdout, readyPrefix+s.ClientURL())
	<-ctx.Done()
	return nil
}

// serveBackend is the `tokenbench serve` subcommand.
func serveBackend(ctx context.Context, natsURL, auditMode string, httpGateway bool, stdout io.Writer) error {
	b, err := startBackend(natsURL, backendOptions{audit: auditMode, http: httpGateway})
	if err != nil {
		return err
	}
	defer b.close()
	line := fmt.Sprintf("%sreply_bytes=%d echo=%s", readyPrefix, b.replyBytes, echoSubject)
	if b.httpAddr != "" {
		line += " http=" + b.httpAddr
	}
	fmt.Fprintln(stdout, line)
	<-ctx.Done()
	return nil
}
