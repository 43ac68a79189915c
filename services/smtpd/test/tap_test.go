package test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// tap is a TCP relay between a real SMTP client (Postfix, smtp-source)
// and smtpd that keeps every byte of both directions of every
// connection: the test's own record of what the client put on the wire,
// independent of smtpd and dbd. It cannot see inside TLS, so clients
// behind it must not use STARTTLS.
type tap struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns []*tapConn
	open  map[net.Conn]bool // both ends of every relayed connection still open
}

// tapConn is one relayed connection: toServer holds what the client
// sent, toClient what smtpd answered.
type tapConn struct {
	mu       sync.Mutex
	toServer bytes.Buffer
	toClient bytes.Buffer
}

// tapMail is one message a client sent through the tap: the DATA as it
// went over the wire, dot-unstuffed, and the reply to its end of data.
type tapMail struct {
	Data  []byte
	Reply reply
}

// startTap listens on a free loopback port and relays every connection
// to target until the test ends.
func startTap(t testing.TB, target string) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{addr: ln.Addr().String(), ln: ln, open: map[net.Conn]bool{}}
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.wg.Add(1)
			go func() {
				defer tp.wg.Done()
				tp.relay(c, target)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		tp.mu.Lock()
		for c := range tp.open {
			c.Close()
		}
		tp.mu.Unlock()
		tp.wg.Wait()
	})
	return tp
}

// relay copies both directions between client c and a new connection to
// target, recording them, until either side closes.
func (tp *tap) relay(c net.Conn, target string) {
	defer c.Close()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	tc := &tapConn{}
	tp.mu.Lock()
	tp.conns = append(tp.conns, tc)
	tp.open[c], tp.open[s] = true, true
	tp.mu.Unlock()
	defer func() {
		tp.mu.Lock()
		delete(tp.open, c)
		delete(tp.open, s)
		tp.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, rec *bytes.Buffer) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				tc.mu.Lock()
				rec.Write(buf[:n])
				tc.mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Closing both ends stops the other direction too.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(s, c, &tc.toServer)
	pipe(c, s, &tc.toClient)
	<-done
}

// mails returns every message sent through the tap so far, in the order
// of the connections and within each in the order sent, with the reply
// to its end of data. Only closed transactions are complete: call it
// after the client is done.
func (tp *tap) mails() ([]tapMail, error) {
	tp.mu.Lock()
	conns := append([]*tapConn(nil), tp.conns...)
	tp.mu.Unlock()
	var out []tapMail
	for i, c := range conns {
		c.mu.Lock()
		sent, got := bytes.Clone(c.toServer.Bytes()), bytes.Clone(c.toClient.Bytes())
		c.mu.Unlock()
		ms, err := splitSession(sent, got)
		if err != nil {
			return out, fmt.Errorf("connection %d: %w", i, err)
		}
		out = append(out, ms...)
	}
	return out, nil
}

// splitSession walks one SMTP session from the two recorded streams:
// every command line gets one reply, in order (also when pipelined), and
// after a 354 the client's next bytes up to CRLF.CRLF are the message,
// whose end gets one more reply. It returns the messages with their
// replies. A session cut off in the middle ends the walk without error.
func splitSession(sent, got []byte) ([]tapMail, error) {
	replies := textproto.NewReader(bufio.NewReader(bytes.NewReader(got)))
	next := func() (reply, bool) {
		code, msg, err := replies.ReadResponse(0)
		if err != nil {
			if _, ok := err.(*textproto.Error); !ok {
				return reply{}, false
			}
		}
		return reply{code, msg}, true
	}
	if _, ok := next(); !ok { // the greeting
		return nil, nil
	}
	var out []tapMail
	rest := sent
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return out, nil
		}
		line := strings.TrimRight(string(rest[:nl]), "\r")
		rest = rest[nl+1:]
		r, ok := next()
		if !ok {
			return out, nil
		}
		if !strings.EqualFold(line, "DATA") || r.Code != 354 {
			continue
		}
		var raw []byte
		switch end := bytes.Index(rest, []byte("\r\n.\r\n")); {
		case bytes.HasPrefix(rest, []byte(".\r\n")):
			rest = rest[3:] // an empty message
		case end < 0:
			return out, nil
		default:
			raw, rest = rest[:end+2], rest[end+5:]
		}
		r, ok = next()
		if !ok {
			return out, nil
		}
		out = append(out, tapMail{Data: dotUnstuff(raw), Reply: r})
	}
	return out, nil
}

// dotUnstuff removes the dot an SMTP client doubles at the start of each
// CRLF-ended line (RFC 5321 §4.5.2).
func dotUnstuff(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	start := true
	for i := 0; i < len(raw); i++ {
		if start && raw[i] == '.' {
			start = false
			continue
		}
		out = append(out, raw[i])
		start = raw[i] == '\n' && i > 0 && raw[i-1] == '\r'
	}
	return out
}
