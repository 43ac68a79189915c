package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// TestShutdownCutsIdleSessions: a client that keeps its session open
// without a word does not hold shutdown past the grace period. go-smtp's
// Close after a timed-out Shutdown does nothing (Shutdown has marked the
// server closed already), so such a session ended only at the idle
// timeout, minutes later, and smtpd with it.
func TestShutdownCutsIdleSessions(t *testing.T) {
	e := start(t, func(c *Config) {
		c.ShutdownGrace = 200 * time.Millisecond
		c.Guard.IdleTimeout = time.Hour
		c.Guard.SessionTimeout = 2 * time.Hour
	})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || line[:3] != "220" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	io.WriteString(conn, "EHLO client.test\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("EHLO reply: %v", err)
		}
		if len(line) > 3 && line[3] == ' ' {
			break
		}
	}
	stopped := make(chan struct{})
	go func() {
		e.stop()
		close(stopped)
	}()
	// A bound far above the grace, only so that a hang fails the test
	// instead of the whole run.
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("smtpd still running 30 s after its shutdown began (grace 200 ms)")
	}
	// The session was cut: the client sees its connection end (EOF or a
	// reset), not a read timeout.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(r); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("session still open after shutdown")
		}
	}
}

// TestShutdownCutsDecisionWait: a session waiting for its decision when
// the grace period ends is not answered 250: its wait is cancelled (451
// or the connection cut), the mail stays unacknowledged, and smtpd stops
// then, not at the end of the decision window.
func TestShutdownCutsDecisionWait(t *testing.T) {
	e := start(t, func(c *Config) {
		c.DecisionWindow = 9 * time.Minute
		c.ShutdownGrace = 200 * time.Millisecond
	})
	e.mailbox("jo@example.org", 0)
	raw := []byte("From: a@x.test\r\nSubject: at shutdown\r\n\r\nhello\r\n")
	k := receiveKey(raw, "jo@example.org")
	c := dialGoSMTP(t, e.addr)
	if err := c.Mail("a@x.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("jo@example.org", nil); err != nil {
		t.Fatal(err)
	}
	reply := make(chan error, 1)
	go func() { reply <- sendData(c, raw) }()
	// Stop once the mail is stored: its session waits for the verdict.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := e.admin.FindKey(ctx, model.Receive, k)
		if err == nil {
			break
		}
		if !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("waiting for the receive row: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() {
		e.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("smtpd still running 30 s after its shutdown began (grace 200 ms, window 9 min)")
	}
	if err := <-reply; err == nil {
		t.Fatal("DATA answered 250 at shutdown, before any verdict")
	}
	row, err := e.admin.FindKey(context.Background(), model.Receive, k)
	if err != nil {
		t.Fatal(err)
	}
	if row.State.Cols[model.ColAcknowledged] != 0 {
		t.Fatal("an undecided mail was acknowledged at shutdown")
	}
}
