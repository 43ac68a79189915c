package server_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
)

// sendRaw writes one frame of req (or, with a nil req, of no data) on wc.
func sendRaw(t *testing.T, wc *wire.Conn, flags wire.Flags, id uint32, req *wire.Request) {
	t.Helper()
	var data []byte
	if req != nil {
		var err error
		if data, err = wire.AppendRequest(nil, req); err != nil {
			t.Fatal(err)
		}
	}
	if err := wc.WriteFrame(wire.Frame{Flags: flags, ReqID: id, Data: data}); err != nil {
		t.Fatalf("send frame of request %d: %v", id, err)
	}
}

// TestIdleTimeoutAfterLastStream: IdleTimeout closes a connection that
// has sent nothing for that long while it has no open stream, counted
// from the end of its last stream when that came after its last frame.
// The last frame a client sends is often the CANCEL that ends its last
// watch; dbd used to read on without a deadline after a frame that came
// while a stream was open, so such a connection (which the Go client
// leaves for dbd to close) stayed open for ever. An open watch still
// keeps a silent connection open.
func TestIdleTimeoutAfterLastStream(t *testing.T) {
	const idle = 200 * time.Millisecond
	e := dbdtest.Start(t, dbdtest.Options{Server: server.Config{IdleTimeout: idle}})
	watch := &wire.Request{Op: wire.OpWatch, Table: model.Body}
	openWatch := func(wc *wire.Conn, id uint32) {
		t.Helper()
		sendRaw(t, wc, 0, id, watch)
		f, err := wc.ReadFrame()
		if err != nil || f.ReqID != id {
			t.Fatalf("watch: first answer %+v, %v", f, err)
		}
		if _, err := wire.DecodeAnswer(wire.OpPing, f.Data); err != nil {
			t.Fatalf("watch: first answer: %v", err)
		}
	}

	t.Run("open watch", func(t *testing.T) {
		wc := e.Dial(auth.Admin)
		openWatch(wc, 1)
		time.Sleep(5 * idle) // the timeout under test: nothing to wait for
		pingRaw(t, wc, 2, "ping after a silence with a watch open")
	})
	t.Run("cancelled watch", func(t *testing.T) {
		wc := e.Dial(auth.Admin)
		openWatch(wc, 1)
		sendRaw(t, wc, wire.FlagCancel, 1, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 25*idle)
		defer cancel()
		waitClosed(ctx, t, wc, "connection left idle after its last watch was cancelled stayed open")
	})
	t.Run("finished scan", func(t *testing.T) {
		wc := e.Dial(auth.Admin)
		ans := askRaw(t, wc, 1, &wire.Request{Op: wire.OpScan, Table: model.Body, Value: 10})
		if k := wire.Kind(ans[len(ans)-1].data[0]); k != wire.KindEnd {
			t.Fatalf("scan ended with kind %d, want end", k)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 25*idle)
		defer cancel()
		waitClosed(ctx, t, wc, "connection left idle after its scan stayed open")
	})
}

// TestDeclaredSizeCountsAsBuffered: a find-or-insert that declares its
// size in its first frame gets a buffer of that size at once, so the
// bytes it reserves count against MaxConnBuffered from then on. They did
// not: only the bytes received counted, so a client could make dbd
// allocate MaxMessage for every request id it opened with a 5-byte frame,
// without bound. Here the third such request does not fit beside the
// first two and is answered too-large (it used to be buffered, and then
// answered bad-request for its missing content).
func TestDeclaredSizeCountsAsBuffered(t *testing.T) {
	const maxMsg = 1 << 20
	e := dbdtest.Start(t, dbdtest.Options{Server: server.Config{MaxMessage: maxMsg, MaxConnBuffered: 2 * maxMsg}})
	wc := e.Dial(auth.Admin)
	head := binary.AppendUvarint([]byte{byte(wire.OpFindOrInsert), byte(model.Body)}, maxMsg-16)
	for id := uint32(1); id <= 3; id++ {
		if err := wc.WriteFrame(wire.Frame{Flags: wire.FlagMore, ReqID: id, Data: head}); err != nil {
			t.Fatal(err)
		}
	}
	sendRaw(t, wc, 0, 3, nil)
	f, err := wc.ReadFrame()
	if err != nil || f.ReqID != 3 {
		t.Fatalf("answer %+v, %v; want one to request 3", f, err)
	}
	if _, err := wire.DecodeAnswer(wire.OpFindOrInsert, f.Data); !isCode(err, wire.CodeTooLarge) {
		t.Errorf("third declared request: %v, want too-large", err)
	}
	sendRaw(t, wc, wire.FlagCancel, 1, nil)
	sendRaw(t, wc, wire.FlagCancel, 2, nil)
	// With the reservations given back, a full-size request fits again.
	full := &wire.Request{Op: wire.OpFindOrInsert, Table: model.Body, Content: make([]byte, maxMsg-16)}
	msg, err := wire.AppendRequest(nil, full)
	if err != nil {
		t.Fatal(err)
	}
	for len(msg) > wire.MaxFrameData {
		if err := wc.WriteFrame(wire.Frame{Flags: wire.FlagMore, ReqID: 4, Data: msg[:wire.MaxFrameData]}); err != nil {
			t.Fatal(err)
		}
		msg = msg[wire.MaxFrameData:]
	}
	if err := wc.WriteFrame(wire.Frame{ReqID: 4, Data: msg}); err != nil {
		t.Fatal(err)
	}
	if f, err = wc.ReadFrame(); err != nil || f.ReqID != 4 {
		t.Fatalf("answer %+v, %v; want one to request 4", f, err)
	}
	if _, err := wire.DecodeAnswer(wire.OpFindOrInsert, f.Data); err != nil {
		t.Errorf("full-size request after the cancels: %v", err)
	}
}

// TestShutdownWithStalledSync: Shutdown returns when its ctx ends even
// while a write waits for a WAL fsync that does not return (Close stops
// that wait; the write is not acknowledged). The write used to wait
// detached from the server's ctx too, so Shutdown, and Close, waited for
// the disk.
func TestShutdownWithStalledSync(t *testing.T) {
	fs := &walFaultFS{FS: vfs.NewMem()}
	d := startDBDOn(t, server.Config{}, fs)
	ctx := ctxT(t)
	admin := d.client(d.admin, nil)
	if _, _, err := admin.FindOrInsert(ctx, model.Text, []byte("before the stall")); err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}, 1), make(chan struct{})
	hold := func() {
		select {
		case held <- struct{}{}:
		default:
		}
		<-release
	}
	fs.syncHook.Store(&hold)
	t.Cleanup(func() { close(release) }) // before the cleanup that stops dbd
	go admin.FindOrInsert(ctx, model.Text, []byte("meets the stalled disk"))
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the write never reached the WAL's fsync")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.srv.Shutdown(sctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want its ctx's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown still waits for the stalled fsync 5 s after its ctx ended")
	}
}

// TestShutdownStopsStreamsOpenedMeanwhile: a stream request that dbd reads
// as Shutdown begins is either refused (unavailable) or stopped with the
// other streams. One that passed the refusal check just before Shutdown
// and registered just after was neither, and kept its connection (and
// Shutdown) open until Shutdown's ctx ended. The client here opens
// watches back to back, so some trials catch that moment.
func TestShutdownStopsStreamsOpenedMeanwhile(t *testing.T) {
	for trial := range 40 {
		d := startDBD(t, server.Config{MaxStreams: 1 << 20})
		wc, _ := d.dialRaw()
		go func() { // read the answers, so that no write blocks
			for {
				if _, err := wc.ReadFrame(); err != nil {
					return
				}
			}
		}()
		watch, err := wire.AppendRequest(nil, &wire.Request{Op: wire.OpWatch, Table: model.Body})
		if err != nil {
			t.Fatal(err)
		}
		go func() { // until dbd closes the connection
			for id := uint32(1); wc.WriteFrame(wire.Frame{ReqID: id, Data: watch}) == nil; id++ {
			}
		}()
		d.waitFor("watches", func() bool { return d.st.NumWatches() >= 50 })
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = d.srv.Shutdown(sctx)
		cancel()
		if err != nil {
			t.Fatalf("trial %d: Shutdown = %v, want nil: a stream opened as it began was left running", trial, err)
		}
		d.stop()
	}
}

// readFaultFS is a vfs.FS whose blob files fail reads that touch the byte
// range [from, from+1 MiB) once from is set (EIO): with from at 1 MiB, a
// bad spot in the middle of a large content's blob file (2 MiB of
// values, then its index).
type readFaultFS struct {
	vfs.FS
	from atomic.Int64 // 0: no fault
	hits atomic.Int64 // reads failed
}

func (fs *readFaultFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !strings.HasSuffix(name, ".blob") {
		return f, err
	}
	return &readFaultFile{File: f, fs: fs, name: name}, nil
}

type readFaultFile struct {
	vfs.File
	fs   *readFaultFS
	name string
}

func (f *readFaultFile) ReadAt(p []byte, off int64) (int, error) {
	if from := f.fs.from.Load(); from > 0 && off < from+1<<20 && off+int64(len(p)) > from {
		f.fs.hits.Add(1)
		return 0, &os.PathError{Op: "read", Path: f.name, Err: syscall.EIO}
	}
	return f.File.ReadAt(p, off)
}

// TestReadFailureMidAnswer: when reading a content fails after part of its
// answer went out (frames with MORE), dbd ends the connection, as for a
// content that does not match its size: an error answer would be taken
// as the rest of the message, and the client would decode the two as one.
func TestReadFailureMidAnswer(t *testing.T) {
	fs := &readFaultFS{FS: vfs.NewMem()}
	d := startDBDOn(t, server.Config{}, fs)
	content := make([]byte, 4<<20)
	rand.Read(content)
	if _, _, err := d.client(d.admin, nil).FindOrInsert(ctxT(t), model.Body, content); err != nil {
		t.Fatal(err)
	}
	d.restart() // the content moves from the WAL to blob files; the caches start empty
	fs.from.Store(1 << 20)
	defer fs.from.Store(0)
	wc, _ := d.dialRaw()
	wc.SetReadDeadline(time.Now().Add(10 * time.Second))
	sendRaw(t, wc, 0, 1, &wire.Request{Op: wire.OpFind, Table: model.Body, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Body, content)}})
	var msg []byte
	frames := 0
	for {
		f, err := wc.ReadFrame()
		if err != nil {
			if frames == 0 {
				t.Fatalf("the connection ended before any frame of the answer (%v): the fault came too early to test this", err)
			}
			return // ended mid-answer: the client sees the request fail
		}
		frames++
		msg = append(msg, f.Data...)
		if f.Flags&wire.FlagMore != 0 {
			continue
		}
		if fs.hits.Load() == 0 {
			t.Fatal("no read met the fault: the content's blob file is laid out otherwise than this test expects")
		}
		if _, err := wire.DecodeAnswer(wire.OpFind, msg); err != nil && !errors.As(err, new(*wire.Error)) {
			t.Fatalf("answer of %d frames is malformed: %v", frames, err)
		}
		t.Fatalf("answer of %d frames complete although its content could not be read", frames)
	}
}

// TestPendingRequestsBounded: frames that begin requests and never end
// them, with no data, held no bytes against MaxConnBuffered, and each took
// an entry of the connection's map of incomplete requests: the map grew
// without bound. Past server.MaxPending of them dbd ends the connection.
func TestPendingRequestsBounded(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	wc := e.Dial(auth.Admin)
	for id := uint32(1); id <= server.MaxPending; id++ {
		sendRaw(t, wc, wire.FlagMore, id, nil)
	}
	pingRaw(t, wc, server.MaxPending+1, "after MaxPending incomplete requests") // the ping begins none: answered
	if err := wc.WriteFrame(wire.Frame{Flags: wire.FlagMore, ReqID: server.MaxPending + 2}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	waitClosed(ctx, t, wc, "connection still open after one incomplete request too many")
}

// TestIdleTimeoutWaitsForArm: an arm request waiting for its condition is
// open work, like a stream: the connection that sent it and then nothing
// else is not idle until the arm is answered. IdleTimeout cut it, so the
// client lost the answer (smtpd: 451 instead of 250) whenever an arm waited
// longer than IdleTimeout.
func TestIdleTimeoutWaitsForArm(t *testing.T) {
	const idle = 200 * time.Millisecond
	e := dbdtest.Start(t, dbdtest.Options{Server: server.Config{IdleTimeout: idle}})
	wc := e.Dial(auth.Admin)
	content := []byte("armed while idle")
	sendRaw(t, wc, 0, 1, &wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: content})
	if f, err := wc.ReadFrame(); err != nil || f.ReqID != 1 {
		t.Fatalf("insert: %+v, %v", f, err)
	}
	k := model.KeyOf(model.Text, content)
	sendRaw(t, wc, 0, 2, &wire.Request{Op: wire.OpArm, Value: uint64((5 * idle).Milliseconds()),
		Conds: []wire.ArmCond{{Table: model.Text, Key: k, Name: "never", Mask: 1, Want: 1}},
		Batch: []wire.Request{{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{ByKey: true, Key: k}, Name: "x", Value: 1}}})
	wc.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, err := wc.ReadFrame()
	if err != nil {
		t.Fatalf("arm waiting %v on a connection idle for %v: %v, want its answer", 5*idle, idle, err)
	}
	res, err := wire.DecodeAnswer(wire.OpArm, f.Data)
	if err != nil || f.ReqID != 2 || res.Fired {
		t.Fatalf("arm answer %+v, %v: want request 2 not fired", res, err)
	}
	wc.SetReadDeadline(time.Time{})
	pingRaw(t, wc, 3, "ping right after the arm's answer")
	ctx, cancel := context.WithTimeout(context.Background(), 25*idle)
	defer cancel()
	waitClosed(ctx, t, wc, "connection left idle after its arm was answered stayed open")
}
