package server_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// FuzzRequests sends arbitrary frames over an authenticated, encrypted
// connection into a dbd in this process: past the handshake, the request
// decoder, the role checks and every operation behind them meet what a
// broken or hostile client sends. The input's first byte picks the role;
// the rest is frames, each `flags(1) ‖ request id(1) ‖ length(2) ‖ data`.
// Whatever the answers, dbd must not panic — a panic it recovers from is
// logged, and counts as a failure here — and must go on serving: an admin
// client's ping after each input needs it. FuzzDecodeRequest (pkg/wire)
// covers the decoder alone. Checkpoint requests are left out: each would
// copy the store.
//
//	go test -run XXX -fuzz FuzzRequests ./services/dbd/internal/server/
func FuzzRequests(f *testing.F) {
	frame := func(flags wire.Flags, id byte, data []byte) []byte {
		b := []byte{byte(flags), id}
		b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
		return append(b, data...)
	}
	req := func(r wire.Request) []byte {
		b, err := wire.AppendRequest(nil, &r)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	body := []byte("a body")
	ref := wire.Ref{Content: body}
	seeds := [][]byte{
		append([]byte{0}, frame(0, 1, req(wire.Request{Op: wire.OpFindOrInsert, Table: model.Body, Content: body}))...),
		append([]byte{0}, frame(0, 2, req(wire.Request{Op: wire.OpSet, Table: model.Body, Ref: ref, Name: "x", Value: 7}))...),
		append([]byte{0}, frame(0, 3, req(wire.Request{Op: wire.OpFind, Table: model.Body, Ref: ref}))...),
		append([]byte{4}, frame(0, 4, req(wire.Request{Op: wire.OpMails, Keys: []model.Key{model.KeyOf(model.Receive, body)}, Flag: true}))...),
		append([]byte{0}, frame(0, 5, req(wire.Request{Op: wire.OpBatch, Batch: []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.Header, Content: []byte("h")},
			{Op: wire.OpIncrement, Table: model.Header, Ref: wire.Ref{Content: []byte("h")}, Name: "n", Value: 1},
		}}))...),
		append([]byte{3}, frame(0, 6, req(wire.Request{Op: wire.OpChanges}))...),
		append([]byte{0}, append(frame(wire.FlagMore, 7, []byte{1, 2, 3}), frame(wire.FlagCancel, 7, nil)...)...),
		append([]byte{5}, frame(0, 8, []byte{0xff, 0xff, 0xff})...),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	ping := req(wire.Request{Op: wire.OpPing})
	logs := &proctest.PanicLog{}
	// One handshake an input: far over the 50 a second dbd takes from
	// one address by default.
	e := dbdtest.Start(f, dbdtest.Options{Logger: slog.New(logs), Server: server.Config{HandshakeRate: 1e6}})
	admin := e.Client(auth.Admin)
	roles := []auth.Role{auth.Admin, auth.SMTPD, auth.SpamD, auth.BackupD, auth.Mailbox, auth.Notify}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 || len(in) > 64<<10 {
			return
		}
		nc, err := net.Dial("tcp", e.Addr)
		if err != nil {
			t.Fatalf("dbd no longer accepts connections: %v", err)
		}
		defer nc.Close()
		hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer hcancel()
		wc, err := wire.ClientHandshake(hctx, nc, &wire.ClientConfig{Static: e.Keys[roles[int(in[0])%len(roles)]], Server: e.DBKey.Public})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer wc.Close()
		wc.SetReadDeadline(time.Now().Add(time.Second))
		wc.SetWriteDeadline(time.Now().Add(time.Second))
		for rest := in[1:]; len(rest) >= 4; {
			n := int(binary.BigEndian.Uint16(rest[2:4]))
			data := rest[4:min(len(rest), 4+n)]
			if r, err := wire.DecodeRequest(data); err == nil && r.Op == wire.OpCheckpoint {
				// Each would copy the store into dbd's folder.
				rest = rest[4+len(data):]
				continue
			}
			if err := wc.WriteFrame(wire.Frame{Flags: wire.Flags(rest[0]), ReqID: uint32(rest[1]), Data: data}); err != nil {
				break
			}
			rest = rest[4+len(data):]
		}
		// A ping last: its answer (or the connection's end) says dbd has
		// read everything before it.
		const pingID = 1 << 20
		if err := wc.WriteFrame(wire.Frame{ReqID: pingID, Data: ping}); err == nil {
			for {
				fr, err := wc.ReadFrame()
				if err != nil || fr.ReqID == pingID {
					break
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := admin.Ping(ctx); err != nil {
			t.Fatalf("dbd no longer answers a ping: %v", err)
		}
		if p := logs.Take(); p != "" {
			t.Fatalf("dbd panicked on % x: %s", in, p)
		}
	})
}
