package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
)

// env is an in-process dbd and a pop3d Server on loopback with a plain
// listener (addr), an implicit-TLS one (tlsAddr), and the same two behind
// a listener that makes every client look remote (remote, remoteTLS), so
// the plaintext policy can be tested on loopback.
type env struct {
	t                 testing.TB
	dbd               *dbdtest.Env
	admin             *client.Client
	srv               *Server
	addr, tlsAddr     string
	remote, remoteTLS string
}

// cheap argon2id parameters: tests check passwords, not their cost.
var cheap = passwd.Params{MemoryKiB: 256, Time: 1, Threads: 1}

func startEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	return startEnvStore(t, cfg, nil)
}

// startEnvStore is startEnv with the server's Store wrapped by wrap (nil:
// none), for tests that inject store failures.
func startEnvStore(t testing.TB, cfg Config, wrap func(Store) Store) *env {
	t.Helper()
	e := &env{t: t, dbd: dbdtest.Start(t, dbdtest.Options{})}
	e.admin = e.dbd.Client("admin")
	tlsCfg, err := tlsconf.SelfSignedTLS("pop3.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = NewDBStore(e.dbd.Client("mailbox"), mailbox.Options{})
	if wrap != nil {
		cfg.Store = wrap(cfg.Store)
	}
	cfg.TLS = tlsCfg
	if cfg.AuthFailDelay == 0 {
		cfg.AuthFailDelay = -1
	}
	e.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(mode Mode, remote bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		if remote {
			ln = remoteListener{ln}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.srv.Serve(ln, mode)
		}()
		t.Cleanup(func() { <-done })
		return addr
	}
	e.addr, e.tlsAddr = serve(Plain, false), serve(ImplicitTLS, false)
	e.remote, e.remoteTLS = serve(Plain, true), serve(ImplicitTLS, true)
	t.Cleanup(func() { e.srv.Close() })
	return e
}

// remoteListener makes its connections report a documentation address
// (192.0.2.1, RFC 5737) as the client's.
type remoteListener struct{ net.Listener }

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000} }

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// user makes an account with a password and mailboxes.
func (e *env) user(login, password string, boxes ...string) {
	e.t.Helper()
	hash, err := passwd.Hash(password, cheap)
	if err != nil {
		e.t.Fatal(err)
	}
	reqs, err := mailbox.SetPassword(login, hash, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, b := range boxes {
		r, err := mailbox.SetMailbox(login, b, true, time.Now())
		if err != nil {
			e.t.Fatal(err)
		}
		reqs = append(reqs, r...)
	}
	if _, err := e.admin.Batch(e.ctx(), reqs); err != nil {
		e.t.Fatal(err)
	}
}

// filter makes mailbox box drop header field name.
func (e *env) filter(box, name string) {
	e.t.Helper()
	reqs, err := mailbox.SetHeaderFilter(box, name, true, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.admin.Batch(e.ctx(), reqs); err != nil {
		e.t.Fatal(err)
	}
}

// deliver stores raw in mailbox box the way smtpd does (rows, ack and
// the received link; as dbd's user_test does) and returns the receive key.
func (e *env) deliver(box, raw string) model.Key {
	e.t.Helper()
	rows := model.NewMailRows([]byte(raw))
	rc := model.ReceiveContent(rows.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(box)))
	ref := wire.Ref{Content: rc}
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: model.MailboxContent(box)},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
		{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet},
		{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReceivedColumn(rows.ReceivedKey), Value: 1},
	}
	if _, err := e.admin.Batch(e.ctx(), reqs); err != nil {
		e.t.Fatal(err)
	}
	return model.KeyOf(model.Receive, rc)
}

// deleted reports whether a receive row has the deleted column.
func (e *env) deleted(k model.Key) bool {
	e.t.Helper()
	row, err := e.admin.FindMeta(e.ctx(), model.Receive, k)
	if err != nil {
		e.t.Fatal(err)
	}
	return row.State.Col(model.ColDeleted) == model.FlagSet
}

// popClient is a raw POP3 client for tests.
type popClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialPOP(t *testing.T, addr string) *popClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return newPOP(t, nc, true)
}

func dialPOPS(t *testing.T, addr string) *popClient {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	return newPOP(t, nc, true)
}

func newPOP(t *testing.T, nc net.Conn, greet bool) *popClient {
	c := &popClient{t: t, nc: nc, r: bufio.NewReader(nc)}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	if greet {
		if g := c.line(); !strings.HasPrefix(g, "+OK") {
			t.Fatalf("greeting %q", g)
		}
	}
	return c
}

func (c *popClient) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one line without its CRLF ("" with an error at EOF).
func (c *popClient) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		return "EOF:" + err.Error()
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns its status line.
func (c *popClient) cmd(s string) string {
	c.t.Helper()
	c.send(s)
	return c.line()
}

// ok sends a command and fails the test unless the reply is +OK.
func (c *popClient) ok(s string) string {
	c.t.Helper()
	r := c.cmd(s)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: %q, want +OK", s, r)
	}
	return r
}

// multi sends a command whose +OK reply is multi-line and returns the
// data exactly as sent, dot-unstuffed, CRLFs kept.
func (c *popClient) multi(s string) []byte {
	c.t.Helper()
	c.ok(s)
	return c.data()
}

func (c *popClient) data() []byte {
	c.t.Helper()
	var out bytes.Buffer
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read multi-line data: %v (so far %q)", err, out.String())
		}
		if l == ".\r\n" {
			return out.Bytes()
		}
		out.WriteString(strings.TrimPrefix(l, "."))
	}
}

func (c *popClient) login(user, pass string) {
	c.t.Helper()
	c.ok("USER " + user)
	c.ok("PASS " + pass)
}

func lines(b []byte) []string {
	return strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
}

func mail(subject, body string) string {
	return fmt.Sprintf("Received: from a by b; Sat, 28 Nov 2026 10:00:00 +0000\r\nFrom: x@y.example\r\nSubject: %s\r\n\r\n%s", subject, body)
}
