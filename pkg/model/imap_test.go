package model

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlacementRoundTripAndParent(t *testing.T) {
	p := Placement{Incarnation: 42, Folder: FolderKey("Alice", FolderJunk), Receive: KeyOf(Receive, []byte("r")), Gen: 7<<1 | 1}
	c := PlacementContent(p)
	got, err := ParsePlacementContent(c)
	if err != nil || got != p {
		t.Fatalf("ParsePlacementContent = %+v, %v; want %+v", got, err, p)
	}
	parent, ok := ParentOf(Text, c)
	if !ok || parent != PlacementParent(p.Folder, 42) {
		t.Fatalf("ParentOf(placement) = %s, %v; want PlacementParent", parent, ok)
	}
	// The other site's placement of the same mail in the same folder is
	// another row under another parent: never listed with ours.
	q := p
	q.Incarnation = 43
	if bytes.Equal(PlacementContent(q), c) {
		t.Fatal("placements of two incarnations have the same content")
	}
	if pq, _ := ParentOf(Text, PlacementContent(q)); pq == parent {
		t.Fatal("placements of two incarnations share a parent")
	}
	if FolderKey("alice", FolderJunk) != p.Folder {
		t.Fatal("FolderKey depends on the case of the login")
	}
	for _, bad := range [][]byte{c[:len(c)-1], append(bytes.Clone(c), 0), []byte("imap.place\x00")} {
		if _, err := ParsePlacementContent(bad); err == nil {
			t.Errorf("ParsePlacementContent(%d bytes) accepted", len(bad))
		}
		if _, ok := ParentOf(Text, bad); ok {
			t.Errorf("ParentOf(text, %d bytes) indexed a malformed placement", len(bad))
		}
	}
}

func TestIndexed(t *testing.T) {
	for _, tb := range Tables() {
		if want := tb == Receive || tb == Text; Indexed(tb) != want {
			t.Errorf("Indexed(%s) = %v", tb, !want)
		}
	}
}

func TestFeedback(t *testing.T) {
	r := KeyOf(Receive, []byte("r"))
	c := FeedbackContent(r, "Bob")
	gr, login, err := ParseFeedbackContent(c)
	if err != nil || gr != r || login != "bob" {
		t.Fatalf("ParseFeedbackContent = %s %q %v", gr, login, err)
	}
	if p, ok := ParentOf(Text, c); !ok || p != FeedbackParent {
		t.Fatalf("ParentOf(feedback) = %s, %v", p, ok)
	}
	if _, ok := ParentOf(Text, []byte("spam.feedback\x00short")); ok {
		t.Fatal("a malformed feedback row is indexed")
	}
	if _, ok := ParentOf(Text, []byte("some other text")); ok {
		t.Fatal("an ordinary text row is indexed")
	}
	t0 := time.UnixMilli(1000)
	spam, ham := FeedbackValue(t0, true), FeedbackValue(t0, false)
	if spam <= ham {
		t.Fatal("at the same millisecond, spam must dominate ham")
	}
	if later := FeedbackValue(t0.Add(time.Millisecond), false); later <= spam {
		t.Fatal("a later ham verdict does not dominate an earlier spam verdict")
	}
	for _, tc := range []struct {
		v        uint64
		spam, ok bool
	}{{spam, true, true}, {ham, false, true}, {0, false, false}, {3, false, false}, {2, true, false}} {
		s, ok := DecodeFeedback(tc.v)
		if s != tc.spam || ok != tc.ok {
			t.Errorf("DecodeFeedback(%d) = %v, %v; want %v, %v", tc.v, s, ok, tc.spam, tc.ok)
		}
	}
}

func TestMember(t *testing.T) {
	var st State
	if gen, in := Member(st, FolderInbox, FolderInbox); !in || gen != 0 {
		t.Fatalf("a new mail is not in its home: %d %v", gen, in)
	}
	if _, in := Member(st, FolderInbox, FolderJunk); in {
		t.Fatal("a new mail is in Junk")
	}
	now := time.UnixMilli(5000)
	out := MoveValue(st, FolderInbox, now, false)
	in := MoveValue(st, FolderJunk, now, true)
	st.Set(MemberColumn(FolderInbox), out)
	st.Set(MemberColumn(FolderJunk), in)
	if _, ok := Member(st, FolderInbox, FolderInbox); ok {
		t.Fatal("moved out of INBOX but still in it")
	}
	gen, ok := Member(st, FolderInbox, FolderJunk)
	if !ok || gen != in {
		t.Fatalf("Member(junk) = %d %v, want %d", gen, ok, in)
	}
	// Back to INBOX with a clock that runs behind: the value still rises,
	// and the new gen differs from any earlier one (a new UID).
	back := MoveValue(st, FolderInbox, time.UnixMilli(10), true)
	if back <= out {
		t.Fatalf("MoveValue fell: %d after %d", back, out)
	}
	st.Set(MemberColumn(FolderInbox), back)
	if gen, ok := Member(st, FolderInbox, FolderInbox); !ok || gen != back {
		t.Fatalf("after moving back, Member(inbox) = %d %v", gen, ok)
	}
	if got := Folders(st, FolderInbox, []FolderID{FolderInbox, FolderJunk, FolderSent}); len(got) != 2 {
		t.Fatalf("Folders = %v, want INBOX and Junk", got)
	}
}

func TestFolderColumnsAndNames(t *testing.T) {
	id := UserFolderID(0x1234)
	if !id.Valid() || id.System() {
		t.Fatalf("user folder id %s: valid %v system %v", id, id.Valid(), id.System())
	}
	for _, f := range []FolderID{FolderInbox, FolderDrafts, id} {
		if got, ok := ParseFolderColumn(FolderColumn(f)); !ok || got != f {
			t.Errorf("ParseFolderColumn(%q) = %s, %v", FolderColumn(f), got, ok)
		}
		if got, ok := ParseMemberColumn(MemberColumn(f)); !ok || got != f {
			t.Errorf("ParseMemberColumn(%q) = %s, %v", MemberColumn(f), got, ok)
		}
		if err := CheckName(MemberColumn(f)); err != nil {
			t.Errorf("member column: %v", err)
		}
	}
	for _, bad := range []string{"imap.f.0000000000000006", "imap.f.123", "imap.f.8000000000000ABC", "imap.in.zz00000000000000"} {
		if _, ok := ParseFolderColumn(bad); ok {
			t.Errorf("ParseFolderColumn(%q) accepted", bad)
		}
		if _, ok := ParseMemberColumn(bad); ok {
			t.Errorf("ParseMemberColumn(%q) accepted", bad)
		}
	}
	c := FolderNameContent(id, "Work/2026 ä")
	gid, name, err := ParseFolderNameContent(c)
	if err != nil || gid != id || name != "Work/2026 ä" {
		t.Fatalf("ParseFolderNameContent = %s %q %v", gid, name, err)
	}
	if _, _, err := ParseFolderNameContent(FolderNameContent(id, "")); err == nil {
		t.Fatal("an empty folder name parsed")
	}
	// Rename: the newest link wins, even against a clock behind.
	var st State
	a, b := KeyOf(Text, FolderNameContent(id, "a")), KeyOf(Text, FolderNameContent(id, "b"))
	st.Set(FolderNameColumn(a), NameValue(st, time.UnixMilli(9000)))
	st.Set(FolderNameColumn(b), NameValue(st, time.UnixMilli(1)))
	if k, ok := CurrentFolderName(st); !ok || k != b {
		t.Fatalf("CurrentFolderName = %s, %v; want the later name", k, ok)
	}
	if err := CheckName(FolderNameColumn(a)); err != nil {
		t.Fatal(err)
	}
	r := KeyOf(Received, []byte("x"))
	st.Set(AppendedReceivedColumn(r), 1)
	if k, ok := AppendedReceived(st); !ok || k != r {
		t.Fatalf("AppendedReceived = %s, %v", k, ok)
	}
}

func FuzzParentOfText(f *testing.F) {
	f.Add(PlacementContent(Placement{Incarnation: 1}))
	f.Add(FeedbackContent(Key{}, "a"))
	f.Add([]byte("spam.feedback\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := ParentOf(Text, b)
		if !ok {
			return
		}
		if pl, err := ParsePlacementContent(b); err == nil {
			if p != PlacementParent(pl.Folder, pl.Incarnation) || !bytes.Equal(PlacementContent(pl), b) {
				t.Fatalf("placement %x: parent or round trip wrong", b)
			}
			return
		}
		if _, _, err := ParseFeedbackContent(b); err != nil || p != FeedbackParent {
			t.Fatalf("ParentOf(text, %x) = %s without a parseable content", b, p)
		}
	})
}

// TestMailReceivedEncoded checks that MailReceivedEncoded, which dbd uses
// on stored states, finds what MailReceived finds in the decoded state:
// random states with acknowledged and APPEND links (ties in value too),
// near-miss names, other columns and counters.
func TestMailReceivedEncoded(t *testing.T) {
	if linkLen != keyBase32.EncodedLen(KeySize) {
		t.Fatalf("linkLen %d, want %d", linkLen, keyBase32.EncodedLen(KeySize))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	key := func() Key {
		var k Key
		for i := range k {
			k[i] = byte(rng.IntN(256))
		}
		return k
	}
	for i := range 3000 {
		st := State{Cols: map[string]uint64{}}
		for range rng.IntN(6) {
			st.Cols[ReceivedColumn(key())] = uint64(1 + rng.IntN(3)) // ties
		}
		for range rng.IntN(4) {
			st.Cols[AppendedReceivedColumn(key())] = uint64(1 + rng.IntN(1000))
		}
		for range rng.IntN(4) {
			c := ReceivedColumn(key())
			switch rng.IntN(4) {
			case 0:
				c = c[:len(c)-1] // too short
			case 1:
				c = c[:len(c)-1] + "1" // not base32
			case 2:
				c = "x" + c
			default:
				c = POP3SizeColumn(key())
			}
			st.Cols[c] = uint64(1 + rng.IntN(3))
		}
		if rng.IntN(2) == 0 {
			st.Counters = map[string]map[string]uint64{"hits": {"a": 2}}
		}
		wantK, wantOK := MailReceived(st)
		enc := st.AppendBinary(nil)
		gotK, gotOK, err := MailReceivedEncoded(append(enc, "content after"...))
		if err != nil || gotK != wantK || gotOK != wantOK {
			t.Fatalf("state %d %v: got %s %v %v, want %s %v", i, st.Cols, gotK, gotOK, err, wantK, wantOK)
		}
	}
	if _, _, err := MailReceivedEncoded([]byte{1, 3, 'a', 'b', 'c', 0}); !errors.Is(err, ErrBadState) {
		t.Fatalf("zero column value: err %v, want ErrBadState", err)
	}
}

// TestMailReceivedEncodedNoAlloc: dbd reads the link of every mail it
// sends; decoding the state for it allocated about 400 bytes a mail.
func TestMailReceivedEncodedNoAlloc(t *testing.T) {
	enc := State{Cols: map[string]uint64{ReceivedColumn(KeyOf(Received, []byte("r"))): 1, "seen": 3}}.AppendBinary(nil)
	if n := testing.AllocsPerRun(100, func() {
		if _, ok, err := MailReceivedEncoded(enc); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

// TestDecodeLink checks decodeLink against keyBase32 on link names and on
// names with one character changed (to another digit, a letter keyBase32
// lacks, a newline, padding), so ParseLinkColumn reads exactly what it
// read before it decoded by itself.
func TestDecodeLink(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	odd := []byte("Aa27189=\n\r\x00z")
	for i := range 20000 {
		var k Key
		for j := range k {
			k[j] = byte(rng.IntN(256))
		}
		s := []byte(keyBase32.EncodeToString(k[:]))
		if i%2 == 1 {
			s[rng.IntN(len(s))] = odd[rng.IntN(len(odd))]
		}
		want, werr := keyBase32.DecodeString(string(s))
		got, ok := decodeLink(s)
		if wantOK := werr == nil && len(want) == KeySize; ok != wantOK || ok && !bytes.Equal(got[:], want) {
			t.Fatalf("%q: decodeLink %x %v, keyBase32 %x %v", s, got, ok, want, werr)
		}
	}
}

// TestFolderIDString: the hand-made hex is fmt's %016x.
func TestFolderIDString(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, f := range []FolderID{0, 1, FolderInbox, FolderJunk, 0xffffffffffffffff, 0x0123456789abcdef} {
		if got, want := f.String(), fmt.Sprintf("%016x", uint64(f)); got != want {
			t.Errorf("%d: %q, want %q", uint64(f), got, want)
		}
	}
	for range 10000 {
		f := FolderID(rng.Uint64() >> rng.IntN(64))
		if got, want := f.String(), fmt.Sprintf("%016x", uint64(f)); got != want {
			t.Fatalf("%d: %q, want %q", uint64(f), got, want)
		}
	}
}

// TestFolderListName: a second folder of a name already listed (in any
// case) is listed with "~" and its id's last four digits.
func TestFolderListName(t *testing.T) {
	taken := map[string]bool{"inbox": true}
	a, b := UserFolderID(0x1234), UserFolderID(0xabcd)
	if got := FolderListName("Work", a, taken); got != "Work" {
		t.Errorf("first Work listed as %q", got)
	}
	if got := FolderListName("work", b, taken); got != "work~abcd" {
		t.Errorf("second work listed as %q, want work~abcd", got)
	}
	if got := FolderListName("Inbox", a, taken); got != "Inbox~1234" {
		t.Errorf("a user folder Inbox listed as %q, want Inbox~1234", got)
	}
}

// TestValuesNearMax: NameValue and MoveValue must give a value above the
// current one whenever a uint64 has one. With a column at 1<<64-2 (from a
// corrupt or hostile row), int64(v>>1)+1 wrapped to the lowest int64 and
// both returned a value from the clock, far below: the rename or move
// never took effect, though 1<<64-1 would have.
func TestValuesNearMax(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	nk := KeyOf(Text, FolderNameContent(UserFolderID(1), "a"))
	for _, v := range []uint64{1 << 63, math.MaxUint64 - 2, math.MaxUint64 - 1, math.MaxUint64} {
		st := State{Cols: map[string]uint64{FolderNameColumn(nk): v, MemberColumn(FolderJunk): v}}
		if got := NameValue(st, now); got <= v && got != math.MaxUint64 {
			t.Errorf("NameValue over a link at %#x = %#x, want above it or the maximum", v, got)
		}
		if got := MoveValue(st, FolderJunk, now, true); got <= v && got != math.MaxUint64 {
			t.Errorf("MoveValue(in) over %#x = %#x, want above it or the maximum", v, got)
		}
		if got := MoveValue(st, FolderJunk, now, false); got < v-1 || got&1 != 0 {
			t.Errorf("MoveValue(out) over %#x = %#x, want the highest even value not below %#x", v, got, v-1)
		}
	}
}

// TestParseFolderNameContentChecks: a folder name row comes from either
// site; one with a name no writer takes (imapd's CREATE and RENAME, dbctl:
// CheckFolderName) is refused, as a link to something else is, rather than
// listed. ParseFolderNameContent took any bytes: line breaks, NUL,
// wildcards, invalid UTF-8, empty levels.
func TestParseFolderNameContentChecks(t *testing.T) {
	id := UserFolderID(7)
	for _, bad := range []string{"a\r\nb", "a\nb", "a\x00", "a*", "50%", "\xff", "/a", "a/", "a//b", strings.Repeat("x", MaxFolderNameLen+1)} {
		if _, n, err := ParseFolderNameContent(FolderNameContent(id, bad)); !errors.Is(err, ErrBadContent) {
			t.Errorf("ParseFolderNameContent(name %q) = %q, %v; want ErrBadContent", bad, n, err)
		}
		if CheckFolderName(bad) == nil {
			t.Errorf("CheckFolderName(%q) accepted", bad)
		}
	}
	for _, good := range []string{"Work/2026 ä", "a", "a/b/c", "x~1234", strings.Repeat("x", MaxFolderNameLen)} {
		if gid, n, err := ParseFolderNameContent(FolderNameContent(id, good)); err != nil || gid != id || n != good {
			t.Errorf("ParseFolderNameContent(name %q) = %s, %q, %v", good, gid, n, err)
		}
	}
}

// TestFolderListNameTwice: the name given to a second folder of a name can
// itself be taken by a folder listed before. Folders "work~abcd", "work" and
// "work" (the last with an id ending in abcd) were listed as "work~abcd",
// "work" and "work~abcd": one name twice.
func TestFolderListNameTwice(t *testing.T) {
	taken := map[string]bool{}
	var got []string
	for _, f := range []struct {
		name string
		id   FolderID
	}{{"work~abcd", UserFolderID(1)}, {"work", UserFolderID(2)}, {"Work", UserFolderID(0xabcd)}} {
		n := FolderListName(f.name, f.id, taken)
		if slices.ContainsFunc(got, func(s string) bool { return strings.EqualFold(s, n) }) {
			t.Fatalf("%q (%s) listed as %q, which %q already is", f.name, f.id, n, got)
		}
		got = append(got, n)
	}
}
