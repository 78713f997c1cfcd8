package messaging

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker/wire"
)

// EmbeddedOptions configures the NATS server a broker starts when it is not
// given NATS_URL.
type EmbeddedOptions struct {
	// Listen is host:port of the client listener (NATS_LISTEN); port 0 or
	// -1 picks a free one.
	Listen string
	// ConfigFile is a nats-server configuration file (NATS_CONFIG); its own
	// listen address, if it has one, wins over Listen.
	ConfigFile string
	// ReadyTimeout bounds the wait for the server to accept clients;
	// default 10s.
	ReadyTimeout time.Duration
	// JetStream enables JetStream, keeping its data in StoreDir (DATA_DIR),
	// for the broker's durable token state.
	JetStream bool
	StoreDir  string
	// SyncAlways makes JetStream fsync each write before it acknowledges
	// it (STATE_SYNC=always); a positive SyncInterval fsyncs that often
	// instead. Either one set wins over NATS_CONFIG's sync_interval; both
	// zero leave it, or the server's default of every 2 minutes, under
	// which a host crash (not a process crash) can lose writes already
	// acknowledged: the newest rotated refresh token among them.
	SyncAlways   bool
	SyncInterval time.Duration
	// AllowNoAuth lets the server listen beyond loopback although nothing
	// authenticates its clients (NATS_ALLOW_NO_AUTH). Without it,
	// StartEmbedded refuses to start such a server: every client that
	// reached it could subscribe to token.request and read the passwords
	// callers send there.
	AllowNoAuth bool
	// Logger receives the server's warnings and errors (a refused login, a
	// slow consumer) at Warn and Error, and its notices at Debug; nil
	// discards them.
	Logger *slog.Logger
}

// StartEmbedded starts a NATS server in this process and waits until it
// accepts clients. The caller owns Shutdown.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	opts := &server.Options{}
	if o.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(o.ConfigFile); err != nil {
			return nil, fmt.Errorf("messaging: NATS_CONFIG %s: %w", o.ConfigFile, err)
		}
	}
	// Where the client listener's host comes from, for the refusal below:
	// NATS_CONFIG's listen wins over NATS_LISTEN.
	hostFromConfig := opts.Host != ""
	if o.Listen != "" {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("messaging: NATS_LISTEN %q: %w", o.Listen, err)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("messaging: NATS_LISTEN %q: port is not a number", o.Listen)
		}
		if n == 0 {
			n = server.RANDOM_PORT
		}
		// A config file's listen wins; but one that names only a port does
		// not thereby open the server to every interface: the host stays
		// NATS_LISTEN's (loopback by default).
		if opts.Host == "" {
			opts.Host = host
		}
		if opts.Port == 0 {
			opts.Port = n
		}
	}
	if o.JetStream {
		opts.JetStream = true
		if opts.StoreDir == "" {
			opts.StoreDir = o.StoreDir
		}
	}
	switch {
	case o.SyncAlways:
		opts.SyncAlways = true
	case o.SyncInterval > 0:
		opts.SyncAlways, opts.SyncInterval = false, o.SyncInterval
	}
	opts.NoSigs = true // the broker handles signals and shuts the server down itself
	opts.NoLog = true
	if opts.ServerName == "" {
		opts.ServerName = "tokenbroker"
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("messaging: embedded NATS server: %w", err)
	}
	// Judged on the server built, not yet started, so that nothing has
	// listened yet, and so that what the server itself made of
	// NATS_CONFIG counts: a file with users for the system account only
	// gets an implicit user that lets anyone into the others.
	if !loopbackHost(opts.Host) && !authenticatesClients(s, opts) {
		if !o.AllowNoAuth {
			s.Shutdown()
			return nil, exposedError(o, opts.Host, hostFromConfig)
		}
		if o.Logger != nil {
			o.Logger.Warn("the embedded NATS server listens beyond loopback and does not authenticate clients (NATS_ALLOW_NO_AUTH): any client that reaches it can read the passwords sent on token.request",
				"host", opts.Host)
		}
	}
	if o.Logger != nil {
		s.SetLoggerV2(serverLogger{o.Logger.With("component", "nats-server")}, false, false, false)
	}
	go s.Start()
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if !s.ReadyForConnections(timeout) {
		s.Shutdown()
		return nil, errors.New("messaging: embedded NATS server did not start (is the NATS_LISTEN port in use?)")
	}
	// What a host crash may cost is worth a line at start-up: the
	// server's own, as it runs, whichever setting gave it.
	if jc := s.JetStreamConfig(); jc != nil && o.Logger != nil {
		sync := "every " + jc.SyncInterval.String()
		if jc.SyncAlways {
			sync = "always"
		}
		o.Logger.Info("embedded JetStream", "store_dir", jc.StoreDir, "sync", sync)
	}
	return s, nil
}

// loopbackHost reports whether a listener on host is reachable from this
// machine only: localhost, 127.0.0.0/8 or ::1. Anything else, a host name
// included (it may resolve anywhere), and the empty host (every interface),
// is beyond loopback.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authenticatesClients reports whether s, built from opts, makes every client
// prove who it is before it may publish or subscribe: the server requires
// authentication (users, nkeys, a user and password, a token, operator
// JWTs: what NATS_CONFIG's authorization and accounts give), with no
// no_auth_user that lets clients which present nothing in anyway; or TLS
// verifies client certificates.
func authenticatesClients(s *server.Server, opts *server.Options) bool {
	// As NewServer decides that TLS verifies clients: a config file's
	// verify: true shows only in the TLS configuration it built.
	if opts.TLSVerify || (opts.TLSConfig != nil && opts.TLSConfig.ClientAuth == tls.RequireAndVerifyClientCert) {
		return true
	}
	v, err := s.Varz(nil)
	return err == nil && v.AuthRequired && opts.NoAuthUser == ""
}

// exposedError is the refusal of a server beyond loopback that does not
// authenticate clients, on one line, naming the address's setting and the
// ways out.
func exposedError(o EmbeddedOptions, host string, hostFromConfig bool) error {
	where := fmt.Sprintf("NATS_LISTEN %q", o.Listen)
	if hostFromConfig {
		where = fmt.Sprintf("NATS_CONFIG %s listens on %q (its listen wins over NATS_LISTEN), which", o.ConfigFile, host)
	}
	return fmt.Errorf("messaging: %s is beyond loopback and the embedded NATS server does not authenticate clients, "+
		"so any client that reaches it could read the passwords sent on token.request: "+
		"listen on loopback, define authorization in NATS_CONFIG, or set NATS_ALLOW_NO_AUTH=true (--nats-allow-no-auth) to accept it", where)
}

// ConnectOptions says how the broker authenticates to NATS. Secrets are
// given as files or already-read values, never logged.
type ConnectOptions struct {
	Name      string
	CredsFile string // NATS_CREDS: a JWT user credentials file
	NKeyFile  string // NATS_NKEY: an NKey seed file
	User      string
	Password  string
	Token     string
	CAFile    string // NATS_CA
	CertFile  string // NATS_CERT
	KeyFile   string // NATS_KEY
	// InboxPrefix replaces "_INBOX" as the prefix of the connection's own
	// reply subjects, where JetStream answers the broker: so that a NATS
	// user may be allowed to subscribe to the broker's inbox without being
	// allowed to read the callers' replies under _INBOX.>. Empty keeps
	// "_INBOX".
	InboxPrefix string
	// InProcess connects to this embedded server through memory instead of
	// TCP; URL is then ignored.
	InProcess *server.Server
	// Logger receives the connection's asynchronous errors (a refused
	// subscription, a slow consumer) and its disconnects and reconnects;
	// nil discards them.
	Logger *slog.Logger
}

// Connect connects to NATS at url with o. The connection reconnects forever:
// a broker waits out a NATS outage rather than exit.
func Connect(url string, o ConnectOptions) (*nats.Conn, error) {
	name := o.Name
	if name == "" {
		name = wire.ServiceName
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		// nats.go prints these to stderr by default, past the broker's
		// logger and its LOG_FORMAT.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("NATS error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("NATS error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("messaging: NATS_NKEY: %w", err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("messaging: connect to NATS: %w", err)
	}
	return nc, nil
}

// serverLogger passes the embedded server's log lines to slog. Notices are
// Debug: the server announces a dozen of them at start.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  {}
func (l serverLogger) Tracef(format string, v ...any)  {}
