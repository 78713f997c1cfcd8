package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// The gateway's connection limits. Callers send a small JSON body and read a
// small JSON answer, so anything slower than these is a broken or hostile
// client holding a connection.
const (
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout = 10 * time.Second
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request.
	IdleTimeout = 120 * time.Second
	// MaxHeaderBytes bounds a request's headers, in bytes.
	MaxHeaderBytes = 64 << 10
	// DefaultServiceTimeout is the Service's bound on answering that
	// NewServer assumes when told zero: REQUEST_TIMEOUT's default.
	DefaultServiceTimeout = 30 * time.Second
	// writeSlack is added to the Service's bound for WriteTimeout, so that
	// the Service's own 504 can still be written after the handler has
	// waited for it in full.
	writeSlack = 5 * time.Second
)

// Server is the gateway's http.Server with the limits above.
type Server struct {
	srv *http.Server

	mu      sync.Mutex
	started bool
	done    chan struct{} // closed when Serve has returned
	err     error         // Serve's error other than http.ErrServerClosed
}

// NewServer returns a Server for h on addr (host:port; port 0 picks a free
// one). serviceTimeout is how long the Service takes to answer at most (its
// REQUEST_TIMEOUT; zero means DefaultServiceTimeout): WriteTimeout is 5 s
// more, a backstop against clients that do not read, which must not cut
// the Service's own 504 short. The server's own errors (TLS handshakes,
// panics) go to the Logger of h when it comes from NewHandler, at Warn.
func NewServer(addr string, h http.Handler, serviceTimeout time.Duration) *Server {
	if serviceTimeout <= 0 {
		serviceTimeout = DefaultServiceTimeout
	}
	log := slog.New(slog.DiscardHandler)
	var events *hub
	if gh, ok := h.(*handler); ok {
		log, events = gh.log, gh.events
	}
	s := &Server{
		srv: &http.Server{
			Addr:              addr,
			Handler:           h,
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			WriteTimeout:      serviceTimeout + writeSlack,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		done: make(chan struct{}),
	}
	if events != nil {
		// Shutdown waits for handlers to return, and a stream returns
		// only when told to.
		s.srv.RegisterOnShutdown(events.close)
	}
	return s
}

// Start listens on the Server's address, over TLS when certFile and keyFile
// (PEM files) are both set, and serves in a goroutine. It returns the bound
// address, which tells the port when the address asked for port 0. Errors in
// the certificate or the address are returned here, not left to the
// goroutine. Start may be called once.
func (s *Server) Start(certFile, keyFile string) (addr string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return "", errors.New("httpapi: server already started")
	}
	if (certFile == "") != (keyFile == "") {
		// Serving plain HTTP when TLS was half configured would send
		// passwords and tokens in clear.
		return "", errors.New("httpapi: TLS needs both a certificate and a key file")
	}
	var tlsConfig *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return "", fmt.Errorf("httpapi: TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		s.srv.TLSConfig = tlsConfig
	}
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return "", fmt.Errorf("httpapi: listen: %w", err)
	}
	s.started = true
	go func() {
		defer close(s.done)
		var err error
		if tlsConfig != nil {
			// The certificate is in TLSConfig already; ServeTLS adds
			// HTTP/2 to it.
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			s.srv.ErrorLog.Printf("httpapi: serve: %v", err)
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
		}
	}()
	return ln.Addr().String(), nil
}

// Shutdown stops accepting connections and waits, until ctx is done, for
// requests in flight to be answered. It returns ctx's error if they were
// not, and the error that stopped serving if serving had failed before.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return err
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(err, s.err)
}
