package guard

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/connlimit"
)

// Config configures a Listener and the Conns it returns. A zero field means
// its default; defaults are applied in one place, withDefaults. The
// Listener copies the Config, so later changes by the caller have no
// effect.
type Config struct {
	// Hostname is the name the guard puts in its own replies.
	// Default: os.Hostname(), or "localhost" if that fails.
	Hostname string

	// Postmaster is the mailbox that RCPT TO:<Postmaster>, without a
	// domain, is passed on for (RFC 5321 §4.5.1: a server MUST accept
	// it; go-smtp's parser wants a domain in every path).
	// Default: postmaster@Hostname, so that the path is at least an
	// address, answered like any other (a 550 5.1.1 where no such
	// mailbox exists, not go-smtp's 501 for a syntax error).
	Postmaster string

	// CommandLineMax is the longest command line accepted, in bytes
	// including the CRLF. A longer line gets "500 5.5.2" and the connection
	// is closed. It does not apply to DATA, where body lines of any length
	// are passed on. Default: 2000.
	CommandLineMax int

	// IdleTimeout bounds the wait for each command line, from when the
	// server is ready for it until its line end, however the client
	// spreads its bytes. Default: 5 min.
	IdleTimeout time.Duration
	// DataTimeout bounds each read in DATA (RFC 5321 §4.5.3.2.6 suggests
	// 3 min for a data block). Default: 3 min.
	DataTimeout time.Duration
	// SessionTimeout bounds the whole connection. Default: 30 min.
	SessionTimeout time.Duration
	// WriteTimeout bounds each write to the client. Default: 5 min.
	WriteTimeout time.Duration
	// TLSHandshakeTimeout bounds the STARTTLS handshake. Default: 30 s.
	TLSHandshakeTimeout time.Duration

	// GreetPause is how long the guard waits for the client to speak before
	// it sends the greeting (Postfix postscreen's pregreet test). A client
	// that speaks first is an early talker and is rejected. Negative
	// disables the test. Default: 1 s.
	GreetPause time.Duration
	// PassCacheTTL is how long a client IP that passed the greeting test
	// skips it. Default: 24 h.
	PassCacheTTL time.Duration
	// PassCacheMax bounds the pass cache; the oldest entries are evicted.
	// Default: 100000.
	PassCacheMax int

	// TLS enables STARTTLS. Nil means no STARTTLS. go-smtp's own
	// Server.TLSConfig must stay nil: the guard owns TLS.
	TLS *tls.Config

	// MaxCommands is the number of command lines a session may send
	// without a mail stored (counted afresh after each Conn.DataStored)
	// before it gets "421 4.7.0" and is closed. Default: 1000.
	MaxCommands int
	// MaxJunk is the number of commands that move no mail (NOOP, RSET,
	// VRFY, EXPN, HELP) a session may send without a mail stored before it
	// gets "421 4.7.0" and is closed: a client looping on them holds a
	// slot for nothing (Postfix smtpd_junk_command_limit). Default: 100.
	MaxJunk int
	// MaxErrors is the number of 4xx/5xx replies a session may collect
	// without a mail stored (counted afresh after each Conn.DataStored;
	// 452 4.5.3, recipients to send later, is not counted); the reply
	// that exceeds it is followed by "421 4.7.0" and a close (Postfix
	// smtpd_hard_error_limit). Default: 20.
	MaxErrors int
	// SoftErrors is the number of 4xx/5xx replies (counted like
	// MaxErrors) from which on every further reply is delayed by
	// ErrorDelay: a tarpit that slows address harvesters and broken
	// loops without cutting off a confused but honest client (Postfix
	// smtpd_soft_error_limit, smtpd_error_sleep_time). Negative: no
	// delay. Default: 10 and 1 s.
	SoftErrors int
	ErrorDelay time.Duration

	// CaptureMax is the number of transcript bytes kept per connection;
	// bytes beyond it are counted but not kept. Negative disables capture.
	// Default: 256 KiB.
	CaptureMax int

	// MaxConnsPerIP is the number of concurrent connections from one client
	// IP. Negative means unlimited. Default: 20.
	MaxConnsPerIP int
	// MaxConns is the number of concurrent connections in total. Negative
	// means unlimited. Default: 1000.
	MaxConns int
	// MaxConnRate is the number of connections one client (an IPv4
	// address, an IPv6 /64) may open per ConnRateWindow; the ones over it
	// get "421 4.7.0" at once (Postfix smtpd_client_connection_rate_limit).
	// Negative means unlimited. Default: 300 a minute.
	MaxConnRate    int
	ConnRateWindow time.Duration
	// ConnRateExempt are the client prefixes MaxConnRate does not apply
	// to. nil means the default, loopback; an empty non-nil slice exempts
	// nobody.
	ConnRateExempt []netip.Prefix

	// OnRefuse, if set, is called with the reason ("conn-limit",
	// "conn-limit-ip", "conn-rate") of every connection refused at the
	// door, for metrics. It must not block.
	OnRefuse func(reason string)

	// Logger receives Warn for peer misbehaviour and Debug for decisions.
	// Default: a logger that discards.
	Logger *slog.Logger
	// Clock returns the current time for the pass cache and capture
	// offsets (network deadlines always use the real clock). Default:
	// time.Now.
	Clock func() time.Time
}

// Defaults. Named so that docs and tests can refer to them.
const (
	DefaultCommandLineMax      = 2000
	DefaultIdleTimeout         = 5 * time.Minute
	DefaultDataTimeout         = 3 * time.Minute
	DefaultSessionTimeout      = 30 * time.Minute
	DefaultWriteTimeout        = 5 * time.Minute
	DefaultTLSHandshakeTimeout = 30 * time.Second
	DefaultGreetPause          = time.Second
	DefaultPassCacheTTL        = 24 * time.Hour
	DefaultPassCacheMax        = 100000
	DefaultMaxCommands         = 1000
	DefaultMaxErrors           = 20
	DefaultMaxJunk             = 100
	DefaultSoftErrors          = 10
	DefaultErrorDelay          = time.Second
	DefaultCaptureMax          = 256 << 10
	DefaultMaxConnsPerIP       = 20
	DefaultMaxConns            = 1000
	DefaultMaxConnRate         = 300
	DefaultConnRateWindow      = time.Minute
)

// minCommandLineMax keeps room for the longest fixed command we must
// recognise ("STARTTLS\r\n") plus an EHLO with a domain.
const minCommandLineMax = 64

// Validate reports every invalid field at once.
func (c *Config) Validate() error {
	var errs []error
	if c.CommandLineMax != 0 && c.CommandLineMax < minCommandLineMax {
		errs = append(errs, fmt.Errorf("guard: CommandLineMax %d is below %d", c.CommandLineMax, minCommandLineMax))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"IdleTimeout", c.IdleTimeout},
		{"DataTimeout", c.DataTimeout},
		{"SessionTimeout", c.SessionTimeout},
		{"WriteTimeout", c.WriteTimeout},
		{"TLSHandshakeTimeout", c.TLSHandshakeTimeout},
		{"PassCacheTTL", c.PassCacheTTL},
		{"ErrorDelay", c.ErrorDelay},
		{"ConnRateWindow", c.ConnRateWindow},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("guard: %s %v is negative", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"CommandLineMax", c.CommandLineMax},
		{"PassCacheMax", c.PassCacheMax},
		{"MaxCommands", c.MaxCommands},
		{"MaxErrors", c.MaxErrors},
		{"MaxJunk", c.MaxJunk},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("guard: %s %d is negative", n.name, n.v))
		}
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		errs = append(errs, errors.New("guard: TLS config has no certificate"))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	if c.Postmaster == "" {
		c.Postmaster = "postmaster@" + c.Hostname
	}
	setInt := func(p *int, def int) {
		if *p == 0 {
			*p = def
		}
	}
	setDur := func(p *time.Duration, def time.Duration) {
		if *p == 0 {
			*p = def
		}
	}
	setInt(&c.CommandLineMax, DefaultCommandLineMax)
	setDur(&c.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.DataTimeout, DefaultDataTimeout)
	setDur(&c.SessionTimeout, DefaultSessionTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	setDur(&c.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	setDur(&c.GreetPause, DefaultGreetPause)
	setDur(&c.PassCacheTTL, DefaultPassCacheTTL)
	setInt(&c.PassCacheMax, DefaultPassCacheMax)
	setInt(&c.MaxCommands, DefaultMaxCommands)
	setInt(&c.MaxErrors, DefaultMaxErrors)
	setInt(&c.MaxJunk, DefaultMaxJunk)
	setInt(&c.SoftErrors, DefaultSoftErrors)
	setDur(&c.ErrorDelay, DefaultErrorDelay)
	setInt(&c.CaptureMax, DefaultCaptureMax)
	setInt(&c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	setInt(&c.MaxConns, DefaultMaxConns)
	setInt(&c.MaxConnRate, DefaultMaxConnRate)
	setDur(&c.ConnRateWindow, DefaultConnRateWindow)
	if c.ConnRateExempt == nil {
		c.ConnRateExempt = connlimit.Loopback()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.OnRefuse == nil {
		c.OnRefuse = func(string) {}
	}
	return c
}
