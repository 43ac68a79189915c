package guard

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSmuggling sends the 2023 SMTP smuggling sequences (issue 3) followed
// by a smuggled transaction. Exactly one transaction may happen, the
// smuggled MAIL must never run, and the session must see the violation.
func TestSmuggling(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{}, direct)
		const smuggled = "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<rcpt@mx.test>\r\nDATA\r\nFrom: evil\r\n\r\nsmuggled\r\n"
		tests := []struct {
			name      string
			body      string // after the 354, before the smuggled part
			violation string
		}{
			{"LF.LF", "Subject: a\r\n\r\nbody\n.\n", ViolationBareLF},
			{"LF.CRLF", "Subject: a\r\n\r\nbody\n.\r\n", ViolationBareLF},
			{"CR.CR", "Subject: a\r\n\r\nbody\r.\r", ViolationDotCR},
			{"CRLF.CR", "Subject: a\r\n\r\nbody\r\n.\r", ViolationDotCR},
			{"CRLF.LF", "Subject: a\r\n\r\nbody\r\n.\n", ViolationBareLF},
			{"CR.CRLF", "Subject: a\r\n\r\nbody\r.\r\n", ViolationDotCR},
			{"LF.CR", "Subject: a\r\n\r\nbody\n.\r", ViolationBareLF},
			{"CR.LF", "Subject: a\r\n\r\nbody\r.\n", ViolationDotCR},
			{"start .LF", ".\n", ViolationBareLF},
			{"start .CR", ".\r", ViolationDotCR},
			{"CRLF.CRCRLF", "Subject: a\r\n\r\nbody\r\n.\r\r\n", ViolationDotCR},
			{"CRLF.NULCRLF", "Subject: a\r\n\r\nbody\r\n.\x00\r\n", ViolationNUL},
			{"CRLF.CR NUL", "Subject: a\r\n\r\nbody\r\n.\r\x00\n", ViolationDotCR},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				nMails, nDatas := len(srv.be.Mails()), len(srv.be.Datas())
				c := greeted(t, srv.addr)
				c.startTx("good@sender.test")
				c.send(tt.body + smuggled + ".\r\n")
				c.expect("550 5.6.0")
				c.cmd("NOOP", "250 ")
				c.cmd("QUIT", "221 ")
				c.expectClosed()
				mails := srv.be.Mails()[nMails:]
				if len(mails) != 1 || mails[0] != "good@sender.test" {
					t.Errorf("MAIL calls = %q, want only good@sender.test", mails)
				}
				datas := srv.be.Datas()[nDatas:]
				if len(datas) != 1 {
					t.Fatalf("Data calls = %d, want 1", len(datas))
				}
				if datas[0].violation != tt.violation {
					t.Errorf("violation = %q, want %q", datas[0].violation, tt.violation)
				}
				if bytes.Contains(datas[0].body, []byte("evil")) || bytes.Contains(datas[0].body, []byte("smuggled")) {
					t.Errorf("body %q contains the smuggled part", datas[0].body)
				}
			})
		}
	})
}

// TestGoSMTPDataBugs covers the go-smtp dot-reader bugs from issue 3 and
// NUL bytes; each transaction ends at the strict end marker and the next
// command works.
func TestGoSMTPDataBugs(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{}, direct)
		tests := []struct {
			name      string
			data      string
			violation string
		}{
			{"CRLF . CR X keeps going to strict end", "a\r\n.\rX\r\nmore\r\n.\r\n", ViolationDotCR},
			{"NUL", "a\x00b\r\n.\r\n", ViolationNUL},
			{"NUL at line start", "\x00\r\n.\r\n", ViolationNUL},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				n := len(srv.be.Datas())
				c := greeted(t, srv.addr)
				c.startTx("a@sender.test")
				c.send(tt.data)
				c.expect("550 5.6.0")
				c.cmd("NOOP", "250 ")
				datas := srv.be.Datas()[n:]
				if len(datas) != 1 || datas[0].violation != tt.violation {
					t.Fatalf("Data calls = %+v, want one with violation %q", datas, tt.violation)
				}
				// The next transaction on the same connection is clean again.
				c.startTx("b@sender.test")
				c.send("clean\r\n.\r\n")
				c.expect("250 ")
				if d := srv.be.Datas()[n+1]; d.violation != "" || string(d.body) != "clean\r\n" {
					t.Errorf("second Data = %+v, want clean body", d)
				}
			})
		}
	})
}

// TestBareCRIsData: a bare CR is an ordinary byte (RFC 5321 §2.3.8: never
// a line end). go-smtp would mis-frame it (`a\r\r\n.\r\n` did not end its
// DATA); the guard hands it over marked, and the message arrives whole.
func TestBareCRIsData(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{}, direct)
		for _, msg := range []string{"a\r\r\n", "x\ry\r\n", "\r\n", "\r.x\r\n", "..\r\n", "a\r\r\r\nb\r\n"} {
			n := len(srv.be.Datas())
			c := greeted(t, srv.addr)
			c.startTx("a@sender.test")
			c.send(stuff(msg))
			c.expect("250 ")
			c.cmd("NOOP", "250 ")
			d := srv.be.Datas()[n]
			if d.violation != "" || string(RestoreBareCR(bytes.Clone(d.body))) != msg {
				t.Errorf("%q: got %+v, want it whole", msg, d)
			}
		}
	})
}

// stuff dot-stuffs a message whose lines end in CRLF and appends the end
// marker (RFC 5321 §4.5.2).
func stuff(msg string) string {
	var b strings.Builder
	for line := range strings.SplitAfterSeq(msg, "\r\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return b.String()
}

// randomMessage builds a clean message: CRLF line ends, no NUL, no bare CR
// or LF, many lines starting with dots.
func randomMessage(r *rand.Rand) string {
	var b strings.Builder
	lines := r.IntN(30)
	for range lines {
		switch r.IntN(5) {
		case 0:
			b.WriteString(strings.Repeat(".", 1+r.IntN(3)))
		case 1:
			// empty line
		}
		n := r.IntN(120)
		if r.IntN(20) == 0 {
			n = 5000 + r.IntN(5000) // longer than go-smtp's line limit
		}
		for range n {
			c := byte(1 + r.IntN(255))
			if c == '\r' || c == '\n' {
				c = '.'
			}
			b.WriteByte(c)
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// TestCleanRoundTrip: clean data, including dot-stuffing and long lines,
// arrives at the session byte-exact.
func TestCleanRoundTrip(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{}, direct)
		msgs := []string{
			"",
			"\r\n",
			"line1\r\n.leading dot\r\n..\r\n.\r\n\r\n",
			"Subject: x\r\n\r\n.\r\n..\r\n...\r\nend\r\n",
			strings.Repeat("x", 1<<20) + "\r\n", // a 1 MB body line
		}
		r := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			msgs = append(msgs, randomMessage(r))
		}
		c := greeted(t, srv.addr)
		for i, msg := range msgs {
			n := len(srv.be.Datas())
			c.startTx("a@sender.test")
			c.send(stuff(msg))
			c.expect("250 ")
			d := srv.be.Datas()[n]
			if d.violation != "" || d.err != nil || string(d.body) != msg {
				t.Fatalf("message %d: got body %d bytes (violation %q, err %v), want %d bytes exact",
					i, len(d.body), d.violation, d.err, len(msg))
			}
		}
		c.cmd("QUIT", "221 ")
	})
}

// TestMessageStoppedEarly: a session that stops reading Message mid-line
// (over its size limit) and returns an error; go-smtp drains the rest.
// Its reader starts that rest at a line start, so "x.\r\n" there must not
// end the DATA: the smuggled commands after it stay data, and the
// connection goes on after the strict end.
func TestMessageStoppedEarly(t *testing.T) {
	srv := startServerReading(t, Config{}, true)
	srv.be.stopAfter = 11
	srv.be.stopped = make(chan struct{}, 1)
	c := greeted(t, srv.addr)
	c.startTx("a@s.test")
	c.send("0123456789x")
	<-srv.be.stopped // the rest reaches the guard after the switch
	c.send(".\r\nMAIL FROM:<evil@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\nsmuggled\r\n.\r\n")
	c.expect("552 5.3.4")
	c.cmd("NOOP", "250 ")
	c.cmd("MAIL FROM:<b@s.test>", "250 ")
	c.cmd("QUIT", "221 ")
	if m := srv.be.Mails(); strings.Join(m, ",") != "a@s.test,b@s.test" {
		t.Errorf("MAIL calls = %q, want a@s.test,b@s.test only", m)
	}
	if d := srv.be.Datas(); len(d) != 1 || string(d[0].body) != "0123456789x" {
		t.Errorf("Data calls = %+v, want one with the first 11 bytes", d)
	}
}

// TestMessageSmallReads: Message into buffers too small to parse into
// directly (through pendBuf) gives the same message.
func TestMessageSmallReads(t *testing.T) {
	cfg := Config{GreetPause: -1, Hostname: "mx.test"}.withDefaults()
	srvSide, cliSide := net.Pipe()
	defer cliSide.Close()
	gc := newConn(srvSide, connParams{cfg: &cfg, release: func() {}})
	defer gc.Close()
	msg := randomMessage(rand.New(rand.NewPCG(3, 4))) + "\r\n..\r\n.a\rb\r\n"
	go func() {
		_, _ = cliSide.Write([]byte("DATA\r\n"))
		_, _ = cliSide.Write([]byte(stuff(msg)))
	}()
	go func() { _, _ = io.Copy(io.Discard, cliSide) }()
	line := make([]byte, 100)
	if n, err := gc.Read(line); err != nil || string(line[:n]) != "DATA\r\n" {
		t.Fatalf("command read %q, %v", line[:n], err)
	}
	if _, err := gc.Write([]byte("354 go ahead\r\n")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	r := gc.Message()
	for i := 0; ; i++ {
		p := make([]byte, 1+i%(2*minDirect+8))
		n, err := r.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(RestoreBareCR(got)) != msg {
		t.Fatalf("got %d bytes, want %d exact", len(got), len(msg))
	}
	// go-smtp's reader is given the end line.
	end := make([]byte, 10)
	if n, err := gc.Read(end); err != nil || string(end[:n]) != ".\r\n" {
		t.Fatalf("go-smtp read %q, %v; want the end line", end[:n], err)
	}
}

// TestPipelinedAfterData: commands pipelined after the end marker run as
// commands, in order (the guard never hands go-smtp bytes past the end).
func TestPipelinedAfterData(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{}, direct)
		c := greeted(t, srv.addr)
		c.send("MAIL FROM:<a@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("354 ")
		c.send("one\r\n.\r\nMAIL FROM:<b@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("354 ")
		c.send("two\r\n.\r\nQUIT\r\n")
		c.expect("250 ")
		c.expect("221 ")
		if got := srv.be.Mails(); strings.Join(got, ",") != "a@s.test,b@s.test" {
			t.Errorf("mails = %q", got)
		}
		if conns := srv.be.Conns(); len(conns) != 1 || conns[0].Commands() != 8 {
			t.Errorf("commands = %d, want 8", conns[0].Commands())
		}
	})
}

func TestLongCommandLine(t *testing.T) {
	srv := startServer(t, Config{})
	c := greeted(t, srv.addr)
	// The server stops reading early; write in the background and ignore
	// the reset.
	go func() { _, _ = c.conn.Write([]byte("NOOP " + strings.Repeat("x", 1<<20) + "\r\n")) }()
	c.expect("500 5.5.2 mx.test Error: line too long")
	c.expectClosed()
}

// TestCommandLineLimitExact: a command line of exactly the limit (CRLF
// included) is taken, one byte more ends the session; for a set limit and
// for the default (RFC 5321 §4.5.3.1.4 asks for at least 512).
func TestCommandLineLimitExact(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		limit int
	}{
		{"set", Config{CommandLineMax: 100}, 100},
		{"default", Config{}, DefaultCommandLineMax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.cfg)
			c := greeted(t, srv.addr)
			c.cmd("NOOP "+strings.Repeat("x", tc.limit-len("NOOP \r\n")), "250 ")
			c.send("NOOP " + strings.Repeat("x", tc.limit+1-len("NOOP \r\n")) + "\r\n")
			c.expect("500 5.5.2")
			c.expectClosed()
		})
	}
}

func TestNULInCommand(t *testing.T) {
	srv := startServer(t, Config{})
	c := greeted(t, srv.addr)
	c.send("MAIL FROM:<a\x00@b>\r\n")
	c.expect("500 5.5.2")
	c.expectClosed()
	if m := srv.be.Mails(); len(m) != 0 {
		t.Errorf("mails = %q, want none", m)
	}
}

func TestBDATRefused(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv.addr)
	c.expect("220 ")
	ehlo := c.cmd("EHLO client.test", "250")
	if strings.Contains(ehlo, "CHUNKING") {
		t.Errorf("EHLO reply offers CHUNKING:\n%s", ehlo)
	}
	if !strings.Contains(ehlo, "250 ") || !strings.Contains(ehlo, "PIPELINING") {
		t.Errorf("EHLO reply mangled:\n%s", ehlo)
	}
	c.cmd("MAIL FROM:<a@s.test>", "250 ")
	c.cmd("RCPT TO:<r@mx.test>", "250 ")
	c.send("BDAT 5 LAST\r\nhello")
	c.expect("502 5.5.1")
	c.expectClosed()
	if d := srv.be.Datas(); len(d) != 0 {
		t.Errorf("Data calls = %d, want 0", len(d))
	}
}

// TestDataTimeout: a client that stops mid-DATA is disconnected, the
// session sees an error, and nothing it sent is run as a command
// (go-smtp issue #196).
func TestDataTimeout(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{DataTimeout: 200 * time.Millisecond}, direct)
		c := greeted(t, srv.addr)
		c.startTx("a@s.test")
		c.send("Subject: x\r\n\r\npartial\r\nMAIL FROM:<evil@s.test>\r\n")
		c.expect("421 4.4.2 mx.test Error: timeout exceeded")
		c.expectClosed()
		waitClosed(t, srv)
		d := srv.be.Datas()
		if len(d) != 1 || d[0].err == nil {
			t.Fatalf("Data calls = %+v, want one with an error", d)
		}
		if m := srv.be.Mails(); len(m) != 1 {
			t.Errorf("mails = %q, want only the first", m)
		}
	})
}

// TestDataEOF: a client that disconnects mid-DATA; the session sees an
// error, not a message.
func TestDataEOF(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{}, direct)
		c := greeted(t, srv.addr)
		c.startTx("a@s.test")
		c.send("Subject: x\r\n\r\npartial\r\nQUIT\r\n")
		_ = c.conn.Close()
		waitClosed(t, srv)
		d := srv.be.Datas()
		if len(d) != 1 || d[0].err == nil {
			t.Fatalf("Data calls = %+v, want one with an error", d)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	srv := startServer(t, Config{IdleTimeout: 200 * time.Millisecond})
	c := greeted(t, srv.addr)
	c.expect("421 4.4.2 mx.test Error: timeout exceeded")
	c.expectClosed()
}

func TestSessionTimeout(t *testing.T) {
	srv := startServer(t, Config{SessionTimeout: 300 * time.Millisecond})
	c := greeted(t, srv.addr)
	// Keep the connection busy; the total bound still applies.
	for i := 0; i < 100; i++ {
		c.send("NOOP\r\n")
		r, err := c.reply()
		if err != nil {
			t.Fatalf("reply: %q, %v", r, err)
		}
		if strings.HasPrefix(r, "421 4.4.2") {
			c.expectClosed()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("session timeout never hit")
}

func TestMaxCommands(t *testing.T) {
	srv := startServer(t, Config{MaxCommands: 5})
	c := greeted(t, srv.addr) // 1
	for range 4 {
		c.cmd("NOOP", "250 ")
	}
	c.cmd("NOOP", "421 4.7.0")
	c.expectClosed()
}

// TestLimitsCountAfreshPerTransaction: a sender that keeps its connection
// for many mails is not cut off; the budgets count commands and errors
// since the last stored mail.
func TestLimitsCountAfreshPerTransaction(t *testing.T) {
	srv := startServer(t, Config{MaxCommands: 5, MaxErrors: 2})
	srv.be.mu.Lock()
	srv.be.stores = true
	srv.be.mu.Unlock()
	c := greeted(t, srv.addr) // 1 command
	for i := range 5 {        // 3 commands each, 15 in all
		c.startTx(fmt.Sprintf("a%d@sender.test", i))
		c.send("x\r\n.\r\n")
		c.expect("250 ")
	}
	c.cmd("RCPT TO:<x@y>", "503 ")
	c.cmd("RCPT TO:<x@y>", "503 ")
	for range 3 {
		c.cmd("NOOP", "250 ")
	}
	c.cmd("NOOP", "421 4.7.0") // the 6th command since the last mail
	c.expectClosed()
}

func TestMaxErrors(t *testing.T) {
	srv := startServer(t, Config{MaxErrors: 2})
	c := greeted(t, srv.addr)
	c.cmd("RCPT TO:<x@y>", "503 ")
	c.cmd("RCPT TO:<x@y>", "503 ")
	c.send("RCPT TO:<x@y>\r\n")
	c.expect("503 ")
	c.expect("421 4.7.0")
	c.expectClosed()
}

// waitClosed waits until go-smtp has ended every session (Logout).
func waitClosed(t *testing.T, srv *testServer) {
	t.Helper()
	for _, s := range srv.be.Sessions() {
		select {
		case <-s.loggedOut:
		case <-time.After(5 * time.Second):
			t.Fatal("session not ended")
		}
		select {
		case <-s.gc.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("connection not closed")
		}
	}
}

// TestNonSMTPCommands: an HTTP request, a header field or a line that
// does not start with a letter ends the session with 221 at once, as the
// first command or later, and nothing after it is run (TEST-CATALOG item
// 24; without the check go-smtp answers 500 per line and goes on).
func TestNonSMTPCommands(t *testing.T) {
	for _, line := range []string{
		"GET / HTTP/1.1", "CONNECT mx.test:25 HTTP/1.0", "POST /", "head / HTTP/1.0",
		"Subject: hi", "From:a@b.test", "\xfe\xffjunk", "<html>", " EHLO x",
	} {
		for _, later := range []bool{false, true} {
			t.Run(fmt.Sprintf("%q later=%v", line, later), func(t *testing.T) {
				srv := startServer(t, Config{})
				c := greeted(t, srv.addr)
				if later {
					c.cmd("EHLO client.test", "250")
					c.cmd("MAIL FROM:<a@s.test>", "250 ")
				}
				// Pipelined behind it: a transaction that must not run.
				c.send(line + "\r\nMAIL FROM:<evil@s.test>\r\nRCPT TO:<r@mx.test>\r\n")
				c.expect("221 2.7.0")
				c.expectClosed()
				for _, m := range srv.be.Mails() {
					if strings.Contains(m, "evil") {
						t.Fatalf("a command after the non-SMTP line ran: MAIL %s", m)
					}
				}
			})
		}
	}
}

// TestEmptyLineIsNotForbidden: an empty line is an ordinary syntax error.
func TestEmptyLineIsNotForbidden(t *testing.T) {
	srv := startServer(t, Config{})
	c := greeted(t, srv.addr)
	c.cmd("", "500 ")
	c.cmd("EHLO client.test", "250")
}

// TestSlowDataKeepsGoing: --data-timeout bounds each read, not the whole
// DATA: a client that sends its mail slowly but steadily, for five times
// the timeout in all, gets its mail taken byte for byte (TEST-CATALOG item
// 7; RFC 5321 §4.5.3.2.6 is per data block).
func TestSlowDataKeepsGoing(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		// Sends 50 ms apart against a 300 ms timeout: a 6× margin for a
		// busy machine.
		const timeout = 300 * time.Millisecond
		srv := startServerReading(t, Config{DataTimeout: timeout}, direct)
		c := greeted(t, srv.addr)
		c.startTx("a@s.test")
		body := "Subject: slow\r\n\r\n"
		c.send(body)
		for i := range 30 { // 30 × 50 ms = 1.5 s = 5 × the timeout
			time.Sleep(timeout / 6)
			line := fmt.Sprintf("line %02d of a slow but steady sender\r\n", i)
			c.send(line)
			body += line
		}
		c.send(".\r\n")
		c.expect("250 ")
		d := srv.be.Datas()
		if len(d) != 1 || d[0].err != nil || string(d[0].body) != body {
			t.Fatalf("Data calls = %+v, want one with the body %q", d, body)
		}
	})
}

// TestPipelinedAfterHELO pins the policy for a client that pipelines after
// HELO, where PIPELINING was never offered (RFC 2920 forbids it; TEST-
// CATALOG item 9): the commands are run one at a time, in order, each with
// its own reply, exactly as after EHLO. The guard hands go-smtp one line
// per read, so a command is never read ahead of its turn, and nothing a
// misbehaving client batches can jump the queue; refusing such clients
// (Postfix's reject_unauth_pipelining) is left to the spam verdict.
func TestPipelinedAfterHELO(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv.addr)
	c.expect("220 ")
	c.send("HELO client.test\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	c.expect("250 ")
	c.expect("221 ")
	if got := srv.be.Mails(); len(got) != 1 || got[0] != "a@s.test" {
		t.Errorf("mails = %q, want a@s.test", got)
	}
	if d := srv.be.Datas(); len(d) != 1 || string(d[0].body) != "Subject: x\r\n\r\nbody\r\n" {
		t.Errorf("Data calls = %+v", d)
	}
}

// TestExtended: Conn.Extended follows the client's last greeting, so the
// trace field says "with SMTP" after HELO and "with ESMTP" after EHLO.
func TestExtended(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv.addr)
	c.expect("220 ")
	tx := "MAIL FROM:<a@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n"
	for _, greet := range []string{"HELO client.test", "EHLO client.test", "HELO client.test"} {
		c.send(greet + "\r\n")
		c.expect("250") // one line to HELO, several to EHLO
		c.send(tx)
		c.expect("250 ")
		c.expect("250 ")
		c.expect("354 ")
		c.expect("250 ")
	}
	// A refused greeting changes nothing: the EHLO before stays in force.
	c.send("EHLO client.test\r\n")
	c.expect("250")
	c.send("HELO\r\n")
	c.expect("501 ")
	c.send(tx)
	for _, code := range []string{"250 ", "250 ", "354 ", "250 "} {
		c.expect(code)
	}
	d := srv.be.Datas()
	if len(d) != 4 || d[0].extended || !d[1].extended || d[2].extended || !d[3].extended {
		t.Fatalf("Extended at each DATA after HELO, EHLO, HELO, EHLO and a refused HELO: %+v, want false, true, false, true", d)
	}
}

// TestControlBytesInCommand: a command line with a NUL, a bare CR, DEL or
// another control byte ends the session before go-smtp sees it (TEST-
// CATALOG items 28, 29): a HELO name or address with a CR would otherwise
// reach the Received field and the throw-in row.
func TestControlBytesInCommand(t *testing.T) {
	for _, tc := range []struct{ before, line string }{
		{"", "HELO x\rX-Injected: 1"},
		{"", "EHLO 0\x0b"},
		{"", "\x16\x03\x01\x02\x00"},
		{"EHLO client.test", "MAIL FROM:<a\rb@s.test>"},
		{"EHLO client.test", "MAIL FROM:<a\x7fb@s.test>"},
		{"EHLO client.test", "MAIL FROM:<a\x00b@s.test>"},
		{"EHLO client.test\r\nMAIL FROM:<a@s.test>", "RCPT TO:<r\x1b@mx.test>"},
	} {
		t.Run(fmt.Sprintf("%q", tc.line), func(t *testing.T) {
			srv := startServer(t, Config{})
			c := greeted(t, srv.addr)
			if tc.before != "" {
				for _, l := range strings.Split(tc.before, "\r\n") {
					c.cmd(l, "250")
				}
			}
			c.send(tc.line + "\r\n")
			c.expect("500 5.5.2")
			c.expectClosed()
			for _, m := range srv.be.Mails() {
				if strings.ContainsAny(m, "\r\x7f\x00") {
					t.Fatalf("MAIL with a control byte reached the session: %q", m)
				}
			}
		})
	}
}

// TestCommandDrip: a client that drips a command line a byte at a time,
// each byte well within --idle-timeout but the line not, is cut off at
// the timeout (slowloris; TEST-CATALOG item 23). Before, each read reset
// the timeout and one connection slot was held until the session timeout.
func TestCommandDrip(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv := startServer(t, Config{IdleTimeout: timeout})
	c := greeted(t, srv.addr)
	line := "EHLO a.slow.client.example\r\n"
	// 28 bytes, one every 50 ms: 1.4 s for the line, 4.7 × the timeout.
	var err error
	for i := 0; i < len(line) && err == nil; i++ {
		_, err = c.conn.Write([]byte{line[i]})
		time.Sleep(timeout / 6)
	}
	c.expect("421 4.4.2 mx.test Error: timeout exceeded")
	c.expectClosed()
}

// TestSilentAfterSTARTTLS: a client that says STARTTLS and then sends
// nothing is closed at --tls-handshake-timeout (item 23, half-open TLS).
func TestSilentAfterSTARTTLS(t *testing.T) {
	srv := startServer(t, Config{TLS: selfSigned(t), TLSHandshakeTimeout: 200 * time.Millisecond})
	c := greeted(t, srv.addr)
	c.cmd("STARTTLS", "220 ")
	c.expectClosed()
}

// TestErrorTarpit: from SoftErrors error replies on, every reply waits
// ErrorDelay (TEST-CATALOG item 20); MaxErrors still ends the session.
func TestErrorTarpit(t *testing.T) {
	const delay = 300 * time.Millisecond
	srv := startServer(t, Config{SoftErrors: 2, ErrorDelay: delay, MaxErrors: 3})
	c := greeted(t, srv.addr)
	c.cmd("RCPT TO:<x@y>", "503 ")
	c.cmd("RCPT TO:<x@y>", "503 ")
	for _, tc := range []struct{ line, reply string }{{"NOOP", "250 "}, {"RCPT TO:<x@y>", "503 "}} {
		start := time.Now()
		c.cmd(tc.line, tc.reply)
		if took := time.Since(start); took < delay {
			t.Fatalf("%s past the soft limit answered after %v, want at least %v", tc.line, took, delay)
		}
	}
	c.send("RCPT TO:<x@y>\r\n")
	c.expect("503 ")
	c.expect("421 4.7.0")
	c.expectClosed()
}

// TestMaxJunk: commands that move no mail (NOOP, RSET, VRFY, HELP) are
// bounded between two stored mails (TEST-CATALOG item 19); a stored mail
// starts the count afresh, and other commands do not count.
func TestMaxJunk(t *testing.T) {
	srv := startServer(t, Config{MaxJunk: 3})
	srv.be.mu.Lock()
	srv.be.stores = true
	srv.be.mu.Unlock()
	c := greeted(t, srv.addr)
	c.cmd("NOOP", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<a@s.test>", "250 ")
	c.cmd("HELP", "")
	c.cmd("RCPT TO:<r@mx.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 ")
	for _, v := range []string{"NOOP", "VRFY x", "RSET"} {
		c.cmd(v, "")
	}
	c.send("NOOP\r\n")
	c.expect("421 4.7.0")
	c.expectClosed()
}

func TestPostmasterPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"RCPT TO:<Postmaster>\r\n", "RCPT TO:<pm@x.org>\r\n"},
		{"rcpt to:< postmaster > NOTIFY=NEVER\r\n", "rcpt to:<pm@x.org> NOTIFY=NEVER\r\n"},
		{"RCPT TO:<postmaster@other.org>\r\n", "RCPT TO:<postmaster@other.org>\r\n"},
		{"RCPT TO:<postmasterx>\r\n", "RCPT TO:<postmasterx>\r\n"},
		{"RCPT TO:postmaster\r\n", "RCPT TO:postmaster\r\n"},
		{"RCPT TO:>postmaster<\r\n", "RCPT TO:>postmaster<\r\n"},
		// U+017F folds to "s" only under Unicode rules: not postmaster.
		{"RCPT TO:<POſTMASTER>\r\n", "RCPT TO:<POſTMASTER>\r\n"},
	} {
		if got := string(postmasterPath([]byte(c.in), "pm@x.org")); got != c.want {
			t.Errorf("postmasterPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestBadSequenceIs503: a command out of order gets 503 (RFC 5321
// §4.3.2), where go-smtp answers 502 (command not implemented).
func TestBadSequenceIs503(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv.addr)
	c.expect("220 ")
	c.send("MAIL FROM:<a@s.test>\r\n")
	c.expect("503 5.5.1 Please introduce yourself first.")
	c.send("HELO client.test\r\n")
	c.expect("250 ")
	c.send("RCPT TO:<r@mx.test>\r\n")
	c.expect("503 5.5.1 Missing MAIL FROM command.")
	c.send("MAIL FROM:<a@s.test>\r\n")
	c.expect("250 ")
	c.send("DATA\r\n")
	c.expect("503 5.5.1 Missing RCPT TO command.")
	c.send("EXPN x\r\n")
	c.expect("502 ") // not implemented: stays 502
}

// TestUnknownParameterIs555: an unknown MAIL or RCPT parameter gets 555
// (RFC 5321 §4.1.1.11), where go-smtp answers 500, a malformed AUTH=
// value 501, and a line that is no command 500 (go-smtp: 501); the
// session goes on.
func TestUnknownParameterIs555(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv.addr)
	c.expect("220 ")
	c.send("EHLO client.test\r\n")
	c.expect("250-")
	c.send("MAIL FROM:<a@s.test> XFOO=1\r\n")
	c.expect("555 5.5.4 Unknown MAIL FROM argument")
	c.send("MAIL FROM:<a@s.test> AUTH=<bad\r\n")
	c.expect("501 5.5.4 Malformed AUTH parameter")
	c.send("MAIL FROM:<a@s.test>\r\n")
	c.expect("250 ")
	c.send("RCPT TO:<r@mx.test> XBAR\r\n")
	c.expect("555 5.5.4 Unknown RCPT TO argument")
	c.send("RCPT TO:<r@mx.test>\r\n")
	c.expect("250 ")
	c.send("FOO bar\r\n")
	c.expect("500 5.5.2 ")
	c.send("AB\r\n")
	c.expect("500 5.5.2 ")
}

// TestAfterClose: f runs once, after Done is closed, whoever closes the
// connection and however often; registered on a closed connection it runs
// at once.
func TestAfterClose(t *testing.T) {
	cfg := Config{}.withDefaults()
	srv, cli := net.Pipe()
	defer cli.Close()
	c := newConn(srv, connParams{cfg: &cfg})
	var runs atomic.Int32
	c.AfterClose(func() {
		select {
		case <-c.Done():
		default:
			t.Error("f ran before Done was closed")
		}
		runs.Add(1)
	})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Close() }()
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("f ran %d times, want 1", n)
	}
	c.AfterClose(func() { runs.Add(1) })
	if n := runs.Load(); n != 2 {
		t.Fatalf("f on a closed connection: %d runs, want 2", n)
	}
}

// TestRecipientsLaterIsNoError: 452 4.5.3 (too many recipients, RFC 5321
// §4.5.3.1.10, or, from smtpd's session, a recipient of another spam
// policy) asks the client to send those recipients in another
// transaction; the client did nothing wrong, and the mail goes on to
// DATA for the recipients taken. Counted as errors, they cut off a mail
// to more than --max-recipients + MaxErrors addresses with 421 before its
// DATA, at every retry, so it reached nobody; and they started the
// tarpit. Postfix does not count them either (smtpd_recipient_overshoot_limit).
func TestRecipientsLaterIsNoError(t *testing.T) {
	for _, cfg := range []Config{
		{MaxErrors: 2, SoftErrors: -1},
		{SoftErrors: 1, ErrorDelay: time.Second},
	} {
		t.Run(fmt.Sprintf("max=%d soft=%d", cfg.MaxErrors, cfg.SoftErrors), func(t *testing.T) {
			srv := startServer(t, cfg)
			c := greeted(t, srv.addr)
			c.cmd("MAIL FROM:<a@s.test>", "250 ")
			c.cmd("RCPT TO:<r@mx.test>", "250 ")
			start := time.Now()
			for range 5 {
				c.cmd("RCPT TO:<later@mx.test>", "452 4.5.3 ")
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("five 452 4.5.3 replies took %v: tarpitted as errors", took)
			}
			c.cmd("DATA", "354 ")
			c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
			c.expect("250 ")
			// A real error still counts.
			c.cmd("RCPT TO:<x@y>", "503 ")
		})
	}
}

// TestRefusedDataCountsOn: the limits count afresh after a stored mail
// only. A DATA whose message is refused before it is stored (a bare LF:
// 550 at no cost to the client) moved no mail; when each 354 started the
// count afresh, a client with one valid recipient (Postmaster, which
// every domain must take) could probe addresses for ever within
// MaxErrors - 1 errors a round, never tarpitted, never cut off.
func TestRefusedDataCountsOn(t *testing.T) {
	round := func(c *client, i int, body, reply string) {
		t.Helper()
		c.cmd("DATA x", "501 ")
		c.cmd("DATA x", "501 ")
		c.startTx(fmt.Sprintf("a%d@sender.test", i))
		c.send(body)
		c.expect(reply)
	}
	t.Run("stored", func(t *testing.T) {
		srv := startServer(t, Config{MaxErrors: 3, SoftErrors: -1})
		srv.be.mu.Lock()
		srv.be.stores = true
		srv.be.mu.Unlock()
		c := greeted(t, srv.addr)
		for i := range 5 {
			round(c, i, "Subject: x\r\n\r\nbody\r\n.\r\n", "250 ")
		}
	})
	t.Run("refused", func(t *testing.T) {
		srv := startServer(t, Config{MaxErrors: 3, SoftErrors: -1})
		c := greeted(t, srv.addr)
		round(c, 0, "Subject: x\r\n\r\nbare\nLF\r\n.\r\n", "550 5.6.0")
		// Three errors so far; the fourth is one too many.
		c.send("DATA x\r\nNOOP\r\n")
		c.expect("501 ")
		c.expect("421 4.7.0")
		c.expectClosed()
	})
}
