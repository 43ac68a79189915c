package ctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// liveDB starts a real dbd on 127.0.0.1 for the test and returns it and
// dbctl's connection flags for it, with the admin key.
func liveDB(t *testing.T) (*dbdtest.Env, []string) {
	t.Helper()
	e := dbdtest.Start(t, dbdtest.Options{})
	keys := filepath.Join(e.Dir, "keys")
	return e, []string{"--db", e.Addr, "--db-pub", filepath.Join(keys, "dbd.pub"), "--key", filepath.Join(keys, "admin")}
}

// TestUserPasswdMissingAccount: `user passwd` of a login that has no
// account (a typo) made a new account with that password and said "ok",
// while the account meant kept its old password. It must fail with
// ExitNotFound and make nothing; an existing account's password is set.
func TestUserPasswdMissingAccount(t *testing.T) {
	e, db := liveDB(t)
	out, errs, code := runCtl(t, "correct horse\n", append(db, "user", "passwd", "jho")...)
	if code != ExitNotFound || strings.Contains(out, "ok") || !strings.Contains(errs, `no account "jho"`) {
		t.Errorf("user passwd of a missing account: exit %d, stdout %q, stderr %q; want %d and no account", code, out, errs, ExitNotFound)
	}
	if out, _, code := runCtl(t, "", append(db, "user", "show", "jho")...); code != ExitNotFound {
		t.Errorf("after user passwd of a missing account, user show: exit %d\n%s; want %d (no account made)", code, out, ExitNotFound)
	}

	if _, errs, code := runCtl(t, "correct horse\n", append(db, "user", "add", "jo", "--mailbox", "jo@x.example")...); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, errs)
	}
	if out, errs, code := runCtl(t, "battery staple\n", append(db, "user", "passwd", "JO")...); code != 0 || out != "ok\n" {
		t.Errorf("user passwd of an existing account: exit %d, %q %s", code, out, errs)
	}
	st := mailbox.New(e.Client(auth.Mailbox))
	if _, err := st.Login(context.Background(), "jo", "battery staple"); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
}

// TestExportMboxIntoEmptyFolder: --out may be an empty folder (docs/dbd.md
// "Export"), but an mbox export of one mailbox without IMAP folders opened
// --out itself as the file and failed with "file exists". The file goes
// into the folder as INBOX.mbox, as it does when there are folders, and
// imports back byte for byte.
func TestExportMboxIntoEmptyFolder(t *testing.T) {
	_, db := liveDB(t)
	dir := t.TempDir()
	mails := []string{"Subject: one\n\n>From me\nbody\n", "Subject: two\r\n\r\nno line end"}
	var in bytes.Buffer
	w := bufio.NewWriter(&in)
	for _, m := range mails {
		writeMbox(w, "a@x.example", time.Unix(1e9, 0), []byte(m))
	}
	w.Flush()
	src := filepath.Join(dir, "in.mbox")
	if err := os.WriteFile(src, in.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := runCtl(t, "", append(db, "import", "--mailbox", "jo@x.example", "--format", "mbox", src)...); code != 0 {
		t.Fatalf("import: exit %d: %s%s", code, out, errs)
	}
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := runCtl(t, "", append(db, "export", "--mailbox", "jo@x.example", "--format", "mbox", "--out", outDir)...); code != 0 {
		t.Fatalf("export into an empty folder: exit %d: %s%s", code, out, errs)
	}
	f, err := os.Open(filepath.Join(outDir, "INBOX.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newMboxReader(f, mboxrd, 1<<20)
	for i, want := range mails {
		m, err := r.Next()
		if err != nil || m.Err != nil || string(m.Raw) != want {
			t.Fatalf("exported mail %d: %q, %v, %v; want %q", i, m.Raw, m.Err, err, want)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("more than %d mails exported: %v", len(mails), err)
	}
	// A folder that is not empty is still refused, before anything is written.
	if _, errs, code := runCtl(t, "", append(db, "export", "--mailbox", "jo@x.example", "--format", "mbox", "--out", outDir)...); code != 2 {
		t.Errorf("export into a folder that is not empty: exit %d (%s), want 2", code, errs)
	}
}

// TestExportEveryMailboxOverScanBound: export of every mailbox and mailbox
// list read the mailbox table with one scan, which dbd cuts to the newest
// 10000 rows: a site with more mailboxes exported, and listed, only the
// newest 10000 without a word. They page through the table now: every
// mailbox, the oldest too, gets its ADDRESS.mbox file and its line.
func TestExportEveryMailboxOverScanBound(t *testing.T) {
	e, db := liveDB(t)
	cl := e.Client(auth.Admin)
	const boxes = maxScan + 50
	addr := func(i int) string { return fmt.Sprintf("m%d@x.example", i) }
	for i := 0; i < boxes; {
		var reqs []wire.Request
		for ; i < boxes && len(reqs) < wire.MaxBatchOps; i++ {
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: model.MailboxContent(addr(i))})
		}
		if _, err := cl.Batch(context.Background(), reqs); err != nil {
			t.Fatal(err)
		}
	}

	out, errs, code := runCtl(t, "", append(db, "mailbox", "list")...)
	if code != 0 {
		t.Fatalf("mailbox list: exit %d: %s", code, errs)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		listed[strings.Fields(l)[0]] = true
	}
	if len(listed) != boxes || !listed[addr(0)] {
		t.Errorf("mailbox list of %d mailboxes: %d listed, the oldest (%s) listed: %v; want every one", boxes, len(listed), addr(0), listed[addr(0)])
	}

	// dbctl scan N cut N to 10000 the same way.
	out, errs, code = runCtl(t, "", append(db, "scan", "mailbox", "20000")...)
	if n := strings.Count(out, "\n"); code != 0 || n != boxes {
		t.Errorf("scan mailbox 20000 of %d mailboxes: exit %d (%s), %d rows; want every one", boxes, code, errs, n)
	}

	dir := filepath.Join(t.TempDir(), "out")
	if _, errs, code := runCtl(t, "", append(db, "export", "--format", "mbox", "--out", dir)...); code != 0 {
		t.Fatalf("export of every mailbox: exit %d: %s", code, errs)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != boxes {
		t.Errorf("export of %d mailboxes wrote %d files, want one each", boxes, len(ents))
	}
	for i := 0; i < boxes; i++ {
		if _, err := os.Stat(filepath.Join(dir, fileName(addr(i))+".mbox")); err != nil {
			t.Errorf("export of every mailbox: %s not exported: %v", addr(i), err)
			break
		}
	}
}

// TestRowCountsOverScanBound: mails --last, verdict --scan and
// recover-acks --scan refused more than 10000 rows, the most one scan
// answers, so a mail older than the newest 10000 receive rows (an orphan
// after a site loss, during a backlog) was out of their reach. They page
// now: each finds the oldest mail behind 10050 newer ones.
func TestRowCountsOverScanBound(t *testing.T) {
	e, db := liveDB(t)
	cl := e.Client(auth.Admin)
	ctx := context.Background()
	const newer = maxScan + 50
	mb := model.MailboxContent("jo@x.example")
	mailKey := func(i int) model.Key { return model.KeyOf(model.Mail, []byte(fmt.Sprintf("mail %d", i))) }
	// The oldest receive row and throw-in: an accepted mail without ack.
	orphan := model.ReceiveContent(mailKey(-1), model.KeyOf(model.Mailbox, mb))
	at := model.Attempt{Session: "s", Attempt: 1, Time: time.Now(), Client: "192.0.2.1:25", Size: 10, Mail: mailKey(-1), HasMail: true}
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: mb},
		{Op: wire.OpFindOrInsert, Table: model.ThrowIn, Content: at.Content()},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: orphan},
		{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{Content: orphan}, Name: model.ColVerdict,
			Value: model.EncodeVerdict(model.SourceOperator, model.Epoch(time.Now()), model.Accept)},
	}
	if _, err := cl.Batch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < newer; {
		reqs = reqs[:0]
		for ; i < newer && len(reqs)+2 <= wire.MaxBatchOps; i++ {
			other := model.Attempt{Session: fmt.Sprintf("s%d", i), Attempt: 1, Time: time.Now(), Client: "192.0.2.2:25"}
			reqs = append(reqs,
				wire.Request{Op: wire.OpFindOrInsert, Table: model.ThrowIn, Content: other.Content()},
				wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: model.ReceiveContent(mailKey(i), model.KeyOf(model.Mailbox, mb))})
		}
		if _, err := cl.Batch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
	all := fmt.Sprint(newer + 1)
	rk := model.KeyOf(model.Receive, orphan).String()

	out, errs, code := runCtl(t, "", append(db, "recover-acks", "--scan", all)...)
	if code != 0 || !strings.Contains(out, rk) || !strings.Contains(out, "recover-acks: 1 accepted without ack") {
		t.Errorf("recover-acks --scan %s: exit %d (%s), output ...%s; want the oldest receive row %s", all, code, errs, tail(out), rk)
	}
	out, errs, code = runCtl(t, "", append(db, "verdict", "--scan", all, "reject", mailKey(-1).String())...)
	if code != 0 || out != rk+" reject\n" {
		t.Errorf("verdict --scan %s of the oldest mail: exit %d (%s), %q; want %q", all, code, errs, out, rk+" reject\n")
	}
	out, errs, code = runCtl(t, "", append(db, "mails", "--last", all)...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != newer+1 || !strings.HasPrefix(lines[len(lines)-1], mailKey(-1).String()) {
		t.Errorf("mails --last %s: exit %d (%s), %d lines, the last ...%s; want %d, the oldest mail last", all, code, errs, len(lines), tail(out), newer+1)
	}
}
