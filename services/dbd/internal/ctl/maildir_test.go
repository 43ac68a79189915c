package ctl

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeMaildir makes cur/ new/ tmp/ in a temporary folder and writes the
// files (name relative to the folder → content).
func makeMaildir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// readAllMaildir returns every item of s, up to a bound.
func readAllMaildir(t *testing.T, s *maildirSource) []importItem {
	t.Helper()
	var out []importItem
	for range 1000 {
		it, err := s.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		out = append(out, it)
	}
	t.Fatal("maildirSource does not end")
	return nil
}

func TestMaildirSource(t *testing.T) {
	dir := makeMaildir(t, map[string]string{
		"cur/1.a.host:2,FS":   "A: 1\n",
		"cur/2.b.host,S=5:2,": "B: 2\n",
		"cur/.hidden":         "H: 1\n",
		"cur/3.c.host:2,":     "",
		"cur/4.d.host:2,":     "\x00binary",
		"new/5.e.host":        "E: 5\r\n\r\nbody",
		"tmp/6.f.host":        "F: 6\n",
		"cur/7.g.host:2,":     strings.Repeat("G", 100),
		"cur/8.h.host:2,S":    "H: 8\n",
	})
	if err := os.Mkdir(filepath.Join(dir, "cur", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside-the-maildir")
	if err := os.WriteFile(outside, []byte("X: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "cur", "9.i.host:2,")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("missing", filepath.Join(dir, "cur", "10.j.host:2,")); err != nil {
		t.Fatal(err)
	}
	s, err := newMaildirSource(dir, 64)
	if err != nil {
		t.Fatal(err)
	}
	type want struct{ where, raw, flags, err string }
	wants := []want{
		{where: "cur/1.a.host:2,FS", raw: "A: 1\n", flags: "FS"},
		{where: "cur/10.j.host:2,", err: "no such file"},
		{where: "cur/2.b.host,S=5:2,", raw: "B: 2\n"},
		{where: "cur/3.c.host:2,", err: "empty message"},
		{where: "cur/4.d.host:2,", err: "header field"},
		{where: "cur/7.g.host:2,", err: "too large"},
		{where: "cur/8.h.host:2,S", raw: "H: 8\n", flags: "S"},
		{where: "cur/9.i.host:2,", raw: "X: 1\n"},
		{where: "new/5.e.host", raw: "E: 5\r\n\r\nbody"},
	}
	got := readAllMaildir(t, s)
	if len(got) != len(wants) {
		t.Fatalf("read %d items, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		g := got[i]
		if g.where != w.where {
			t.Errorf("item %d is %q, want %q", i, g.where, w.where)
			continue
		}
		if w.err != "" {
			if g.err == nil || !strings.Contains(g.err.Error(), w.err) {
				t.Errorf("%s: err %v, want %q", g.where, g.err, w.err)
			}
			continue
		}
		if g.err != nil || string(g.raw) != w.raw || g.flags != w.flags || g.at.IsZero() {
			t.Errorf("%s: %q flags %q at %v err %v; want %q flags %q", g.where, g.raw, g.flags, g.at, g.err, w.raw, w.flags)
		}
	}
}

// TestMaildirSourceRenamed: a mail client works on the Maildir during the
// import (a migration's first run): it moves a mail it shows from new/ to
// cur/ and renames one whose flags change. Each mail is read once, under
// its new name and with its new flags, not reported failed (as it was: "no
// such file"). A mail deleted meanwhile is reported.
func TestMaildirSourceRenamed(t *testing.T) {
	dir := makeMaildir(t, map[string]string{
		"cur/1.a.host:2,":  "A: 1\n",
		"cur/2.b.host:2,S": "B: 2\n",
		"new/3.c.host":     "C: 3\n",
	})
	s, err := newMaildirSource(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, mv := range [][2]string{{"cur/1.a.host:2,", "cur/1.a.host:2,RS"}, {"new/3.c.host", "cur/3.c.host:2,S"}} {
		if err := os.Rename(filepath.Join(dir, mv[0]), filepath.Join(dir, mv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "cur/2.b.host:2,S")); err != nil {
		t.Fatal(err)
	}
	got := readAllMaildir(t, s)
	if len(got) != 3 {
		t.Fatalf("read %d items, want 3", len(got))
	}
	if g := got[0]; g.err != nil || string(g.raw) != "A: 1\n" || g.flags != "RS" || !strings.Contains(g.where, "now cur/1.a.host:2,RS") {
		t.Errorf("renamed in cur/: %s: %q flags %q, %v", g.where, g.raw, g.flags, g.err)
	}
	if g := got[1]; g.err == nil || !strings.Contains(g.err.Error(), "vanished") {
		t.Errorf("deleted: %s: %v, want a vanished error", g.where, g.err)
	}
	if g := got[2]; g.err != nil || string(g.raw) != "C: 3\n" || g.flags != "S" {
		t.Errorf("moved from new/ to cur/: %s: %q flags %q, %v", g.where, g.raw, g.flags, g.err)
	}

	// Moved between the listings of new/ and cur/: in both lists, read once.
	s, err = newMaildirSource(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	s.files = []string{"cur/3.c.host:2,S", "new/3.c.host"}
	got = readAllMaildir(t, s)
	if len(got) != 1 || got[0].err != nil || string(got[0].raw) != "C: 3\n" {
		t.Errorf("a mail in both listings: read %d items (first: %v), want it once", len(got), firstErr(got))
	}
}

// TestMaildirSourceSizeRead: the size bound holds for what is read, not
// only for what stat says: a file that is larger than its stat size (one
// growing after the stat; here a /proc file, which claims 0 bytes) is
// refused as too large after reading at most the bound, not read whole.
func TestMaildirSourceSizeRead(t *testing.T) {
	const proc = "/proc/self/status"
	if b, err := os.ReadFile(proc); err != nil || len(b) <= 64 {
		t.Skipf("%s: %d bytes, %v", proc, len(b), err)
	}
	if fi, err := os.Stat(proc); err != nil || fi.Size() != 0 || !fi.Mode().IsRegular() {
		t.Skipf("%s: stat %v, %v", proc, fi, err)
	}
	dir := makeMaildir(t, nil)
	if err := os.Symlink(proc, filepath.Join(dir, "cur", "1.a.host:2,")); err != nil {
		t.Fatal(err)
	}
	s, err := newMaildirSource(dir, 64)
	if err != nil {
		t.Fatal(err)
	}
	got := readAllMaildir(t, s)
	if len(got) != 1 || !errors.Is(got[0].err, errMboxTooLarge) || got[0].raw != nil {
		t.Fatalf("read %d items (first: %v), want one refused as too large", len(got), firstErr(got))
	}
}

// firstErr is the error of the first item, for failure messages.
func firstErr(its []importItem) error {
	if len(its) == 0 {
		return nil
	}
	return its[0].err
}

// TestMaildirInfo: flags are read after any of the info delimiters Maildir
// tools use (':' by convention; ';' or '!' on Windows, where twinmx's own
// export writes ';'), and the unique part is what stays when they change.
func TestMaildirInfo(t *testing.T) {
	for _, tc := range []struct{ name, unique, flags string }{
		{"cur/1.a.host:2,FS", "1.a.host", "FS"},
		{"cur/1.a.host;2,FS", "1.a.host", "FS"},
		{"cur/1.a.host!2,S", "1.a.host", "S"},
		{"cur/1.a.host,S=5:2,", "1.a.host,S=5", ""},
		{"new/1.a.host", "1.a.host", ""},
		{"cur/1.a.host:1,experimental", "1.a.host", ""},
	} {
		if u, f := maildirInfo(tc.name); u != tc.unique || f != tc.flags {
			t.Errorf("maildirInfo(%q) = %q, %q; want %q, %q", tc.name, u, f, tc.unique, tc.flags)
		}
	}
	if d := maildirInfoDelimiter("windows"); d != ";" {
		t.Errorf("info delimiter on Windows %q, want ;", d)
	}
	if d := maildirInfoDelimiter("linux"); d != ":" {
		t.Errorf("info delimiter on Linux %q, want :", d)
	}
}
