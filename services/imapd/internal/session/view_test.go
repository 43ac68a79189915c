package session

import (
	"math"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

func msgs(rows ...uint64) []*message {
	var out []*message
	for _, r := range rows {
		out = append(out, &message{uid: imap.UID(r), m: mailbox.Message{RowNo: r}})
	}
	return out
}

func fresh(rows ...uint64) []*message { return msgs(rows...) }

func TestDiff(t *testing.T) {
	changed := fresh(2)
	changed[0].m.State.Set("imap.flag.seen", 3)
	tests := []struct {
		name     string
		view     []*message
		fresh    []*message
		uidNext  imap.UID
		expunged []int
		changed  []int
		added    []uint64
		late     int
	}{
		{"same", msgs(1, 2, 3), fresh(1, 2, 3), 4, nil, nil, nil, 0},
		{"new", msgs(1, 2), fresh(1, 2, 5, 7), 3, nil, nil, []uint64{5, 7}, 0},
		{"expunged high first", msgs(1, 2, 3, 4), fresh(2, 4), 5, []int{2, 0}, nil, nil, 0},
		{"changed after expunge", msgs(1, 2), changed, 3, []int{0}, []int{0}, nil, 0},
		{"placement below UIDNEXT (tripwire)", msgs(1, 5), fresh(1, 3, 5, 6), 6, nil, nil, []uint64{6}, 1},
		{"all gone", msgs(1, 2), nil, 3, []int{1, 0}, nil, nil, 0},
		{"from empty", nil, fresh(4), 1, nil, nil, []uint64{4}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diff(tt.view, tt.fresh, tt.uidNext)
			var added []uint64
			for _, m := range d.added {
				added = append(added, uint64(m.uid))
			}
			var changed []int
			for _, c := range d.changed {
				changed = append(changed, c.i)
			}
			if !slices.Equal(d.expunged, tt.expunged) || !slices.Equal(changed, tt.changed) || !slices.Equal(added, tt.added) || d.late != tt.late {
				t.Fatalf("diff = %+v (added %v), want expunged %v changed %v added %v late %d", d, added, tt.expunged, tt.changed, tt.added, tt.late)
			}
		})
	}
}

func TestIndices(t *testing.T) {
	view := msgs(3, 7, 9, 20)
	tests := []struct {
		name string
		set  imap.NumSet
		want []int
	}{
		{"seq", imap.SeqSetNum(1, 3), []int{0, 2}},
		{"seq star", imap.SeqSet{{Start: 2, Stop: 0}}, []int{1, 2, 3}},
		{"seq range to the last", imap.SeqSetNum(4), []int{3}},
		{"uid range", imap.UIDSet{{Start: 4, Stop: 10}}, []int{1, 2}},
		{"uid star above all", imap.UIDSet{{Start: 50, Stop: 0}}, []int{3}},
		{"uid reversed", imap.UIDSet{{Start: 9, Stop: 3}}, []int{0, 1, 2}},
		{"uid missing", imap.UIDSetNum(8), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := indices(tt.set, view); err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("indices(%v) = %v, %v; want %v", tt.set, got, err, tt.want)
			}
		})
	}
	// A sequence number the client was not told of is its error (RFC
	// 9051 §9), as is "*" in an empty folder; a UID is not.
	for _, tc := range []struct {
		set  imap.NumSet
		view []*message
	}{
		{imap.SeqSetNum(5), view},
		{imap.SeqSet{{Start: 5, Stop: 0}}, view},
		{imap.SeqSet{{Start: 2, Stop: 9}}, view},
		{imap.SeqSet{{Start: 1, Stop: 0}}, nil},
		{imap.SeqSet{{Start: 0, Stop: 0}}, nil},
	} {
		if got, err := indices(tc.set, tc.view); err != errBadSeq {
			t.Errorf("indices(%v) in %d messages = %v, %v; want errBadSeq", tc.set, len(tc.view), got, err)
		}
	}
	if got, err := indices(imap.UIDSetNum(99), view); err != nil || got != nil {
		t.Errorf("indices(UID 99) = %v, %v; want nothing, no error", got, err)
	}
}

func TestBodySection(t *testing.T) {
	raw := []byte("A: 1\r\nB:  two\r\n folded\r\n\r\nbody\r\n")
	tests := []struct {
		name string
		sec  imap.FetchItemBodySection
		want string
	}{
		{"whole", imap.FetchItemBodySection{}, string(raw)},
		{"header", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader}, "A: 1\r\nB:  two\r\n folded\r\n\r\n"},
		{"text", imap.FetchItemBodySection{Specifier: imap.PartSpecifierText}, "body\r\n"},
		{"partial", imap.FetchItemBodySection{Partial: &imap.SectionPartial{Offset: 3, Size: 2}}, "1\r"},
		{"partial past end", imap.FetchItemBodySection{Partial: &imap.SectionPartial{Offset: 99, Size: 2}}, ""},
		{"fields", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"a"}}, "A: 1\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(BodySection(raw, &tt.sec)); got != tt.want {
				t.Fatalf("BodySection(%+v) = %q, want %q", tt.sec, got, tt.want)
			}
		})
	}
	mp := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n" +
		"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nX: y\r\n\r\ninner\r\n--b--\r\n")
	parts := []struct {
		name string
		sec  imap.FetchItemBodySection
		want string
	}{
		{"part", imap.FetchItemBodySection{Part: []int{1}}, "one"},
		{"part partial", imap.FetchItemBodySection{Part: []int{1}, Partial: &imap.SectionPartial{Offset: 1, Size: 5}}, "ne"},
		{"part MIME", imap.FetchItemBodySection{Part: []int{1}, Specifier: imap.PartSpecifierMIME}, "Content-Type: text/plain\r\n\r\n"},
		{"message part", imap.FetchItemBodySection{Part: []int{2}}, "Subject: in\r\nX: y\r\n\r\ninner"},
		{"message part HEADER", imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierHeader}, "Subject: in\r\nX: y\r\n\r\n"},
		{"message part TEXT", imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierText}, "inner"},
		{"message part fields", imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"x"}}, "X: y\r\n\r\n"},
		{"enclosed body", imap.FetchItemBodySection{Part: []int{2, 1}}, "inner"},
		{"no such part", imap.FetchItemBodySection{Part: []int{3}}, ""},
	}
	for _, tt := range parts {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(BodySection(mp, &tt.sec)); got != tt.want {
				t.Fatalf("BodySection(%+v) = %q, want %q", tt.sec, got, tt.want)
			}
		})
	}
	if got := headerEnd([]byte("no blank line")); got != 13 {
		t.Fatalf("headerEnd without a blank line = %d", got)
	}
}

func TestUIDValidity(t *testing.T) {
	if UIDValidity(1, 7) == UIDValidity(2, 7) {
		t.Fatal("two incarnations gave one UIDVALIDITY")
	}
	// A folder made later at one site (a higher marker row) gets a
	// strictly greater value (RFC 9051 §2.3.1.1, TEST-CATALOG 44).
	for _, inc := range []uint64{0, 1, 2, math.MaxUint64} {
		prev := UIDValidity(inc, 0)
		if prev == 0 {
			t.Fatalf("UIDValidity(%d, 0) = 0", inc)
		}
		for _, n := range []uint64{1, 2, 1000, 1 << 31, 3 << 30} {
			v := UIDValidity(inc, n)
			if v <= prev {
				t.Fatalf("UIDValidity(%d, %d) = %d, not above %d", inc, n, v, prev)
			}
			prev = v
		}
		if v := UIDValidity(inc, math.MaxUint64); v != math.MaxUint32 {
			t.Fatalf("UIDValidity(%d, max) = %d, want 2^32-1", inc, v)
		}
	}
	// Stable across versions: a changed formula would give every folder a
	// new UIDVALIDITY at the upgrade, and every client would download its
	// mail again. The value is FNV-1a of "uidvalidity/2" and the
	// incarnation, computed outside this code.
	if v := UIDValidity(1, 7); v != 589792353 {
		t.Fatalf("UIDValidity(1, 7) = %d, want 589792353", v)
	}
}

// TestReconcile: placements whose mail is still a member with the same
// gen keep their UIDs; a mail moved out and back (new gen), or never
// placed, needs a new placement, in arrival order; a placement of a mail
// no longer a member is dropped (issue 6: late acknowledgement and
// re-moves never reuse or undercut a UID).
func TestReconcile(t *testing.T) {
	key := func(s string) model.Key { return model.KeyOf(model.Receive, []byte(s)) }
	mem := func(s string, rowNo, gen uint64) member {
		return member{acctMsg: acctMsg{m: mailbox.Message{Receive: key(s), RowNo: rowNo}}, gen: gen}
	}
	pl := func(s string, rowNo, gen uint64) store.PlacedRow {
		return store.PlacedRow{RowNo: rowNo, Receive: key(s), Gen: gen}
	}
	members := []member{mem("late", 1, 0), mem("a", 2, 0), mem("back", 3, 9), mem("b", 4, 0)}
	placed := []store.PlacedRow{pl("a", 10, 0), pl("back", 11, 5), pl("gone", 12, 0), pl("b", 13, 0), pl("a", 14, 0)}
	view, missing := reconcile(members, placed)
	var got []uint64
	for _, v := range view {
		got = append(got, v.uid)
	}
	if !slices.Equal(got, []uint64{10, 13}) {
		t.Fatalf("reconcile kept UIDs %v, want [10 13]", got)
	}
	var miss []uint64
	for _, m := range missing {
		miss = append(miss, m.m.RowNo)
	}
	if !slices.Equal(miss, []uint64{1, 3}) {
		t.Fatalf("reconcile missing rows %v, want [1 3] (the late ack and the re-move)", miss)
	}
}

// TestBuildFolderSet: system folders first, user folders by name,
// deleted ones known but not live, same-name folders made distinct.
func TestBuildFolderSet(t *testing.T) {
	a, b, c := model.UserFolderID(1), model.UserFolderID(2), model.UserFolderID(3)
	fs := buildFolderSet("u", []store.Folder{
		{ID: c, Name: "Work", Exists: true}, {ID: a, Name: "Work", Exists: true}, {ID: b, Name: "Old", Exists: false},
		{ID: model.UserFolderID(4), Name: "junk", Exists: true},
	})
	var names []string
	for _, f := range fs.live {
		names = append(names, f.name)
	}
	want := []string{"INBOX", "Junk", "Sent", "Trash", "Drafts", "Work", "Work~0003", "junk~0004"}
	if !slices.Equal(names, want) {
		t.Fatalf("live folders %q, want %q", names, want)
	}
	if len(fs.known) != 5+4 {
		t.Fatalf("known folders %d, want 9 (deleted ones included)", len(fs.known))
	}
	if f, ok := fs.byName("inbox"); !ok || f.id != model.FolderInbox {
		t.Fatal("INBOX is not found case-insensitively")
	}
	if f, ok := fs.byName("Work"); !ok || f.id != a {
		t.Fatal("the older-id folder does not keep the name")
	}
	tree := buildFolderSet("u", []store.Folder{{ID: a, Name: "A", Exists: true}, {ID: b, Name: "A/b", Exists: true}, {ID: c, Name: "AB", Exists: true}})
	if !tree.hasChildren("A") || tree.hasChildren("A/b") || tree.hasChildren("AB") {
		t.Fatal("hasChildren is wrong for A, A/b, AB")
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "a*", "Junk", "inbox", "Trash"} {
		if checkFolderName(bad) == nil {
			t.Errorf("checkFolderName(%q) accepted", bad)
		}
	}
	if err := checkFolderName("Work/2026"); err != nil {
		t.Errorf("checkFolderName(Work/2026): %v", err)
	}
}

func TestFeedbackOf(t *testing.T) {
	for _, tc := range []struct {
		src, dst model.FolderID
		spam, ok bool
	}{
		{model.FolderInbox, model.FolderJunk, true, true},
		{model.FolderJunk, model.FolderInbox, false, true},
		{model.FolderJunk, model.UserFolderID(9), false, true},
		{model.FolderJunk, model.FolderTrash, false, false},
		{model.FolderInbox, model.FolderTrash, false, false},
		{model.FolderJunk, model.FolderJunk, false, false},
	} {
		spam, ok := feedbackOf(tc.src, tc.dst)
		if spam != tc.spam || ok != tc.ok {
			t.Errorf("feedbackOf(%s, %s) = %v, %v; want %v, %v", tc.src, tc.dst, spam, ok, tc.spam, tc.ok)
		}
	}
}

func FuzzBodySection(f *testing.F) {
	f.Add([]byte("A: 1\r\n\r\nbody"), int64(0), int64(3))
	f.Add([]byte("From x  Tue Jul 23 21:23:35 2002\r\nSubject: s\r\n t\r\nnot a field\r\nFrom: f\r\n\r\nb"), int64(0), int64(-1))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\na\r\n--x--\r\n"), int64(1), int64(-1))
	f.Fuzz(func(t *testing.T, raw []byte, off, size int64) {
		if off < 0 {
			off = -off
		}
		for _, sec := range []imap.FetchItemBodySection{
			{}, {Specifier: imap.PartSpecifierText}, {Part: []int{1}}, {Partial: &imap.SectionPartial{Offset: off, Size: size}},
			{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject", "from"}},
			{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"subject"}},
		} {
			out := BodySection(raw, &sec)
			// HEADER.FIELDS adds a blank line that a mail without a
			// header end lacks.
			if sec.Part == nil && len(out) > len(raw)+2 {
				t.Fatalf("section longer than the mail")
			}
		}
	})
}
