package digest

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"time"
)

// SMTPSender hands mail to an SMTP server (the local smtpd) in plain SMTP:
// it is meant for loopback, where STARTTLS would add nothing.
type SMTPSender struct {
	Addr string // HOST:PORT
	Helo string // our name in EHLO
	// Timeout bounds one delivery (default 2 minutes: smtpd answers after
	// spamd's verdict and the backup).
	Timeout time.Duration
}

// Send delivers msg from the envelope sender from ("" for the null
// sender) to one recipient.
func (s SMTPSender) Send(ctx context.Context, from, to string, msg []byte) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", s.Addr, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	if err := conn.SetDeadline(dl); err != nil {
		return err
	}
	// net/smtp has no context: closing the conn ends a blocked call.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", s.Addr, err)
	}
	defer c.Close()
	if err := c.Hello(s.Helo); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("RCPT TO %s: %w", to, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	c.Quit() // the mail is accepted; a failed QUIT changes nothing
	return nil
}
