package test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// maildirMail is one mail of a hand-written Maildir++ tree.
type maildirMail struct {
	dir, file, flags string // dir: "" (INBOX) or ".NAME"
	raw              string
	at               time.Time
}

// writeMaildirPP writes a Maildir++ tree as Dovecot lays it out (not with
// dbctl's code): the INBOX's cur/ new/ tmp/, each folder a Maildir
// ".NAME" beside them; the empty folders too.
func writeMaildirPP(t *testing.T, root string, mails []maildirMail, empty ...string) {
	t.Helper()
	for _, d := range append([]string{""}, empty...) {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, m := range mails {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, m.dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(root, m.dir, "cur", m.file+":2,"+m.flags)
		if err := os.WriteFile(p, []byte(m.raw), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, m.at, m.at); err != nil {
			t.Fatal(err)
		}
	}
	// Dovecot's own files are not mail.
	if err := os.WriteFile(filepath.Join(root, "subscriptions"), []byte("Archive\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// maildirEntry is a Maildir file as a test compares it: folder, flags,
// modification time and bytes (not the unique part of its name).
type maildirEntry struct{ dir, flags, raw string }

// readMaildirPP reads every mail of a Maildir++ tree.
func readMaildirPP(t *testing.T, root string) []maildirEntry {
	t.Helper()
	var out []maildirEntry
	for rel, b := range readFiles(t, root) {
		dir, file := filepath.Split(rel)
		parent := filepath.Dir(filepath.Clean(dir))
		if filepath.Base(filepath.Clean(dir)) != "cur" && filepath.Base(filepath.Clean(dir)) != "new" {
			continue // maildirfolder, subscriptions
		}
		if parent == "." {
			parent = ""
		}
		_, flags, _ := strings.Cut(file, ":2,")
		fi, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, maildirEntry{dir: parent, flags: flags + "@" + fi.ModTime().UTC().Format(time.RFC3339), raw: string(b)})
	}
	slices.SortFunc(out, func(a, b maildirEntry) int {
		return strings.Compare(a.dir+"\x00"+a.raw+a.flags, b.dir+"\x00"+b.raw+b.flags)
	})
	return out
}

// TestFolderImportExport imports a Dovecot Maildir++ tree with folders,
// checks that the rows are those imapd lists (folder rows and names,
// APPENDed receive rows, INTERNALDATE, per-folder \Deleted) as the
// mailbox role reads them, that importing again adds nothing, and that
// an export, imported into another account and exported again, is the
// same tree (bytes, flags, dates); then the mbox layout with folders.
func TestFolderImportExport(t *testing.T) {
	s := newSite(t)
	s.Start()
	dir := t.TempDir()
	s.Dbctl(strings.NewReader("correct horse\n"), "user", "add", "jo", "--mailbox", "jo@example.org")
	s.Dbctl(strings.NewReader("correct horse\n"), "user", "add", "kim", "--mailbox", "kim@example.org")

	day := func(d int) time.Time { return time.Date(2025, 3, d, 10, 0, 0, 0, time.UTC) }
	mail := func(subject string) string {
		return "Received: from a by b; Sat, 1 Mar 2025 10:00:00 +0000\nFrom: x@example.net\nSubject: " + subject + "\n\nbody of " + subject + "\n"
	}
	mails := []maildirMail{
		{"", "1.a.host", "S", mail("inbox one"), day(1)},
		{"", "2.b.host", "", mail("inbox two"), day(2)},
		{".Archive", "3.c.host", "RS", mail("archived"), day(3)},
		{".Archive", "4.d.host", "T", "Subject: archived, deleted\r\n\r\nno Received field\r\n", day(4)},
		{".Work.2026", "5.e.host", "F", mail("work"), day(5)},
		{".Sent", "6.f.host", "S", mail("sent"), day(6)},
		{".v1\\2e2", "7.g.host", "", mail("dotted"), day(7)},
	}
	src := filepath.Join(dir, "Maildir")
	writeMaildirPP(t, src, mails, ".Entw&APw-rfe")

	counts := func(out string, added, already int) {
		t.Helper()
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(strings.Join([]string{strconv.Itoa(added), " new, ", strconv.Itoa(already), " already there, 0 failed"}, "")) + ` \(`)
		if !re.MatchString(out) {
			t.Fatalf("import printed %q, want %d new, %d already there, 0 failed", out, added, already)
		}
	}
	out := s.Dbctl(nil, "import", "--mailbox", "jo@example.org", "--format", "maildir", src)
	counts(out, len(mails), 0)
	for _, w := range []string{"folder INBOX: 2 new", "folder Archive: 2 new", "folder Work/2026: 1 new", "folder Sent: 1 new", "folder v1.2: 1 new", "folder Entwürfe: 0 new"} {
		if !strings.Contains(out, w) {
			t.Errorf("import output lacks %q:\n%s", w, out)
		}
	}
	counts(s.Dbctl(nil, "import", "--mailbox", "jo@example.org", "--format", "maildir", src), 0, len(mails))

	// The rows, as imapd reads them with the mailbox role.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := s.NewClient("mailbox")
	st := mailbox.New(db)
	set, err := db.FindKey(ctx, model.Text, model.KeyOf(model.Text, model.FolderSetContent("jo")))
	if err != nil {
		t.Fatalf("folder set: %v", err)
	}
	ids := map[string]model.FolderID{"Sent": model.FolderSent}
	for col, v := range set.State.Cols {
		id, ok := model.ParseFolderColumn(col)
		if !ok || !model.IsMember(v) {
			continue
		}
		frow, err := db.FindKey(ctx, model.Text, model.FolderKey("jo", id))
		if err != nil {
			t.Fatal(err)
		}
		nk, ok := model.CurrentFolderName(frow.State)
		if !ok {
			t.Fatalf("folder %s has no name", id)
		}
		nrow, err := db.FindKey(ctx, model.Text, nk)
		if err != nil {
			t.Fatal(err)
		}
		_, name, err := model.ParseFolderNameContent(nrow.Content)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	for _, name := range []string{"Archive", "Work/2026", "v1.2", "Entwürfe"} {
		if !ids[name].Valid() || ids[name].System() {
			t.Fatalf("folders of jo: %v, want a user folder %q", ids, name)
		}
	}
	if len(ids) != 5 {
		t.Fatalf("folders of jo: %v, want Sent and 4 user folders", ids)
	}
	for _, m := range mails[2:] {
		name, _ := strings.CutPrefix(strings.ReplaceAll(m.dir, ".", "/"), "/")
		name = strings.ReplaceAll(name, "v1\\2e2", "v1.2")
		id := ids[name]
		rows, _, err := st.Rows(ctx, model.FolderKey("jo", id), 0, true)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, r := range rows {
			raw, err := st.Fetch(ctx, r, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != m.raw {
				continue
			}
			found = true
			if _, in := model.Member(r.State, id, id); !in || !r.Visible() {
				t.Errorf("%s: not shown in %s", m.file, name)
			}
			if got := r.State.Col(model.ColAppendDate); got != uint64(m.at.UnixMilli()) {
				t.Errorf("%s: imap.date %d, want %d", m.file, got, m.at.UnixMilli())
			}
			for _, f := range []struct {
				letter byte
				col    string
			}{{'S', "imap.flag.seen"}, {'R', "imap.flag.answered"}, {'F', "imap.flag.flagged"}, {'T', "imap.flag.deleted." + id.String()}} {
				if model.IsMember(r.State.Col(f.col)) != (strings.IndexByte(m.flags, f.letter) >= 0) {
					t.Errorf("%s in %s: column %s = %d, flags %q", m.file, name, f.col, r.State.Col(f.col), m.flags)
				}
			}
			if r.State.Col("imap.flag.deleted") != 0 || r.State.Col(model.ColAcknowledged) != 0 {
				t.Errorf("%s: columns %v: an APPENDed row has no shared \\Deleted and no ack", m.file, r.State.Cols)
			}
		}
		if !found {
			t.Errorf("%s: not in folder %s (%d rows)", m.file, name, len(rows))
		}
	}

	// Export, import into kim, export again: the same tree.
	expJo, expKim := filepath.Join(dir, "exp-jo"), filepath.Join(dir, "exp-kim")
	out = s.Dbctl(nil, "export", "--mailbox", "jo@example.org", "--format", "maildir", "--out", expJo)
	if !strings.Contains(out, "jo@example.org folder Work/2026: 1 mails") {
		t.Errorf("export output:\n%s", out)
	}
	for _, d := range []string{".Archive", ".Work.2026", ".Sent", ".v1\\2e2", ".Entw&APw-rfe"} {
		if fi, err := os.Stat(filepath.Join(expJo, d, "cur")); err != nil || !fi.IsDir() {
			t.Errorf("export lacks Maildir++ folder %s: %v", d, err)
		}
		if _, err := os.Stat(filepath.Join(expJo, d, "maildirfolder")); err != nil {
			t.Errorf("export: %s has no maildirfolder file: %v", d, err)
		}
	}
	want := readMaildirPP(t, src)
	if len(want) != len(mails) {
		t.Fatalf("source tree: %d mails read, want %d", len(want), len(mails))
	}
	if got := readMaildirPP(t, expJo); !slices.Equal(got, want) {
		t.Fatalf("export of jo:\n%q\nwant the imported tree:\n%q", got, want)
	}
	counts(s.Dbctl(nil, "import", "--mailbox", "kim@example.org", "--format", "maildir", expJo), len(mails), 0)
	counts(s.Dbctl(nil, "import", "--mailbox", "kim@example.org", "--format", "maildir", expJo), 0, len(mails))
	s.Dbctl(nil, "export", "--mailbox", "kim@example.org", "--format", "maildir", "--out", expKim)
	if got := readMaildirPP(t, expKim); !slices.Equal(got, want) {
		t.Fatalf("round trip through kim:\n%q\nwant:\n%q", got, want)
	}
	// Back into jo, where it came from: nothing new.
	counts(s.Dbctl(nil, "import", "--mailbox", "jo@example.org", "--format", "maildir", expKim), 0, len(mails))

	// mbox: with folders, --out is a folder of INBOX.mbox and NAME.mbox.
	mb := filepath.Join(dir, "mbox-jo")
	s.Dbctl(nil, "export", "--mailbox", "jo@example.org", "--format", "mbox", "--out", mb)
	files := readFiles(t, mb)
	for name, n := range map[string]int{"INBOX.mbox": 2, "Archive.mbox": 2, "Work/2026.mbox": 1, "Sent.mbox": 1, "v1.2.mbox": 1, "Entwürfe.mbox": 0} {
		b, ok := files[filepath.FromSlash(name)]
		if !ok || strings.Count(string(b), "\nFrom ")+boolInt(strings.HasPrefix(string(b), "From ")) != n {
			t.Errorf("mbox export: %s: %d bytes (present %v), want %d mails; files %v", name, len(b), ok, n, keys(files))
		}
	}
	// An mbox into a named folder: kim has these mails there already.
	counts(s.Dbctl(nil, "import", "--mailbox", "kim@example.org", "--format", "mbox", "--folder", "Archive", filepath.Join(mb, "Archive.mbox")), 0, 2)
	counts(s.Dbctl(nil, "import", "--mailbox", "kim@example.org", "--format", "mbox", "--folder", "Old/Work", filepath.Join(mb, "Work", "2026.mbox")), 1, 0)
	// A mailbox no account reads has no folders to import into.
	if _, errs, code := s.DbctlExit(nil, "import", "--mailbox", "nobody@example.org", "--format", "maildir", src); code != 1 || !strings.Contains(errs, "no account reads") {
		t.Errorf("import of folders for a mailbox without account: exit %d, %s", code, errs)
	}
	// Every mailbox at once: jo's and kim's folders in their own folders.
	all := filepath.Join(dir, "all")
	s.Dbctl(nil, "export", "--format", "maildir", "--out", all)
	if got := readMaildirPP(t, filepath.Join(all, "jo@example.org")); !slices.Equal(got, want) {
		t.Fatalf("export of every mailbox, jo:\n%q\nwant:\n%q", got, want)
	}
	if _, err := os.Stat(filepath.Join(all, "kim@example.org", ".Old.Work", "cur")); err != nil {
		t.Errorf("export of every mailbox: kim's Old/Work: %v", err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
