// Package relay delivers forward copies through a configured SMTP relay
// (go-smtp client): STARTTLS or implicit TLS, AUTH PLAIN, one message per
// connection. The message is sent as given, byte for byte, apart from the
// dot-stuffing and CRLF line ends SMTP itself needs (RFC 5321 §4.5.2):
// every bare CR and bare LF goes out as CRLF (canonicalLines), so no
// receiver can read an end of DATA into a stored mail.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLS modes.
const (
	TLSNone     = "none"     // plain SMTP (a relay on loopback)
	TLSStartTLS = "starttls" // STARTTLS required
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
)

// Config configures a Relay.
type Config struct {
	Addr string // HOST:PORT, required
	TLS  string // TLSNone, TLSStartTLS (default) or TLSImplicit
	// TLSConfig for STARTTLS and implicit TLS. Default: verify the relay's
	// certificate for the host of Addr.
	TLSConfig *tls.Config
	// User and Password for AUTH PLAIN; no AUTH when User is empty. AUTH
	// is refused without TLS except on loopback.
	User, Password string
	// From is the envelope sender of copies; "" is the null sender <>
	// (no bounce comes back to anybody).
	From string
	// Helo is the name smsd gives in EHLO. Default: the host name.
	Helo string
	// Timeout bounds one delivery. Default 2 minutes.
	Timeout time.Duration
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("relay: address %q: %w", c.Addr, err))
	}
	switch c.TLS {
	case "", TLSNone, TLSStartTLS, TLSImplicit:
	default:
		errs = append(errs, fmt.Errorf("relay: TLS mode %q (want none, starttls or tls)", c.TLS))
	}
	if c.User != "" && c.TLS == TLSNone && !loopback(c.Addr) {
		errs = append(errs, errors.New("relay: AUTH without TLS is only allowed to a loopback relay"))
	}
	return errors.Join(errs...)
}

func loopback(addr string) bool {
	h, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}

// Relay sends forward copies. It is safe for concurrent use.
type Relay struct{ cfg Config }

// New checks cfg and returns a Relay.
func New(cfg Config) (*Relay, error) {
	if cfg.TLS == "" {
		cfg.TLS = TLSStartTLS
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Helo == "" {
		cfg.Helo, _ = os.Hostname()
		if cfg.Helo == "" {
			cfg.Helo = "localhost"
		}
	}
	if cfg.TLSConfig == nil {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		cfg.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return &Relay{cfg: cfg}, nil
}

// Send delivers raw to the address to.
func (r *Relay) Send(ctx context.Context, to string, raw []byte) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return fmt.Errorf("relay: dial: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var c *smtp.Client
	switch r.cfg.TLS {
	case TLSImplicit:
		c = smtp.NewClient(tls.Client(conn, r.cfg.TLSConfig))
	case TLSStartTLS:
		if c, err = smtp.NewClientStartTLS(conn, r.cfg.TLSConfig); err != nil {
			conn.Close()
			return fmt.Errorf("relay: starttls: %w", err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	if err := c.Hello(r.cfg.Helo); err != nil {
		return fmt.Errorf("relay: ehlo: %w", err)
	}
	if r.cfg.User != "" {
		if err := c.Auth(sasl.NewPlainClient("", r.cfg.User, r.cfg.Password)); err != nil {
			return fmt.Errorf("relay: auth: %w", err)
		}
	}
	var opts *smtp.MailOptions
	if ok, _ := c.Extension("8BITMIME"); ok {
		opts = &smtp.MailOptions{Body: smtp.Body8BitMIME}
	}
	if err := c.Mail(r.cfg.From, opts); err != nil {
		return fmt.Errorf("relay: mail from: %w", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		return &DeliveryError{Stage: "rcpt to", Err: err}
	}
	w, err := c.Data()
	if err != nil {
		return &DeliveryError{Stage: "data", Err: err}
	}
	if _, err := w.Write(canonicalLines(raw)); err != nil {
		return &DeliveryError{Stage: "data", Err: err}
	}
	if err := w.Close(); err != nil {
		return &DeliveryError{Stage: "end of data", Err: err}
	}
	c.Quit()
	return nil
}

// DeliveryError is a failure of Send at RCPT TO or DATA: the stages
// where the relay answers for this address and this mail.
type DeliveryError struct {
	Stage string // "rcpt to", "data" or "end of data"
	Err   error
}

func (e *DeliveryError) Error() string { return "relay: " + e.Stage + ": " + e.Err.Error() }

func (e *DeliveryError) Unwrap() error { return e.Err }

// Permanent reports whether the relay refused with a 5xx answer: the
// address or the mail is refused, and retrying will not help. A 4xx
// answer or a broken connection is not permanent.
func (e *DeliveryError) Permanent() bool {
	var se *smtp.SMTPError
	return errors.As(e.Err, &se) && se.Code/100 == 5
}

// Permanent reports whether err is a permanent refusal of this address
// or this mail: a 5xx answer to RCPT TO or DATA (DeliveryError). A 5xx
// answer earlier (EHLO, AUTH, MAIL FROM) is not: it is about smsd's own
// settings (credentials, --forward-from), the same for every copy, and
// the copies should go once the operator has fixed them.
func Permanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent()
}
