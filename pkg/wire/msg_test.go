package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
)

// The message codec (docs/wire.md §5). The hex in these tables is written by
// hand from the layouts in the doc, so it checks the code against the doc,
// not the code against itself.

// unhex decodes hex written in pieces with optional spaces. It panics on bad
// input: the tables are constants.
func msgHex(parts ...string) []byte {
	s := strings.ReplaceAll(strings.Join(parts, ""), " ", "")
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("bad hex in test table %q: %v", s, err))
	}
	return b
}

// fill returns a key whose 32 bytes are all b, and kx its hex.
func msgFill(b byte) model.Key {
	var k model.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func msgKx(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), model.KeySize) }

// str is the hex of a varint-length-prefixed string (short strings only).
func msgStr(s string) string {
	if len(s) > 127 {
		panic("str: long strings need a multi-byte length")
	}
	return fmt.Sprintf("%02x%x", len(s), s)
}

var (
	msgKA = msgFill(0xaa)
	msgKB = msgFill(0xbb)

	msgHelloKey    = model.KeyOf(model.Body, []byte("hello"))
	msgHelloDigest = sha256.Sum256([]byte("hello"))

	// msgFullRow has every part of a row: state with columns and counters,
	// multi-byte varints, and content.
	msgFullRow = Row{
		Table: model.Mail, Key: msgKA, RowNo: 300, Stamp: 5,
		State: model.State{
			Cols:     map[string]uint64{"verdict": 2, "seen": 1},
			Counters: map[string]map[string]uint64{"hits": {"b": 1, "a": 3}},
		},
		HasContent: true, Content: []byte("hi"),
	}
	msgFullRowHex = "04" + msgKx(0xaa) + "ac02 05" +
		"02" + msgStr("seen") + "01" + msgStr("verdict") + "02" +
		"01" + msgStr("hits") + "02" + msgStr("a") + "03" + msgStr("b") + "01" +
		"01 02 6869"

	// msgBareRow has nothing but table and key.
	msgBareRow    = Row{Table: model.Receive, Key: msgKB}
	msgBareRowHex = "07" + msgKx(0xbb) + "00 00 0000 00 00"
)

type msgRequestCase struct {
	name string
	req  Request
	hex  string
}

var msgRequestCases = []msgRequestCase{
	{"ping", Request{Op: OpPing}, "01"},
	{"find-or-insert body hello", Request{Op: OpFindOrInsert, Table: model.Body, Content: []byte("hello")},
		"02 01 05 68656c6c6f"},
	{"find-or-insert config empty content", Request{Op: OpFindOrInsert, Table: model.Config}, "02 0d 00"},
	{"find text by content x", Request{Op: OpFind, Table: model.Text, Ref: Ref{Content: []byte("x")}},
		"03 0c 00 01 78"},
	{"find mail by key aa..", Request{Op: OpFind, Table: model.Mail, Ref: Ref{ByKey: true, Key: msgKA}},
		"03 04 01" + msgKx(0xaa)},
	{"set receive aa.. verdict=300", Request{Op: OpSet, Table: model.Receive, Ref: Ref{ByKey: true, Key: msgKA}, Name: "verdict", Value: 300},
		"04 07 01" + msgKx(0xaa) + msgStr("verdict") + "ac02"},
	{"set rdns by content 1.2 helo=5", Request{Op: OpSet, Table: model.RDNS, Ref: Ref{Content: []byte("1.2")}, Name: "helo", Value: 5},
		"04 0a 00 03 312e32" + msgStr("helo") + "05"},
	{"increment text bb.. hits+1", Request{Op: OpIncrement, Table: model.Text, Ref: Ref{ByKey: true, Key: msgKB}, Name: "hits", Value: 1},
		"05 0c 01" + msgKx(0xbb) + msgStr("hits") + "01"},
	{"increment pop3 by content a max delta", Request{Op: OpIncrement, Table: model.POP3, Ref: Ref{Content: []byte("a")}, Name: "n.1_x-y", Value: 1<<64 - 1},
		"05 0b 00 01 61" + msgStr("n.1_x-y") + "ffffffffffffffffff01"},
	{"batch of three", Request{Op: OpBatch, Batch: []Request{
		{Op: OpFindOrInsert, Table: model.Body, Content: []byte("hi")},
		{Op: OpSet, Table: model.Receive, Ref: Ref{ByKey: true, Key: msgKA}, Name: "ack", Value: 1},
		{Op: OpIncrement, Table: model.Receive, Ref: Ref{Content: []byte("r")}, Name: "n", Value: 2},
	}}, "06 03" +
		"02 01 02 6869" +
		"04 07 01" + msgKx(0xaa) + msgStr("ack") + "01" +
		"05 07 00 01 72" + msgStr("n") + "02"},
	{"batch empty", Request{Op: OpBatch}, "06 00"},
	{"arm 20 s: receive aa.. verdict&0xff=1, then set ack", Request{Op: OpArm, Value: 20000,
		Conds: []ArmCond{{Table: model.Receive, Key: msgKA, Name: "verdict", Mask: 0xff, Want: 1}},
		Batch: []Request{{Op: OpSet, Table: model.Receive, Ref: Ref{ByKey: true, Key: msgKA}, Name: "ack", Value: 1}}},
		"12 a09c01 01 07" + msgKx(0xaa) + msgStr("verdict") + "ff01 01" +
			"01" + "04 07 01" + msgKx(0xaa) + msgStr("ack") + "01"},
	{"watch receive aa.. bb.. initial", Request{Op: OpWatch, Table: model.Receive, Flag: true, Keys: []model.Key{msgKA, msgKB}},
		"07 07 01 02" + msgKx(0xaa) + msgKx(0xbb)},
	{"watch mail whole table", Request{Op: OpWatch, Table: model.Mail}, "07 04 00 00"},
	{"changes since 1000 follow", Request{Op: OpChanges, Value: 1000, Flag: true}, "08 e807 01"},
	{"changes since 0", Request{Op: OpChanges}, "08 00 00"},
	{"changes since 5 excluding repl.b-to-a", Request{Op: OpChanges, Value: 5, Name: "repl.b-to-a"}, "08 05 00" + msgStr("repl.b-to-a")},
	{"merge two rows cursor from-b=42", Request{Op: OpMerge, Name: "from-b", Value: 42, Rows: []Row{msgFullRow, msgBareRow}},
		"09" + msgStr("from-b") + "2a 02" + msgFullRowHex + msgBareRowHex},
	{"merge row with digest", Request{Op: OpMerge, Rows: []Row{{Table: model.Body, Key: msgHelloKey, HasDigest: true, Digest: msgHelloDigest, Size: 5}}},
		"09 00 00 01 01" + msgHelloKey.String() + "00 00 0000 02" + hex.EncodeToString(msgHelloDigest[:]) + "05"},
	{"merge nothing", Request{Op: OpMerge}, "09 00 00 00"},
	{"status", Request{Op: OpStatus}, "0a"},
	{"dump", Request{Op: OpDump}, "0b"},
	{"cursor from-b", Request{Op: OpCursor, Name: "from-b"}, "0c" + msgStr("from-b")},
	{"scan rdns 50", Request{Op: OpScan, Table: model.RDNS, Value: 50}, "0d 0a 32"},
	{"scan config 10000 below row 300", Request{Op: OpScan, Table: model.Config, Value: 10000, Before: 300}, "0d 0d 904e ac02"},
	{"scan receive 2 below row 1", Request{Op: OpScan, Table: model.Receive, Value: 2, Before: 1}, "0d 07 02 01"},
	{"find mail aa.. without content", Request{Op: OpFind, Table: model.Mail, Ref: Ref{ByKey: true, Key: msgKA}, Flag: true},
		"03 04 01" + msgKx(0xaa) + "01"},
	{"list receive of aa.. after 5, 100", Request{Op: OpList, Table: model.Receive, Parent: &msgKA, After: 5, Value: 100},
		"0e 07" + msgKx(0xaa) + "05 64"},
	{"list receive of aa.. after 5, 100, packed", Request{Op: OpList, Table: model.Receive, Parent: &msgKA, After: 5, Value: 100, Flag: true},
		"0e 07" + msgKx(0xaa) + "05 64 01"},
	{"watch receive children of bb..", Request{Op: OpWatch, Table: model.Receive, Parent: &msgKB}, "07 07 00 00" + msgKx(0xbb)},
	{"watch receive with verdict without ack", Request{Op: OpWatch, Table: model.Receive, Cond: &WatchCond{With: "verdict", Without: "ack"}},
		"07 07 02 00" + msgStr("verdict") + msgStr("ack")},
	{"watch receive without verdict", Request{Op: OpWatch, Table: model.Receive, Cond: &WatchCond{Without: "verdict"}},
		"07 07 02 00 00" + msgStr("verdict")},
	{"watch receive aa.. initial with verdict", Request{Op: OpWatch, Table: model.Receive, Flag: true, Keys: []model.Key{msgKA}, Cond: &WatchCond{With: "verdict"}},
		"07 07 03 01" + msgKx(0xaa) + msgStr("verdict") + "00"},
	{"watch receive children of bb.. with verdict", Request{Op: OpWatch, Table: model.Receive, Parent: &msgKB, Cond: &WatchCond{With: "verdict"}},
		"07 07 02 00" + msgStr("verdict") + "00" + msgKx(0xbb)},
	{"checkpoint nightly-1", Request{Op: OpCheckpoint, Name: "nightly-1"}, "0f" + msgStr("nightly-1")},
	{"mail of receive aa..", Request{Op: OpMail, Table: model.Receive, Ref: Ref{ByKey: true, Key: msgKA}}, "10" + msgKx(0xaa)},
	{"mails of receive aa.., bb..", Request{Op: OpMails, Table: model.Receive, Keys: []model.Key{msgKA, msgKB}}, "11 02" + msgKx(0xaa) + msgKx(0xbb)},
	{"mails of receive aa.., bb.., budget 300", Request{Op: OpMails, Table: model.Receive, Keys: []model.Key{msgKA, msgKB}, Value: 300},
		"11 02" + msgKx(0xaa) + msgKx(0xbb) + "ac 02"},
	{"mails of receive aa.., packed", Request{Op: OpMails, Table: model.Receive, Keys: []model.Key{msgKA}, Flag: true},
		"11 01" + msgKx(0xaa) + "00 01"},
	{"mails of receive aa.., budget 300, packed", Request{Op: OpMails, Table: model.Receive, Keys: []model.Key{msgKA}, Value: 300, Flag: true},
		"11 01" + msgKx(0xaa) + "ac 02 01"},
	{"mails of receive aa.., packed, no body", Request{Op: OpMails, Table: model.Receive, Keys: []model.Key{msgKA}, Flag: true, NoBody: true},
		"11 01" + msgKx(0xaa) + "00 03"},
	{"mails of receive aa.., budget 300, no body", Request{Op: OpMails, Table: model.Receive, Keys: []model.Key{msgKA}, Value: 300, NoBody: true},
		"11 01" + msgKx(0xaa) + "ac 02 02"},
}

// msgNormState drops empty maps, zero values and counters without counts:
// states that encode the same compare equal.
func msgNormState(s model.State) model.State {
	var n model.State
	for k, v := range s.Cols {
		if v != 0 {
			if n.Cols == nil {
				n.Cols = map[string]uint64{}
			}
			n.Cols[k] = v
		}
	}
	for c, sites := range s.Counters {
		for site, v := range sites {
			if v == 0 {
				continue
			}
			if n.Counters == nil {
				n.Counters = map[string]map[string]uint64{}
			}
			if n.Counters[c] == nil {
				n.Counters[c] = map[string]uint64{}
			}
			n.Counters[c][site] = v
		}
	}
	return n
}

func msgNilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func msgNormRow(r Row) Row {
	r.State = msgNormState(r.State)
	r.Content = msgNilIfEmpty(r.Content)
	if r.HasContent {
		r.Size = uint64(len(r.Content))
	}
	return r
}

// msgNormRequest maps requests that encode the same to equal values (nil and
// empty slices alike).
func msgNormRequest(r Request) Request {
	r.Content = msgNilIfEmpty(r.Content)
	r.Ref.Content = msgNilIfEmpty(r.Ref.Content)
	var batch []Request
	for _, s := range r.Batch {
		batch = append(batch, msgNormRequest(s))
	}
	r.Batch = batch
	if len(r.Keys) == 0 {
		r.Keys = nil
	}
	var rows []Row
	for _, row := range r.Rows {
		rows = append(rows, msgNormRow(row))
	}
	r.Rows = rows
	return r
}

func msgNormResult(r Result) Result {
	if r.Row != nil {
		row := msgNormRow(*r.Row)
		r.Row = &row
	}
	var rs []Result
	for _, s := range r.Results {
		rs = append(rs, msgNormResult(s))
	}
	r.Results = rs
	var rows []Row
	for _, row := range r.Rows {
		rows = append(rows, msgNormRow(row))
	}
	r.Rows = rows
	if len(r.Status) == 0 {
		r.Status = nil
	}
	return r
}

func msgRequestsEqual(a, b *Request) bool {
	return reflect.DeepEqual(msgNormRequest(*a), msgNormRequest(*b))
}

func msgResultsEqual(a, b *Result) bool {
	return reflect.DeepEqual(msgNormResult(*a), msgNormResult(*b))
}

func TestRequestRoundTrip(t *testing.T) {
	for _, tc := range msgRequestCases {
		t.Run(tc.name, func(t *testing.T) {
			want := msgHex(tc.hex)
			prefix := []byte("prefix")
			got, err := AppendRequest(bytes.Clone(prefix), &tc.req)
			if err != nil {
				t.Fatalf("AppendRequest(%+v) error %v", tc.req, err)
			}
			if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
				t.Fatalf("AppendRequest(%+v) = %x, want prefix + %x", tc.req, got, want)
			}
			back, err := DecodeRequest(want)
			if err != nil {
				t.Fatalf("DecodeRequest(%x) error %v", want, err)
			}
			if !msgRequestsEqual(back, &tc.req) {
				t.Fatalf("DecodeRequest(%x) = %+v, want %+v", want, *back, tc.req)
			}
		})
	}
}

// TestDecodeRequestAliases checks the documented aliasing: decoded byte
// slices point into the message and cannot grow into the bytes after them.
func TestDecodeRequestAliases(t *testing.T) {
	msg := msgHex("09 00 00 01", msgFullRowHex)
	r, err := DecodeRequest(msg)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Rows[0].Content
	if &c[0] != &msg[len(msg)-2] {
		t.Errorf("row content does not alias the message")
	}
	// A content in the middle of a batch must not reach the next sub-request.
	r, err = DecodeRequest(msgHex("06 02 02 01 02 6869 02 01 00"))
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Batch[0].Content; cap(c) != len(c) {
		t.Errorf("content has capacity %d beyond its length %d", cap(c), len(c))
	}
}

func TestAppendRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		req  Request
	}{
		{"unknown op 0", Request{}},
		{"unknown op 14", Request{Op: 14}},
		{"batch too long", Request{Op: OpBatch, Batch: make([]Request, MaxBatchOps+1)}},
		{"ping in batch", Request{Op: OpBatch, Batch: []Request{{Op: OpPing}}}},
		{"find in batch", Request{Op: OpBatch, Batch: []Request{{Op: OpFind, Table: model.Body}}}},
		{"nested batch", Request{Op: OpBatch, Batch: []Request{{Op: OpBatch}}}},
		{"arm without conditions", Request{Op: OpArm, Batch: []Request{{Op: OpSet, Table: model.Receive, Name: "a"}}}},
		{"arm too many conditions", Request{Op: OpArm, Conds: make([]ArmCond, MaxArmConds+1)}},
		{"arm with a find", Request{Op: OpArm, Conds: make([]ArmCond, 1), Batch: []Request{{Op: OpFind, Table: model.Body}}}},
		{"watch too many keys", Request{Op: OpWatch, Table: model.Body, Keys: make([]model.Key, MaxWatchKeys+1)}},
		{"watch empty condition", Request{Op: OpWatch, Table: model.Body, Cond: &WatchCond{}}},
		{"merge too many rows", Request{Op: OpMerge, Rows: make([]Row, MaxMergeRows+1)}},
		{"mails without keys", Request{Op: OpMails}},
		{"mails too many keys", Request{Op: OpMails, Keys: make([]model.Key, MaxMailsKeys+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := AppendRequest(nil, &tt.req); err == nil {
				t.Fatalf("AppendRequest(%s) = %x, want an error", tt.name, b)
			}
		})
	}
}

// msgMergeRowHex is a merge request (no cursor) carrying one row with the
// given table, state and tail (flags, digest, size, content).
func msgMergeRowHex(table, state, tail string) string {
	return "09 00 00 01" + table + msgKx(0xaa) + "00 00" + state + tail
}

func TestDecodeRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"unknown op 0", "00"},
		{"unknown op 15", "0f"},
		{"unknown op 19", "13"},
		{"arm truncated", "12"},
		{"arm without conditions", "12 05 00 00"},
		{"arm with 257 conditions", "12 05 8102"},
		{"arm condition on an unknown table", "12 05 01 63" + msgKx(0xaa) + msgStr("verdict") + "ff01 00"},
		{"arm nested in a batch", "06 01 12 05 01 07" + msgKx(0xaa) + msgStr("verdict") + "ff01 00"},
		{"arm with a watch", "12 05 01 07" + msgKx(0xaa) + msgStr("verdict") + "ff01 01 07 04 00 00"},
		{"mails without keys", "11 00"},
		{"mails with 65 keys", "11 41" + strings.Repeat(msgKx(0xaa), 65)},
		{"mails key truncated", "11 01" + msgKx(0xaa)[:40]},
		{"mails with budget 0", "11 01" + msgKx(0xaa) + "00"},
		{"mails with flags 0", "11 01" + msgKx(0xaa) + "05 00"},
		{"mails with flags 4", "11 01" + msgKx(0xaa) + "05 04"},
		{"mails with flags 7", "11 01" + msgKx(0xaa) + "00 07"},
		{"mails with a byte after the flags", "11 01" + msgKx(0xaa) + "05 01 00"},
		{"mails budget truncated", "11 01" + msgKx(0xaa) + "80"},
		{"mail key truncated", "10" + msgKx(0xaa)[:40]},
		{"mail with a trailing byte", "10" + msgKx(0xaa) + "00"},
		{"list without parent", "0e 07"},
		{"find with meta-only flag 0", "03 04 01" + msgKx(0xaa) + "00"},
		{"find with two flags", "03 04 01" + msgKx(0xaa) + "01 01"},
		{"list parent truncated", "0e 07" + msgKx(0xaa)[:62]},
		{"list without limit", "0e 07" + msgKx(0xaa) + "05"},
		{"list with flags 0", "0e 07" + msgKx(0xaa) + "05 64 00"},
		{"list with flags 2", "0e 07" + msgKx(0xaa) + "05 64 02"},
		{"list with a byte after the flags", "0e 07" + msgKx(0xaa) + "05 64 01 00"},
		{"watch with keys and a parent", "07 07 00 01" + msgKx(0xaa) + msgKx(0xbb)},
		{"watch parent truncated", "07 07 00 00" + msgKx(0xbb)[:40]},
		{"unknown op ff", "ff"},
		{"missing table", "02"},
		{"unknown table 0", "02 00 00"},
		{"unknown table 14", "02 0e 00"},
		{"unknown table ff", "03 ff 01" + msgKx(0xaa)},
		{"truncated varint", "02 01 80"},
		{"varint past 64 bits", "08 ffffffffffffffffff02 00"},
		{"varint of 11 bytes", "08 8080808080808080808000 00"},
		{"length past end", "02 01 05 6865"},
		{"length of 2^64-1", "02 01 ffffffffffffffffff01"},
		{"trailing byte after ping", "01 00"},
		{"trailing byte after find-or-insert", "02 01 00 00"},
		{"trailing bytes after scan", "0d 0a 32 32 00"},
		{"scan before 0", "0d 0a 32 00"},
		{"scan before truncated", "0d 0a 32 80"},
		{"nested batch", "06 01 06 00"},
		{"ping in batch", "06 01 01"},
		{"find in batch", "06 01 03 01 00 00"},
		{"watch in batch", "06 01 07 01 00 00"},
		{"unknown op in batch", "06 01 0f"},
		{"list in batch", "06 01 0e"},
		{"bad sub-request in batch", "06 01 02 00 00"},
		{"batch shorter than its count", "06 02 02 01 00"},
		{"batch count above limit", "06 8120"},
		{"watch keys above limit", "07 01 00 8120"},
		{"merge rows above limit", "09 00 00 8120"},
		{"watch key truncated", "07 01 00 01" + msgKx(0xaa)[:62]},
		{"set empty column", "04 01 01" + msgKx(0xaa) + "00 01"},
		{"set upper-case column", "04 01 01" + msgKx(0xaa) + msgStr("A") + "01"},
		{"set column with space", "04 01 01" + msgKx(0xaa) + msgStr("a b") + "01"},
		{"set column with slash", "04 01 01" + msgKx(0xaa) + msgStr("a/b") + "01"},
		{"set column with 0xff", "04 01 01" + msgKx(0xaa) + "01 ff 01"},
		{"set column of 65 bytes", "04 01 01" + msgKx(0xaa) + "41" + strings.Repeat("61", 65) + "01"},
		{"set missing value", "04 01 01" + msgKx(0xaa) + msgStr("a")},
		{"increment empty counter", "05 01 00 00 00 01"},
		{"cursor empty name", "0c 00"},
		{"cursor bad name", "0c" + msgStr("Cur")},
		{"checkpoint empty name", "0f 00"},
		{"checkpoint name with slash", "0f" + msgStr("a/b")},
		{"checkpoint name ..", "0f" + msgStr("..")},
		{"checkpoint name .", "0f" + msgStr(".")},
		{"checkpoint name of dots only", "0f" + msgStr("...")},
		{"checkpoint missing name", "0f"},
		{"merge bad cursor name", "09" + msgStr("from b") + "00 00"},
		{"watch flag 2 without its condition", "07 01 02 00"},
		{"watch flags 4", "07 01 04 00"},
		{"watch empty condition", "07 07 02 00 00 00"},
		{"watch condition bad name", "07 07 02 00" + msgStr("a b") + "00"},
		{"watch condition truncated", "07 07 02 00" + msgStr("verdict")},
		{"changes follow 2", "08 00 02"},
		{"changes follow missing", "08 00"},
		{"changes empty exclude", "08 00 00 00"},
		{"changes bad exclude name", "08 00 00 01 41"},
		{"ref kind 2", "03 01 02"},
		{"ref key truncated", "03 01 01" + msgKx(0xaa)[:62]},
		{"scan missing limit", "0d 0a"},
		{"scan unknown table", "0d 00 01"},
		{"row unknown table", msgMergeRowHex("00", "00 00", "00 00")},
		{"row flags 4", msgMergeRowHex("01", "00 00", "04 00")},
		{"row flags 0x80", msgMergeRowHex("01", "00 00", "80 00")},
		{"row flags missing", msgMergeRowHex("01", "00 00", "")},
		{"row size missing", msgMergeRowHex("01", "00 00", "00")},
		{"row digest truncated", msgMergeRowHex("01", "00 00", "02"+strings.Repeat("00", 31))},
		{"row content past end", msgMergeRowHex("01", "00 00", "01 05 6869")},
		{"state zero column value", msgMergeRowHex("01", "01"+msgStr("a")+"00 00", "00 00")},
		{"state columns unsorted", msgMergeRowHex("01", "02"+msgStr("b")+"01"+msgStr("a")+"01 00", "00 00")},
		{"state duplicate column", msgMergeRowHex("01", "02"+msgStr("a")+"01"+msgStr("a")+"02 00", "00 00")},
		{"state bad column name", msgMergeRowHex("01", "01"+msgStr("A")+"01 00", "00 00")},
		{"state padded varint", msgMergeRowHex("01", "8000 00", "00 00")},
		{"state too many columns", msgMergeRowHex("01", "8102 00", "00 00")},
		{"state counter without sites", msgMergeRowHex("01", "00 01"+msgStr("c")+"00", "00 00")},
		{"state zero count", msgMergeRowHex("01", "00 01"+msgStr("c")+"01"+msgStr("s")+"00", "00 00")},
		{"state sites unsorted", msgMergeRowHex("01", "00 01"+msgStr("c")+"02"+msgStr("t")+"01"+msgStr("s")+"01", "00 00")},
		{"state too many counters", msgMergeRowHex("01", "00 41", "00 00")},
		{"state truncated", msgMergeRowHex("01", "00", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := msgHex(tt.in)
			r, err := DecodeRequest(in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeRequest(%x) = %+v, %v; want ErrMalformed", in, r, err)
			}
			if r != nil {
				t.Fatalf("DecodeRequest(%x) returned a request with error %v", in, err)
			}
		})
	}
}

// TestDecodeRequestBounds checks that the counts at the limits are accepted.
func TestDecodeRequestBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString("06 8020")
	for range MaxBatchOps {
		b.WriteString("02 01 00")
	}
	r, err := DecodeRequest(msgHex(b.String()))
	if err != nil || len(r.Batch) != MaxBatchOps {
		t.Fatalf("batch of %d: error %v", MaxBatchOps, err)
	}
	keys := "07 01 00 8020" + strings.Repeat(msgKx(0xaa), MaxWatchKeys)
	if r, err := DecodeRequest(msgHex(keys)); err != nil || len(r.Keys) != MaxWatchKeys {
		t.Fatalf("watch of %d keys: error %v", MaxWatchKeys, err)
	}
	mails := "11 40" + strings.Repeat(msgKx(0xaa), MaxMailsKeys)
	if r, err := DecodeRequest(msgHex(mails)); err != nil || len(r.Keys) != MaxMailsKeys {
		t.Fatalf("mails of %d keys: error %v", MaxMailsKeys, err)
	}
	name := strings.Repeat("z", model.MaxNameLen)
	if _, err := DecodeRequest(msgHex("0c" + msgStr(name))); err != nil {
		t.Fatalf("cursor name of %d bytes: error %v", len(name), err)
	}
}

type msgAnswerCase struct {
	name string
	op   Op
	enc  func([]byte) []byte
	hex  string
	want *Result // nil for error and end answers
	err  error   // *Error or ErrEndOfStream
}

func msgResult(op Op, r Result) func([]byte) []byte {
	return func(b []byte) []byte { return AppendResult(b, op, &r) }
}

func msgEvent(r Row) func([]byte) []byte {
	return func(b []byte) []byte { return AppendRow(AppendEventHeader(b), &r) }
}

func msgRows(rows ...Row) func([]byte) []byte {
	return func(b []byte) []byte {
		b = AppendRowsHeader(b, len(rows))
		for i := range rows {
			b = AppendRow(b, &rows[i])
		}
		return b
	}
}

var (
	msgFoundRow = Row{Table: model.Body, Key: msgHelloKey, RowNo: 1, Stamp: 1,
		State: model.State{Cols: map[string]uint64{"backedup": 1}}, HasContent: true, Content: []byte("hello")}
	msgFoundRowHex = "01" + msgHelloKey.String() + "01 01 01" + msgStr("backedup") + "01 00 01 05 68656c6c6f"

	msgWatchRow    = Row{Table: model.Receive, Key: msgKA, RowNo: 3, Stamp: 9, State: model.State{Cols: map[string]uint64{"ack": 1}}, Size: 700}
	msgWatchRowHex = "07" + msgKx(0xaa) + "03 09 01" + msgStr("ack") + "01 00 00 bc05"

	msgDumpRow    = Row{Table: model.Body, Key: msgHelloKey, RowNo: 1, Stamp: 1, HasDigest: true, Digest: msgHelloDigest, Size: 5}
	msgDumpRowHex = "01" + msgHelloKey.String() + "01 01 00 00 02" + hex.EncodeToString(msgHelloDigest[:]) + "05"
)

var msgAnswerCases = []msgAnswerCase{
	{"ping", OpPing, msgResult(OpPing, Result{}), "00", &Result{}, nil},
	{"find-or-insert new row 1", OpFindOrInsert, msgResult(OpFindOrInsert, Result{RowNo: 1, New: true}), "00 01 01",
		&Result{RowNo: 1, New: true}, nil},
	{"find-or-insert old row 300", OpFindOrInsert, msgResult(OpFindOrInsert, Result{RowNo: 300}), "00 ac02 00",
		&Result{RowNo: 300}, nil},
	{"find hello", OpFind, msgResult(OpFind, Result{Row: &msgFoundRow}), "00" + msgFoundRowHex, &Result{Row: &msgFoundRow}, nil},
	{"find full row", OpFind, msgResult(OpFind, Result{Row: &msgFullRow}), "00" + msgFullRowHex, &Result{Row: &msgFullRow}, nil},
	{"find not found", OpFind, msgResult(OpFind, Result{NotFound: true}), "01", &Result{NotFound: true}, nil},
	{"set row 7", OpSet, msgResult(OpSet, Result{RowNo: 7}), "00 07", &Result{RowNo: 7}, nil},
	{"set not found", OpSet, msgResult(OpSet, Result{NotFound: true}), "01", &Result{NotFound: true}, nil},
	{"increment row 300", OpIncrement, msgResult(OpIncrement, Result{RowNo: 300}), "00 ac02", &Result{RowNo: 300}, nil},
	{"increment not found", OpIncrement, msgResult(OpIncrement, Result{NotFound: true}), "01", &Result{NotFound: true}, nil},
	{"batch of three", OpBatch, msgResult(OpBatch, Result{Results: []Result{{RowNo: 1, New: true}, {NotFound: true}, {RowNo: 2}}}),
		"00 03 00 01 01 01 00 00 00 02 00", &Result{Results: []Result{{RowNo: 1, New: true}, {NotFound: true}, {RowNo: 2}}}, nil},
	{"batch empty", OpBatch, msgResult(OpBatch, Result{}), "00 00", &Result{}, nil},
	{"arm fired", OpArm, msgResult(OpArm, Result{Fired: true, Results: []Result{{RowNo: 4}}}), "00 01 01 00 04 00",
		&Result{Fired: true, Results: []Result{{RowNo: 4}}}, nil},
	{"arm not fired", OpArm, msgResult(OpArm, Result{}), "00 00", &Result{}, nil},
	{"merge one row changed", OpMerge, msgResult(OpMerge, Result{Results: []Result{{RowNo: 9, New: true}}}), "00 01 00 09 01",
		&Result{Results: []Result{{RowNo: 9, New: true}}}, nil},
	{"cursor 42", OpCursor, msgResult(OpCursor, Result{Value: 42}), "00 2a", &Result{Value: 42}, nil},
	{"checkpoint /d/c/x", OpCheckpoint, msgResult(OpCheckpoint, Result{Path: "/d/c/x"}), "00" + msgStr("/d/c/x"), &Result{Path: "/d/c/x"}, nil},
	{"status", OpStatus, msgResult(OpStatus, Result{Status: []Figure{{"site", "a1b2"}, {"role", "admin"}, {"empty", ""}}}),
		"00 03" + msgStr("site") + msgStr("a1b2") + msgStr("role") + msgStr("admin") + msgStr("empty") + "00",
		&Result{Status: []Figure{{"site", "a1b2"}, {"role", "admin"}, {"empty", ""}}}, nil},
	{"watch subscribed", OpPing, msgResult(OpPing, Result{}), "00", &Result{}, nil},
	{"watch event", OpWatch, msgEvent(msgWatchRow), "03" + msgWatchRowHex, &Result{Row: &msgWatchRow}, nil},
	{"changes event with content", OpChanges, msgEvent(msgFullRow), "03" + msgFullRowHex, &Result{Row: &msgFullRow}, nil},
	{"dump event with digest", OpDump, msgEvent(msgDumpRow), "03" + msgDumpRowHex, &Result{Row: &msgDumpRow}, nil},
	{"scan event", OpScan, msgEvent(msgBareRow), "03" + msgBareRowHex, &Result{Row: &msgBareRow}, nil},
	{"mails rows, two", OpMails, msgRows(msgFoundRow, msgFullRow), "05 02" + msgFoundRowHex + msgFullRowHex,
		&Result{Rows: []Row{msgFoundRow, msgFullRow}}, nil},
	{"mails rows, one", OpMails, msgRows(msgFoundRow), "05 01" + msgFoundRowHex, &Result{Rows: []Row{msgFoundRow}}, nil},
	{"list rows, two", OpList, msgRows(msgFoundRow, msgFullRow), "05 02" + msgFoundRowHex + msgFullRowHex,
		&Result{Rows: []Row{msgFoundRow, msgFullRow}}, nil},
	{"end", OpChanges, AppendEnd, "04", nil, ErrEndOfStream},
	{"error forbidden", OpSet, func(b []byte) []byte { return AppendError(b, CodeForbidden, "no") }, "02 02" + msgStr("no"),
		nil, &Error{Code: CodeForbidden, Msg: "no"}},
	{"error busy empty text", OpWatch, func(b []byte) []byte { return AppendError(b, CodeBusy, "") }, "02 06 00",
		nil, &Error{Code: CodeBusy}},
	{"error no-space", OpBatch, func(b []byte) []byte { return AppendError(b, CodeNoSpace, "disk full") }, "02 07" + msgStr("disk full"),
		nil, &Error{Code: CodeNoSpace, Msg: "disk full"}},
}

// TestRequestSize: the size a request's first bytes declare is the size of
// its encoding, and a declared length that does not fit an int with the
// bytes before it is not reported. On a 32-bit platform a length near 2^32
// came back as a small or negative size, and dbd's make([]byte, 0, n)
// panicked on the negative one (one frame from any client).
func TestRequestSize(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 300)
	for _, r := range []*Request{
		{Op: OpFindOrInsert, Table: model.Body, Content: content},
		{Op: OpFindOrInsert, Table: model.Body, Content: content[:5]},
		{Op: OpFind, Table: model.Header, Ref: Ref{Content: content}},
	} {
		b, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := RequestSize(b[:8]); !ok || n != len(b) {
			t.Errorf("RequestSize(%x...) = %d, %v; want %d", b[:8], n, ok, len(b))
		}
	}
	for _, p := range [][]byte{{byte(OpPing)}, {byte(OpFind), byte(model.Header), 1, 0}, {byte(OpFindOrInsert), 1, 0x80}} {
		if n, ok := RequestSize(p); ok {
			t.Errorf("RequestSize(%x) = %d, true", p, n)
		}
	}
	for _, l := range []uint64{1<<31 - 8, 1<<31 - 1, 1<<32 - 10, 1<<32 + 5, 1 << 40} {
		p := binary.AppendUvarint([]byte{byte(OpFindOrInsert), byte(model.Body)}, l)
		n, ok := RequestSize(p)
		if ok && uint64(n) != uint64(len(p))+l {
			t.Errorf("RequestSize with declared length %d = %d, true", l, n)
		}
	}
}

func TestAnswerRoundTrip(t *testing.T) {
	for _, tc := range msgAnswerCases {
		t.Run(tc.name, func(t *testing.T) {
			want := msgHex(tc.hex)
			prefix := []byte("prefix")
			got := tc.enc(bytes.Clone(prefix))
			if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
				t.Fatalf("encoding = %x, want prefix + %x", got, want)
			}
			res, err := DecodeAnswer(tc.op, want)
			if tc.err != nil {
				var we *Error
				switch {
				case errors.As(tc.err, &we):
					var ge *Error
					if !errors.As(err, &ge) || *ge != *we {
						t.Fatalf("DecodeAnswer(%s, %x) = %v, %v; want error %v", tc.op, want, res, err, we)
					}
				case !errors.Is(err, tc.err):
					t.Fatalf("DecodeAnswer(%s, %x) = %v, %v; want %v", tc.op, want, res, err, tc.err)
				}
				if res != nil {
					t.Fatalf("DecodeAnswer(%s, %x) returned a result with error %v", tc.op, want, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeAnswer(%s, %x) error %v", tc.op, want, err)
			}
			if !msgResultsEqual(res, tc.want) {
				t.Fatalf("DecodeAnswer(%s, %x) = %+v, want %+v", tc.op, want, *res, *tc.want)
			}
		})
	}
}

// TestAppendRowHeaderStreaming checks the streaming path of dbd: a row
// header followed by exactly Size content bytes equals AppendRow.
func TestAppendRowHeaderStreaming(t *testing.T) {
	r := msgFullRow
	r.Content = nil
	r.Size = uint64(len(msgFullRow.Content))
	b := AppendRowHeader(nil, &r)
	b = append(b, msgFullRow.Content...)
	if want := AppendRow(nil, &msgFullRow); !bytes.Equal(b, want) {
		t.Fatalf("AppendRowHeader + content = %x, AppendRow = %x", b, want)
	}
	// AppendRow takes Size from the content, not from the field.
	r = msgFullRow
	r.Size = 999
	if got, want := AppendRow(nil, &r), msgHex(msgFullRowHex); !bytes.Equal(got, want) {
		t.Fatalf("AppendRow with a stale Size = %x, want %x", got, want)
	}
	back, err := DecodeRow(msgHex(msgFullRowHex))
	if err != nil || !reflect.DeepEqual(msgNormRow(back), msgNormRow(msgFullRow)) {
		t.Fatalf("DecodeRow(%s) = %+v, %v", msgFullRowHex, back, err)
	}
	if _, err := DecodeRow(msgHex(msgFullRowHex + "00")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodeRow with a trailing byte: error %v, want ErrMalformed", err)
	}
}

// TestAppendRowHeaderEncodedState: a row whose state comes already
// encoded (dbd passes stored states on without decoding them) is written
// byte for byte as the same row with the state decoded, and decodes to it.
func TestAppendRowHeaderEncodedState(t *testing.T) {
	r := msgFullRow
	r.State = model.State{Cols: map[string]uint64{"ignored": 7}} // EncodedState wins
	r.EncodedState = msgFullRow.State.AppendBinary(nil)
	if got, want := AppendRow(nil, &r), msgHex(msgFullRowHex); !bytes.Equal(got, want) {
		t.Fatalf("AppendRow with EncodedState = %x, want %x", got, want)
	}
	back, err := DecodeRow(AppendRow(nil, &r))
	if err != nil || !reflect.DeepEqual(msgNormRow(back), msgNormRow(msgFullRow)) {
		t.Fatalf("DecodeRow = %+v, %v; want %+v", back, err, msgFullRow)
	}
	// An empty state, encoded: two zero counts.
	r = msgBareRow
	r.EncodedState = model.State{}.AppendBinary(nil)
	if got, want := AppendRow(nil, &r), msgHex(msgBareRowHex); !bytes.Equal(got, want) {
		t.Fatalf("AppendRow of a bare row with EncodedState = %x, want %x", got, want)
	}
}

func TestDecodeAnswerErrors(t *testing.T) {
	tests := []struct {
		name string
		op   Op
		in   string
	}{
		{"empty", OpPing, ""},
		{"unknown kind 6", OpPing, "06"},
		{"rows answer to ping", OpPing, "05 01" + msgFoundRowHex},
		{"rows answer to mail", OpMail, "05 01" + msgFoundRowHex},
		{"rows answer to changes", OpChanges, "05 01" + msgFoundRowHex},
		{"rows answer without count", OpMails, "05"},
		{"rows answer of 0 rows", OpMails, "05 00"},
		{"rows answer count above limit", OpMails, "05 8120" + strings.Repeat(msgFoundRowHex, 2)},
		{"rows answer shorter than its count", OpMails, "05 03" + msgFoundRowHex + msgFullRowHex},
		{"rows answer with a row truncated", OpMails, "05 02" + msgFoundRowHex + msgFullRowHex[:40]},
		{"rows answer content short", OpMails, "05 01 01" + msgHelloKey.String() + "01 01 00 00 01 05 6865"},
		{"rows answer with a trailing byte", OpMails, "05 01" + msgFoundRowHex + "00"},
		{"rows answer with a bad row flag", OpMails, "05 01 07" + msgKx(0xaa) + "00 00 0000 04 00"},
		{"unknown kind ff", OpPing, "ff"},
		{"result to op 0", 0, "00"},
		{"result to op 14", 14, "00"},
		{"result to watch", OpWatch, "00"},
		{"result to changes", OpChanges, "00"},
		{"result to dump", OpDump, "00"},
		{"result to scan", OpScan, "00"},
		{"trailing byte after ping result", OpPing, "00 00"},
		{"trailing byte after set result", OpSet, "00 01 00"},
		{"trailing byte after not-found", OpFind, "01 00"},
		{"trailing byte after end", OpChanges, "04 00"},
		{"trailing byte after event", OpScan, "03" + msgBareRowHex + "00"},
		{"find-or-insert new 2", OpFindOrInsert, "00 01 02"},
		{"find-or-insert new missing", OpFindOrInsert, "00 01"},
		{"set rowno missing", OpSet, "00"},
		{"cursor truncated varint", OpCursor, "00 80"},
		{"checkpoint path past end", OpCheckpoint, "00 05 2f"},
		{"checkpoint path of 4097 bytes", OpCheckpoint, "00 8120" + strings.Repeat("61", 4097)},
		{"find row truncated", OpFind, "00 01" + msgKx(0xaa)[:20]},
		{"find row content short", OpFind, "00 01" + msgHelloKey.String() + "01 01 00 00 01 05 6865"},
		{"event unknown table", OpWatch, "03 00" + msgKx(0xaa) + "00 00 0000 00 00"},
		{"event row flags 4", OpWatch, "03 07" + msgKx(0xaa) + "00 00 0000 04 00"},
		{"event bad state", OpWatch, "03 07" + msgKx(0xaa) + "00 00 01" + msgStr("a") + "00 00 00 00"},
		{"event without row", OpWatch, "03"},
		{"batch count above limit", OpBatch, "00 8120"},
		{"batch shorter than its count", OpBatch, "00 02 00 01 00"},
		{"batch not-found 2", OpBatch, "00 01 02 00 00"},
		{"merge new 2", OpMerge, "00 01 00 01 02"},
		{"status count above limit", OpStatus, "00 8120"},
		{"status name of 257 bytes", OpStatus, "00 01 8102" + strings.Repeat("61", 257) + "00"},
		{"status value of 4097 bytes", OpStatus, "00 01 01 61 8120" + strings.Repeat("61", 4097)},
		{"error without code", OpPing, "02"},
		{"error without text", OpPing, "02 01"},
		{"error text past end", OpPing, "02 01 05 6869"},
		{"error text of 4097 bytes", OpPing, "02 01 8120" + strings.Repeat("61", 4097)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := msgHex(tt.in)
			res, err := DecodeAnswer(tt.op, in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeAnswer(%s, %x) = %+v, %v; want ErrMalformed", tt.op, in, res, err)
			}
			if res != nil {
				t.Fatalf("DecodeAnswer(%s, %x) returned a result with error %v", tt.op, in, err)
			}
		})
	}
}

func TestDecodeAnswerBounds(t *testing.T) {
	text := strings.Repeat("e", 4096)
	_, err := DecodeAnswer(OpPing, AppendError(nil, CodeInternal, text))
	var we *Error
	if !errors.As(err, &we) || we.Msg != text {
		t.Fatalf("error answer with a 4096-byte text: %v", err)
	}
	res := Result{Results: make([]Result, max(MaxBatchOps, MaxMergeRows))}
	got, err := DecodeAnswer(OpBatch, AppendResult(nil, OpBatch, &res))
	if err != nil || len(got.Results) != len(res.Results) {
		t.Fatalf("batch answer with %d results: error %v", len(res.Results), err)
	}
	rows := make([]Row, MaxPackedRows)
	for i := range rows {
		rows[i] = Row{Table: model.Body, RowNo: uint64(i + 1), HasContent: true, Content: []byte{}}
	}
	ans := msgRows(rows...)(nil)
	got, err = DecodeAnswer(OpMails, ans)
	if err != nil || len(got.Rows) != MaxPackedRows || got.Rows[MaxPackedRows-1].RowNo != MaxPackedRows {
		t.Fatalf("rows answer with %d rows: error %v", MaxPackedRows, err)
	}
	// One more row than the bound: refused before the rows are read.
	ans = AppendRowsHeader(nil, MaxPackedRows+1)
	if _, err := DecodeAnswer(OpMails, ans); !errors.Is(err, ErrMalformed) {
		t.Fatalf("rows answer claiming %d rows: error %v, want ErrMalformed", MaxPackedRows+1, err)
	}
}

func TestOpCodeNames(t *testing.T) {
	ops := map[Op]string{
		OpPing: "ping", OpFindOrInsert: "find-or-insert", OpFind: "find", OpSet: "set",
		OpIncrement: "increment", OpBatch: "batch", OpWatch: "watch", OpChanges: "changes",
		OpMerge: "merge", OpStatus: "status", OpDump: "dump", OpCursor: "cursor", OpScan: "scan",
		OpList: "list", OpCheckpoint: "checkpoint", OpMail: "mail", OpMails: "mails", OpArm: "arm", 0: "unknown", 19: "unknown",
	}
	for op, want := range ops {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", uint8(op), got, want)
		}
		if got := op.Valid(); got != (want != "unknown") {
			t.Errorf("Op(%d).Valid() = %v", uint8(op), got)
		}
	}
	codes := []struct {
		code      Code
		name      string
		temporary bool
	}{
		{CodeBadRequest, "bad-request", false},
		{CodeForbidden, "forbidden", false},
		{CodeTooLarge, "too-large", false},
		{CodeUnavailable, "unavailable", true},
		{CodeInternal, "internal", false},
		{CodeBusy, "busy", true},
		{CodeNoSpace, "no-space", true},
		{0, "unknown", false},
		{8, "unknown", false},
	}
	for _, c := range codes {
		e := &Error{Code: c.code, Msg: "m"}
		if got := c.code.String(); got != c.name {
			t.Errorf("Code(%d).String() = %q, want %q", uint8(c.code), got, c.name)
		}
		if got := e.Temporary(); got != c.temporary {
			t.Errorf("Error{Code: %s}.Temporary() = %v, want %v", c.code, got, c.temporary)
		}
		if got, want := e.Error(), "dbd: "+c.name+": m"; got != want {
			t.Errorf("Error{Code: %s}.Error() = %q, want %q", c.code, got, want)
		}
	}
}

// TestErrNoSpace: a no-space answer, decoded and wrapped the way the
// client and smtpd wrap it, is ErrNoSpace; no other code is.
func TestErrNoSpace(t *testing.T) {
	for code := Code(0); code < 10; code++ {
		_, err := DecodeAnswer(OpBatch, AppendError(nil, code, "x"))
		err = fmt.Errorf("store mail: %w", err)
		if got, want := errors.Is(err, ErrNoSpace), code == CodeNoSpace; got != want {
			t.Errorf("errors.Is(answer with code %d, ErrNoSpace) = %v, want %v", uint8(code), got, want)
		}
	}
	if errors.Is(ErrMalformed, ErrNoSpace) {
		t.Errorf("errors.Is(ErrMalformed, ErrNoSpace) = true")
	}
}

func TestRefKeyIn(t *testing.T) {
	if got := (Ref{Content: []byte("hello")}).KeyIn(model.Body); got != msgHelloKey {
		t.Errorf("Ref{Content: hello}.KeyIn(body) = %s, want %s", got, msgHelloKey)
	}
	if got := (Ref{ByKey: true, Key: msgKA, Content: []byte("ignored")}).KeyIn(model.Body); got != msgKA {
		t.Errorf("Ref{ByKey}.KeyIn(body) = %s, want %s", got, msgKA)
	}
}

// The worked example of docs/wire.md §5.11: find-or-insert of "hello" into
// table body with request id 7, and its answer (row 1, new).
const (
	msgExampleRequestFrame = "00 00 00 00 07 02 01 05 68 65 6c 6c 6f"
	msgExampleAnswerFrame  = "00 00 00 00 07 00 01 01"
	msgExampleKey          = "f9523f41396ae37b160a9ca57a8f435b94289e6fd2045e7114e71415a62487f4"
)

func TestWorkedExample(t *testing.T) {
	msg, err := AppendRequest(nil, &Request{Op: OpFindOrInsert, Table: model.Body, Content: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	frame, err := AppendFrame(nil, Frame{ReqID: 7, Data: msg})
	if err != nil {
		t.Fatal(err)
	}
	if want := msgHex(msgExampleRequestFrame); !bytes.Equal(frame, want) {
		t.Fatalf("request frame = % x, want % x", frame, want)
	}
	ans, err := AppendFrame(nil, Frame{ReqID: 7, Data: AppendResult(nil, OpFindOrInsert, &Result{RowNo: 1, New: true})})
	if err != nil {
		t.Fatal(err)
	}
	if want := msgHex(msgExampleAnswerFrame); !bytes.Equal(ans, want) {
		t.Fatalf("answer frame = % x, want % x", ans, want)
	}
	f, err := DecodeFrame(ans)
	if err != nil || f.Flags != 0 || f.ReqID != 7 {
		t.Fatalf("DecodeFrame(% x) = %+v, %v", ans, f, err)
	}
	res, err := DecodeAnswer(OpFindOrInsert, f.Data)
	if err != nil || res.RowNo != 1 || !res.New {
		t.Fatalf("DecodeAnswer(% x) = %+v, %v", f.Data, res, err)
	}
	if got := model.KeyOf(model.Body, []byte("hello")).String(); got != msgExampleKey {
		t.Fatalf("key of hello in body = %s, want %s", got, msgExampleKey)
	}
}

// msgDocSection returns §5 of docs/wire.md, skipping the test when the doc
// is not there (the package built outside the twinmx workspace).
func msgDocSection(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "wire.md"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("docs/wire.md not found (not run from the twinmx workspace)")
	}
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## 5. Messages\n")
	if !ok {
		t.Fatal("docs/wire.md has no section \"## 5. Messages\"")
	}
	return sec
}

// msgDocBlock returns the lines of the first ``` block after marker.
func msgDocBlock(t *testing.T, sec, marker string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(sec, marker)
	if !ok {
		t.Fatalf("docs/wire.md §5 lost the text %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("docs/wire.md §5: no code block after %q", marker)
	}
	return strings.Split(strings.TrimRight(block, "\n"), "\n")
}

// msgDocBytes reads the bytes at the start of a doc line: two-digit hex
// tokens, and ‹A› or ‹B› for the 32 bytes of a key. The rest of the line
// is prose.
func msgDocBytes(line string) []byte {
	var b []byte
	for _, tok := range strings.Fields(line) {
		switch {
		case tok == "‹A›":
			b = append(b, msgKA[:]...)
		case tok == "‹B›":
			b = append(b, msgKB[:]...)
		case len(tok) == 2:
			c, err := hex.DecodeString(tok)
			if err != nil {
				return b
			}
			b = append(b, c...)
		default:
			return b
		}
	}
	return b
}

// TestDocMessages keeps docs/wire.md §5 and the codec in agreement: the
// worked example, the varint table, the state example and every request
// example of the doc.
func TestDocMessages(t *testing.T) {
	sec := msgDocSection(t)
	for _, want := range []string{msgExampleRequestFrame, msgExampleAnswerFrame, msgExampleKey} {
		if !strings.Contains(sec, want) {
			t.Errorf("docs/wire.md §5 does not contain the worked example's %q", want)
		}
	}

	varints := map[string]uint64{"0": 0, "127": 127, "128": 128, "300": 300, "1000": 1000, "4096": 4096, "2^64-1": 1<<64 - 1}
	for v, n := range varints {
		_, row, ok := strings.Cut(sec, "\n| "+v+" | `")
		enc, _, ok2 := strings.Cut(row, "`")
		if !ok || !ok2 {
			t.Errorf("docs/wire.md §5.2: no varint row for %s", v)
			continue
		}
		if got := binary.AppendUvarint(nil, n); !bytes.Equal(got, msgHex(enc)) {
			t.Errorf("docs/wire.md §5.2: varint %s shown as %s, encodes as % x", v, enc, got)
		}
	}

	var stateBytes []byte
	for _, l := range msgDocBlock(t, sec, "verdict = 2, plus counter hits") {
		stateBytes = append(stateBytes, msgDocBytes(l)...)
	}
	st, rest, err := model.DecodeState(stateBytes)
	if err != nil || len(rest) != 0 || !st.Equal(msgFullRow.State) {
		t.Errorf("docs/wire.md §5.3 state example % x decodes to %+v, rest %x, %v; want %+v", stateBytes, st, rest, err, msgFullRow.State)
	}

	var msgs [][]byte
	for _, l := range msgDocBlock(t, sec, "Examples (`‹A›`") {
		b := msgDocBytes(l)
		if strings.HasPrefix(l, " ") && len(msgs) > 0 {
			msgs[len(msgs)-1] = append(msgs[len(msgs)-1], b...)
		} else {
			msgs = append(msgs, b)
		}
	}
	if len(msgs) < 10 {
		t.Fatalf("docs/wire.md §5.4: found %d request examples, want at least 10", len(msgs))
	}
	for _, m := range msgs {
		r, err := DecodeRequest(m)
		if err != nil {
			t.Errorf("docs/wire.md §5.4 example % x: %v", m, err)
			continue
		}
		if enc, err := AppendRequest(nil, r); err != nil || !bytes.Equal(enc, m) {
			t.Errorf("docs/wire.md §5.4 example % x re-encodes as % x, %v", m, enc, err)
		}
	}
}

// TestMessageVectors keeps testdata/msg/vectors.txt, the encodings of the
// tables above for implementations in other languages, up to date.
func TestMessageVectors(t *testing.T) {
	var out bytes.Buffer
	fmt.Fprintf(&out, "# twinmx dbd messages (docs/wire.md §5): encodings checked by msg_test.go.\n")
	fmt.Fprintf(&out, "# Regenerate with: go test -run TestMessageVectors -update\n")
	fmt.Fprintf(&out, "# request NAME-OF-CASE: HEX\n# answer OP NAME-OF-CASE: HEX\n")
	for _, tc := range msgRequestCases {
		fmt.Fprintf(&out, "request %s: %x\n", tc.name, msgHex(tc.hex))
	}
	for _, tc := range msgAnswerCases {
		fmt.Fprintf(&out, "answer %s %s: %x\n", tc.op, tc.name, msgHex(tc.hex))
	}
	path := filepath.Join("testdata", "msg", "vectors.txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("%s is out of date; run with -update and review the diff", path)
	}
}

func ExampleAppendRequest() {
	msg, err := AppendRequest(nil, &Request{Op: OpFindOrInsert, Table: model.Body, Content: []byte("hello")})
	if err != nil {
		panic(err)
	}
	frame, err := AppendFrame(nil, Frame{ReqID: 7, Data: msg})
	if err != nil {
		panic(err)
	}
	fmt.Printf("request frame: % x\n", frame)

	ans := AppendResult(nil, OpFindOrInsert, &Result{RowNo: 1, New: true})
	res, err := DecodeAnswer(OpFindOrInsert, ans)
	if err != nil {
		panic(err)
	}
	fmt.Printf("answer: % x = row %d, new %v\n", ans, res.RowNo, res.New)
	// Output:
	// request frame: 00 00 00 00 07 02 01 05 68 65 6c 6c 6f
	// answer: 00 01 01 = row 1, new true
}

// FuzzDecodeRequest checks that DecodeRequest never panics, fails only with
// ErrMalformed, and that whatever it accepts re-encodes to a request that
// decodes to the same value, in no more bytes (the encoder writes the
// shortest form) and stably.
func FuzzDecodeRequest(f *testing.F) {
	for _, tc := range msgRequestCases {
		f.Add(msgHex(tc.hex))
	}
	f.Add([]byte{})
	f.Add(msgHex("06 01 06 00"))
	f.Add(msgHex("08 8000 00"))
	f.Add(msgHex("0d 0a 32 00"))
	f.Add(msgHex(msgMergeRowHex("01", "02"+msgStr("b")+"01"+msgStr("a")+"01 00", "00 00")))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := DecodeRequest(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeRequest(%x) error %v does not wrap ErrMalformed", msg, err)
			}
			return
		}
		enc, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("AppendRequest(DecodeRequest(%x)) error %v", msg, err)
		}
		if len(enc) > len(msg) {
			t.Fatalf("AppendRequest(DecodeRequest(%x)) = %x, longer than the input", msg, enc)
		}
		r2, err := DecodeRequest(enc)
		if err != nil {
			t.Fatalf("DecodeRequest(%x) (re-encoded from %x) error %v", enc, msg, err)
		}
		if !msgRequestsEqual(r, r2) {
			t.Fatalf("request %x decodes to %+v, its re-encoding %x to %+v", msg, *r, enc, *r2)
		}
		if enc2, _ := AppendRequest(nil, r2); !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable: %x then %x", enc, enc2)
		}
	})
}

// FuzzDecodeAnswer checks, for every operation, that DecodeAnswer never
// panics, returns exactly one of a result, an *Error, ErrEndOfStream or an
// ErrMalformed error, and that a decoded answer re-encodes to one that
// decodes the same.
func FuzzDecodeAnswer(f *testing.F) {
	for _, tc := range msgAnswerCases {
		f.Add(msgHex(tc.hex))
	}
	f.Add([]byte{})
	f.Add(msgHex("02 01 8120"))
	f.Add(msgHex("00 8020"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		for op := Op(0); op <= OpMails+1; op++ {
			res, err := DecodeAnswer(op, msg)
			var we *Error
			switch {
			case err == nil:
				if res == nil {
					t.Fatalf("DecodeAnswer(%s, %x) = nil, nil", op, msg)
				}
				var enc []byte
				switch Kind(msg[0]) {
				case KindEvent:
					if res.Row == nil {
						t.Fatalf("DecodeAnswer(%s, %x): event without a row", op, msg)
					}
					enc = AppendRow(AppendEventHeader(nil), res.Row)
				case KindRows:
					if (op != OpMails && op != OpList) || len(res.Rows) == 0 || len(res.Rows) > MaxPackedRows {
						t.Fatalf("DecodeAnswer(%s, %x): %d rows", op, msg, len(res.Rows))
					}
					enc = msgRows(res.Rows...)(nil)
				default:
					enc = AppendResult(nil, op, res)
				}
				res2, err := DecodeAnswer(op, enc)
				if err != nil || !msgResultsEqual(res, res2) {
					t.Fatalf("answer %x to %s decodes to %+v; its re-encoding %x to %+v, %v", msg, op, *res, enc, res2, err)
				}
			case errors.As(err, &we):
				enc := AppendError(nil, we.Code, we.Msg)
				_, err2 := DecodeAnswer(op, enc)
				var we2 *Error
				if !errors.As(err2, &we2) || *we2 != *we {
					t.Fatalf("error answer %x decodes to %v; its re-encoding %x to %v", msg, we, enc, err2)
				}
			case errors.Is(err, ErrEndOfStream):
				if res != nil || !bytes.Equal(msg, []byte{byte(KindEnd)}) {
					t.Fatalf("DecodeAnswer(%s, %x) = %+v, end of stream", op, msg, res)
				}
			case errors.Is(err, ErrMalformed):
				if res != nil {
					t.Fatalf("DecodeAnswer(%s, %x) returned a result with error %v", op, msg, err)
				}
			default:
				t.Fatalf("DecodeAnswer(%s, %x) error %v is none of the documented ones", op, msg, err)
			}
		}
	})
}

// TestAppendRequestPartsEqualsAppendRequest: the pieces a client sends a
// merge in are byte for byte the one-piece encoding, and content pieces are
// the rows' own slices.
func TestAppendRequestPartsEqualsAppendRequest(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100000)
	reqs := []*Request{
		{Op: OpPing},
		{Op: OpMerge, Name: "repl.a-to-b", Value: 7},
		{Op: OpBatch},
		{Op: OpBatch, Batch: []Request{
			{Op: OpFindOrInsert, Table: model.Header, Content: []byte("Subject: x\r\n\r\n")},
			{Op: OpFindOrInsert, Table: model.Body, Content: big},
			{Op: OpSet, Table: model.Receive, Ref: Ref{ByKey: true, Key: msgKA}, Name: "ack", Value: 1},
			{Op: OpFindOrInsert, Table: model.Body, Content: big[:partMin]},
		}},
		{Op: OpMerge, Name: "c", Value: 1, Rows: []Row{
			{Table: model.Body, Key: model.KeyOf(model.Body, big), HasContent: true, Content: big, Stamp: 3},
			{Table: model.Mail, Key: model.KeyOf(model.Mail, nil), HasContent: true},
			{Table: model.Header, Key: model.KeyOf(model.Header, []byte("h")), HasContent: true, Content: []byte("h"),
				State: model.State{Cols: map[string]uint64{"backedup": 1}}},
			{Table: model.Receive, Key: model.KeyOf(model.Receive, []byte("r"))},
		}},
	}
	for _, r := range reqs {
		want, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		parts, err := AppendRequestParts(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Join(parts, nil); !bytes.Equal(got, want) {
			t.Fatalf("%s: parts differ from AppendRequest", r.Op)
		}
		if r.Op == OpMerge && len(r.Rows) > 0 && &parts[1][0] != &big[0] {
			t.Fatal("the large content was copied")
		}
		if r.Op == OpBatch && len(r.Batch) > 0 && &parts[1][0] != &big[0] {
			t.Fatal("the large body of the batch was copied")
		}
	}
}

// BenchmarkDecodeBatch decodes the batch smtpd stores a mail with: seven
// find-or-inserts, one of them a 10 kB body (dbd decodes one per mail).
func BenchmarkDecodeBatch(b *testing.B) {
	req := &Request{Op: OpBatch}
	for _, n := range []int{600, 10240, 96, 700, 40, 80, 300} {
		req.Batch = append(req.Batch, Request{Op: OpFindOrInsert, Table: model.Body, Content: make([]byte, n)})
	}
	msg, err := AppendRequest(nil, req)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// A batch that claims more requests than its message holds is refused,
// and its array is sized by the bytes present, not by the claim.
func TestDecodeBatchClaimsTooMany(t *testing.T) {
	msg := []byte{byte(OpBatch), 0x80, 0x20, byte(OpFindOrInsert), byte(model.Body), 0}
	if _, err := DecodeRequest(msg); err == nil {
		t.Fatal("a batch of 4096 claimed, 1 present, was decoded")
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		DecodeRequest(msg)
	}
	runtime.ReadMemStats(&after)
	// 4096 requests would be about 1 MiB each time.
	if n := after.TotalAlloc - before.TotalAlloc; n > 10*4096 {
		t.Fatalf("%d bytes allocated for 10 decodes", n)
	}
}

// TestDecodeAnswerTo: the rows of rows answers are appended to the list
// given, in order; an answer that is not a rows answer leaves it as it
// is, and one that does not decode leaves it at its length (no row of the
// bad answer kept).
func TestDecodeAnswerTo(t *testing.T) {
	first, second := msgRows(msgFoundRow, msgWatchRow)(nil), msgRows(msgDumpRow)(nil)
	rows := make([]Row, 0, 8)
	for _, ans := range [][]byte{first, second} {
		var err error
		if rows, _, err = DecodeAnswerTo(rows, OpMails, ans); err != nil {
			t.Fatal(err)
		}
	}
	var want []Row
	for _, ans := range [][]byte{first, second} {
		res, err := DecodeAnswer(OpMails, ans)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Rows...)
	}
	if len(want) != 3 || !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows = %v, want %v", rows, want)
	}
	for _, tc := range []struct {
		name string
		ans  []byte
		err  bool
	}{
		{"event", msgEvent(msgWatchRow)(nil), false},
		{"end", AppendEnd(nil), true},
		{"truncated rows", first[:len(first)-2], true},
		{"trailing byte", append(second[:len(second):len(second)], 0), true},
	} {
		got, res, err := DecodeAnswerTo(rows, OpMails, tc.ans)
		if (err != nil) != tc.err || len(got) != 3 || (err == nil && res.Rows != nil) {
			t.Errorf("%s: %d rows, %v, %v; want 3 rows, error %v", tc.name, len(got), res, err, tc.err)
		}
	}
}
