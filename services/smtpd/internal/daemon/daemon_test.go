package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
	"github.com/twinmx/twinmx/services/smtpd/internal/replay"
)

// env is a real in-process dbd and smtpd on loopback, and an admin client
// that plays operator, spamd and backupd.
type env struct {
	t     testing.TB
	db    *dbdtest.Env
	admin *client.Client
	addr  string
	stop  func()
}

func start(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	db := dbdtest.Start(t, dbdtest.Options{})
	cfg := Config{
		Listen: "127.0.0.1:0", Hostname: "mx.test", DB: db.Addr, DBKey: db.DBKey.Public, Key: db.Keys["smtpd"],
		DecisionWindow: 5 * time.Second,
		Guard:          guard.Config{GreetPause: -1},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		ShutdownGrace:  2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(a net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	e := &env{t: t, db: db, admin: db.Client("admin")}
	select {
	case a := <-ready:
		e.addr = a.String()
	case err := <-done:
		cancel()
		t.Fatalf("smtpd: %v", err)
	}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("smtpd exit: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
	return e
}

func (e *env) mailbox(addr string, policy model.Policy) {
	e.t.Helper()
	var v uint64
	if policy != model.PolicyFilter {
		v = model.PolicyValue(time.Now(), policy)
	}
	e.mailboxValue(addr, v)
}

// mailboxValue creates the mailbox with the raw policy column value v (0:
// none).
func (e *env) mailboxValue(addr string, v uint64) {
	e.t.Helper()
	ctx := context.Background()
	c := model.MailboxContent(addr)
	if _, _, err := e.admin.FindOrInsert(ctx, model.Mailbox, c); err != nil {
		e.t.Fatal(err)
	}
	if v > 0 {
		if _, err := e.admin.Set(ctx, model.Mailbox, wire.Ref{Content: c}, model.ColPolicy, v); err != nil {
			e.t.Fatal(err)
		}
	}
}

func receiveKey(raw []byte, mailbox string) model.Key {
	mk := model.NewMailRows(raw).MailKey
	return model.KeyOf(model.Receive, model.ReceiveContent(mk, model.KeyOf(model.Mailbox, model.MailboxContent(mailbox))))
}

// decide waits until the receive row exists and sets its verdict (and,
// like backupd, the backed-up mark).
func (e *env) decide(k model.Key, v model.Verdict, backedUp bool) {
	e.t.Helper()
	if err := e.setVerdict(k, v, backedUp); err != nil {
		e.t.Fatal(err)
	}
}

// decideLater is decide in the background, while the test sends the mail.
// The test waits for it at its end, before the env's clients close: an
// SMTP reply can come before the verdict's own answer has.
func (e *env) decideLater(k model.Key, v model.Verdict, backedUp bool) {
	done := make(chan error, 1)
	go func() { done <- e.setVerdict(k, v, backedUp) }()
	e.t.Cleanup(func() {
		if err := <-done; err != nil {
			e.t.Error(err)
		}
	})
}

func (e *env) setVerdict(k model.Key, v model.Verdict, backedUp bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref := wire.Ref{ByKey: true, Key: k}
	for {
		_, err := e.admin.Set(ctx, model.Receive, ref, model.ColVerdict, model.EncodeVerdict(model.SourceOperator, model.Epoch(time.Now()), v))
		if err == nil {
			break
		}
		if !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("set the verdict: %w", err)
		}
		select {
		case <-ctx.Done():
			return errors.New("receive row never appeared")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if backedUp {
		if _, err := e.admin.Set(ctx, model.Receive, ref, model.ColBackedUp, model.FlagSet); err != nil {
			return fmt.Errorf("set the backed-up mark: %w", err)
		}
	}
	return nil
}

// send runs one SMTP transaction and returns the DATA reply code and text
// (or the first failing command's).
func (e *env) send(from string, to []string, raw []byte) (int, string) {
	e.t.Helper()
	c, err := smtp.Dial(e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		e.t.Fatal(err)
	}
	if err := c.Mail(from); err != nil {
		return codeOf(e.t, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return codeOf(e.t, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return codeOf(e.t, err)
	}
	if _, err := w.Write(raw); err != nil {
		e.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		return codeOf(e.t, err)
	}
	c.Quit()
	return 250, ""
}

func codeOf(t testing.TB, err error) (int, string) {
	var te *textproto.Error
	if !errors.As(err, &te) {
		t.Fatalf("not an SMTP reply: %v", err)
	}
	return te.Code, te.Msg
}

func TestAcceptAfterVerdictAndBackup(t *testing.T) {
	metricsAddr := freeAddr(t)
	e := start(t, func(c *Config) { c.Metrics = metricsAddr })
	e.mailbox("jo@example.org", 0)
	raw := []byte("Received: from a by b; Sun, 29 Nov 2026 00:00:00 +0000\r\nFrom: a@x.test\r\nSubject: hi\r\nMessage-ID: <m1@x.test>\r\n\r\nhello\r\n.dot line\r\n")
	k := receiveKey(raw, "jo@example.org")
	e.decideLater(k, model.Accept, true)
	code, msg := e.send("a@x.test", []string{"jo@example.org"}, raw)
	if code != 250 {
		t.Fatalf("reply %d %s, want 250", code, msg)
	}
	row, err := e.admin.FindKey(context.Background(), model.Receive, k)
	if err != nil {
		t.Fatal(err)
	}
	if row.State.Cols[model.ColAcknowledged] != model.FlagSet {
		t.Fatal("250 without the acknowledged mark")
	}
	// Our reply is on the throw-in row, written with the acknowledgement.
	st, err := e.admin.Scan(context.Background(), model.ThrowIn, 1)
	if err != nil {
		t.Fatal(err)
	}
	ti, err := st.Next(context.Background())
	st.Close()
	if err != nil || ti.State.Cols["reply"] != 250 {
		t.Fatalf("throw-in after 250: %v %v", ti, err)
	}
	// dbd applied the acknowledgement armed before the verdict, in the
	// verdict's commit, not smtpd after it.
	if got := scrape(t, metricsAddr, `twinmx_smtpd_acks_total{how="armed"}`); got != 1 {
		t.Fatalf("armed acknowledgements = %v, want 1", got)
	}
	// The decision time follows, off the reply's path.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := e.admin.Scan(context.Background(), model.ThrowIn, 1)
		if err != nil {
			t.Fatal(err)
		}
		ti, err := st.Next(context.Background())
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ti.State.Cols["decide.ms"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no decide.ms on the throw-in row: %v", ti.State.Cols)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The stored rows re-join to our trace field plus exactly what was sent.
	rk, ok := model.AcknowledgedReceived(row.State)
	if !ok {
		t.Fatal("no received link")
	}
	// Final delivery: our Return-Path (RFC 5321 §4.4) above our Received.
	got, ok := bytes.CutPrefix(e.rejoin(raw, rk), []byte("Return-Path: <a@x.test>\r\n"))
	if !ok {
		t.Fatalf("stored mail does not begin with the Return-Path: %q", e.rejoin(raw, rk))
	}
	fs, err := model.ReceivedFields(model.Split(got).Received)
	if err != nil || len(fs) != 2 || !bytes.HasPrefix(fs[0].Raw, []byte("Received: from client.test ([127.0.0.1])\r\n\tby mx.test (twinmx) with ESMTP id ")) {
		t.Fatalf("trace field: %q %v", got, err)
	}
	if !bytes.Equal(got[len(fs[0].Raw):], raw) {
		t.Fatalf("stored mail differs:\n%q\nwant\n%q", got[len(fs[0].Raw):], raw)
	}

	// The same mail again (other Received lines): decided at once.
	again := append([]byte("Received: from elsewhere\r\n"), raw...)
	if code, msg := e.send("a@x.test", []string{"jo@example.org"}, again); code != 250 {
		t.Fatalf("retry: %d %s", code, msg)
	}
}

// TestTraceFieldAfterHELO: a client that greets with HELO gets "with
// SMTP" in our trace field, not "with ESMTP" (RFC 5321 §4.4, RFC 3848).
func TestTraceFieldAfterHELO(t *testing.T) {
	e := start(t, nil)
	e.mailbox("jo@example.org", 0)
	raw := []byte("From: a@x.test\r\nSubject: helo\r\nMessage-ID: <helo@x.test>\r\n\r\nplain SMTP\r\n")
	k := receiveKey(raw, "jo@example.org")
	e.decideLater(k, model.Accept, true)
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	tc := textproto.NewConn(nc)
	step := func(want int, format string, args ...any) {
		t.Helper()
		if format != "" {
			if err := tc.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		if _, msg, err := tc.ReadResponse(want); err != nil {
			t.Fatalf("%q: %v %s", format, err, msg)
		}
	}
	step(220, "")
	step(250, "HELO client.test")
	step(250, "MAIL FROM:<a@x.test>")
	step(250, "RCPT TO:<jo@example.org>")
	step(354, "DATA")
	if _, err := nc.Write(append(raw, ".\r\n"...)); err != nil {
		t.Fatal(err)
	}
	step(250, "")
	row, err := e.admin.FindKey(context.Background(), model.Receive, k)
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := model.AcknowledgedReceived(row.State)
	if !ok {
		t.Fatal("no received link")
	}
	if got := e.rejoin(raw, rk); !bytes.HasPrefix(got, []byte("Return-Path: <a@x.test>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.test (twinmx) with SMTP id ")) {
		t.Fatalf("trace field after HELO: %q", got)
	}
}

// sizedMail returns a mail of exactly n bytes (n >= 200), distinct by tag.
func sizedMail(tag string, n int) []byte {
	b := []byte("From: a@x.test\r\nSubject: " + tag + "\r\nMessage-ID: <" + tag + "@x.test>\r\n\r\n")
	line := strings.Repeat("0123456789", 7) + "abcdef\r\n"
	for len(b)+len(line) <= n-3 {
		b = append(b, line...)
	}
	b = append(b, strings.Repeat(".", n-len(b)-2)...) // a stuffed last line
	return append(b, "\r\n"...)
}

// TestSizeLimitExact: a message of exactly --max-size bytes is taken, one
// byte more is refused with 552 and nothing of it is stored; the limit is
// above the session's first 64 KiB buffer, so the buffer grows.
func TestSizeLimitExact(t *testing.T) {
	const limit = 100_000
	e := start(t, func(c *Config) { c.MaxSize = limit; c.MinCopies = 1 })
	e.mailbox("jo@example.org", 0)
	exact := sizedMail("exact", limit)
	k := receiveKey(exact, "jo@example.org")
	e.decideLater(k, model.Accept, false)
	if code, msg := e.send("a@x.test", []string{"jo@example.org"}, exact); code != 250 {
		t.Fatalf("%d bytes (the limit): %d %s, want 250", len(exact), code, msg)
	}
	got, _, _ := e.acknowledged(exact, k)
	if !bytes.HasSuffix(got, exact) || len(got) <= len(exact) {
		t.Fatalf("stored mail of %d bytes does not end with the %d sent", len(got), len(exact))
	}
	over := sizedMail("over", limit+1)
	if code, msg := e.send("a@x.test", []string{"jo@example.org"}, over); code != 552 {
		t.Fatalf("%d bytes (one over): %d %s, want 552", len(over), code, msg)
	}
	if _, err := e.admin.FindKey(context.Background(), model.Body, model.NewMailRows(over).BodyKey); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("body of the refused mail: %v, want not found", err)
	}
}

// acknowledged reads receive row k of raw, which must be acknowledged, and
// returns the stored mail it re-joins to, its received key and its state.
func (e *env) acknowledged(raw []byte, k model.Key) (stored []byte, rk model.Key, st model.State) {
	e.t.Helper()
	row, err := e.admin.FindKey(context.Background(), model.Receive, k)
	if err != nil {
		e.t.Fatal(err)
	}
	rk, ok := model.AcknowledgedReceived(row.State)
	if !ok {
		e.t.Fatal("no received link")
	}
	return e.rejoin(raw, rk), rk, row.State
}

func (e *env) rejoin(raw []byte, received model.Key) []byte {
	e.t.Helper()
	ctx := context.Background()
	rows := model.NewMailRows(raw)
	h, err := e.admin.FindKey(ctx, model.Header, rows.HeaderKey)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := e.admin.FindKey(ctx, model.Body, rows.BodyKey)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := e.admin.FindKey(ctx, model.Received, received)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := model.Join(model.Parts{Header: h.Content, Received: r.Content, Body: b.Content})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func TestRejectUndecidedAndRetry(t *testing.T) {
	e := start(t, func(c *Config) { c.DecisionWindow = 300 * time.Millisecond })
	e.mailbox("jo@example.org", 0)
	spam := []byte("Subject: buy now\r\n\r\ncheap\r\n")
	k := receiveKey(spam, "jo@example.org")
	if code, msg := e.send("s@spam.test", []string{"jo@example.org"}, spam); code != 451 || !strings.HasPrefix(msg, "4.7.1") {
		t.Fatalf("undecided: %d %s, want 451 4.7.1", code, msg)
	}
	e.decide(k, model.Reject, false)
	if code, msg := e.send("s@spam.test", []string{"jo@example.org"}, spam); code != 550 || !strings.HasPrefix(msg, "5.7.1") {
		t.Fatalf("rejected: %d %s, want 550 5.7.1", code, msg)
	}
	row, err := e.admin.FindKey(context.Background(), model.Receive, k)
	if err != nil {
		t.Fatal(err)
	}
	if row.State.Cols[model.ColAcknowledged] != 0 {
		t.Fatal("a rejected mail was acknowledged")
	}
}

func TestStrictWaitsForBackupDegradedDoesNot(t *testing.T) {
	for _, tc := range []struct {
		minCopies int
		want      int
	}{{2, 451}, {1, 250}} {
		e := start(t, func(c *Config) { c.DecisionWindow = 500 * time.Millisecond; c.MinCopies = tc.minCopies })
		e.mailbox("jo@example.org", 0)
		ham := []byte("Subject: hello\r\n\r\nreal mail\r\n")
		e.decideLater(receiveKey(ham, "jo@example.org"), model.Accept, false)
		if code, msg := e.send("a@x.test", []string{"jo@example.org"}, ham); code != tc.want {
			t.Errorf("min-copies %d: %d %s, want %d", tc.minCopies, code, msg, tc.want)
		}
	}
}

func TestRecipientChecks(t *testing.T) {
	e := start(t, nil)
	e.mailbox("a@example.org", 0)
	e.mailbox("b@example.org", 0)
	e.mailbox("quick@example.org", model.PolicyNoGreylist)
	// A bare number an older version stored reads as the full check.
	e.mailboxValue("legacy@example.org", 7)
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("x@y.test"); err != nil {
		t.Fatal(err)
	}
	if code, msg := codeOf(t, c.Rcpt("nobody@example.org")); code != 550 || !strings.HasPrefix(msg, "5.1.1") {
		t.Errorf("unknown mailbox: %d %s", code, msg)
	}
	// A local part with capitals reaches its lower-case mailbox (it got
	// 550 5.1.1 before 2026-11-30).
	if err := c.Rcpt("A@Example.ORG"); err != nil {
		t.Errorf("RCPT TO:<A@Example.ORG> for a@example.org: %v", err)
	}
	if err := c.Rcpt("a@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.org"); err != nil {
		t.Fatal(err)
	}
	if code, msg := codeOf(t, c.Rcpt("quick@example.org")); code != 452 || !strings.HasPrefix(msg, "4.5.3") {
		t.Errorf("other policy: %d %s", code, msg)
	}
	if err := c.Rcpt("legacy@example.org"); err != nil {
		t.Errorf("a legacy policy number kept apart from the full check: %v", err)
	}
}

// TestPostmaster: RCPT TO:<Postmaster> without a domain reaches the
// --postmaster mailbox (RFC 5321 §4.5.1 requires a server to take it),
// in any case, and postmaster@DOMAIN is an ordinary mailbox matched in
// any case. Without --postmaster, <Postmaster> is postmaster@HOSTNAME:
// 550 5.1.1 where that mailbox does not exist (it was go-smtp's 501, a
// syntax error), 250 where it does.
func TestPostmaster(t *testing.T) {
	for _, tc := range []struct {
		postmaster string
		hostBox    bool // postmaster@mx.test exists
		want       int
	}{{"pm@example.org", false, 250}, {"", false, 550}, {"", true, 250}} {
		e := start(t, func(c *Config) { c.Guard.Postmaster = tc.postmaster })
		e.mailbox("pm@example.org", 0)
		e.mailbox("postmaster@example.org", 0)
		if tc.hostBox {
			e.mailbox("postmaster@mx.test", 0)
		}
		c, err := smtp.Dial(e.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("x@y.test"); err != nil {
			t.Fatal(err)
		}
		for _, rcpt := range []string{"Postmaster", "postmaster", "POSTMASTER"} {
			code, msg := 250, ""
			if err := c.Rcpt(rcpt); err != nil {
				code, msg = codeOf(t, err)
			}
			if code != tc.want {
				t.Errorf("--postmaster %q: RCPT TO:<%s> = %d %s, want %d", tc.postmaster, rcpt, code, msg, tc.want)
			}
		}
		if err := c.Rcpt("PostMaster@Example.ORG"); err != nil {
			t.Errorf("RCPT TO:<PostMaster@Example.ORG>: %v", err)
		}
		c.Close()
	}
}

func TestDBDownGives451(t *testing.T) {
	e := start(t, func(c *Config) { c.DecisionWindow = 2 * time.Second; c.DBTimeout = time.Second })
	e.mailbox("jo@example.org", 0)
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("x@y.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("jo@example.org"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	e.db.Stop()
	if code, msg := codeOf(t, w.Close()); code != 451 || !strings.HasPrefix(msg, "4.3.0") {
		t.Fatalf("dbd down: %d %s, want 451 4.3.0", code, msg)
	}
}

// TestCaptureReplays records a session as a capture row and plays it back:
// the mail is decided by then, so the replay gets the same codes at once.
func TestCaptureReplays(t *testing.T) {
	e := start(t, nil)
	e.mailbox("jo@example.org", 0)
	raw := []byte("Subject: replay me\r\n\r\nbody\r\n")
	e.decideLater(receiveKey(raw, "jo@example.org"), model.Accept, true)
	if code, msg := e.send("a@x.test", []string{"jo@example.org"}, raw); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var content []byte
	for content == nil {
		st, err := e.admin.Scan(ctx, model.Capture, 1)
		if err != nil {
			t.Fatal(err)
		}
		if row, err := st.Next(ctx); err == nil {
			full, err := e.admin.FindKey(ctx, model.Capture, row.Key)
			if err != nil {
				t.Fatal(err)
			}
			content = full.Content
		} else if ctx.Err() != nil {
			t.Fatal("no capture row")
		}
		st.Close()
		time.Sleep(10 * time.Millisecond)
	}
	meta, recs, err := replay.Split(content)
	if err != nil || !strings.Contains(meta, "client=127.0.0.1:") {
		t.Fatalf("capture: %q %v", meta, err)
	}
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The capture holds a reference to the stored mail, not its bytes.
	mails := 0
	for _, r := range recs {
		if r.Dir == guard.DirMail {
			mails++
		}
		if r.Dir == guard.DirClient && bytes.Contains(r.Data, []byte("replay me")) {
			t.Fatal("the capture repeats the message data")
		}
	}
	if mails != 1 {
		t.Fatalf("%d mail references in the capture, want 1", mails)
	}
	if res, err := replay.Play(ctx, conn, recs, replay.Options{Wait: 5 * time.Second}); err != nil || !res.Incomplete {
		t.Fatalf("replay without dbd access: %+v %v, want incomplete", res, err)
	}
	// Played against the smtpd that recorded it, as the test has no
	// other: RecordedServer.
	res, err := replay.Play(ctx, conn, recs, replay.Options{Wait: 5 * time.Second, Data: replay.FromDB(ctx, e.admin), RecordedServer: true})
	if err != nil {
		t.Fatal(err)
	}
	// 220, 250 EHLO, 250 MAIL, 250 RCPT, 354, 250 DATA, 221 QUIT.
	if !res.Match() || len(res.Want) != 7 || res.Want[5] != 250 {
		t.Fatalf("replay: recorded %v, got %v", res.Want, res.Got)
	}
}

// TestEarlyTalkerRecorded: a client that speaks before the greeting gets
// 554 and leaves a throw-in and a capture, though it never reached EHLO.
func TestEarlyTalkerRecorded(t *testing.T) {
	e := start(t, func(c *Config) { c.Guard.GreetPause = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "EHLO spammer\r\n")
	reply, _ := io.ReadAll(conn)
	if !bytes.HasPrefix(reply, []byte("554 5.5.1")) {
		t.Fatalf("early talker got %q", reply)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tbl := range []model.Table{model.ThrowIn, model.Capture} {
		for {
			st, err := e.admin.Scan(ctx, tbl, 1)
			if err != nil {
				t.Fatal(err)
			}
			row, err := st.Next(ctx)
			st.Close()
			if err == nil {
				full, err := e.admin.FindKey(ctx, tbl, row.Key)
				if err != nil {
					t.Fatal(err)
				}
				if tbl == model.ThrowIn && (!bytes.Contains(full.Content, []byte("early-talker: yes")) || full.State.Cols["reply"] != 554) {
					t.Fatalf("throw-in %q %v", full.Content, full.State.Cols)
				}
				if tbl == model.Capture && !bytes.Contains(full.Content, []byte("EHLO spammer")) {
					t.Fatalf("capture %q", full.Content)
				}
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("no %s row", tbl)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape returns the value of one series on smtpd's /metrics (-1: absent).
func scrape(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}
