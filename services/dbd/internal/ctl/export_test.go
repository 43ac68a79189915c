package ctl

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// TestDirSinkExisting: an export folder is never shared. One of several
// mailboxes' folders must be new (on a file system that ignores case,
// "Jo@x" and "jo@x" are one folder; the second mailbox's mail went
// silently into the first's); --out itself may be an empty folder.
func TestDirSinkExisting(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	if err := os.Mkdir(full, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "x.eml"), []byte("A: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, maildir := range []bool{false, true} {
		if _, err := newDirSink(full, maildir, placeOut); err == nil {
			t.Errorf("maildir %v: a folder with a file in it was taken", maildir)
		}
		if _, err := newDirSink(dir, maildir, placeInOut); err == nil {
			t.Errorf("maildir %v: an existing folder was taken as one mailbox's of several", maildir)
		}
		empty := t.TempDir()
		if _, err := newDirSink(empty, maildir, placeOut); err != nil {
			t.Errorf("maildir %v: an empty folder as --out: %v", maildir, err)
		}
		if _, err := newDirSink(filepath.Join(dir, "new", "box"), maildir, placeInOut); err != nil {
			t.Errorf("maildir %v: a new folder: %v", maildir, err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "new")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDirSinkMaildir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "md")
	s, err := newDirSink(dir, true, placeInOut)
	if err != nil {
		t.Fatal(err)
	}
	k := model.KeyOf(model.Receive, []byte("r"))
	st := model.State{Cols: map[string]uint64{"imap.flag.seen": model.MemberValue(time.Unix(1e9, 0), true), "imap.flag.answered": model.MemberValue(time.Unix(1e9, 0), true)}}
	at := time.Unix(1.5e9, 0)
	if err := s.add(mailbox.Message{Receive: k, State: st}, []byte("A: 1\r\n"), at); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "cur", "1500000000."+k.String()+".twinmx"+maildirInfoDelimiter(runtime.GOOS)+"2,RS")
	b, err := os.ReadFile(p)
	fi, serr := os.Stat(p)
	if err != nil || serr != nil || string(b) != "A: 1\r\n" || !fi.ModTime().Equal(at) {
		t.Fatalf("read %s: %q %v %v", p, b, err, serr)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp/ holds %d files after the export", len(ents))
	}
}

// TestFileName: a mailbox address is one file name in its folder, whatever
// it holds, that can be created (a long one used to fail the export of
// every mailbox with "file name too long"), and two addresses never share
// one.
func TestFileName(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("\u7528", 80) + "@example.org" // 720 bytes escaped
	seen := map[string]string{}
	for _, a := range []string{".", "..", "../x@y", "a/b@c", "a\x00b@c", `a\b@c`, ".hidden@x", "%2E@x", "a%2Fb@c", "jo@x", "Jo@x",
		long, long + "x", strings.Repeat("a", 300) + "@x", strings.Repeat("a", 300) + "@y"} {
		n := fileName(a)
		if n == "." || n == ".." || strings.HasPrefix(n, ".") || strings.ContainsAny(n, "/\x00\\") || filepath.Base(n) != n || len(n) > maxFileName {
			t.Errorf("fileName(%q) = %q", a, n)
		}
		if o, ok := seen[n]; ok {
			t.Errorf("fileName(%q) = fileName(%q) = %q", a, o, n)
		}
		seen[n] = a
		if err := os.WriteFile(filepath.Join(dir, n+".mbox"), nil, 0o600); err != nil {
			t.Errorf("fileName(%.40q...): %v", a, err)
		}
	}
}

// FuzzMboxSeparator checks the separator line the export writes for a
// mail: read back, it gives the mail's sender (or MAILER-DAEMON) and the
// date, whatever the mail's Return-Path holds, and the mail byte for byte.
func FuzzMboxSeparator(f *testing.F) {
	f.Add([]byte("Return-Path: <a@b>\r\nA: 1\r\n\r\nx"), int64(1e9))
	f.Add([]byte("Return-Path: <>\nFrom x\n"), int64(0))
	f.Add([]byte("return-path:a b@c\n\nFrom x"), int64(1<<40))
	f.Add([]byte("Return-Path: <a\u00a0b@c>\n\n"), int64(1e9))
	f.Add([]byte("Return-Path: <"+strings.Repeat("x", 5000)+">\n\n"), int64(1e9))
	f.Fuzz(func(t *testing.T, raw []byte, sec int64) {
		date := time.Unix(sec, 0).UTC()
		if date.Year() < 1970 || date.Year() > 9999 {
			date = time.Unix(0, 0).UTC() // asctime has four-digit years
		}
		sender := envelopeSender(raw)
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		writeMbox(w, sender, date, raw)
		w.Flush()
		got := readAllMbox(t, b.Bytes(), mboxrd, len(raw)+16)
		if len(got) != 1 {
			t.Fatalf("wrote one mail, read %d from %q", len(got), b.Bytes())
		}
		sep, _, _ := bytes.Cut(b.Bytes(), []byte("\n"))
		if !got[0].Date.Equal(date) {
			t.Fatalf("separator %.200q: date read back %v, want %v", sep, got[0].Date, date)
		}
		if got[0].Sender != sender && got[0].Sender != "MAILER-DAEMON" {
			t.Fatalf("separator %.200q: sender read back %q, want %q", sep, got[0].Sender, sender)
		}
		if checkMail(raw) == nil && (got[0].Err != nil || !bytes.Equal(got[0].Raw, raw)) {
			t.Fatalf("mail %q read back as %q (%v)", raw, got[0].Raw, got[0].Err)
		}
	})
}
