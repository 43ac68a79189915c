package flags

import (
	"fmt"
	"slices"
	"strings"
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

// TestTooManyKeywords: a write that adds a keyword column beyond
// MaxKeywords is too many; one that adds none is not, even on a row over
// the bound (keywords stored before it): such a mail must still take
// \Seen, \Deleted and the keywords it has (TestKeywordBoundKeepsOlderRows
// in the daemon got NO [LIMIT] for \Seen before).
func TestTooManyKeywords(t *testing.T) {
	rowWith := func(n int) map[string]uint64 {
		cols := map[string]uint64{"ack": 1}
		for i := range n {
			col, _, _ := Column(imap.Flag(fmt.Sprintf("k%d", i)), model.FolderInbox)
			cols[col] = Value(1, i%2 == 0)
		}
		return cols
	}
	seen, _, _ := Column(imap.FlagSeen, model.FolderInbox)
	del, _, _ := Column(imap.FlagDeleted, model.FolderInbox)
	k0, _, _ := Column("k0", model.FolderInbox)
	fresh, _, _ := Column("fresh", model.FolderInbox)
	tests := []struct {
		name  string
		have  int
		added []string
		want  bool
	}{
		{"room", MaxKeywords - 1, []string{fresh}, false},
		{"one too many", MaxKeywords, []string{fresh}, true},
		{"system flags at the bound", MaxKeywords, []string{seen, del}, false},
		{"a keyword it has at the bound", MaxKeywords, []string{k0, seen}, false},
		{"system flags over the bound", MaxKeywords + 50, []string{seen, del}, false},
		{"a keyword it has over the bound", MaxKeywords + 50, []string{k0}, false},
		{"a new keyword over the bound", MaxKeywords + 50, []string{k0, fresh}, true},
		{"nothing", MaxKeywords + 50, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TooManyKeywords(rowWith(tt.have), slices.Values(tt.added)); got != tt.want {
				t.Errorf("TooManyKeywords(%d keywords, %q) = %v, want %v", tt.have, tt.added, got, tt.want)
			}
		})
	}
}

// TestFolderColumns: a mail's folders are its membership columns, "in"
// or "out", and its home, with or without a column; \Deleted columns and
// other columns do not count.
func TestFolderColumns(t *testing.T) {
	const a, b = model.FolderID(1<<63 | 1), model.FolderID(1<<63 | 2)
	if !strings.HasPrefix(model.MemberColumn(a), memberPrefix) {
		t.Fatalf("model.MemberColumn(%v) = %q, want it under %q", a, model.MemberColumn(a), memberPrefix)
	}
	tests := []struct {
		name string
		cols map[string]uint64
		home model.FolderID
		want int
	}{
		{"at home only", map[string]uint64{"ack": 1, DeletedColumn(model.FolderInbox): Value(1, true)}, model.FolderInbox, 1},
		{"copied", map[string]uint64{model.MemberColumn(a): Value(1, true)}, model.FolderInbox, 2},
		{"moved out of home", map[string]uint64{model.MemberColumn(model.FolderInbox): Value(2, false), model.MemberColumn(a): Value(2, true)}, model.FolderInbox, 2},
		{"moved out of a", map[string]uint64{model.MemberColumn(a): Value(2, false), model.MemberColumn(b): Value(2, true), DeletedColumn(a): Value(1, true)}, model.FolderInbox, 3},
		{"appended in a", map[string]uint64{model.MemberColumn(a): Value(2, true)}, a, 1},
		{"a forged column takes a place too", map[string]uint64{"imap.in.zz": 1}, model.FolderInbox, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FolderColumns(tt.cols, tt.home); got != tt.want {
				t.Errorf("FolderColumns(%v, home %v) = %d, want %d", tt.cols, tt.home, got, tt.want)
			}
		})
	}
}

// TestTooManyFolders: a COPY or MOVE into a folder beyond MaxFolders is
// too many; into a folder the mail has a column for, or its home, never,
// even for a mail over the bound (copied before it).
func TestTooManyFolders(t *testing.T) {
	user := func(i int) model.FolderID { return model.FolderID(1<<63 | uint64(i)) }
	rowIn := func(n int) map[string]uint64 { // INBOX and n-1 user folders
		cols := map[string]uint64{"ack": 1}
		for i := 1; i < n; i++ {
			cols[model.MemberColumn(user(i))] = Value(1, true)
		}
		return cols
	}
	movedOut := rowIn(MaxFolders)
	movedOut[model.MemberColumn(model.FolderInbox)] = Value(2, false)
	tests := []struct {
		name string
		cols map[string]uint64
		dst  model.FolderID
		want bool
	}{
		{"room", rowIn(MaxFolders - 1), user(1000), false},
		{"one too many", rowIn(MaxFolders), user(1000), true},
		{"a folder it was in", rowIn(MaxFolders), user(1), false},
		{"home", rowIn(MaxFolders), model.FolderInbox, false},
		{"home, moved out of it", movedOut, model.FolderInbox, false},
		{"back into a folder it was in, over the bound", rowIn(MaxFolders + 30), user(MaxFolders + 20), false},
		{"a new folder over the bound", rowIn(MaxFolders + 30), user(1000), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TooManyFolders(tt.cols, model.FolderInbox, tt.dst); got != tt.want {
				t.Errorf("TooManyFolders(%d folders, into %v) = %v, want %v", FolderColumns(tt.cols, model.FolderInbox), tt.dst, got, tt.want)
			}
		})
	}
}

// TestRowBudget: a receive row at every bound of imapd, with what the
// other services write on it, stays below model.MaxColumns with room to
// spare. The other services' columns, by a grep of their OpSet on
// model.Receive (2026-12-03): smtpd ack, rcvd.<link> and pop3.size.<link>
// (one per acknowledged delivery), spamd verdict, spam.r.<link> (one per
// judged attempt), spam.score and spam.digested, backupd backedup,
// pop3d and imapd deleted and pop3.sz.<link> (a size per received row
// and header filter), smsd sms./fwd. claim, tries, failed and s./t./f.
// per number or address (docs/smsd.md §4). A mail delivered twice,
// judged twice, sent by SMS to two numbers and forwarded to one address
// is counted here.
func TestRowBudget(t *testing.T) {
	const margin = 20 // flags.go, MaxFolders: "20 to spare"
	link := func(prefix string, i int) string {
		return model.LinkColumn(prefix, model.KeyOf(model.Text, fmt.Appendf(nil, "%d", i)))
	}
	cols := map[string]uint64{}
	for _, c := range []string{model.ColAcknowledged, model.ColVerdict, model.ColBackedUp, model.ColDeleted, "spam.score", "spam.digested"} {
		cols[c] = 1
	}
	for i := range 2 {
		for _, p := range []string{"rcvd.", "spam.r.", model.POP3SizePrefix, "pop3.sz."} {
			cols[link(p, i)] = 1
		}
	}
	for _, kind := range []string{"sms.", "fwd."} {
		for _, c := range []string{"claim", "tries", "failed"} {
			cols[kind+c] = 1
		}
	}
	for _, target := range []string{"sms.%s0", "sms.%s1", "fwd.%s0"} {
		for _, sort := range []string{"s.", "t.", "f."} {
			cols[fmt.Sprintf(target, sort)] = 1
		}
	}
	others := len(cols)
	// imapd: every system flag, the shared \Deleted of older rows, an
	// APPENDed row's date and Received link (an SMTP delivery has none,
	// but a row is one or the other), all its keywords, and every folder
	// with \Deleted set, home included.
	for _, f := range Permanent {
		col, _, _ := Column(f, model.FolderInbox)
		cols[col] = 1
	}
	cols[sharedDeleted] = 1
	cols[model.ColAppendDate] = 1
	cols[model.AppendedReceivedColumn(model.Key{})] = 1
	for i := 0; KeywordColumns(cols, noColumns) < MaxKeywords; i++ {
		col, _, _ := Column(imap.Flag(fmt.Sprintf("$k%d", i)), model.FolderInbox)
		cols[col] = 1
	}
	for i := 0; FolderColumns(cols, model.FolderInbox) < MaxFolders; i++ {
		cols[model.MemberColumn(model.FolderID(1<<63|uint64(i)))] = 1
	}
	cols[model.MemberColumn(model.FolderInbox)] = 1 // moved out of INBOX: still counted
	for c := range cols {
		if f, ok := model.ParseMemberColumn(c); ok {
			cols[DeletedColumn(f)] = 1
		}
	}
	if n := FolderColumns(cols, model.FolderInbox); n != MaxFolders {
		t.Fatalf("FolderColumns = %d, want MaxFolders %d", n, MaxFolders)
	}
	var st model.State
	for c, v := range cols {
		if _, err := st.Set(c, v); err != nil {
			t.Fatalf("a row at every bound: %v", err)
		}
	}
	if len(cols)+margin > model.MaxColumns {
		t.Errorf("a row at every bound has %d columns (%d of other services), want at most %d: %d to spare for other services' future columns",
			len(cols), others, model.MaxColumns-margin, margin)
	}
	t.Logf("%d columns, %d of them other services'", len(cols), others)
}
