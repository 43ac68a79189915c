package test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestIPv6 runs the whole path over the IPv6 loopback address, as a
// dual-stack site does: two dbds, backupd, smtpd in strict mode, pop3d
// and imapd all listen on ::1 and reach each other there. A mail sent
// with Python's smtplib over IPv6 gets 250 once it is on both sites; the
// throw-in row keeps the IPv6 client address, the trace field names it as
// an RFC 5321 address literal ([IPv6:::1]), and POP3 and IMAP at site B,
// also over IPv6, return it byte for byte.
func TestIPv6(t *testing.T) {
	requireIPv6(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed (smtplib, poplib, imaplib): %v", err)
	}
	bin := buildMore(t, "pop3d", "imapd")
	a, b := twoSitesOn(t, "::1")
	if !strings.HasPrefix(a.Addr, "[::1]:") || !strings.HasPrefix(b.Addr, "[::1]:") {
		t.Fatalf("dbds at %s and %s, want [::1]", a.Addr, b.Addr)
	}
	const rcpt, user, pass = "v6@twinmx.test", "v6", "v6 password"
	b.addClientKeys("mailbox")
	a.addMailbox(rcpt)
	a.addUser(user, pass, rcpt)
	a.autoverdict("accept")
	d := a.startSMTPD(smtpdOptions{Listen: proctest.FreePortOn(t, "::1"), DecisionWindow: 10 * time.Second, MinCopies: 2})
	pop3, imap := proctest.FreePortOn(t, "::1"), proctest.FreePortOn(t, "::1")
	proctest.StartProc(t, bin, "pop3d", pop3, append(b.DBFlags("mailbox"), "--listen", pop3)...)
	proctest.StartProc(t, bin, "imapd", imap, append(b.DBFlags("mailbox"), "--listen", imap)...)

	msg := []byte("From: ann@example.net\r\nTo: " + rcpt + "\r\nSubject: over IPv6\r\nMessage-ID: <v6-1@example.net>\r\n\r\nsent to [::1]\r\n")
	host, port, _ := net.SplitHostPort(d.addr)
	send := exec.CommandContext(proctest.Ctx(t, time.Minute), py, "-c", `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="client.v6.test", timeout=30)
print(s.sendmail("ann@example.net", [sys.argv[3]], sys.stdin.buffer.read()))
s.quit()
`, host, port, rcpt)
	send.Stdin = bytes.NewReader(msg)
	if out, err := send.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "{}" {
		t.Fatalf("smtplib over IPv6: %v\n%s", err, out)
	}
	// 250 in strict mode: acknowledged, and so on both sites.
	mailKey := model.NewMailRows(msg).MailKey
	key := model.KeyOf(model.Receive, model.ReceiveContent(mailKey, model.KeyOf(model.Mailbox, model.MailboxContent(rcpt))))
	waitAck(t, b, key)

	// The attempt as the throw-in row keeps it.
	attempt := throwInByHelo(t, a, "client.v6.test")
	if attempt.ClientIP() != "::1" || !strings.HasPrefix(attempt.Client, "[::1]:") {
		t.Fatalf("throw-in client %q (IP %q), want [::1]:PORT", attempt.Client, attempt.ClientIP())
	}

	// The mailbox read over IPv6 at site B: what was sent, below our trace
	// field, which names the client as an IPv6 address literal.
	for _, p := range []struct{ proto, addr string }{{"pop3", pop3}, {"imap", imap}} {
		var got [][]byte
		waitFor(t, 20*time.Second, p.proto+" at site B listing the mail", func() bool {
			got = proctest.ReadMailbox(t, py, p.proto, p.addr, user, pass)
			return len(got) == 1
		})
		head, rest, ok := bytes.Cut(got[0], []byte("\r\n\tby "))
		if !ok || !bytes.HasPrefix(head, []byte("Return-Path: <ann@example.net>\r\nReceived: from client.v6.test ([IPv6:::1])")) {
			t.Fatalf("%s: trace field %q, want one from client.v6.test ([IPv6:::1])", p.proto, head)
		}
		if !bytes.HasSuffix(rest, msg) || bytes.Count(rest[:len(rest)-len(msg)], []byte("\r\n")) != 3 {
			t.Fatalf("%s: mail read\n%q\nwant our trace field and then\n%q", p.proto, got[0], msg)
		}
	}
}

// TestDualStackListen: smtpd with --listen :PORT, as deploy/systemd's
// smtpd.env has it, takes mail over IPv4 and IPv6 alike, and an IPv4
// client is recorded as such (127.0.0.1), not as an IPv4-mapped IPv6
// address, so its limits and records are those of an IPv4 client.
func TestDualStackListen(t *testing.T) {
	requireIPv6(t)
	s := newSite(t)
	s.Start()
	const rcpt = "ds@twinmx.test"
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	_, port, _ := net.SplitHostPort(proctest.FreePort(t))
	s.startSMTPD(smtpdOptions{Listen: ":" + port, MinCopies: 1})
	for _, c := range []struct{ host, helo, want string }{
		{"127.0.0.1", "client.v4.test", "127.0.0.1"},
		{"::1", "client.v6.test", "::1"},
	} {
		nc, r, err := dialSMTP(net.JoinHostPort(c.host, port), 30*time.Second)
		if err != nil || r.Code != 220 {
			t.Fatalf("connect over %s: %v %v", c.host, r, err)
		}
		if r, err := nc.cmd("EHLO %s", c.helo); err != nil || r.Code != 250 {
			t.Fatalf("EHLO over %s: %v %v", c.host, r, err)
		}
		msg := []byte("From: ann@example.net\r\nSubject: " + c.helo + "\r\n\r\nover " + c.host + "\r\n")
		rr, r, err := nc.transaction("ann@example.net", []string{rcpt}, msg)
		nc.close()
		if err != nil || r.Code != 250 || len(rr) != 1 || rr[0].Code != 250 {
			t.Fatalf("mail over %s: %v %v %v, want 250", c.host, rr, r, err)
		}
		if got := throwInByHelo(t, s, c.helo).ClientIP(); got != c.want {
			t.Fatalf("client over %s recorded as %q, want %q", c.host, got, c.want)
		}
	}
}

// requireIPv6 skips a test on a machine without an IPv6 loopback (a
// container started without IPv6): there is nothing to test there.
func requireIPv6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine (%v): nothing to test", err)
	}
	ln.Close()
}

// throwInByHelo returns the newest of the site's ten newest throw-in rows
// whose HELO is helo.
func throwInByHelo(t *testing.T, s *site, helo string) model.Attempt {
	t.Helper()
	ctx := context.Background()
	cl := s.Client()
	keys, err := cl.ScanKeys(ctx, model.ThrowIn, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		row, err := cl.FindKey(ctx, model.ThrowIn, k)
		if err != nil {
			t.Fatal(err)
		}
		if at, err := model.ParseThrowIn(row.Content); err == nil && at.Helo == helo {
			return at
		}
	}
	t.Fatalf("no throw-in row with HELO %s", helo)
	return model.Attempt{}
}
