package server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConcurrentSessions is catalog item 58 and pins the policy: there is
// no maildrop lock (no [IN-USE]); two sessions of one account both log in,
// each sees the maildrop as it was at its login (mail delivered meanwhile
// is not visible to either), a deletion committed by one does not stop the
// other from reading that mail, and the other's DELE + QUIT of the same
// mail is harmless.
func TestConcurrentSessions(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("olga", "correct horse", "olga@x.example")
	k1 := e.deliver("olga@x.example", mail("one", "1\r\n"))
	k2 := e.deliver("olga@x.example", mail("two", "2\r\n"))
	c1, c2 := dialPOP(t, e.addr), dialPOP(t, e.addr)
	c1.login("olga", "correct horse")
	c2.ok("USER olga")
	if r := c2.cmd("PASS correct horse"); r != "+OK maildrop ready, 2 messages" {
		t.Fatalf("second session of the same account: %q, want it let in (no maildrop lock)", r)
	}
	k3 := e.deliver("olga@x.example", mail("three", "3\r\n"))
	for i, c := range []*popClient{c1, c2} {
		if r := c.cmd("STAT"); !strings.HasPrefix(r, "+OK 2 ") {
			t.Errorf("session %d after a delivery: STAT %q, want the 2 mails of its login", i+1, r)
		}
	}
	want := []string{"1 " + UID(k1), "2 " + UID(k2)}
	c1.ok("DELE 1")
	if r := c1.cmd("QUIT"); r != "+OK bye, 1 messages deleted" {
		t.Fatalf("QUIT of session 1: %q", r)
	}
	if !e.deleted(k1) {
		t.Fatal("session 1's DELE + QUIT did not delete the mail")
	}
	if got := lines(c2.multi("UIDL")); !slices.Equal(got, want) {
		t.Errorf("session 2's UIDL after session 1 deleted mail 1: %q, want its login's %q", got, want)
	}
	if got := string(c2.multi("RETR 1")); got != mail("one", "1\r\n") {
		t.Errorf("session 2's RETR of the mail session 1 deleted: %q", got)
	}
	c2.ok("DELE 1")
	c2.ok("DELE 2")
	if r := c2.cmd("QUIT"); r != "+OK bye, 2 messages deleted" {
		t.Fatalf("QUIT of session 2: %q", r)
	}
	c3 := dialPOP(t, e.addr)
	c3.login("olga", "correct horse")
	if got, want := lines(c3.multi("UIDL")), []string{"1 " + UID(k3)}; !slices.Equal(got, want) {
		t.Errorf("a new session: UIDL %q, want %q", got, want)
	}
	c3.ok("QUIT")
}

// TestCommandLength is catalog item 59's length cases: RFC 2449 §4 bounds
// a client's command at 255 octets with CRLF; pop3d takes up to 512 octets
// before the CRLF (slack for clients that exceed it), so 255 and 256 work,
// and the first line over 512 gets -ERR and the connection ends.
func TestCommandLength(t *testing.T) {
	e := startEnv(t, Config{})
	// cmd is verb, a space and filler, total octets with CRLF.
	cmd := func(verb string, total int) string { return verb + " " + strings.Repeat("u", total-len(verb)-3) }
	c := dialPOP(t, e.addr)
	for _, n := range []int{255, 256} {
		if r := c.cmd(cmd("USER", n)); r != "+OK send PASS" {
			t.Errorf("a %d-octet USER command: %q", n, r)
		}
	}
	// USER names stop at 255 octets; PASS takes the rest of the line.
	if r := c.cmd(cmd("USER", 264)); r != "-ERR syntax error: want USER name" {
		t.Errorf("USER with a 257-octet name: %q", r)
	}
	c.ok("USER x")
	if r := c.cmd(cmd("PASS", 512+2)); r != "-ERR [AUTH] invalid login or password" {
		t.Errorf("a %d-octet PASS command: %q", 512+2, r)
	}
	c.send(cmd("PASS", 512+3))
	if r := c.line(); r != "-ERR line too long" {
		t.Errorf("a %d-octet command: %q", 512+3, r)
	}
	if r := c.line(); !strings.HasPrefix(r, "EOF") {
		t.Errorf("connection open after an over-long command: %q", r)
	}
}

// TestSTLSForgetsUSER: RFC 2595 §4: what the client said before STLS is
// forgotten, so a USER before STLS (allowed on loopback) needs repeating.
func TestSTLSForgetsUSER(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("pia", "correct horse", "pia@x.example")
	c := dialPOP(t, e.addr)
	c.ok("USER pia")
	c.ok("STLS")
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newPOP(t, tc, false)
	if r := c.cmd("PASS correct horse"); r != "-ERR send USER first" {
		t.Errorf("PASS after STLS with USER before it: %q", r)
	}
	if r := c.cmd("STLS"); r != "-ERR TLS already active" {
		t.Errorf("STLS twice: %q", r)
	}
	c.login("pia", "correct horse")
	c.ok("QUIT")
}

// TestAuthPlainResponses is catalog item 59's AUTH PLAIN cases not in
// TestAuthPlain: a bad initial response, "*" as one (only a continuation
// cancels), an empty continuation line, "=" as a continuation, and a
// continuation longer than 255 octets (RFC 5034 §4: the command limit does
// not apply to it). None of the failures ends the session.
func TestAuthPlainResponses(t *testing.T) {
	e := startEnv(t, Config{MaxAuthFailures: -1})
	long := strings.Repeat("p", 300)
	e.user("quinn", long, "quinn@x.example")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c := dialPOP(t, e.addr)
	for _, tt := range []struct{ cmd, want string }{
		{"AUTH PLAIN not!base64", "-ERR syntax error: initial response is not base64"},
		{"AUTH PLAIN *", "-ERR syntax error: initial response is not base64"},
		{"AUTH PLAIN " + b64("quinn\x00quinn"), "-ERR malformed SASL response"},
	} {
		if r := c.cmd(tt.cmd); r != tt.want {
			t.Errorf("%q: %q, want %q", tt.cmd, r, tt.want)
		}
	}
	for _, resp := range []string{"", "=", "!!!!"} {
		if r := c.cmd("AUTH PLAIN"); r != "+ " {
			t.Fatalf("AUTH PLAIN: %q", r)
		}
		if r := c.cmd(resp); r != "-ERR malformed SASL response" {
			t.Errorf("continuation %q: %q", resp, r)
		}
	}
	resp := b64("\x00quinn\x00" + long)
	if len(resp) <= 255 {
		t.Fatalf("test response is %d octets, want over 255", len(resp))
	}
	c.cmd("AUTH PLAIN")
	if r := c.cmd(resp); !strings.HasPrefix(r, "+OK") {
		t.Errorf("a %d-octet continuation: %q", len(resp), r)
	}
	if r := c.cmd("STAT"); r != "+OK 0 0" {
		t.Errorf("STAT after AUTH PLAIN: %q", r)
	}
	c.ok("QUIT")
}

// TestAuthContinuationEnds: a session that ends while AUTH waits for its
// continuation line gets the reply a session waiting for a command gets.
// The read's failure was reported as a broken connection (no reply,
// counted as errors{kind="io"}): an idle client got no autologout line and
// a shutdown no "-ERR [SYS/TEMP] server shutting down".
func TestAuthContinuationEnds(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		e := startEnv(t, Config{IdleTimeout: 200 * time.Millisecond})
		c := dialPOP(t, e.addr)
		if r := c.cmd("AUTH PLAIN"); r != "+ " {
			t.Fatalf("AUTH PLAIN: %q", r)
		}
		if r := c.line(); r != "-ERR autologout: idle for too long" {
			t.Errorf("no continuation line within IdleTimeout: %q", r)
		}
		if r := c.line(); !strings.HasPrefix(r, "EOF") {
			t.Errorf("connection open after the autologout: %q", r)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		e := startEnv(t, Config{})
		c := dialPOP(t, e.addr)
		if r := c.cmd("AUTH PLAIN"); r != "+ " {
			t.Fatalf("AUTH PLAIN: %q", r)
		}
		done := make(chan error, 1)
		go func() { done <- e.srv.Shutdown(context.Background()) }()
		if r := c.line(); r != "-ERR [SYS/TEMP] server shutting down" {
			t.Errorf("AUTH waiting for its continuation at shutdown: %q", r)
		}
		c.nc.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestRepliesSentBeforeEOF: a client that pipelines commands and closes
// its side with a last line unfinished gets the replies to the complete
// ones. The replies waited in the write buffer (pipelined commands are
// answered together) and were dropped when the read hit EOF.
func TestRepliesSentBeforeEOF(t *testing.T) {
	e := startEnv(t, Config{})
	c := dialPOP(t, e.addr)
	if _, err := c.nc.Write([]byte("NOOP\r\nCAPA\r\nQUI")); err != nil {
		t.Fatal(err)
	}
	c.nc.(*net.TCPConn).CloseWrite()
	if r := c.line(); r != "-ERR command not valid in this state" {
		t.Errorf("NOOP before login: %q", r)
	}
	if r := c.line(); r != "+OK capability list follows" {
		t.Fatalf("CAPA: %q", r)
	}
	if caps := lines(c.data()); !slices.Contains(caps, "UIDL") {
		t.Errorf("CAPA: %q", caps)
	}
	if r := c.line(); !strings.HasPrefix(r, "EOF") {
		t.Errorf("after the unfinished line: %q, want EOF (it is not a command)", r)
	}
}
