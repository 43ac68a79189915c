package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// answerMsg is one answer message as it came: its bytes and its frames.
type answerMsg struct {
	data   []byte
	frames int
}

// askRaw sends req on wc as request id and returns its answer messages up
// to and including the end (or an error).
func askRaw(t *testing.T, wc *wire.Conn, id uint32, req *wire.Request) []answerMsg {
	t.Helper()
	msg, err := wire.AppendRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.WriteFrame(wire.Frame{ReqID: id, Data: msg}); err != nil {
		t.Fatal(err)
	}
	var out []answerMsg
	var cur answerMsg
	for {
		f, err := wc.ReadFrame()
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		if f.ReqID != id {
			t.Fatalf("frame for request %d, want %d", f.ReqID, id)
		}
		cur.data = append(cur.data, f.Data...)
		cur.frames++
		if f.Flags&wire.FlagMore != 0 {
			continue
		}
		out = append(out, cur)
		if k := wire.Kind(cur.data[0]); k == wire.KindEnd || k == wire.KindError {
			return out
		}
		cur = answerMsg{}
	}
}

// TestMailsPacked: a mails request with the packed flag gets the same
// rows, in the same order, as one without it, but as rows answers of as
// many rows as fit in a frame (a row larger than a frame in an answer of
// its own); the request without the flag still gets one event a row, as
// clients older than the flag expect.
func TestMailsPacked(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin := e.Client(auth.Admin)
	small, _ := putMails(t, ctx, admin, 4, "body")
	big, _ := putMails(t, ctx, admin, 1, strings.Repeat("large body line\r\n", 10000)) // 170 kB: three frames
	missing := model.KeyOf(model.Receive, []byte("none"))
	keys := []model.Key{small[0], small[1], big[0], missing, small[2], small[3]}
	wc := e.Dial(auth.Mailbox)

	// Without the flag: events, one a row.
	var want [][]byte
	plain := askRaw(t, wc, 1, &wire.Request{Op: wire.OpMails, Keys: keys})
	for _, m := range plain[:len(plain)-1] {
		res, err := wire.DecodeAnswer(wire.OpMails, m.data)
		if err != nil || res.Row == nil {
			t.Fatalf("unpacked answer % x: %+v, %v; want an event", m.data[:min(len(m.data), 8)], res, err)
		}
		want = append(want, wire.AppendRow(nil, res.Row))
	}
	if len(want) != 5*5 {
		t.Fatalf("unpacked: %d rows, want 25 (five mails of five rows)", len(want))
	}

	packed := askRaw(t, wc, 2, &wire.Request{Op: wire.OpMails, Keys: keys, Flag: true})
	if end := packed[len(packed)-1]; !bytes.Equal(end.data, wire.AppendEnd(nil)) {
		t.Fatalf("packed answer ends with % x, want an end", end.data)
	}
	var got [][]byte
	for i, m := range packed[:len(packed)-1] {
		res, err := wire.DecodeAnswer(wire.OpMails, m.data)
		if err != nil || len(res.Rows) == 0 {
			t.Fatalf("packed answer %d: %+v, %v; want a rows answer", i, res, err)
		}
		if m.frames > 1 && (len(res.Rows) != 1 || res.Rows[0].Table != model.Body) {
			t.Fatalf("packed answer %d spans %d frames with %d rows; only a large body may", i, m.frames, len(res.Rows))
		}
		for j := range res.Rows {
			got = append(got, wire.AppendRow(nil, &res.Rows[j]))
		}
	}
	// Four small mails and the large one's small rows fit in two frames;
	// the large body is the third answer.
	if len(packed) != 1+3 {
		t.Fatalf("packed: %d rows answers, want 3", len(packed)-1)
	}
	if len(got) != len(want) {
		t.Fatalf("packed: %d rows, unpacked %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("row %d packed differs from unpacked:\n% x\n% x", i, got[i][:min(len(got[i]), 64)], want[i][:min(len(want[i]), 64)])
		}
	}
}

// TestMailsNoBody: a mails request with wire.MailsNoBody, packed or not,
// gets the rows it gets without the flag, in the same order, but each
// body row without its content and with its size; no body's bytes are in
// the answer, and the budget counts only the contents sent.
func TestMailsNoBody(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin := e.Client(auth.Admin)
	small, _ := putMails(t, ctx, admin, 3, "small body\r\n")
	big, _ := putMails(t, ctx, admin, 1, strings.Repeat("large body line\r\n", 10000)) // in chunks, over frames
	keys := []model.Key{small[0], big[0], small[1], small[2]}
	wc := e.Dial(auth.Mailbox)
	rowsOf := func(id uint32, req *wire.Request) (rows []wire.Row, data []byte) {
		for _, m := range askRaw(t, wc, id, req) {
			data = append(data, m.data...)
			res, err := wire.DecodeAnswer(wire.OpMails, m.data)
			if errors.Is(err, wire.ErrEndOfStream) {
				break
			}
			if err != nil {
				t.Fatalf("request %d: %v", id, err)
			}
			if res.Row != nil {
				rows = append(rows, *res.Row)
			}
			rows = append(rows, res.Rows...)
		}
		return rows, data
	}
	want, _ := rowsOf(1, &wire.Request{Op: wire.OpMails, Keys: keys, Flag: true})
	if len(want) != 4*5 {
		t.Fatalf("%d rows, want 20 (four mails of five rows)", len(want))
	}
	for i, packed := range []bool{true, false} {
		got, data := rowsOf(uint32(2+i), &wire.Request{Op: wire.OpMails, Keys: keys, Flag: packed, NoBody: true})
		if bytes.Contains(data, []byte("body line")) || bytes.Contains(data, []byte("small body")) {
			t.Fatalf("packed %v: a body's content is in the answer", packed)
		}
		if len(got) != len(want) {
			t.Fatalf("packed %v: %d rows, want %d", packed, len(got), len(want))
		}
		for j := range want {
			w := want[j]
			if w.Table == model.Body {
				w.HasContent, w.Content = false, nil
			}
			if g := got[j]; !bytes.Equal(wire.AppendRow(nil, &g), wire.AppendRow(nil, &w)) {
				t.Fatalf("packed %v, row %d: %+v, want %+v", packed, j, g, w)
			}
		}
	}
	// A budget of one byte ends the answer after the first mail, sent
	// whole; the body's size, not sent, does not count: a budget just
	// above the contents of the first two mails without their bodies
	// takes three.
	var first2 uint64
	for _, r := range want[:10] {
		if r.Table != model.Body {
			first2 += r.Size
		}
	}
	id := uint32(9)
	for budget, mails := range map[uint64]int{1: 1, first2: 2, first2 + 1: 3} {
		// A new id each time: dbd may still hold the last request as in
		// flight after its end, and closes a connection that reuses it.
		id++
		got, _ := rowsOf(id, &wire.Request{Op: wire.OpMails, Keys: keys, Value: budget, Flag: true, NoBody: true})
		if len(got) != 5*mails {
			t.Errorf("budget %d: %d rows, want %d", budget, len(got), 5*mails)
		}
	}
}

// TestMailsPackedRefusedFlags: a mails request with a flag dbd does not
// know is bad-request (so a client can tell, and ask without it).
func TestMailsPackedRefusedFlags(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	wc := e.Dial(auth.Mailbox)
	msg, _ := wire.AppendRequest(nil, &wire.Request{Op: wire.OpMails, Keys: []model.Key{{}}, Flag: true})
	msg[len(msg)-1] = 0x04 // an unknown flag
	if err := wc.WriteFrame(wire.Frame{ReqID: 1, Data: msg}); err != nil {
		t.Fatal(err)
	}
	f, err := wc.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	_, err = wire.DecodeAnswer(wire.OpMails, f.Data)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeBadRequest {
		t.Fatalf("mails with flag 4: %v, want bad-request", err)
	}
}

// TestListPacked: a list request with the packed flag gets the same rows,
// in the same order, as one without it, as rows answers of many rows
// (more rows than one gathering, listBatch, so the batches join up); a
// list with a flag dbd does not know is bad-request.
func TestListPacked(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin := e.Client(auth.Admin)
	box := model.KeyOf(model.Mailbox, model.MailboxContent("u@x.example"))
	const n = 1500
	for i := 0; i < n; i += 500 {
		var reqs []wire.Request
		for j := i; j < i+500; j++ {
			c := model.ReceiveContent(model.KeyOf(model.Mail, fmt.Appendf(nil, "m%d", j)), box)
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: c})
		}
		if _, err := admin.Batch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
	wc := e.Dial(auth.Mailbox)
	list := wire.Request{Op: wire.OpList, Table: model.Receive, Parent: &box, After: 7, Value: 10000}

	var want [][]byte
	plain := askRaw(t, wc, 1, &list)
	for _, m := range plain[:len(plain)-1] {
		res, err := wire.DecodeAnswer(wire.OpList, m.data)
		if err != nil || res.Row == nil {
			t.Fatalf("unpacked answer % x: %+v, %v; want an event", m.data[:min(len(m.data), 8)], res, err)
		}
		want = append(want, wire.AppendRow(nil, res.Row))
	}
	if len(want) != n-7 {
		t.Fatalf("unpacked: %d rows, want %d", len(want), n-7)
	}

	list.Flag = true
	packed := askRaw(t, wc, 2, &list)
	if end := packed[len(packed)-1]; !bytes.Equal(end.data, wire.AppendEnd(nil)) {
		t.Fatalf("packed answer ends with % x, want an end", end.data)
	}
	var got [][]byte
	for i, m := range packed[:len(packed)-1] {
		res, err := wire.DecodeAnswer(wire.OpList, m.data)
		if err != nil || len(res.Rows) == 0 || m.frames != 1 {
			t.Fatalf("packed answer %d (%d frames): %+v, %v; want a rows answer in one frame", i, m.frames, res, err)
		}
		for j := range res.Rows {
			got = append(got, wire.AppendRow(nil, &res.Rows[j]))
		}
	}
	// Some 200 bytes a row: a frame holds hundreds.
	if len(packed)-1 > n/100 {
		t.Fatalf("packed: %d rows answers for %d rows", len(packed)-1, len(got))
	}
	if len(got) != len(want) {
		t.Fatalf("packed: %d rows, unpacked %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("row %d packed differs from unpacked:\n% x\n% x", i, got[i][:min(len(got[i]), 64)], want[i][:min(len(want[i]), 64)])
		}
	}

	msg, _ := wire.AppendRequest(nil, &list)
	msg[len(msg)-1] = 0x04 // an unknown flag
	if err := wc.WriteFrame(wire.Frame{ReqID: 3, Data: msg}); err != nil {
		t.Fatal(err)
	}
	f, err := wc.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	_, err = wire.DecodeAnswer(wire.OpList, f.Data)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeBadRequest {
		t.Fatalf("list with flag 2: %v, want bad-request", err)
	}
}
