package flags

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/model"
)

func TestColumn(t *testing.T) {
	tests := []struct {
		name     string
		in       imap.Flag
		want     string
		wantText bool
		wantOK   bool
	}{
		{"seen", imap.FlagSeen, "imap.flag.seen", false, true},
		{"seen any case", `\SEEN`, "imap.flag.seen", false, true},
		{"deleted is per folder", imap.FlagDeleted, "imap.flag.deleted.8000000000000007", false, true},
		{"recent is not stored", `\Recent`, "", false, false},
		{"wildcard", imap.FlagWildcard, "", false, false},
		{"empty", "", "", false, false},
		{"well-known", imap.FlagJunk, "imap.kw._junk", false, true},
		{"well-known other case", "$JUNK", "imap.kw._junk", false, true},
		{"junk without dollar", "Junk", "imap.kw.junk", false, true},
		{"plain keyword", "work", "imap.kw.work", false, true},
		{"upper-case keyword folds", "Work", "imap.kw.work", false, true},
		{"underscore keyword is hashed", "_junk", "", true, true},
		{"dollar keyword is hashed", "$label1", "", true, true},
		{"long keyword is hashed", imap.Flag(string(make([]byte, 0)) + "a234567890123456789012345678901234567890123456789012345678"), "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			col, text, ok := Column(tt.in, 1<<63|7)
			if ok != tt.wantOK || (tt.want != "" && col != tt.want) || (text != nil) != tt.wantText {
				t.Fatalf("Column(%q) = %q, %q, %v; want %q, text %v, %v", tt.in, col, text, ok, tt.want, tt.wantText, tt.wantOK)
			}
			if ok {
				if err := model.CheckName(col); err != nil {
					t.Fatalf("Column(%q) = %q: %v", tt.in, col, err)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	in := []imap.Flag{imap.FlagSeen, imap.FlagDraft, imap.FlagForwarded, "NonJunk", "work", "$label1", "Ärger", "$mailflagbit0", "$HasAttachment"}
	cols := map[string]uint64{}
	names := map[model.Key]string{}
	for i, f := range in {
		col, text, ok := Column(f, model.FolderInbox)
		if !ok {
			t.Fatalf("Column(%q) not ok", f)
		}
		cols[col] = Value(int64(1000+i), true)
		if text != nil {
			kw, _ := ParseKeywordContent(text)
			names[model.KeyOf(model.Text, text)] = kw
		}
	}
	cols["imap.flag.flagged"] = Value(5000, false) // cleared
	cols["ack"] = 1
	got := Of(cols, model.FolderInbox, func(k model.Key) (string, bool) { n, ok := names[k]; return n, ok })
	// Registered keywords keep their spelling whatever case set them.
	want := []imap.Flag{imap.FlagSeen, imap.FlagDraft, imap.FlagForwarded, "NonJunk", "work", "$label1", "ärger", "$MailFlagBit0", "$HasAttachment"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Of = %q, want %q", got, want)
	}
	if !Has(cols, "$LABEL1", model.FolderInbox) || Has(cols, imap.FlagFlagged, model.FolderInbox) {
		t.Fatal("Has disagrees with Of")
	}
}

// TestDeletedPerFolder: \Deleted of a mail in one folder is not its
// \Deleted in another (a COPY is one receive row in both); the shared
// column of older rows counts in every folder, and the later of it and a
// folder's own column wins.
func TestDeletedPerFolder(t *testing.T) {
	const archive = model.FolderID(1<<63 | 42)
	cols := map[string]uint64{DeletedColumn(archive): Value(1000, true)}
	if !Has(cols, imap.FlagDeleted, archive) || Has(cols, imap.FlagDeleted, model.FolderInbox) {
		t.Fatal("\\Deleted in Archive shows in INBOX, or not in Archive")
	}
	if got := Of(cols, model.FolderInbox, nil); slices.Contains(got, imap.FlagDeleted) {
		t.Fatalf("Of(INBOX) = %q", got)
	}
	if got := SetIn(cols, model.FolderInbox); len(got) != 0 {
		t.Fatalf("SetIn(INBOX) = %q, want nothing", got)
	}
	old := map[string]uint64{sharedDeleted: Value(1000, true), "imap.flag.seen": Value(1000, true)}
	for _, f := range []model.FolderID{model.FolderInbox, archive} {
		if !Has(old, imap.FlagDeleted, f) {
			t.Fatalf("an older row's shared \\Deleted does not count in %v", f)
		}
		got := SetIn(old, f)
		slices.Sort(got)
		if want := []string{DeletedColumn(f), "imap.flag.seen"}; !slices.Equal(got, want) {
			t.Fatalf("SetIn(%v) = %q, want %q", f, got, want)
		}
	}
	old[DeletedColumn(archive)] = Value(2000, false) // cleared in Archive later
	if Has(old, imap.FlagDeleted, archive) || !Has(old, imap.FlagDeleted, model.FolderInbox) {
		t.Fatal("a later clear in Archive did not win there, or reached INBOX")
	}
}

// TestLaterChangeWins: the merge of two sites' values (the maximum) is the
// later change; at the same millisecond "set" wins.
func TestLaterChangeWins(t *testing.T) {
	setA, clearB := Value(1000, true), Value(2000, false)
	if Set(max(setA, clearB)) {
		t.Fatal("a later clear lost to an earlier set")
	}
	if !Set(max(Value(3000, true), clearB)) {
		t.Fatal("a later set lost to an earlier clear")
	}
	if !Set(max(Value(3000, true), Value(3000, false))) {
		t.Fatal("set did not win at the same millisecond")
	}
}

func FuzzColumn(f *testing.F) {
	for _, s := range []string{`\Seen`, "$Junk", "work", "_x", "Ärger", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		col, text, ok := Column(imap.Flag(s), 1<<63|0xffff_ffff_ffff)
		if !ok {
			return
		}
		if err := model.CheckName(col); err != nil {
			t.Fatalf("Column(%q) = %q: %v", s, col, err)
		}
		if text != nil {
			if _, ok := ParseKeywordContent(text); !ok {
				t.Fatalf("Column(%q): text %q does not parse", s, text)
			}
		}
	})
}

// TestKeywordColumns: every keyword column counts, set or cleared, the
// plain and the hashed form; system flags and other columns do not; an
// added column counts once and only if the row lacks it.
func TestKeywordColumns(t *testing.T) {
	kw, _, _ := Column("work", model.FolderInbox)
	hashed, _, _ := Column("Ärger", model.FolderInbox)
	junk, _, _ := Column("$Junk", model.FolderInbox)
	seen, _, _ := Column(`\Seen`, model.FolderInbox)
	del, _, _ := Column(`\Deleted`, model.FolderInbox)
	cols := map[string]uint64{kw: Value(1, true), hashed: Value(1, false), seen: Value(1, true), del: Value(1, true), "ack": 1}
	if n := KeywordColumns(cols, slices.Values([]string(nil))); n != 2 {
		t.Errorf("KeywordColumns = %d, want 2", n)
	}
	if n := KeywordColumns(cols, slices.Values([]string{kw, junk, seen})); n != 3 {
		t.Errorf("KeywordColumns with $Junk, a known keyword and \\Seen added = %d, want 3", n)
	}
}
