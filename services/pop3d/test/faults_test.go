package test

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// faultMails delivers n small mails and one large one (the last) to
// alice@x.example at s and returns them with their receive keys.
func faultMails(t *testing.T, s *site, n int) ([][]byte, []model.Key) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	var mails [][]byte
	var keys []model.Key
	for i := range n + 1 {
		m := fmt.Appendf(nil, "From: s@x.example\r\nSubject: fault %d\r\n\r\nbody %d\r\n.dot\r\n", i, i)
		if i == n { // about 6 MiB: many TCP windows
			m = append(m, bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n"), 90000)...)
		}
		k, err := s.deliver(ctx, "alice@x.example", m)
		if err != nil {
			t.Fatal(err)
		}
		mails, keys = append(mails, m), append(keys, k)
	}
	return mails, keys
}

// TestClientGoneMidRETR: a client that resets its connection in the middle
// of a 6 MiB RETR, after a DELE, ends its session without UPDATE: nothing
// is deleted, pop3d counts the broken response, keeps serving, and the
// next session gets the whole mail.
func TestClientGoneMidRETR(t *testing.T) {
	s := newSite(t, "A", "")
	s.user("alice", "alice password", "alice@x.example")
	mails, keys := faultMails(t, s, 3)
	p := s.startPOP3D("")
	big := len(mails)
	c := mustPOP(t, p.addr, "alice", "alice password")
	if _, err := c.cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.cmd(fmt.Sprintf("RETR %d", big)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.r.Read(make([]byte, 8192)); err != nil {
		t.Fatal(err)
	}
	c.nc.(*net.TCPConn).SetLinger(0) // close sends RST
	c.nc.Close()
	waitMetric(t, p.metrics, "twinmx_pop3d_sessions_active", 0)
	waitMetric(t, p.metrics, `twinmx_pop3d_errors_total{kind="io"}`, 1)
	if deletedAt(t, s, keys[0]) {
		t.Fatal("a session reset mid-RETR applied its DELE")
	}
	c = mustPOP(t, p.addr, "alice", "alice password")
	got, err := c.retr(big)
	if err != nil || !bytes.Equal(got, mails[big-1]) {
		t.Fatalf("RETR %d after a reset mid-RETR: %d octets, %v; want %d", big, len(got), err, len(mails[big-1]))
	}
	if err := c.quit(); err != nil {
		t.Fatal(err)
	}
}

// TestDBDKilledMidSession: dbd dies with SIGKILL while a session is open
// and comes back. While it is down, every RETR gets either the whole mail
// (read ahead before the kill) or -ERR, never a part of one ended as
// complete; the session stays usable and, once dbd is back, serves mail
// again and its DELE + QUIT removes exactly what it marked. A QUIT while
// dbd is down answers -ERR and removes nothing, and a later session sees
// the mail.
func TestDBDKilledMidSession(t *testing.T) {
	s := newSite(t, "A", "")
	s.user("alice", "alice password", "alice@x.example")
	mails, keys := faultMails(t, s, 12)
	p := s.startPOP3D("", "--db-timeout", "1s")

	c := mustPOP(t, p.addr, "alice", "alice password")
	if l, err := c.cmd("STAT"); err != nil || !strings.HasPrefix(l, fmt.Sprintf("+OK %d ", len(mails))) {
		t.Fatalf("STAT: %q, %v", l, err)
	}
	if got, err := c.retr(1); err != nil || !bytes.Equal(got, mails[0]) {
		t.Fatalf("RETR 1: %q, %v", got, err)
	}
	if _, err := c.cmd("DELE 2"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	// Every mail, the large one too, while dbd is down.
	down := 0
	for i := 3; i <= len(mails); i++ {
		got, err := c.retr(i)
		switch {
		case err == nil && !bytes.Equal(got, mails[i-1]):
			t.Fatalf("RETR %d with dbd down: %d octets ended as complete, want %d", i, len(got), len(mails[i-1]))
		case err != nil && !strings.Contains(err.Error(), "-ERR [SYS/TEMP]"):
			t.Fatalf("RETR %d with dbd down: %v, want the mail or -ERR [SYS/TEMP]", i, err)
		case err != nil:
			down++
		}
	}
	if down == 0 {
		t.Fatal("every RETR succeeded with dbd down: the test did not test the fault")
	}
	if _, err := c.cmd("NOOP"); err != nil {
		t.Fatalf("NOOP after failed RETRs: %v", err)
	}
	s.Start()
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var got []byte
		if got, last = c.retr(len(mails)); last == nil {
			if !bytes.Equal(got, mails[len(mails)-1]) {
				t.Fatalf("RETR of the large mail after dbd's restart: %d octets, want %d", len(got), len(mails[len(mails)-1]))
			}
			break
		}
	}
	if last != nil {
		t.Fatalf("RETR after dbd's restart: %v", last)
	}
	if l, err := c.cmd("QUIT"); err != nil || l != "+OK bye, 1 messages deleted" {
		t.Fatalf("QUIT after dbd's restart: %q, %v", l, err)
	}
	for i, k := range keys {
		if got := deletedAt(t, s, k); got != (i == 1) {
			t.Errorf("mail %d deleted %v after the session, want %v", i+1, got, i == 1)
		}
	}

	// QUIT with dbd down: -ERR, nothing removed.
	c = mustPOP(t, p.addr, "alice", "alice password")
	if _, err := c.cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if l, err := c.cmd("QUIT"); err == nil || !strings.Contains(err.Error(), "-ERR [SYS/TEMP]") {
		t.Fatalf("QUIT with dbd down: %q, %v; want -ERR [SYS/TEMP]", l, err)
	}
	s.Start()
	waitUIDs(t, p.addr, uidsOf(keys[:1], keys[2:]))
	// A login while dbd is down is refused as temporary.
	s.Kill()
	if _, err := dialPOP(p.addr, "alice", "alice password"); err == nil || !strings.Contains(err.Error(), "-ERR [SYS/TEMP]") {
		t.Fatalf("login with dbd down: %v, want -ERR [SYS/TEMP]", err)
	}
	s.Start()
}

// TestSessionsAtBothSites: two sessions of one mailbox at once are both
// let in (no maildrop lock, docs/pop3d.md §3), at one site and at the two
// sites. A mail deleted by a session at A (DELE + QUIT, replicated to B)
// stays readable, whole, in a session at B that was opened before; that
// session's DELE + QUIT of it is harmless, and the next session at B does
// not list it. A second session at A sees its login's mail after the first
// one's QUIT as well.
func TestSessionsAtBothSites(t *testing.T) {
	dir := t.TempDir()
	runProg(t, nil, "dbctl", "keygen", "--out", filepath.Join(dir, "backupd"))
	a := newSite(t, "A", filepath.Join(dir, "backupd.pub"))
	b := newSite(t, "B", filepath.Join(dir, "backupd.pub"))
	startBackupd(t, dir, a, b)
	a.user("alice", "alice password", "alice@x.example")
	mails, keys := faultMails(t, a, 4)
	pa, pb := a.startPOP3D(""), b.startPOP3D("")
	all := uidsOf(keys)
	waitUIDs(t, pb.addr, all)

	nums := uidNumbers(t, pb.addr)
	first := keys[0].String()[:32]
	ca1 := mustPOP(t, pa.addr, "alice", "alice password")
	ca2 := mustPOP(t, pa.addr, "alice", "alice password")
	cb := mustPOP(t, pb.addr, "alice", "alice password")
	if _, err := ca1.cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if l, err := ca1.cmd("QUIT"); err != nil || l != "+OK bye, 1 messages deleted" {
		t.Fatalf("QUIT at A: %q, %v", l, err)
	}
	waitUIDs(t, pb.addr, all[1:])
	for name, c := range map[string]*popConn{"A": ca2, "B": cb} {
		n := 1
		if name == "B" {
			n = nums[first]
		}
		if got, err := c.retr(n); err != nil || !bytes.Equal(got, mails[0]) {
			t.Errorf("RETR at %s of the mail a session at A deleted: %d octets, %v; want the whole mail", name, len(got), err)
		}
		if _, err := c.cmd(fmt.Sprintf("DELE %d", n)); err != nil {
			t.Fatal(err)
		}
		if l, err := c.cmd("QUIT"); err != nil || l != "+OK bye, 1 messages deleted" {
			t.Errorf("QUIT at %s deleting a deleted mail: %q, %v", name, l, err)
		}
	}
	waitUIDs(t, pa.addr, all[1:])
	waitUIDs(t, pb.addr, all[1:])
}

// uidsOf returns the UIDLs of the receive keys of each list.
func uidsOf(lists ...[]model.Key) []string {
	var out []string
	for _, ks := range lists {
		for _, k := range ks {
			out = append(out, k.String()[:32])
		}
	}
	return out
}

// TestQuitRacesDBDKill: dbd is killed with SIGKILL at moments around a
// QUIT that removes one marked mail, and restarted. A +OK to QUIT means
// the deletion is durable: the restarted dbd has the mail deleted. An
// -ERR (RFC 1939 §6: "some deleted messages not removed") may come with
// the mark applied or not — the answer was lost or the batch never
// arrived — and either way nothing else is deleted.
func TestQuitRacesDBDKill(t *testing.T) {
	s := newSite(t, "A", "")
	s.user("alice", "alice password", "alice@x.example")
	const rounds = 8
	_, keys := faultMails(t, s, rounds+1)
	p := s.startPOP3D("", "--db-timeout", "1s")
	for i := range rounds {
		c := loginRetry(t, p.addr)
		nums, _, err := c.uidl()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.cmd(fmt.Sprintf("DELE %d", nums[uidsOf(keys[i : i+1])[0]])); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var reply string
		go func() {
			defer close(done)
			reply, err = c.cmd("QUIT")
		}()
		time.Sleep(time.Duration(i%4) * 300 * time.Microsecond)
		s.Kill()
		<-done
		s.Start()
		switch {
		case err == nil && !deletedAt(t, s, keys[i]):
			t.Fatalf("round %d: QUIT answered %q, but the restarted dbd has the mail not deleted", i, reply)
		case err != nil && !strings.Contains(err.Error(), "-ERR [SYS/TEMP]"):
			t.Fatalf("round %d: QUIT: %v, want +OK or -ERR [SYS/TEMP]", i, err)
		}
		for k, key := range keys[i+1:] {
			if deletedAt(t, s, key) {
				t.Fatalf("round %d: mail %d, not marked, is deleted", i, i+1+k)
			}
		}
	}
}

// loginRetry logs alice in at addr, retrying for up to 30 s while pop3d's
// dbd client reconnects (a login meanwhile gets -ERR [SYS/TEMP]).
func loginRetry(t *testing.T, addr string) *popConn {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var c *popConn
		if c, err = dialPOP(addr, "alice", "alice password"); err == nil {
			t.Cleanup(func() { c.nc.Close() })
			return c
		}
		if !strings.Contains(err.Error(), "-ERR [SYS/TEMP]") {
			break
		}
	}
	t.Fatalf("login at %s: %v", addr, err)
	return nil
}
