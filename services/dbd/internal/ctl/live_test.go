package ctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
