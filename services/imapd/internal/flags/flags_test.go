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
		{"deleted", imap.FlagDeleted, "imap.flag.deleted", false, true},
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
			col, text, ok := Column(tt.in)
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
	in := []imap.Flag{imap.FlagSeen, imap.FlagDraft, imap.FlagForwarded, "NonJunk", "work", "$label1", "Ärger"}
	cols := map[string]uint64{}
	names := map[model.Key]string{}
	for i, f := range in {
		col, text, ok := Column(f)
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
	got := Of(cols, func(k model.Key) (string, bool) { n, ok := names[k]; return n, ok })
	want := []imap.Flag{imap.FlagSeen, imap.FlagDraft, imap.FlagForwarded, "NonJunk", "work", "$label1", "ärger"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Of = %q, want %q", got, want)
	}
	if !Has(cols, "$LABEL1") || Has(cols, imap.FlagFlagged) {
		t.Fatal("Has disagrees with Of")
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
		col, text, ok := Column(imap.Flag(s))
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
