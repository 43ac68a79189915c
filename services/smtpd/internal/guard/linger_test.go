package guard

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestCloseEndsWithFIN: where the guard closes a session whose client
// has sent more than was read (an early talker's commands, commands
// pipelined after QUIT), the client reads the last reply and then a clean
// end (FIN), not a reset, which would destroy what the client had not
// been sent yet.
func TestCloseEndsWithFIN(t *testing.T) {
	// 48 KiB: more than the guard reads at once (32 KiB), less than that
	// and the drain (64 KiB) take, so some is unread when the session ends
	// and none is left when the socket closes.
	junk := strings.Repeat("NOOP\r\n", 48<<10/6)
	t.Run("early talker", func(t *testing.T) {
		srv := startServer(t, Config{GreetPause: 300 * time.Millisecond})
		c := dial(t, srv.addr)
		c.send("EHLO early.test\r\n" + junk)
		c.expect("554 5.5.1")
		if rest, err := io.ReadAll(c.r); err != nil || len(rest) != 0 {
			t.Fatalf("after the 554 read %q, %v; want a clean end", rest, err)
		}
	})
	t.Run("pipelined after QUIT", func(t *testing.T) {
		srv := startServer(t, Config{})
		c := dial(t, srv.addr)
		c.expect("220 ")
		c.send("QUIT\r\n" + junk)
		c.expect("221 ")
		if rest, err := io.ReadAll(c.r); err != nil || len(rest) != 0 {
			t.Fatalf("after the 221 read %q, %v; want a clean end", rest, err)
		}
	})
}

// TestNothingReadAfterClose: a Close from another goroutine (the server's
// shutdown) while the session waits for a command leaves the socket open
// for the drain a moment longer; a command the client sends then must not
// reach go-smtp.
func TestNothingReadAfterClose(t *testing.T) {
	srv := startServer(t, Config{})
	c := dial(t, srv.addr)
	c.expect("220 ")
	c.cmd("EHLO client.test", "250")
	conns := srv.be.Conns()
	if len(conns) != 1 {
		t.Fatalf("%d guard connections, want 1", len(conns))
	}
	time.Sleep(50 * time.Millisecond) // the session waits in Read
	conns[0].Close()
	c.send("MAIL FROM:<late@client.test>\r\n")
	time.Sleep(200 * time.Millisecond)
	if m := srv.be.Mails(); len(m) != 0 {
		t.Fatalf("MAIL after Close reached the backend: %q", m)
	}
	if rest, err := io.ReadAll(c.r); err != nil || len(rest) != 0 {
		t.Fatalf("after Close read %q, %v; want a clean end", rest, err)
	}
}
