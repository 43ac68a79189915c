package session

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

func msgs(rows ...uint64) []*message {
	var out []*message
	for _, r := range rows {
		out = append(out, &message{uid: imap.UID(r), m: mailbox.Message{RowNo: r}})
	}
	return out
}

func fresh(rows ...uint64) []mailbox.Message {
	var out []mailbox.Message
	for _, r := range rows {
		out = append(out, mailbox.Message{RowNo: r})
	}
	return out
}

func TestDiff(t *testing.T) {
	changed := fresh(2)
	changed[0].State.Set("imap.flag.seen", 3)
	tests := []struct {
		name     string
		view     []*message
		fresh    []mailbox.Message
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
		{"late ack below UIDNEXT", msgs(1, 5), fresh(1, 3, 5, 6), 6, nil, nil, []uint64{6}, 1},
		{"all gone", msgs(1, 2), nil, 3, []int{1, 0}, nil, nil, 0},
		{"from empty", nil, fresh(4), 1, nil, nil, []uint64{4}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diff(tt.view, tt.fresh, tt.uidNext)
			var added []uint64
			for _, m := range d.added {
				added = append(added, m.RowNo)
			}
			if !slices.Equal(d.expunged, tt.expunged) || !slices.Equal(d.changed, tt.changed) || !slices.Equal(added, tt.added) || d.late != tt.late {
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
		{"seq beyond", imap.SeqSetNum(9), nil},
		{"uid range", imap.UIDSet{{Start: 4, Stop: 10}}, []int{1, 2}},
		{"uid star above all", imap.UIDSet{{Start: 50, Stop: 0}}, []int{3}},
		{"uid reversed", imap.UIDSet{{Start: 9, Stop: 3}}, []int{0, 1, 2}},
		{"uid missing", imap.UIDSetNum(8), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := indices(tt.set, view); !slices.Equal(got, tt.want) {
				t.Fatalf("indices(%v) = %v, want %v", tt.set, got, tt.want)
			}
		})
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
	if got := headerEnd([]byte("no blank line")); got != 13 {
		t.Fatalf("headerEnd without a blank line = %d", got)
	}
}

func TestUIDValidity(t *testing.T) {
	if UIDValidity(1, "INBOX") == UIDValidity(2, "INBOX") {
		t.Fatal("two incarnations gave one UIDVALIDITY")
	}
	if UIDValidity(1, "INBOX") != UIDValidity(1, "INBOX") {
		t.Fatal("UIDVALIDITY is not stable")
	}
	_ = model.Key{}
}

func FuzzBodySection(f *testing.F) {
	f.Add([]byte("A: 1\r\n\r\nbody"), int64(0), int64(3))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\na\r\n--x--\r\n"), int64(1), int64(-1))
	f.Fuzz(func(t *testing.T, raw []byte, off, size int64) {
		if off < 0 {
			off = -off
		}
		for _, sec := range []imap.FetchItemBodySection{
			{}, {Specifier: imap.PartSpecifierText}, {Part: []int{1}}, {Partial: &imap.SectionPartial{Offset: off, Size: size}},
		} {
			out := BodySection(raw, &sec)
			if sec.Part == nil && len(out) > len(raw) {
				t.Fatalf("section longer than the mail")
			}
		}
	})
}
