package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCommands drives every TRANSACTION command over real TCP.
func TestCommands(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("alice", "correct horse", "alice@x.example")
	m1 := mail("one", "line 1\r\n.leading dot\r\n..two dots\r\nlast\r\n")
	m2 := mail("two", "short\r\n")
	m3 := mail("three", "body without final line end")
	k1, k2, k3 := e.deliver("alice@x.example", m1), e.deliver("alice@x.example", m2), e.deliver("alice@x.example", m3)

	c := dialPOP(t, e.addr)
	caps := lines(c.multi("CAPA"))
	for _, want := range []string{"TOP", "UIDL", "USER", "SASL PLAIN", "STLS", "RESP-CODES", "PIPELINING"} {
		if !slices.Contains(caps, want) {
			t.Errorf("CAPA before login lacks %q: %q", want, caps)
		}
	}
	if r := c.cmd("STAT"); r != "-ERR command not valid in this state" {
		t.Errorf("STAT before login: %q", r)
	}
	c.login("alice", "correct horse")
	caps = lines(c.multi("CAPA"))
	if slices.Contains(caps, "USER") || slices.Contains(caps, "STLS") || !slices.Contains(caps, "UIDL") {
		t.Errorf("CAPA in TRANSACTION: %q", caps)
	}
	if r := c.cmd("USER alice"); r != "-ERR command not valid in this state" {
		t.Errorf("USER after login: %q", r)
	}
	size3 := len(m3) + 2 // the CRLF RETR adds after the last line counts too
	if r, want := c.cmd("STAT"), fmt.Sprintf("+OK 3 %d", len(m1)+len(m2)+size3); r != want {
		t.Errorf("STAT = %q, want %q", r, want)
	}
	wantList := []string{fmt.Sprintf("1 %d", len(m1)), fmt.Sprintf("2 %d", len(m2)), fmt.Sprintf("3 %d", size3)}
	if got := lines(c.multi("LIST")); !slices.Equal(got, wantList) {
		t.Errorf("LIST = %q, want %q", got, wantList)
	}
	if r, want := c.cmd("LIST 2"), "+OK "+wantList[1]; r != want {
		t.Errorf("LIST 2 = %q, want %q", r, want)
	}
	wantUIDL := []string{"1 " + UID(k1), "2 " + UID(k2), "3 " + UID(k3)}
	if got := lines(c.multi("UIDL")); !slices.Equal(got, wantUIDL) {
		t.Errorf("UIDL = %q, want %q", got, wantUIDL)
	}
	if UID(k1) != k1.String()[:32] {
		t.Errorf("UID(%s) = %s, want the key's first 32 hex digits", k1, UID(k1))
	}
	if r, want := c.cmd("UIDL 3"), "+OK "+wantUIDL[2]; r != want {
		t.Errorf("UIDL 3 = %q, want %q", r, want)
	}
	if got := c.multi("RETR 1"); string(got) != m1 {
		t.Errorf("RETR 1 = %q, want %q", got, m1)
	}
	if got := c.multi("RETR 3"); string(got) != m3+"\r\n" {
		t.Errorf("RETR 3 = %q, want the mail and an added CRLF", got)
	}
	hdr, _, _ := strings.Cut(m1, "\r\n\r\n")
	if got, want := string(c.multi("TOP 1 0")), hdr+"\r\n\r\n"; got != want {
		t.Errorf("TOP 1 0 = %q, want %q", got, want)
	}
	if got, want := string(c.multi("TOP 1 2")), hdr+"\r\n\r\nline 1\r\n.leading dot\r\n"; got != want {
		t.Errorf("TOP 1 2 = %q, want %q", got, want)
	}
	for _, bad := range []string{"RETR 4", "RETR 0", "TOP 9 1", "LIST 4", "UIDL 99", "DELE 4"} {
		if r := c.cmd(bad); !strings.HasPrefix(r, "-ERR") {
			t.Errorf("%s = %q, want -ERR", bad, r)
		}
	}
	c.ok("NOOP")
	c.ok("DELE 2")
	if r := c.cmd("DELE 2"); r != "-ERR message is deleted" {
		t.Errorf("DELE twice: %q", r)
	}
	if r := c.cmd("RETR 2"); r != "-ERR message is deleted" {
		t.Errorf("RETR of a deleted message: %q", r)
	}
	if got := lines(c.multi("LIST")); !slices.Equal(got, []string{wantList[0], wantList[2]}) {
		t.Errorf("LIST after DELE 2 = %q", got)
	}
	if r, want := c.cmd("STAT"), fmt.Sprintf("+OK 2 %d", len(m1)+size3); r != want {
		t.Errorf("STAT after DELE = %q, want %q", r, want)
	}
	c.ok("RSET")
	if got := lines(c.multi("UIDL")); !slices.Equal(got, wantUIDL) {
		t.Errorf("UIDL after RSET = %q, want %q", got, wantUIDL)
	}
	c.ok("DELE 1")
	c.ok("QUIT")
	if !e.deleted(k1) || e.deleted(k2) || e.deleted(k3) {
		t.Errorf("after DELE 1, RSET earlier, QUIT: deleted = %v %v %v, want true false false", e.deleted(k1), e.deleted(k2), e.deleted(k3))
	}
	c2 := dialPOP(t, e.addr)
	c2.login("alice", "correct horse")
	if got := lines(c2.multi("UIDL")); !slices.Equal(got, []string{"1 " + UID(k2), "2 " + UID(k3)}) {
		t.Errorf("UIDL in a new session after QUIT = %q", got)
	}
	c2.ok("QUIT")
}

// TestDeleWithoutQuit: a session that ends without QUIT changes nothing.
func TestDeleWithoutQuit(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("bob", "correct horse", "bob@x.example")
	k := e.deliver("bob@x.example", mail("hi", "x\r\n"))
	c := dialPOP(t, e.addr)
	c.login("bob", "correct horse")
	c.ok("DELE 1")
	c.nc.Close()
	c2 := dialPOP(t, e.addr)
	c2.login("bob", "correct horse")
	if r := c2.cmd("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
		t.Errorf("STAT after DELE without QUIT = %q, want one message", r)
	}
	c2.ok("QUIT") // nothing marked: nothing deleted
	if e.deleted(k) {
		t.Error("DELE without QUIT deleted the mail")
	}
}

// TestAuthFailures: unknown logins and wrong passwords get one reply; an
// IP over the failure limit is refused.
func TestAuthFailures(t *testing.T) {
	e := startEnv(t, Config{MaxAuthFailures: 3})
	e.user("carol", "correct horse", "carol@x.example")
	c := dialPOP(t, e.addr)
	if r := c.cmd("PASS x"); r != "-ERR send USER first" {
		t.Errorf("PASS without USER: %q", r)
	}
	c.ok("USER carol")
	wrongPass := c.cmd("PASS wrong horse")
	c.ok("USER nobody")
	unknown := c.cmd("PASS correct horse")
	plain := base64.StdEncoding.EncodeToString([]byte("\x00carol\x00nope"))
	authFail := c.cmd("AUTH PLAIN " + plain)
	if wrongPass != "-ERR [AUTH] invalid login or password" || unknown != wrongPass || authFail != wrongPass {
		t.Errorf("wrong password %q, unknown login %q, AUTH PLAIN wrong %q: want one [AUTH] reply", wrongPass, unknown, authFail)
	}
	// Three failures from 127.0.0.1: the next login is refused unchecked,
	// even with the right password, and the connection ends.
	c.ok("USER carol")
	if r := c.cmd("PASS correct horse"); !strings.HasPrefix(r, "-ERR [AUTH] too many failed logins") {
		t.Errorf("login after 3 failures: %q", r)
	}
	if r := c.line(); !strings.HasPrefix(r, "EOF") {
		t.Errorf("connection still open after refusal: %q", r)
	}
}

// TestGarbage: unknown, malformed and over-long commands; too many bad
// commands end the connection.
func TestGarbage(t *testing.T) {
	e := startEnv(t, Config{MaxErrors: 7})
	c := dialPOP(t, e.addr)
	for _, tt := range []struct{ cmd, want string }{
		{"HELO x", "-ERR unknown command"},
		{"\x00\x01\xff", "-ERR unknown command"},
		{"RETR one", "-ERR syntax error: bad message number"},
		{"RETR 1", "-ERR command not valid in this state"},
		{"LIST 1 2", "-ERR syntax error: want at most one message number"},
		{"AUTH CRAM-MD5", "-ERR unsupported mechanism (only PLAIN)"},
		{"NOOP", "-ERR command not valid in this state"},
		{"", "-ERR unknown command"},
		{"QUIT", "-ERR too many errors"}, // not reached: the 7th error closes
	} {
		if tt.cmd == "QUIT" {
			if r := c.line(); !strings.HasPrefix(r, "EOF") {
				t.Errorf("connection open after 7 bad commands: %q", r)
			}
			break
		}
		want := tt.want
		if tt.cmd == "" {
			want = "-ERR too many errors"
		}
		if r := c.cmd(tt.cmd); r != want {
			t.Errorf("%q = %q, want %q", tt.cmd, r, want)
		}
	}

	// A line over the limit gets an answer and the connection ends: the
	// rest of the line could be anything.
	c = dialPOP(t, e.addr)
	c.send("USER " + strings.Repeat("a", 5000) + "\r\nQUIT")
	if r := c.line(); r != "-ERR line too long" {
		t.Errorf("over-long line: %q", r)
	}
	if r := c.line(); !strings.HasPrefix(r, "EOF") {
		t.Errorf("connection open after an over-long line: %q", r)
	}
	// A line just inside the limit is parsed.
	c = dialPOP(t, e.addr)
	if r := c.cmd("USER " + strings.Repeat("a", 250)); r != "+OK send PASS" {
		t.Errorf("USER with a 250-octet name: %q", r)
	}
	c.ok("QUIT")
}

// TestDisconnectMidRETR: a client that leaves during RETR breaks nothing:
// the server goes on, and the session's DELE marks are not applied.
func TestDisconnectMidRETR(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("dave", "correct horse", "dave@x.example")
	k1 := e.deliver("dave@x.example", mail("small", "x\r\n"))
	big := mail("big", strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n", 200000))
	e.deliver("dave@x.example", big)
	c := dialPOP(t, e.addr)
	c.login("dave", "correct horse")
	c.ok("DELE 1")
	c.ok("RETR 2")
	buf := make([]byte, 4096)
	if _, err := c.r.Read(buf); err != nil {
		t.Fatal(err)
	}
	c.nc.Close()
	c2 := dialPOP(t, e.addr)
	c2.login("dave", "correct horse")
	if got := c2.multi("RETR 2"); string(got) != big {
		t.Errorf("RETR 2 after a broken RETR: %d octets, want %d", len(got), len(big))
	}
	c2.ok("QUIT")
	if e.deleted(k1) {
		t.Error("a session that broke off mid-RETR applied its DELE")
	}
}

// TestPlaintextPolicy: a client that is not on loopback cannot log in
// without TLS; after STLS it can. Commands pipelined after STLS are
// discarded.
func TestPlaintextPolicy(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("erin", "correct horse", "erin@x.example")
	m := mail("tls", "secret\r\n")
	e.deliver("erin@x.example", m)
	c := dialPOP(t, e.remote)
	caps := lines(c.multi("CAPA"))
	if slices.Contains(caps, "USER") || slices.Contains(caps, "SASL PLAIN") || !slices.Contains(caps, "STLS") {
		t.Errorf("CAPA to a remote client without TLS: %q", caps)
	}
	for _, cmd := range []string{"USER erin", "PASS correct horse", "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00erin\x00correct horse"))} {
		if r := c.cmd(cmd); r != "-ERR [AUTH] plaintext login needs TLS: use STLS" {
			t.Errorf("%s without TLS from a remote client: %q", strings.Fields(cmd)[0], r)
		}
	}
	// STLS with a command pipelined behind it: the server must not run it.
	c.send("STLS\r\nUSER mallory")
	if r := c.line(); r != "+OK begin TLS negotiation" {
		t.Fatalf("STLS: %q", r)
	}
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after STLS: %v", err)
	}
	c = newPOP(t, tc, false)
	if r := c.cmd("PASS correct horse"); r != "-ERR send USER first" {
		t.Errorf("PASS after STLS with USER pipelined before the handshake: %q", r)
	}
	caps = lines(c.multi("CAPA"))
	if !slices.Contains(caps, "USER") || slices.Contains(caps, "STLS") {
		t.Errorf("CAPA after STLS: %q", caps)
	}
	if r := c.cmd("STLS"); r != "-ERR TLS already active" {
		t.Errorf("STLS twice: %q", r)
	}
	c.login("erin", "correct horse")
	if got := c.multi("RETR 1"); string(got) != m {
		t.Errorf("RETR over STLS = %q", got)
	}
	c.ok("QUIT")

	// Implicit TLS from a remote client: AUTH PLAIN with an initial response.
	c = dialPOPS(t, e.remoteTLS)
	c.ok("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00erin\x00correct horse")))
	if got := c.multi("RETR 1"); string(got) != m {
		t.Errorf("RETR over implicit TLS = %q", got)
	}
	c.ok("QUIT")
}

// TestAuthPlain: RFC 5034 forms: initial response, continuation, the
// empty "=" form, cancel, an authorization identity.
func TestAuthPlain(t *testing.T) {
	e := startEnv(t, Config{MaxAuthFailures: -1})
	e.user("frank", "correct horse", "frank@x.example")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c := dialPOP(t, e.addr)
	if got := lines(c.multi("AUTH")); !slices.Equal(got, []string{"PLAIN"}) {
		t.Errorf("AUTH = %q, want PLAIN", got)
	}
	if r := c.cmd("AUTH PLAIN ="); r != "-ERR malformed SASL response" {
		t.Errorf("AUTH PLAIN = (empty): %q", r)
	}
	if r := c.cmd("AUTH PLAIN"); r != "+ " {
		t.Fatalf("AUTH PLAIN without initial response: %q, want \"+ \"", r)
	}
	if r := c.cmd("*"); r != "-ERR authentication cancelled" {
		t.Errorf("cancel: %q", r)
	}
	c.cmd("AUTH PLAIN")
	if r := c.cmd("not base64!"); r != "-ERR malformed SASL response" {
		t.Errorf("bad base64: %q", r)
	}
	c.cmd("AUTH PLAIN")
	if r := c.cmd(b64("admin\x00frank\x00correct horse")); r != "-ERR malformed SASL response" {
		t.Errorf("another authorization identity: %q", r)
	}
	c.cmd("AUTH PLAIN")
	if r := c.cmd(b64("frank\x00frank\x00correct horse")); !strings.HasPrefix(r, "+OK") {
		t.Errorf("AUTH PLAIN by continuation, authzid = authcid: %q", r)
	}
	c.ok("QUIT")
}

// TestHeaderFilterAndAliases: a login reads the union of its mailboxes in
// arrival order; each mailbox's header filter applies to its mail, and
// LIST counts the octets RETR sends.
func TestHeaderFilterAndAliases(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("gina", "correct horse", "gina@x.example", "g@alias.example")
	e.filter("g@alias.example", "X-Junk")
	m1 := "From: a@b\r\nX-Junk: 1\r\n\tfolded\r\nSubject: main\r\n\r\nX-Junk: body\r\n"
	m2 := strings.Replace(m1, "main", "alias", 1)
	k1 := e.deliver("gina@x.example", m1)
	k2 := e.deliver("g@alias.example", m2)
	e.deliver("other@x.example", mail("not hers", "x\r\n"))
	c := dialPOP(t, e.addr)
	c.login("gina", "correct horse")
	if got := lines(c.multi("UIDL")); !slices.Equal(got, []string{"1 " + UID(k1), "2 " + UID(k2)}) {
		t.Errorf("UIDL = %q", got)
	}
	filtered := "From: a@b\r\nSubject: alias\r\n\r\nX-Junk: body\r\n"
	if got := lines(c.multi("LIST")); !slices.Equal(got, []string{fmt.Sprintf("1 %d", len(m1)), fmt.Sprintf("2 %d", len(filtered))}) {
		t.Errorf("LIST = %q", got)
	}
	if got := c.multi("RETR 1"); string(got) != m1 {
		t.Errorf("RETR of the unfiltered mailbox's mail = %q", got)
	}
	if got := c.multi("RETR 2"); string(got) != filtered {
		t.Errorf("RETR through the header filter = %q, want %q", got, filtered)
	}
	if got := string(c.multi("TOP 2 0")); got != "From: a@b\r\nSubject: alias\r\n\r\n" {
		t.Errorf("TOP through the header filter = %q", got)
	}
	c.ok("QUIT")
}

// TestBareLF: a stored mail with bare LFs (an import) is sent with CRLF,
// and LIST reports the octets sent, before and after the RETR.
func TestBareLF(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("hank", "correct horse", "hank@x.example")
	lf := "From: a@b\nSubject: lf\n\nline\n.dot\n"
	e.deliver("hank@x.example", lf)
	c := dialPOP(t, e.addr)
	c.login("hank", "correct horse")
	crlf := strings.ReplaceAll(lf, "\n", "\r\n")
	if r, want := c.cmd("LIST 1"), fmt.Sprintf("+OK 1 %d", len(crlf)); r != want {
		t.Errorf("LIST before RETR = %q, want %q", r, want)
	}
	if got := c.multi("RETR 1"); string(got) != crlf {
		t.Errorf("RETR of an LF mail = %q, want %q", got, crlf)
	}
	if r, want := c.cmd("LIST 1"), fmt.Sprintf("+OK 1 %d", len(crlf)); r != want {
		t.Errorf("LIST after RETR = %q, want %q", r, want)
	}
	c.ok("QUIT")
}

// TestShutdown: a session waiting for a command is told the server is
// going away, and its marks are not applied.
func TestShutdown(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("ivy", "correct horse", "ivy@x.example")
	k := e.deliver("ivy@x.example", mail("s", "x\r\n"))
	c := dialPOP(t, e.addr)
	c.login("ivy", "correct horse")
	c.ok("DELE 1")
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := c.line(); r != "-ERR [SYS/TEMP] server shutting down" {
		t.Errorf("idle session at shutdown: %q", r)
	}
	if e.deleted(k) {
		t.Error("shutdown applied a session's DELE")
	}
}

// TestConnectionLimit: a client IP over MaxConnsPerIP gets -ERR [SYS/TEMP]
// and is closed; the slot of a connection that ended is given again.
func TestConnectionLimit(t *testing.T) {
	e := startEnv(t, Config{MaxConnsPerIP: 2})
	first := dialPOP(t, e.addr)
	dialPOP(t, e.addr)
	over := func() string {
		nc, err := net.DialTimeout("tcp", e.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(time.Minute))
		line, _ := bufio.NewReader(nc).ReadString('\n')
		return line
	}
	if g := over(); !strings.HasPrefix(g, "-ERR [SYS/TEMP]") {
		t.Fatalf("third connection from one IP got %q, want -ERR [SYS/TEMP]", g)
	}
	first.ok("QUIT")
	deadline := time.Now().Add(30 * time.Second)
	for g := over(); !strings.HasPrefix(g, "+OK"); g = over() {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after a QUIT a new connection still got %q", g)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestManySessions: 100 sessions of one account retrieve every mail at
// once, each reading ahead (op mails streams on the shared dbd client):
// every RETR works.
func TestManySessions(t *testing.T) {
	e := startEnv(t, Config{MaxConnsPerIP: -1})
	e.user("bob", "correct horse", "bob@x.example")
	const mails = 12
	for i := range mails {
		e.deliver("bob@x.example", mail(fmt.Sprintf("m%d", i), fmt.Sprintf("body %d\r\n", i)))
	}
	session := func() error {
		nc, err := net.DialTimeout("tcp", e.addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(time.Minute))
		r := bufio.NewReader(nc)
		reply := func(cmd string) (string, error) {
			if cmd != "" {
				if _, err := fmt.Fprintf(nc, "%s\r\n", cmd); err != nil {
					return "", err
				}
			}
			l, err := r.ReadString('\n')
			if err == nil && !strings.HasPrefix(l, "+OK") {
				err = fmt.Errorf("%s: %s", cmd, strings.TrimSpace(l))
			}
			return l, err
		}
		for _, cmd := range []string{"", "USER bob", "PASS correct horse"} {
			if _, err := reply(cmd); err != nil {
				return err
			}
		}
		for i := 1; i <= mails; i++ {
			if _, err := reply(fmt.Sprintf("RETR %d", i)); err != nil {
				return err
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return err
				}
				if l == ".\r\n" {
					break
				}
			}
		}
		_, err = reply("QUIT")
		return err
	}
	errs := make(chan error, 100)
	for range 100 {
		go func() { errs <- session() }()
	}
	for range 100 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// addrListener gives its connections the client addresses next returns.
type addrListener struct {
	net.Listener
	next func() net.IP
}

func (l *addrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return addrConn{c, l.next()}, nil
}

type addrConn struct {
	net.Conn
	ip net.IP
}

func (c addrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: c.ip, Port: 40000} }

// TestAuthLimitIPv6Network: failed logins from IPv6 clients count per /64
// network, not per address. An IPv6 host has a whole /64 to take addresses
// from (SLAAC, RFC 8981 temporary addresses), so counting per address let
// one client guess without limit by changing address between guesses
// (Dovecot's auth penalty masks IPv6 too, to /48). Another /64 is not
// affected, and IPv4 addresses still count one by one (TestAuthFailures).
func TestAuthLimitIPv6Network(t *testing.T) {
	e := startEnv(t, Config{MaxAuthFailures: 3, AllowPlaintext: true})
	e.user("uma", "correct horse", "uma@x.example")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrs := make(chan net.IP, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.srv.Serve(&addrListener{ln, func() net.IP { return <-addrs }}, Plain)
	}()
	t.Cleanup(func() { e.srv.Close(); <-done })
	login := func(ip, password string) string {
		addrs <- net.ParseIP(ip)
		c := dialPOP(t, ln.Addr().String())
		defer c.nc.Close()
		c.ok("USER uma")
		return c.cmd("PASS " + password)
	}
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:a:b:c:d"} {
		if r := login(ip, "wrong"); r != "-ERR [AUTH] invalid login or password" {
			t.Fatalf("wrong password from %s: %q", ip, r)
		}
	}
	if r := login("2001:db8:1:2:ffff::9", "correct horse"); !strings.HasPrefix(r, "-ERR [AUTH] too many failed logins") {
		t.Errorf("login from a fourth address of the /64 after 3 failures in it: %q, want refused", r)
	}
	if r := login("2001:db8:1:3::1", "correct horse"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("login from the next /64: %q, want +OK", r)
	}
}
