package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/wire/connlimit"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/pop3d/internal/metrics"
)

// Defaults of Config (a zero field means its default).
const (
	DefaultIdleTimeout     = 10 * time.Minute // RFC 1939 §3: an autologout timer of at least 10 minutes
	DefaultWriteTimeout    = 10 * time.Minute
	DefaultTLSTimeout      = 30 * time.Second
	DefaultDBTimeout       = 30 * time.Second
	DefaultAuthFailDelay   = 2 * time.Second
	DefaultMaxAuthFailures = 10
	DefaultAuthFailWindow  = 15 * time.Minute
	DefaultMaxConns        = 1000
	DefaultMaxConnsPerIP   = 20
	DefaultSizeWorkers     = 8
	DefaultMaxErrors       = 10
)

// Config configures a Server. Only Store is required.
type Config struct {
	Store Store
	// TLS enables STLS and the implicit-TLS listener. nil: neither.
	TLS *tls.Config
	// AllowPlaintext allows USER/PASS and AUTH PLAIN without TLS from any
	// client. Default false: without TLS only loopback clients may log in.
	AllowPlaintext bool
	// IdleTimeout bounds the wait for each command, in both states.
	// Default 10 min.
	IdleTimeout time.Duration
	// WriteTimeout bounds the writing of one response (a whole RETR).
	// Default 10 min.
	WriteTimeout time.Duration
	// TLSTimeout bounds a TLS handshake. Default 30 s.
	TLSTimeout time.Duration
	// DBTimeout bounds one store call (a login, one listing, one fetch,
	// the deletion at QUIT). Default 30 s.
	DBTimeout time.Duration
	// AuthFailDelay is the least time between a failed login's command and
	// its reply. Default 2 s; negative: none (tests).
	AuthFailDelay time.Duration
	// MaxAuthFailures failed logins from one IP (IPv6: one /64) within
	// AuthFailWindow make further logins from it refused until the oldest
	// expires. Defaults 10 and 15 min; MaxAuthFailures < 0: no limit.
	MaxAuthFailures int
	AuthFailWindow  time.Duration
	// MaxConns and MaxConnsPerIP bound open connections. Defaults 1000, 20;
	// negative: no limit.
	MaxConns, MaxConnsPerIP int
	// SizeWorkers is how many Size calls one session makes at once for
	// STAT and LIST. Default 8.
	SizeWorkers int
	// MaxErrors is how many bad commands a connection may send before it
	// is closed. Default 10.
	MaxErrors int
	// Logger default: discard.
	Logger *slog.Logger
	// Metrics default: collectors on a private registry.
	Metrics *metrics.Metrics
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) applyDefaults() {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setInt := func(n *int, def int) {
		if *n == 0 {
			*n = def
		}
	}
	setDur(&c.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	setDur(&c.TLSTimeout, DefaultTLSTimeout)
	setDur(&c.DBTimeout, DefaultDBTimeout)
	setDur(&c.AuthFailDelay, DefaultAuthFailDelay)
	setDur(&c.AuthFailWindow, DefaultAuthFailWindow)
	setInt(&c.MaxAuthFailures, DefaultMaxAuthFailures)
	setInt(&c.MaxConns, DefaultMaxConns)
	setInt(&c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	setInt(&c.SizeWorkers, DefaultSizeWorkers)
	setInt(&c.MaxErrors, DefaultMaxErrors)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New(prometheus.NewRegistry())
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("server: Store is required"))
	}
	if c.SizeWorkers < 0 {
		errs = append(errs, fmt.Errorf("server: SizeWorkers %d is negative", c.SizeWorkers))
	}
	for name, d := range map[string]time.Duration{"IdleTimeout": c.IdleTimeout, "WriteTimeout": c.WriteTimeout,
		"TLSTimeout": c.TLSTimeout, "DBTimeout": c.DBTimeout, "AuthFailWindow": c.AuthFailWindow} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("server: %s %s is negative", name, d))
		}
	}
	return errors.Join(errs...)
}

// Mode says how a listener's connections start.
type Mode int

const (
	// Plain connections start in clear text and may upgrade with STLS.
	Plain Mode = iota
	// ImplicitTLS connections start with a TLS handshake (port 995).
	ImplicitTLS
)

// ErrClosed is returned by Serve after Close or Shutdown.
var ErrClosed = errors.New("server: closed")

// Server serves POP3. Make it with New; it is safe for concurrent use.
// Call Close or Shutdown to stop it.
type Server struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics.Metrics
	limit *mailbox.AuthLimiter

	ctx    context.Context // cancelled by Close: ends in-flight store calls
	cancel context.CancelFunc
	nextID atomic.Uint64

	mu struct {
		sync.Mutex
		closing   bool
		listeners map[net.Listener]struct{}
		conns     map[*conn]struct{}
	}
	conns *connlimit.Limiter
	wg    sync.WaitGroup // one per connection goroutine
}

// New returns a Server; cfg is copied.
func New(cfg Config) (*Server, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, m: cfg.Metrics,
		limit: mailbox.NewAuthLimiter(cfg.MaxAuthFailures, cfg.AuthFailWindow)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.conns = map[*conn]struct{}{}
	s.conns = connlimit.New(cfg.MaxConns, cfg.MaxConnsPerIP)
	return s, nil
}

// Serve accepts connections on ln until Close or Shutdown (then it returns
// ErrClosed) or ln is closed otherwise; other accept errors are retried.
// It closes ln.
func (s *Server) Serve(ln net.Listener, mode Mode) error {
	if mode == ImplicitTLS && s.cfg.TLS == nil {
		ln.Close()
		return errors.New("server: implicit TLS without a TLS configuration")
	}
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// Anything else passes: EMFILE or ENFILE when the process is
			// out of file descriptors, ENOBUFS. It used to end Serve (and
			// pop3d) unless it was a timeout. Wait a little so the loop
			// does not spin while the condition lasts.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed, retrying", "listen", ln.Addr().String(), "err", err, "wait", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.start(nc, mode)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closing
}

// start registers a connection (or refuses it over the limits) and runs it.
func (s *Server) start(nc net.Conn, mode Mode) {
	ip := connlimit.IP(nc.RemoteAddr())
	s.m.Sessions.Inc()
	release, why := s.conns.Admit(ip)
	s.mu.Lock()
	if s.mu.closing && release != nil {
		release()
		why, release = connlimit.TooMany, nil
	}
	var c *conn
	if release != nil {
		c = newConn(s, nc, ip, mode)
		s.mu.conns[c] = struct{}{}
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if release == nil {
		s.log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "per_ip", why == connlimit.TooManyFromIP)
		if mode == Plain {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(nc, "-ERR [SYS/TEMP] too many connections, try again later\r\n")
		}
		nc.Close()
		return
	}
	s.m.SessionsActive.Inc()
	go func() {
		defer s.wg.Done()
		defer s.m.SessionsActive.Dec()
		defer release()
		defer s.forget(c)
		c.serve()
	}()
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.conns, c)
}

// Shutdown stops accepting, tells every connection waiting for a command
// that the server is going away (no UPDATE: marked mail stays), lets
// commands in progress finish, and waits for all connections to end; when
// ctx ends first, it closes the rest (Close) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.closing = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for c := range s.mu.conns {
		c.raw.SetReadDeadline(time.Now()) // wakes a connection waiting for a command
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting, closes every connection at once, cancels their
// store calls and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.mu.closing = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for c := range s.mu.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
