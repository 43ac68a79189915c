package test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// corpusMail is one message of the shared corpus: its mbox separator line
// and the mail after it, LF line ends as in the corpus.
type corpusMail struct {
	name, from string
	raw        []byte
}

// loadCorpus reads every message of ../shared/corpus (or $TWINMX_CORPUS);
// it skips the test when the corpus is absent, unless TWINMX_REQUIRE_CORPUS
// is set (CI sets it, so the whole corpus is covered there).
func loadCorpus(t *testing.T) []corpusMail {
	t.Helper()
	var out []corpusMail
	for _, c := range proctest.Corpus(t) {
		m := corpusMail{name: c.Name, from: "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n", raw: c.Raw}
		if bytes.HasPrefix(c.Raw, []byte("From ")) {
			i := bytes.IndexByte(c.Raw, '\n') + 1
			m.from, m.raw = string(c.Raw[:i]), c.Raw[i:]
		}
		out = append(out, m)
	}
	return out
}

// eachLine calls f with every line of b, its line end included, and
// its offset in b.
func eachLine(b []byte, f func(at int, line []byte)) {
	for at := 0; at < len(b); {
		line := b[at:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		f(at, line)
		at += len(line)
	}
}

// mboxrdQuote returns raw with a '>' before every line that starts with
// ">*From " (mboxrd). (A loop, not a regular expression: the regexp took
// 13 s of this test's 110 under the race detector.)
func mboxrdQuote(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+16)
	eachLine(raw, func(_ int, line []byte) {
		if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			out = append(out, '>')
		}
		out = append(out, line...)
	})
	return out
}

// withoutSeparators returns an mbox without its separator lines (the
// lines that start with "From ").
func withoutSeparators(mbox []byte) []byte {
	out := make([]byte, 0, len(mbox))
	eachLine(mbox, func(_ int, line []byte) {
		if !bytes.HasPrefix(line, []byte("From ")) {
			out = append(out, line...)
		}
	})
	return out
}

// sortedMessages returns the messages of an mbox, separator lines
// included, sorted, joined: equal for two mboxes with the same messages
// in any order.
func sortedMessages(mbox []byte) string {
	var msgs []string
	start := 0
	eachLine(mbox, func(at int, line []byte) {
		if at > start && bytes.HasPrefix(line, []byte("From ")) {
			msgs = append(msgs, string(mbox[start:at]))
			start = at
		}
	})
	msgs = append(msgs, string(mbox[start:]))
	sort.Strings(msgs)
	return strings.Join(msgs, "")
}

// writeTestMbox writes mails as another server would: the original
// separator line, mboxrd quoting, a blank line after each mail. (Written
// here, not with dbctl's code, so the test does not check dbctl against
// itself.)
func writeTestMbox(t *testing.T, path string, mails []corpusMail) {
	t.Helper()
	var b bytes.Buffer
	for _, m := range mails {
		b.WriteString(m.from)
		b.Write(mboxrdQuote(m.raw))
		b.WriteString("\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readFiles returns the contents of the regular files under dir, by path
// relative to it.
func readFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExportImportCorpus imports the whole corpus from an mbox, exports
// it as mbox, Maildir and .eml files, imports those exports into other
// mailboxes and exports them again: every mail comes back byte for byte,
// and importing again adds nothing.
func TestExportImportCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	s := newSite(t)
	s.Start()
	dir := t.TempDir()

	// Mails that differ only in Received fields are one mail (one receive
	// row per mailbox); the corpus has none, but do not rely on it.
	want := map[string]bool{}
	for _, m := range corpus {
		want[string(m.raw)] = true
	}
	unique := len(want)

	src := filepath.Join(dir, "src.mbox")
	writeTestMbox(t, src, corpus)
	imp := func(box, format, path string) string {
		t.Helper()
		out, errs, code := s.DbctlExit(nil, "import", "--mailbox", box, "--format", format, path)
		if code != 0 {
			t.Fatalf("import %s %s: exit %d: %s%s", format, path, code, out, errs)
		}
		t.Logf("import %s into %s: %s", format, box, strings.TrimSpace(out))
		return out
	}
	expectCounts := func(out string, added, already int) {
		t.Helper()
		if !regexp.MustCompile(`(?m)^` + strconv.Itoa(added) + ` new, ` + strconv.Itoa(already) + ` already there, 0 failed`).MatchString(out) {
			t.Fatalf("import printed %q, want %d new, %d already there, 0 failed", out, added, already)
		}
	}
	expectCounts(imp("a@example.org", "mbox", src), unique, len(corpus)-unique)
	expectCounts(imp("a@example.org", "mbox", src), 0, len(corpus))

	// .eml: one file per mail, each a corpus mail byte for byte.
	emlDir := filepath.Join(dir, "eml")
	s.Dbctl(nil, "export", "--mailbox", "a@example.org", "--format", "eml", "--out", emlDir)
	emls := readFiles(t, emlDir)
	if len(emls) != unique {
		t.Fatalf("eml export: %d files, want %d", len(emls), unique)
	}
	for name, b := range emls {
		if !strings.HasSuffix(name, ".eml") || !want[string(b)] {
			t.Fatalf("eml export: %s (%d bytes) is not a corpus mail byte for byte", name, len(b))
		}
	}

	// mbox: A's export, imported into B and exported again, is the same file.
	mboxA, mboxB := filepath.Join(dir, "a.mbox"), filepath.Join(dir, "b.mbox")
	s.Dbctl(nil, "export", "--mailbox", "a@example.org", "--format", "mbox", "--out", mboxA)
	expectCounts(imp("b@example.org", "mbox", mboxA), unique, 0)
	expectCounts(imp("b@example.org", "mbox", mboxA), 0, unique)
	s.Dbctl(nil, "export", "--mailbox", "b@example.org", "--format", "mbox", "--out", mboxB)
	a, _ := os.ReadFile(mboxA)
	b, _ := os.ReadFile(mboxB)
	if !bytes.Equal(a, b) {
		t.Fatalf("mbox round trip: export of A (%d bytes) and of B imported from it (%d bytes) differ", len(a), len(b))
	}
	// It is also the source mbox, but for the separator lines (dbctl
	// writes the sender from Return-Path and the date in UTC).
	var srcMails bytes.Buffer
	for _, m := range corpus {
		srcMails.Write(mboxrdQuote(m.raw))
		srcMails.WriteString("\n")
	}
	if unique == len(corpus) && !bytes.Equal(withoutSeparators(a), srcMails.Bytes()) {
		t.Fatalf("mbox export differs from the source mbox in more than its separator lines")
	}

	// Maildir: A's export, imported into C and exported again, holds the
	// same mails with the same arrival times (file modification times).
	mdA, mdC := filepath.Join(dir, "md-a"), filepath.Join(dir, "md-c")
	s.Dbctl(nil, "export", "--mailbox", "a@example.org", "--format", "maildir", "--out", mdA)
	expectCounts(imp("c@example.org", "maildir", mdA), unique, 0)
	expectCounts(imp("c@example.org", "maildir", mdA), 0, unique)
	s.Dbctl(nil, "export", "--mailbox", "c@example.org", "--format", "maildir", "--out", mdC)
	filesA, filesC := readFiles(t, mdA), readFiles(t, mdC)
	if len(filesA) != unique || len(filesC) != unique {
		t.Fatalf("maildir exports hold %d and %d files, want %d", len(filesA), len(filesC), unique)
	}
	stamp := func(name string) string { return strings.SplitN(filepath.Base(name), ".", 2)[0] }
	byContent := map[string]string{}
	for name, b := range filesA {
		if !strings.HasPrefix(name, "cur/") || !want[string(b)] {
			t.Fatalf("maildir export of A: %s is not a corpus mail in cur/", name)
		}
		byContent[string(b)] = stamp(name)
	}
	for name, b := range filesC {
		at, ok := byContent[string(b)]
		if !ok || at != stamp(name) {
			t.Fatalf("maildir round trip: %s (arrival %s) has no twin in A's export (arrival %q)", name, stamp(name), at)
		}
	}

	// Every mailbox at once: one mbox file per mailbox.
	all := filepath.Join(dir, "all")
	out := s.Dbctl(nil, "export", "--format", "mbox", "--out", all)
	// C got its mail from a Maildir, in file name order: the same
	// messages (separator lines included: same arrival times), in another order.
	wantMessages := sortedMessages(a)
	for _, box := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		got, err := os.ReadFile(filepath.Join(all, box+".mbox"))
		if err != nil || sortedMessages(got) != wantMessages || box != "c@example.org" && !bytes.Equal(got, a) {
			t.Fatalf("export of every mailbox: %s.mbox differs from A's export (%v); dbctl said %q", box, err, out)
		}
	}
	// Imported mail is in the mailbox like received mail: acknowledged,
	// with an operator verdict accept.
	mails := s.Dbctl(nil, "mails", "--last", "3")
	if strings.Count(mails, "verdict=accept/operator") != 3 || strings.Count(mails, "ack=yes") != 3 {
		t.Fatalf("dbctl mails after import:\n%s", mails)
	}
}

// TestImportMalformedMbox: bad messages are reported one by one (with their
// line), the good ones are imported, and the exit status says that some
// failed.
func TestImportMalformedMbox(t *testing.T) {
	s := newSite(t)
	s.Start()
	dir := t.TempDir()
	in := "junk before the first separator\n" +
		"From a@example.org Thu Aug 22 12:36:23 2002\nSubject: good 1\n\nbody\n>From quoted\n\n" + // line 2
		"From b Thu Aug 22 12:36:23 2002\n\n" + // line 8: empty
		"From c Thu Aug 22 12:36:23 2002\n\x00\x01\x02 binary\n\n" + // line 10: no header
		"From d Thu Aug 22 12:36:23 2002\nSubject: big\n\n" + strings.Repeat("x", 2000) + "\n\n" + // line 13: too large
		"From e Thu Aug 22 12:36:23 2002\r\nSubject: good 2\r\n\r\nbody\r\n\r\n" // line 18, a CRLF mbox
	path := filepath.Join(dir, "bad.mbox")
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := s.DbctlExit(nil, "import", "--mailbox", "x@example.org", "--format", "mbox", "--max-size", "1000", path)
	if code != 1 || !strings.HasPrefix(out, "2 new, 0 already there, 4 failed") {
		t.Fatalf("import of a malformed mbox: exit %d, stdout %q, stderr %q; want exit 1 and 2 new, 4 failed", code, out, errs)
	}
	for _, w := range []string{"line 1: text before", "line 8: empty message", "line 10: does not start with a header field", "line 13: message too large"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	eml := filepath.Join(dir, "eml")
	s.Dbctl(nil, "export", "--mailbox", "x@example.org", "--format", "eml", "--out", eml)
	got := readFiles(t, eml)
	wantMails := map[string]bool{"Subject: good 1\n\nbody\nFrom quoted\n": true, "Subject: good 2\r\n\r\nbody\r\n": true}
	for _, b := range got {
		if !wantMails[string(b)] {
			t.Fatalf("exported %q, not one of the good mails", b)
		}
		delete(wantMails, string(b))
	}
	if len(wantMails) != 0 {
		t.Fatalf("good mails not imported: %v", wantMails)
	}
	// Not a Maildir, a missing file, a bad format: usage errors.
	for _, args := range [][]string{
		{"import", "--mailbox", "x@example.org", "--format", "maildir", dir + "/eml"},
		{"import", "--mailbox", "x@example.org", "--format", "mbox", dir + "/missing"},
		{"import", "--mailbox", "x@example.org", "--format", "pst", path},
		{"export", "--mailbox", "x@example.org", "--format", "eml", "--out", eml},
	} {
		if _, errs, code := s.DbctlExit(nil, args...); code != 2 {
			t.Errorf("dbctl %v: exit %d (%s), want 2", args, code, errs)
		}
	}
	if _, _, code := s.DbctlExit(nil, "export", "--mailbox", "nobody@example.org", "--format", "eml", "--out", dir+"/none"); code != 1 {
		t.Errorf("export of a missing mailbox: exit %d, want 1", code)
	}
}
