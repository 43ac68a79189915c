package daemon

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
)

// TestLogoutEndsWithFIN: a session that ends while the client's input is
// still unread (commands pipelined after LOGOUT, or the tail of a deflate
// flush written in pieces) ends with FIN, not a reset. A reset destroys
// what the server had not sent yet, and on a slow link that can be the
// BYE and the tagged OK; on loopback it shows as ECONNRESET after them.
func TestLogoutEndsWithFIN(t *testing.T) {
	k := start(t)
	for i := 0; i < 5; i++ {
		r := k.rawLogin()
		// 32 KiB: more than go-imap reads at once, less than the drain
		// takes (64 KiB), so some is unread when the session ends and
		// none is left when the socket closes.
		r.send("z LOGOUT\r\n" + strings.Repeat("x NOOP\r\n", 4<<10))
		rest, err := io.ReadAll(r.br)
		got := string(rest)
		if !strings.Contains(got, "* BYE") || !strings.Contains(got, "z OK") {
			t.Fatalf("session %d: after LOGOUT read %q; want the BYE and z OK", i, got)
		}
		if err != nil {
			t.Fatalf("session %d: the session ended with %v, want a clean end (FIN)", i, err)
		}
	}
}

// TestCloseFromAnotherGoroutine: what the client sends after a Close that
// came while the session's goroutine waited in Read reaches no one but
// the drain: that read reports the connection closed instead of handing
// over a command. The client sees FIN.
func TestCloseFromAnotherGoroutine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	reg := &registry{conns: map[*countingConn]struct{}{}}
	cc := &countingConn{Conn: raw, m: metrics.New(prometheus.NewRegistry()), reg: reg, release: func() {}}
	reg.add(cc)
	type result struct {
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() {
		n, err := cc.Read(make([]byte, 64))
		got <- result{n, err}
	}()
	time.Sleep(50 * time.Millisecond) // let the read block
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("a2 EXPUNGE\r\n"))
	select {
	case r := <-got:
		if r.n != 0 || !errors.Is(r.err, net.ErrClosed) {
			t.Errorf("read during Close: %d bytes, %v; want none and net.ErrClosed", r.n, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read waiting during Close never returned")
	}
	if n, err := cc.Read(make([]byte, 64)); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %d bytes, %v; want none and net.ErrClosed", n, err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 64)); n != 0 || err != io.EOF {
		t.Errorf("client read after Close: %d bytes, %v; want FIN (io.EOF)", n, err)
	}
	if len(reg.conns) != 0 {
		t.Errorf("the registry still holds the connection")
	}
}
