// Package linger ends TCP connections with FIN instead of a reset.
//
// Closing a socket whose input the program has not read (commands a
// client pipelined after QUIT or LOGOUT, an early talker's commands, the
// tail of a deflate flush that came in two pieces) makes the kernel send
// a reset, which destroys what the client has not been sent yet: on a
// slow link the last reply. smtpd, pop3d and imapd therefore shut their
// sending side first and read and drop what still comes, bounded in time
// and bytes, before they close.
package linger

import (
	"io"
	"net"
	"time"
)

// How long and how much a closing connection reads before it closes.
const (
	Time  = time.Second
	Bytes = 64 << 10
)

// Close sends FIN on a TCP connection and closes it in the background
// once the client has closed its side, Time has passed or Bytes more
// were read. Any other connection is closed at once. A read of c that
// returns meanwhile gets the client's bytes: callers that must not act on
// them check that they closed c.
func Close(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok || tc.CloseWrite() != nil {
		return c.Close()
	}
	go func() {
		Drain(tc)
		tc.Close()
	}()
	return nil
}

// Drain reads and drops what the client sends until it closes its side,
// Time has passed or Bytes were read. The caller has sent FIN
// (CloseWrite) and closes tc afterwards.
func Drain(tc *net.TCPConn) {
	tc.SetReadDeadline(time.Now().Add(Time))
	io.Copy(io.Discard, io.LimitReader(tc, Bytes))
}
