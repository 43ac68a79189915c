package server_test

import (
	"bytes"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
)

// TestDroppedRequestNotApplied (TEST-CATALOG item 64, dbd side): a request
// sent as several frames is applied only when its last frame (without
// MORE) has arrived whole. A connection that ends before that — by a TCP
// close, a reset, or even an authenticated CLOSE — leaves the store's dump
// exactly as it was, and dbd keeps serving.
//
// The request is a batch (an increment, a 150 kB find-or-insert, a set)
// cut into frames. In most cases every byte of the message arrives, only
// the end of the message does not: a server that applied what it had
// buffered when the connection ended would apply a complete, valid batch,
// so these cases fail on exactly that bug. The last case sends the message
// properly and checks that it is applied, so the comparison can see a
// change at all.
func TestDroppedRequestNotApplied(t *testing.T) {
	d := startDBD(t, server.Config{})
	ctx := ctxT(t)
	admin := d.client(d.admin, nil)
	counted := []byte("counted row")
	if _, _, err := admin.FindOrInsert(ctx, model.Text, counted); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Increment(ctx, model.Text, wire.Ref{Content: counted}, "hits", 1); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("dropped body "), 150000/13)
	msg, err := wire.AppendRequest(nil, &wire.Request{Op: wire.OpBatch, Batch: []wire.Request{
		{Op: wire.OpIncrement, Table: model.Text, Ref: wire.Ref{Content: counted}, Name: "hits", Value: 1},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: big},
		{Op: wire.OpSet, Table: model.Body, Ref: wire.Ref{Content: big}, Name: "seen", Value: 9},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Frames of 40000 bytes: four, the last one short.
	var frames [][]byte
	for rest := msg; len(rest) > 0; {
		n := min(len(rest), 40000)
		frames, rest = append(frames, rest[:n]), rest[n:]
	}
	if len(frames) < 3 {
		t.Fatalf("message of %d bytes makes %d frames, want at least 3", len(msg), len(frames))
	}

	type ending int
	const (
		fin      ending = iota // TCP close, no CLOSE frame
		rst                    // TCP reset
		closeFrm               // authenticated CLOSE frame, then TCP close
	)
	cases := []struct {
		name string
		// sent is how many of the message's frames are written whole,
		// all with MORE (so the message never ends).
		sent int
		// cutEnd writes, after them, the frame that would end the message
		// (empty, without MORE) cut in the middle.
		cutEnd bool
		end    ending
	}{
		{"first frames, then TCP close", 2, false, fin},
		{"every byte with MORE, then TCP close", len(frames), false, fin},
		{"every byte with MORE, then reset", len(frames), false, rst},
		{"every byte with MORE, then CLOSE", len(frames), false, closeFrm},
		{"final frame cut mid-frame, then TCP close", len(frames), true, fin},
		{"final frame cut mid-frame, then reset", len(frames), true, rst},
	}
	for _, tc := range cases {
		before := d.dump()
		wc, cc := d.dialRaw()
		d.waitIdle(2) // admin's connection and this one
		in := d.bytesIn()
		sent := 0
		for i := range tc.sent {
			if err := wc.WriteFrame(wire.Frame{Flags: wire.FlagMore, ReqID: 1, Data: frames[i]}); err != nil {
				t.Fatalf("%s: frame %d: %v", tc.name, i, err)
			}
			sent += len(frames[i])
		}
		// dbd has read every frame before the connection ends. (A reset
		// makes the kernel drop received bytes dbd has not read yet; the
		// request would then be incomplete whatever dbd does with it.)
		d.waitFor("dbd to read the frames", func() bool { return d.bytesIn() == in+sent })
		cc.rst.Store(tc.end == rst)
		switch {
		case tc.cutEnd:
			// The end frame is a length prefix and 21 bytes of
			// ciphertext; write the prefix and 10 of them.
			cc.budget.Store(wire.LengthSize + 10)
			if err := wc.WriteFrame(wire.Frame{ReqID: 1}); err == nil {
				t.Fatalf("%s: the cut frame was written whole", tc.name)
			}
		case tc.end == closeFrm:
			wc.Close()
		default:
			cc.drop()
		}
		d.waitIdle(1)
		if after := d.dump(); after != before {
			t.Errorf("%s: the unfinished request changed the store:\nbefore:\n%s\nafter:\n%s", tc.name, before, after)
		}
		if err := admin.Ping(ctx); err != nil {
			t.Fatalf("%s: dbd stopped serving: %v", tc.name, err)
		}
	}

	// Control: the same frames with the last one ending the message.
	before := d.dump()
	wc, _ := d.dialRaw()
	for i, f := range frames {
		flags := wire.FlagMore
		if i == len(frames)-1 {
			flags = 0
		}
		if err := wc.WriteFrame(wire.Frame{Flags: flags, ReqID: 1, Data: f}); err != nil {
			t.Fatal(err)
		}
	}
	ans, err := wc.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if res, err := wire.DecodeAnswer(wire.OpBatch, ans.Data); err != nil || len(res.Results) != 3 || !res.Results[1].New {
		t.Fatalf("complete batch = %+v, %v", res, err)
	}
	if d.dump() == before {
		t.Fatal("a complete batch left the dump unchanged: the comparison sees nothing")
	}
	row, err := admin.Find(ctx, model.Text, counted)
	if err != nil || row.State.Counter("hits") != 2 {
		t.Fatalf("counter after one applied batch = %+v, %v; want 2", row, err)
	}
}
