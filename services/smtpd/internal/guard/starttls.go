package guard

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// rsetLine is fed to go-smtp after a STARTTLS handshake so that it forgets
// any pre-TLS transaction (RFC 3207 §4.2: the server MUST discard prior
// knowledge). Its reply is swallowed.
const rsetLine = "RSET\r\n"

// startTLS runs STARTTLS on behalf of go-smtp (whose TLSConfig stays nil).
// REQUIRES: rmu held.
func (c *Conn) startTLS(arg []byte) error {
	h := c.cfg.Hostname
	if len(arg) > 0 {
		return c.reply(fmt.Sprintf("501 5.5.4 %s Syntax: STARTTLS\r\n", h))
	}
	if err := c.reply("220 2.0.0 Ready to start TLS\r\n"); err != nil {
		return err
	}
	// CVE-2011-0411: bytes pipelined after STARTTLS were sent in clear
	// text and must not be executed inside the TLS session.
	if n := c.inW - c.inR; n > 0 {
		c.logger().Warn("discarding bytes pipelined after STARTTLS", "bytes", n)
		c.inR, c.inW = 0, 0
	}
	tc := tls.Server(c.raw, c.cfg.TLS)
	dl := time.Now().Add(c.cfg.TLSHandshakeTimeout)
	if end := c.start.Add(c.cfg.SessionTimeout); end.Before(dl) {
		dl = end
	}
	_ = c.raw.SetDeadline(dl)
	if err := tc.Handshake(); err != nil {
		c.logger().Warn("tls handshake", "err", err)
		_ = c.Close()
		return fmt.Errorf("guard: tls handshake: %w", errors.Join(err, ErrClosed))
	}
	st := tc.ConnectionState()
	c.mu.Lock()
	c.mu.conn = tc
	c.mu.tls = &st
	c.mu.swallow = true
	c.mu.expectEHLO = false
	c.mu.needHelo = true
	c.mu.Unlock()
	c.record(DirTLS, nil)
	c.logger().Debug("tls started", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	c.pend = append(c.pendBuf[:0], rsetLine...)
	return nil
}
