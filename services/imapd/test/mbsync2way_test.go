package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// mbsyncTwoWay is a mbsync (isync) set-up syncing INBOX both ways between
// a Maildir and one site's imapd, as a user with a laptop runs it.
type mbsyncTwoWay struct {
	t    *testing.T
	prog string
	dir  string
}

func newMbsyncTwoWay(t *testing.T) *mbsyncTwoWay {
	m := &mbsyncTwoWay{t: t, prog: need(t, "mbsync", "isync"), dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(m.dir, "mail"), 0o700); err != nil {
		t.Fatal(err)
	}
	return m
}

// sync runs mbsync against the imapd at addr and returns its output; a
// failed run fails the test.
func (m *mbsyncTwoWay) sync(addr string) string {
	m.t.Helper()
	out, err := m.try(addr)
	if err != nil {
		m.t.Fatalf("mbsync: %v\n%s", err, out)
	}
	return out
}

// try runs mbsync against the imapd at addr.
func (m *mbsyncTwoWay) try(addr string) (string, error) {
	m.t.Helper()
	cfg := writeMbsyncrc(m.t, m.dir, addr, "Create Both\nExpunge Both\nSync All")
	ctx := proctest.Ctx(m.t, 2*time.Minute)
	out, err := exec.CommandContext(ctx, m.prog, "-V", "-c", cfg, "-a").CombinedOutput()
	return string(out), err
}

// files returns the Maildir's mails by file name (flags included) with
// their contents, LF line ends and without isync's X-TUID field.
func (m *mbsyncTwoWay) files() map[string]string {
	m.t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(m.dir, "mail", "INBOX", sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(m.dir, "mail", "INBOX", sub, e.Name()))
			if err != nil {
				m.t.Fatal(err)
			}
			out[sub+"/"+e.Name()] = normal(b)
		}
	}
	return out
}

func normal(b []byte) string {
	return string(tuid.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), nil))
}

// serverState is a site's INBOX as body → sorted flags, bodies normalised
// like the Maildir's.
func serverState(t *testing.T, addr string) map[string]string {
	t.Helper()
	v, err := look(t, addr, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, body := range v.byUID {
		var fl []string
		for _, f := range v.flags[body] {
			fl = append(fl, string(f))
		}
		slices.Sort(fl)
		out[normal([]byte(body))] = strings.Join(fl, " ")
	}
	return out
}

// TestMbsyncTwoWay (catalog item 94): mbsync with "Sync All" and
// "Expunge Both" against site A. Changes made in the Maildir (a mail
// read, a mail deleted, a mail written locally) reach the server; changes
// made on the server (a flag, a new mail) reach the Maildir; a second run
// with nothing new changes nothing on either side. Then site A goes down
// and the same Maildir syncs against site B, whose UIDVALIDITY differs:
// isync refuses the changed UIDVALIDITY without touching either side,
// and a fresh sync of the folder from B gives every mail once.
func TestMbsyncTwoWay(t *testing.T) {
	a, b, _ := twoSites(t)
	m := newMbsyncTwoWay(t)
	mails := testMails(10)
	a.deliver(mails)
	m.sync(a.imapAddr)
	files := m.files()
	if len(files) != 10 {
		t.Fatalf("first sync: %d files, want 10", len(files))
	}

	// In the Maildir: read one mail, delete another, write a third.
	var read, deleted string
	for name, body := range files {
		switch {
		case strings.Contains(body, "Subject: test 3\n"):
			read = body
			markMaildir(t, m.dir, name, "S")
		case strings.Contains(body, "Subject: test 4\n"):
			deleted = body
			markMaildir(t, m.dir, name, "T")
		}
	}
	if read == "" || deleted == "" {
		t.Fatalf("test mails 3 and 4 not in the Maildir: %v", keys(files))
	}
	local := "From: alice@x.example\nTo: bob@y.example\nSubject: written in the Maildir\nMessage-ID: <local-1@x.example>\n\nsaved as a draft\n"
	if err := os.WriteFile(filepath.Join(m.dir, "mail", "INBOX", "cur", "1700000000.local-1.laptop:2,S"), []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	m.sync(a.imapAddr)
	srv := serverState(t, a.imapAddr)
	if len(srv) != 10 {
		t.Errorf("site A holds %d mails after the two-way sync, want 10 (10 - 1 deleted + 1 written): %v", len(srv), keys(srv))
	}
	if f, ok := srv[read]; !ok || !strings.Contains(f, `\Seen`) {
		t.Errorf("the mail read in the Maildir has flags %q at site A (present %v), want \\Seen", f, ok)
	}
	if _, ok := srv[deleted]; ok {
		t.Error("the mail deleted in the Maildir is still at site A")
	}
	if _, ok := srv[local]; !ok {
		t.Errorf("the mail written in the Maildir is not at site A byte for byte; site A holds %v", keys(srv))
	}

	// On the server: a flag from another client, and a new mail.
	flagAt(t, a.imapAddr, "Subject: test 5\r\n", imap.FlagFlagged)
	more := testMails(11)[10:]
	a.deliver(more)
	m.sync(a.imapAddr)
	files = m.files()
	if len(files) != 11 {
		t.Fatalf("after the server's changes: %d files, want 11", len(files))
	}
	flagged := false
	for name, body := range files {
		if strings.Contains(body, "Subject: test 5\n") {
			flagged = strings.Contains(name[strings.LastIndex(name, ":2,")+3:], "F")
		}
	}
	if !flagged {
		t.Errorf("the flag set at site A did not reach the Maildir: %v", keys(files))
	}

	// A run with nothing new changes nothing.
	beforeFiles, beforeSrv := m.files(), serverState(t, a.imapAddr)
	m.sync(a.imapAddr)
	if got := m.files(); !mapsEqual(got, beforeFiles) {
		t.Errorf("an idle sync changed the Maildir:\nbefore %v\nafter  %v", keys(beforeFiles), keys(got))
	}
	if got := serverState(t, a.imapAddr); !mapsEqual(got, beforeSrv) {
		t.Errorf("an idle sync changed site A:\nbefore %v\nafter  %v", beforeSrv, got)
	}

	// Failover: B catches up with A, A goes down, the laptop syncs with B.
	eventually(t, "site B equal to site A", func() (bool, error) {
		return mapsEqual(serverState(t, b.imapAddr), beforeSrv), nil
	})
	a.imapd.Kill()
	// UIDs are per site (docs/imapd.md §2). isync checks a UIDVALIDITY
	// change by the Message-IDs of the mails at the UIDs it knew; at B
	// other mails, or none, are there, so it refuses to go on and changes
	// nothing: no mail twice, none lost, none deleted.
	out, err := m.try(b.imapAddr)
	if err == nil || !strings.Contains(out, "UIDVALIDITY") {
		t.Fatalf("mbsync against site B after the failover: err %v, want the UIDVALIDITY refusal:\n%s", err, proctest.Tail(out, 15))
	}
	if got := m.files(); !mapsEqual(got, beforeFiles) {
		t.Errorf("the refused sync changed the Maildir:\nbefore %v\nafter  %v", keys(beforeFiles), keys(got))
	}
	if got := serverState(t, b.imapAddr); !mapsEqual(got, beforeSrv) {
		t.Errorf("the refused sync changed site B:\nbefore %v\nafter  %v", beforeSrv, got)
	}
	// The documented way on (docs/imapd.md §2): the Maildir folder holds
	// nothing that is not on the server after the last good sync, so the
	// user moves it away and syncs afresh from B.
	if err := os.Rename(filepath.Join(m.dir, "mail", "INBOX"), filepath.Join(m.dir, "INBOX.before-failover")); err != nil {
		t.Fatal(err)
	}
	m.sync(b.imapAddr)
	files = m.files()
	srvB := serverState(t, b.imapAddr)
	if !mapsEqual(srvB, beforeSrv) {
		t.Errorf("the fresh sync changed site B:\nbefore %v\nafter  %v", beforeSrv, srvB)
	}
	bodies := map[string]int{}
	for _, body := range files {
		bodies[body]++
	}
	for body, n := range bodies {
		if n > 1 {
			t.Errorf("after the failover the Maildir holds a mail %d times:\n%s", n, body)
		}
		if _, ok := srvB[body]; !ok {
			t.Errorf("after the failover a Maildir mail is not at site B:\n%s", body)
		}
	}
	if len(bodies) != len(srvB) {
		t.Errorf("after the failover: site B %d mails, the Maildir %d, want the same", len(srvB), len(bodies))
	}
	m.sync(b.imapAddr) // and from there on it syncs with B as it did with A
	if got := m.files(); !mapsEqual(got, files) {
		t.Errorf("an idle sync with site B changed the Maildir")
	}
}

// markMaildir adds a flag letter to a Maildir file (moving it to cur/),
// the way a mail program records it.
func markMaildir(t *testing.T, dir, name, flag string) {
	t.Helper()
	base := filepath.Base(name)
	info := ""
	if i := strings.Index(base, ":2,"); i >= 0 {
		base, info = base[:i], base[i+3:]
	}
	chars := []rune(info + flag)
	slices.Sort(chars)
	to := filepath.Join(dir, "mail", "INBOX", "cur", base+":2,"+string(chars))
	if err := os.Rename(filepath.Join(dir, "mail", "INBOX", name), to); err != nil {
		t.Fatal(err)
	}
}

// flagAt sets flag on the INBOX mail of site addr whose body contains
// marker, as another mail program would.
func flagAt(t *testing.T, addr, marker string, flag imap.Flag) {
	t.Helper()
	v, err := look(t, addr, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var uid imap.UID
	for u, body := range v.byUID {
		if strings.Contains(body, marker) {
			uid = u
		}
	}
	if uid == 0 {
		t.Fatalf("no mail with %q at %s", marker, addr)
	}
	c := dialLogin(t, addr)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{flag}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		if len(k) > 40 {
			k = k[:40]
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// writeMbsyncrc writes an isync configuration for INBOX between the imapd
// at addr and a Maildir under dir, with the channel's sync options, and
// returns its path.
func writeMbsyncrc(t *testing.T, dir, addr, options string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	rc := fmt.Sprintf(`IMAPAccount t
Host %s
Port %s
User %s
Pass "%s"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account t

MaildirStore local
Path %s/mail/
Inbox %s/mail/INBOX

Channel c
Far :remote:
Near :local:
Patterns INBOX
%s
SyncState *
`, host, port, login, password, dir, dir, options)
	cfg := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfg, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}
