// Package server serves dbd's wire protocol (docs/wire.md): it accepts TCP
// connections, runs the Noise IK handshake, authorises every request by the
// client key's role, and answers from the store.
//
// # Concurrency
//
// Each connection has one reader goroutine that reassembles messages by
// request id and starts one goroutine per complete request, bounded by
// MaxInflight (the reader blocks when the bound is reached, which pushes
// back on the client through TCP). Answers are written frame by frame, so a
// large answer does not hold up small ones. The Server tracks connections
// and request goroutines; Shutdown stops accepting, lets requests finish
// until its ctx ends, then closes everything.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/metrics"
	"github.com/twinmx/twinmx/services/dbd/internal/store"
)

// Config configures a Server. A zero field means its default.
type Config struct {
	Static wire.KeyPair // dbd's key pair. Required.
	// Previous are older key pairs of dbd still accepted while clients
	// move to Static's public key (docs/roles.md §7). Default none.
	Previous []wire.KeyPair
	Clients  *auth.Clients // allowed client keys and roles. Required.
	Store    *store.Store  // Required.
	Logger   *slog.Logger  // default slog.Default()
	Metrics  *metrics.DBD  // Required.

	// MaxMessage bounds one assembled request in bytes. Default 80 MiB,
	// room for a 64 MiB content plus its batch.
	MaxMessage int
	// MaxConnBuffered bounds the bytes of incomplete requests buffered on
	// one connection. Default 2 × MaxMessage.
	MaxConnBuffered int
	// MaxInflight bounds one-shot requests served at once per connection.
	// Default 256.
	MaxInflight int
	// MaxArmed bounds arm requests waiting at once per connection (busy
	// beyond). Default 1024.
	MaxArmed int
	// MaxStreams bounds open streams (watch, changes, dump, scan) per
	// connection. Default 64.
	MaxStreams int
	// IdleTimeout closes a connection that sends nothing for this long
	// while it has no open stream (counted from the end of its last
	// stream if that came later). Default 10 minutes.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the handshake. Default 5 s.
	HandshakeTimeout time.Duration
	// Window is the accepted clock skew of a handshake timestamp. Default 2 min.
	Window time.Duration
	// HandshakeRate is the sustained handshakes per second accepted from one
	// IP (burst 4×). Default 50. It is checked before any crypto.
	HandshakeRate float64
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) applyDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = 80 << 20
	}
	if c.MaxConnBuffered == 0 {
		c.MaxConnBuffered = 2 * c.MaxMessage
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 256
	}
	if c.MaxArmed == 0 {
		c.MaxArmed = 1024
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = 64
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.Window == 0 {
		c.Window = 2 * time.Minute
	}
	if c.HandshakeRate == 0 {
		c.HandshakeRate = 50
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Static.Public.IsZero() {
		errs = append(errs, errors.New("server: Static key is required"))
	}
	if c.Clients == nil {
		errs = append(errs, errors.New("server: Clients is required"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("server: Store is required"))
	}
	if c.Metrics == nil {
		errs = append(errs, errors.New("server: Metrics is required"))
	}
	if c.MaxMessage < 0 || c.MaxInflight < 0 || c.MaxArmed < 0 || c.MaxStreams < 0 || c.IdleTimeout < 0 {
		errs = append(errs, errors.New("server: limits must not be negative"))
	}
	return errors.Join(errs...)
}

// Server serves the wire protocol. Create it with New; it is safe for
// concurrent use. Callers must call Close or Shutdown.
type Server struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics.DBD
	st     *store.Store
	replay *wire.ReplayCache
	limit  *ipLimiter

	clientsMu      sync.RWMutex
	clients        *auth.Clients
	clientsChanged chan struct{} // wakes expireLoop after SetClients

	bg sync.WaitGroup // expireLoop

	ctx    context.Context // cancelled by Close: aborts in-flight work
	cancel context.CancelFunc

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		conns     map[*conn]struct{}
		shutting  bool
	}
	wg sync.WaitGroup // connection goroutines

	// handshakeHook, if set, is called with the peer's address when a
	// connection has passed the rate limit, just before the handshake's
	// crypto: a test seam (export_test.go) that counts the Curve25519
	// work a flood costs. Set before Serve; never changed after.
	handshakeHook func(net.Addr)

	// msgBufs holds *[]byte answer buffers (see message): a fresh one per
	// row sent, grown by append, was a third of dbd's allocation when
	// serving mails to imapd and pop3d.
	msgBufs sync.Pool
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		m:       cfg.Metrics,
		st:      cfg.Store,
		clients: cfg.Clients,
		replay:  wire.NewReplayCache(2*cfg.Window, 1<<20),
		limit:   newIPLimiter(cfg.HandshakeRate, 4*cfg.HandshakeRate, cfg.Now),
		ctx:     ctx,
		cancel:  cancel,
	}
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.conns = map[*conn]struct{}{}
	s.clientsChanged = make(chan struct{}, 1)
	s.bg.Add(1)
	go s.expireLoop()
	return s, nil
}

// SetClients replaces the allowed clients (a reload of the clients file).
// Connections whose key is no longer listed, or whose role changed, are
// closed; those of keys past their not-after are closed by expireLoop,
// which this wakes.
func (s *Server) SetClients(c *auth.Clients) {
	s.clientsMu.Lock()
	s.clients = c
	s.clientsMu.Unlock()
	s.mu.Lock()
	for cn := range s.mu.conns {
		if cl, ok := c.Lookup(cn.peer); !ok || cl.Role != cn.role {
			s.log.Info("closing connection of a removed client key", "conn", cn.id, "role", cn.role)
			cn.wc.Close()
		}
	}
	s.mu.Unlock()
	select {
	case s.clientsChanged <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (s *Server) lookup(k wire.PublicKey) (auth.Client, bool) {
	s.clientsMu.RLock()
	defer s.clientsMu.RUnlock()
	return s.clients.Lookup(k)
}

// clientFigures are the status figures of the clients file's keys with a
// not-after, for an operator (docs/roles.md §4): how many have expired,
// how many expire within auth.ExpiryWarning, and the next not-after.
func (s *Server) clientFigures() []wire.Figure {
	s.clientsMu.RLock()
	c := s.clients
	s.clientsMu.RUnlock()
	now := s.cfg.Now()
	expired, soon, next := 0, 0, "-"
	for _, cl := range c.WithNotAfter() {
		switch {
		case cl.Expired(now):
			expired++
			continue
		case cl.NotAfter.Sub(now) < auth.ExpiryWarning:
			soon++
		}
		if next == "-" {
			next = cl.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	return []wire.Figure{
		{Name: "clients", Value: strconv.Itoa(c.Len())},
		{Name: "clients.expired", Value: strconv.Itoa(expired)},
		{Name: "clients.expiring", Value: strconv.Itoa(soon)},
		{Name: "clients.next_not_after", Value: next},
	}
}

// expireLoop ends the sessions of client keys whose not-after passes and
// keeps the not-after gauge current: it sleeps until the next not-after
// of a listed key, or until the clients are replaced.
func (s *Server) expireLoop() {
	defer s.bg.Done()
	last := s.cfg.Now()
	for {
		now := s.cfg.Now()
		next := s.sweepExpired(last, now)
		last = now
		var wake <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			// Expired is "after not-after", so wake just past it.
			t = time.NewTimer(next.Sub(now) + time.Millisecond)
			wake = t.C
		}
		select {
		case <-s.ctx.Done():
		case <-s.clientsChanged:
		case <-wake:
		}
		if t != nil {
			t.Stop()
		}
		if s.ctx.Err() != nil {
			return
		}
	}
}

// sweepExpired closes the connections of keys expired at now, logs the
// keys whose not-after passed since last, sets the gauge, and returns the
// next not-after still to come (zero if none).
func (s *Server) sweepExpired(last, now time.Time) time.Time {
	s.clientsMu.RLock()
	c := s.clients
	s.clientsMu.RUnlock()
	var next time.Time
	soonest := map[auth.Role]time.Time{}
	for _, cl := range c.WithNotAfter() {
		if cl.Expired(now) {
			if !cl.NotAfter.Before(last) { // newly passed: log it once
				s.log.Warn("client key expired: its handshakes are refused from now on",
					"key_file", cl.Name, "role", cl.Role, "not_after", cl.NotAfter)
			}
			continue
		}
		if next.IsZero() {
			next = cl.NotAfter // WithNotAfter returns them soonest first
		}
		if _, ok := soonest[cl.Role]; !ok {
			soonest[cl.Role] = cl.NotAfter
		}
	}
	s.m.ClientKeyNotAfter.Reset()
	for r, t := range soonest {
		s.m.ClientKeyNotAfter.WithLabelValues(string(r)).Set(float64(t.Unix()))
	}
	s.mu.Lock()
	for cn := range s.mu.conns {
		if cl, ok := c.Lookup(cn.peer); ok && cl.Expired(now) {
			s.log.Info("closing connection of an expired client key", "conn", cn.id, "role", cn.role, "key_file", cl.Name)
			cn.wc.Close()
		}
	}
	s.mu.Unlock()
	return next
}

// Serve accepts connections on ln until ln fails or the server shuts down.
// It always returns a non-nil error; after Shutdown or Close, ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.shutting {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	var id uint64
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			shutting := s.mu.shutting
			s.mu.Unlock()
			if shutting {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		id++
		// Add under the lock, after checking shutting: Shutdown sets it
		// under the same lock before it waits, so an Add never races with
		// that Wait (a connection accepted as Shutdown begins is closed).
		s.mu.Lock()
		if s.mu.shutting {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func(id uint64) {
			defer s.wg.Done()
			s.serveConn(nc, id)
		}(id)
	}
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("server: closed")

// Shutdown stops accepting connections and new requests, waits for
// requests in flight until ctx ends, then closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.shutting = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for cn := range s.mu.conns {
		cn.shutdown()
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
		s.bg.Wait()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes all listeners and connections at once and waits for their
// goroutines.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	s.mu.shutting = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for cn := range s.mu.conns {
		cn.wc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.bg.Wait()
	return nil
}

// ipLimiter is a token bucket per client IP for handshakes, so a flood of
// handshake attempts costs no Curve25519 work beyond the rate.
type ipLimiter struct {
	rate, burst float64
	now         func() time.Time
	mu          sync.Mutex
	buckets     map[string]*bucket
	lastSweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newIPLimiter(rate, burst float64, now func() time.Time) *ipLimiter {
	return &ipLimiter{rate: rate, burst: burst, now: now, buckets: map[string]*bucket{}}
}

func (l *ipLimiter) allow(addr net.Addr) bool {
	ip := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip = ta.IP.String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastSweep) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.last).Seconds()*l.rate > l.burst {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b, ok := l.buckets[ip]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
