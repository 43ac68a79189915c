package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// The in-process harness of this package: a real dbd (dbdtest), this
// package's Backend over the real store, and go-imap's server on
// 127.0.0.1:0, driven by raw IMAP lines. internal/daemon has the full
// daemon's tests; these reach into the session (its watch hub, a store
// that fails on demand) where a test must hold a race still.

const (
	tLogin    = "alice"
	tPassword = "pw"
	tAddress  = "alice@x.example"
)

// failStore is the real store with Incarnation failing while fail > 0
// (each failure counts it down).
type failStore struct {
	Store
	fail atomic.Int32
}

func (f *failStore) Incarnation(ctx context.Context) (uint64, error) {
	if f.fail.Add(-1) >= 0 {
		return 0, errors.New("test: dbd unavailable")
	}
	f.fail.Store(0)
	return f.Store.Incarnation(ctx)
}

// harness is one dbd and one go-imap server over a Backend.
type harness struct {
	t     *testing.T
	ctx   context.Context
	admin *client.Client
	addr  string
	be    *Backend
	st    *failStore
}

func startHarness(t *testing.T) *harness {
	t.Helper()
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, admin: e.Client("admin")}
	if err := testkit.AddUser(ctx, h.admin, tLogin, tPassword, tAddress); err != nil {
		t.Fatal(err)
	}
	h.st = &failStore{Store: store.New(e.Client("mailbox"), mailbox.Options{})}
	h.be = NewBackend(ctx, Config{Store: h.st, Metrics: metrics.New(prometheus.NewRegistry()), WatchRetry: 10 * time.Millisecond})
	srv := imapserver.New(&imapserver.Options{
		NewSession: h.be.NewSession, InsecureAuth: true, SearchCharset: SearchCharset,
		Caps: imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapUIDPlus: {}, imap.CapMove: {},
			imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapStatusSize: {}, imap.CapNamespace: {}},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *harness) deliver(raw string) {
	h.t.Helper()
	if _, err := testkit.Deliver(h.ctx, h.admin, tAddress, []byte(raw), true, time.Now()); err != nil {
		h.t.Fatal(err)
	}
}

func testMail(i int) string {
	return fmt.Sprintf("From: Bob <bob@y.example>\r\nTo: alice@x.example\r\nSubject: mail %d\r\nMessage-ID: <%d@y.example>\r\n\r\nbody %d\r\n", i, i, i)
}

// imapConn is a raw IMAP connection.
type imapConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// login connects, logs in and, if box is not "", selects it.
func (h *harness) login(box string) *imapConn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	ic := &imapConn{t: h.t, c: c, br: bufio.NewReader(c)}
	ic.line() // greeting
	ic.ok("LOGIN " + tLogin + " " + tPassword)
	if box != "" {
		ic.ok("SELECT " + box)
	}
	return ic
}

// line reads one response line, with the bytes of a literal it announces
// and the rest of the response after them.
func (c *imapConn) line() string {
	c.t.Helper()
	s, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	if i := strings.LastIndexByte(s, '{'); i >= 0 && strings.HasSuffix(s, "}\r\n") {
		if n, err := strconv.Atoi(s[i+1 : len(s)-3]); err == nil {
			lit := make([]byte, n)
			if _, err := io.ReadFull(c.br, lit); err != nil {
				c.t.Fatalf("read literal: %v", err)
			}
			return s + string(lit) + c.line()
		}
	}
	return s
}

func (c *imapConn) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// cmd runs one command and returns its untagged responses and tagged one.
func (c *imapConn) cmd(line string) (untagged []string, tagged string) {
	c.t.Helper()
	c.send("t " + line)
	for {
		s := c.line()
		if strings.HasPrefix(s, "t ") {
			return untagged, s
		}
		untagged = append(untagged, s)
	}
}

// ok runs a command that must succeed.
func (c *imapConn) ok(line string) []string {
	c.t.Helper()
	u, tagged := c.cmd(line)
	if !strings.HasPrefix(tagged, "t OK") {
		c.t.Fatalf("%s: %q %q", line, u, tagged)
	}
	return u
}

// has reports whether a line of lines contains sub.
func has(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// appendMail APPENDs raw to box and waits for the tagged OK.
func (c *imapConn) appendMail(box, raw string) {
	c.t.Helper()
	c.send("t APPEND " + box + " {" + strconv.Itoa(len(raw)) + "}")
	if s := c.line(); !strings.HasPrefix(s, "+") {
		c.t.Fatalf("APPEND: %q", s)
	}
	c.send(raw)
	for {
		s := c.line()
		if strings.HasPrefix(s, "t ") {
			if !strings.HasPrefix(s, "t OK") {
				c.t.Fatalf("APPEND: %q", s)
			}
			return
		}
	}
}
