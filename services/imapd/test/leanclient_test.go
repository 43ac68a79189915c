package test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lean client is the benchmark's second client: Go, in the test's
// process, reading the FETCH response as bytes (lines and literals, no
// parsing of the items). Python's imaplib spends about as much CPU on a
// mail as either server (docs/benchmarks.md, twenty-fifth session), so
// with it the slower of client and server sets the rate; the lean client
// spends a few µs a mail, so the server does.

// leanConn is one IMAP session of the lean client.
type leanConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    io.Writer
	fw   *flate.Writer // after COMPRESS=DEFLATE, else nil
	bw   *bufio.Writer // fw's output, so that a flush is one write(2)
	wire *countReader  // bytes read from the socket
	tag  int
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func dialLean(addr string) (*leanConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	cr := &countReader{r: conn}
	c := &leanConn{conn: conn, r: bufio.NewReaderSize(cr, 64<<10), w: conn, wire: cr}
	if _, err := c.line(); err != nil { // the greeting
		conn.Close()
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	return c, nil
}

// line reads one line (up to and including CRLF) of any length.
func (c *leanConn) line() ([]byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	l, err := c.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		long := append([]byte(nil), l...)
		for err == bufio.ErrBufferFull {
			l, err = c.r.ReadSlice('\n')
			long = append(long, l...)
		}
		l = long
	}
	return l, err
}

// literal returns the size of the literal a response line announces at
// its end ("{N}\r\n"), or -1.
func literal(l []byte) int {
	l = bytes.TrimSuffix(l, []byte("\r\n"))
	if len(l) < 3 || l[len(l)-1] != '}' {
		return -1
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(string(l[i+1 : len(l)-1]))
	if err != nil {
		return -1
	}
	return n
}

// cmd sends a command and reads its response to the tagged line. It
// returns the number of untagged FETCH responses and the literal bytes
// read, and fails unless the tagged status is OK.
func (c *leanConn) cmd(command string) (fetches int, literals int64, err error) {
	c.tag++
	tag := "l" + strconv.Itoa(c.tag)
	if _, err := fmt.Fprintf(c.w, "%s %s\r\n", tag, command); err != nil {
		return 0, 0, fmt.Errorf("send %s: %w", command, err)
	}
	if c.fw != nil {
		if err := c.fw.Flush(); err != nil {
			return 0, 0, fmt.Errorf("send %s: %w", command, err)
		}
		if err := c.bw.Flush(); err != nil {
			return 0, 0, fmt.Errorf("send %s: %w", command, err)
		}
	}
	start := true // the next line starts a response (not a literal's tail)
	for {
		l, err := c.line()
		if err != nil {
			return 0, 0, fmt.Errorf("read reply to %s: %w", command, err)
		}
		if start {
			if bytes.HasPrefix(l, []byte(tag+" ")) {
				if !bytes.HasPrefix(l[len(tag)+1:], []byte("OK")) {
					return 0, 0, fmt.Errorf("%s: %s", command, bytes.TrimSpace(l))
				}
				return fetches, literals, nil
			}
			if i := bytes.Index(l, []byte(" FETCH (")); i > 0 && bytes.HasPrefix(l, []byte("* ")) {
				fetches++
			}
		}
		n := literal(l)
		if n < 0 {
			start = true
			continue
		}
		if _, err := c.r.Discard(n); err != nil {
			return 0, 0, fmt.Errorf("read literal of %s: %w", command, err)
		}
		literals += int64(n)
		start = false
	}
}

// compress turns on COMPRESS=DEFLATE (RFC 4978) in both directions.
func (c *leanConn) compress() error {
	if _, _, err := c.cmd("COMPRESS DEFLATE"); err != nil {
		return err
	}
	// Whatever the server sent after its OK is already deflated; the
	// buffered reader holds none of it, as the server waits for our next
	// command.
	if c.r.Buffered() != 0 {
		return fmt.Errorf("compress: %d bytes buffered after the OK", c.r.Buffered())
	}
	c.r = bufio.NewReaderSize(flate.NewReader(c.wire), 64<<10)
	// compress/flate writes a flush in several pieces; sent as they come,
	// the server may read LOGOUT, answer and close before the last piece
	// arrives, and the close of a socket with unread bytes resets it.
	c.bw = bufio.NewWriter(c.conn)
	fw, err := flate.NewWriter(c.bw, flate.BestSpeed)
	if err != nil {
		return err
	}
	c.fw, c.w = fw, fw
	return nil
}

// benchRunLean is benchRunMode with the lean client: log in, EXAMINE
// INBOX, let the servers settle, time one UID FETCH 1:* of items.
func benchRunLean(t *testing.T, host, port, user, pw, items, mode string, srv server) benchResult {
	t.Helper()
	c, err := dialLean(net.JoinHostPort(host, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	if _, _, err := c.cmd(fmt.Sprintf("LOGIN %s %s", quote(user), quote(pw))); err != nil {
		t.Fatal(err)
	}
	if mode == "compress" {
		if err := c.compress(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.cmd("EXAMINE INBOX"); err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	cpu := func() map[string]time.Duration {
		m := srv.cpu()
		// The test's process: the lean client and the test's log
		// readers, which are idle during the FETCH.
		m["client"] = cpuTime(t, self)
		return m
	}
	var r benchResult
	r.settle = settle(t, cpu)
	before := cpu()
	wire0 := c.wire.n
	t0 := time.Now()
	n, size, err := c.cmd("UID FETCH 1:* " + items)
	r.secs = time.Since(t0).Seconds()
	if err != nil {
		t.Fatal(err)
	}
	r.mails, r.bytes = n, size
	if mode == "compress" {
		r.wire = c.wire.n - wire0
	}
	r.cpu = cpu()
	for name := range r.cpu {
		r.cpu[name] -= before[name]
	}
	r.rss = srv.rss()
	// The measurement is taken; the server may close before its OK is
	// read.
	c.cmd("LOGOUT")
	return r
}

// quote makes s an IMAP quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
