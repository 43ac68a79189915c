package test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// popConn is a raw Go POP3 client that returns message data exactly as
// sent (dot-unstuffed, CRLFs kept).
type popConn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dialPOP(addr, user, pass string) (*popConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &popConn{nc: nc, r: bufio.NewReaderSize(nc, 1<<16), w: bufio.NewWriter(nc)}
	nc.SetDeadline(time.Now().Add(10 * time.Minute))
	if l, err := c.line(); err != nil || !strings.HasPrefix(l, "+OK") {
		nc.Close()
		return nil, fmt.Errorf("greeting %q: %v", l, err)
	}
	for _, cmd := range []string{"USER " + user, "PASS " + pass} {
		if _, err := c.cmd(cmd); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *popConn) line() (string, error) {
	l, err := c.r.ReadString('\n')
	return strings.TrimSuffix(l, "\r\n"), err
}

// cmd sends one command and returns its +OK line; -ERR is an error.
func (c *popConn) cmd(s string) (string, error) {
	c.w.WriteString(s + "\r\n")
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	l, err := c.line()
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(l, "+OK") {
		return "", fmt.Errorf("%s: %s", strings.Fields(s)[0], l)
	}
	return l, nil
}

func (c *popConn) data() ([]byte, error) {
	var out bytes.Buffer
	for {
		l, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			out.Write(l)
			continue
		}
		if err != nil {
			return nil, err
		}
		if string(l) == ".\r\n" {
			return out.Bytes(), nil
		}
		if len(l) > 0 && l[0] == '.' && (out.Len() == 0 || out.Bytes()[out.Len()-1] == '\n') {
			l = l[1:]
		}
		out.Write(l)
	}
}

// uidl returns the message numbers by UIDL.
func (c *popConn) uidl() (map[string]int, []string, error) {
	if _, err := c.cmd("UIDL"); err != nil {
		return nil, nil, err
	}
	d, err := c.data()
	if err != nil {
		return nil, nil, err
	}
	m := map[string]int{}
	var order []string
	for _, l := range strings.Split(strings.TrimSuffix(string(d), "\r\n"), "\r\n") {
		var n int
		var u string
		if l == "" {
			continue
		}
		if _, err := fmt.Sscanf(l, "%d %s", &n, &u); err != nil {
			return nil, nil, fmt.Errorf("UIDL line %q: %v", l, err)
		}
		m[u] = n
		order = append(order, u)
	}
	return m, order, nil
}

func (c *popConn) retr(n int) ([]byte, error) {
	if _, err := c.cmd(fmt.Sprintf("RETR %d", n)); err != nil {
		return nil, err
	}
	return c.data()
}

func (c *popConn) quit() error {
	_, err := c.cmd("QUIT")
	c.nc.Close()
	return err
}

func mustPOP(t testing.TB, addr, user, pass string) *popConn {
	t.Helper()
	c, err := dialPOP(addr, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nc.Close() })
	return c
}

func fmtSscan(l string, n, sz *int) (int, error) { return fmt.Sscanf(l, "%d %d", n, sz) }
