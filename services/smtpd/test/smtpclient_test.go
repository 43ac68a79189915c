package test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"testing"
	"time"
)

// reply is one SMTP reply; Text joins the lines of a multi-line reply
// with "\n".
type reply struct {
	Code int
	Text string
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// smtpConn is a raw SMTP client with a deadline on every exchange: it
// writes exactly the bytes a test gives it, so tests can pipeline, send
// broken input, or stop in the middle.
type smtpConn struct {
	nc      net.Conn
	tr      *textproto.Reader
	bw      *bufio.Writer
	timeout time.Duration
}

// dialSMTP connects and reads the greeting.
func dialSMTP(addr string, timeout time.Duration) (*smtpConn, reply, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, reply{}, err
	}
	c := &smtpConn{nc: nc, tr: textproto.NewReader(bufio.NewReader(nc)), bw: bufio.NewWriter(nc), timeout: timeout}
	r, err := c.read()
	if err != nil {
		nc.Close()
		return nil, r, fmt.Errorf("greeting: %w", err)
	}
	return c, r, nil
}

// greeted dials the SMTP server at addr and says EHLO; the connection is
// closed when the test ends.
func greeted(t testing.TB, addr string) *smtpConn {
	t.Helper()
	c, r, err := dialSMTP(addr, 30*time.Second)
	if err != nil || r.Code != 220 {
		t.Fatalf("connect: %v %v", r, err)
	}
	t.Cleanup(c.close)
	if r, err := c.cmd("EHLO client.test"); err != nil || r.Code != 250 {
		t.Fatalf("EHLO: %v %v", r, err)
	}
	return c
}

func (c *smtpConn) close() { c.nc.Close() }

// read reads one reply.
func (c *smtpConn) read() (reply, error) {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	code, msg, err := c.tr.ReadResponse(0)
	if err != nil {
		if _, ok := err.(*textproto.Error); !ok {
			return reply{}, err
		}
	}
	return reply{code, msg}, nil
}

// write sends raw bytes and flushes.
func (c *smtpConn) write(b []byte) error {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.bw.Write(b); err != nil {
		return err
	}
	return c.bw.Flush()
}

// cmd sends one command line (CRLF added) and reads its reply.
func (c *smtpConn) cmd(format string, args ...any) (reply, error) {
	if err := c.write([]byte(fmt.Sprintf(format, args...) + "\r\n")); err != nil {
		return reply{}, err
	}
	return c.read()
}

// data sends DATA, then msg dot-stuffed and the end-of-data line, and
// returns the reply to the end of data (or the reply to DATA if it was
// not 354).
func (c *smtpConn) data(msg []byte) (reply, error) {
	r, err := c.cmd("DATA")
	if err != nil || r.Code != 354 {
		return r, err
	}
	if err := c.write(dotStuff(msg)); err != nil {
		return reply{}, err
	}
	return c.read()
}

// dotStuff returns msg as the DATA payload: a '.' doubled at the start of
// each line (RFC 5321 §4.5.2), a CRLF added if msg does not end in one,
// then ".\r\n".
func dotStuff(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/64+8)
	start := true
	for i := 0; i < len(msg); i++ {
		if start && msg[i] == '.' {
			out = append(out, '.')
		}
		out = append(out, msg[i])
		start = msg[i] == '\n' && i > 0 && msg[i-1] == '\r'
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return append(out, ".\r\n"...)
}

// transaction runs EHLO (unless done), MAIL, RCPT for each recipient and,
// if any was accepted, DATA. It returns the RCPT replies and the final
// reply (to DATA, or to the failed command).
func (c *smtpConn) transaction(from string, rcpts []string, msg []byte) ([]reply, reply, error) {
	r, err := c.cmd("MAIL FROM:<%s>", from)
	if err != nil || r.Code != 250 {
		return nil, r, err
	}
	var rr []reply
	ok := 0
	for _, to := range rcpts {
		r, err := c.cmd("RCPT TO:<%s>", to)
		if err != nil {
			return rr, r, err
		}
		rr = append(rr, r)
		if r.Code == 250 {
			ok++
		}
	}
	if ok == 0 {
		_, err := c.cmd("RSET")
		return rr, rr[len(rr)-1], err
	}
	r, err = c.data(msg)
	return rr, r, err
}

// sendMail delivers one mail in a fresh session and returns the reply to
// the end of data (or to the first command that failed).
func sendMail(addr, from string, rcpts []string, msg []byte, timeout time.Duration) (reply, error) {
	c, r, err := dialSMTP(addr, timeout)
	if err != nil {
		return r, err
	}
	defer c.close()
	if r.Code != 220 {
		return r, nil
	}
	if r, err := c.cmd("EHLO client.test"); err != nil || r.Code != 250 {
		return r, err
	}
	rr, r, err := c.transaction(from, rcpts, msg)
	if err != nil {
		return r, err
	}
	for _, x := range rr {
		if x.Code != 250 {
			return x, nil
		}
	}
	c.cmd("QUIT")
	return r, nil
}
