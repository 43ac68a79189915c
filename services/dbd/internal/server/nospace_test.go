package server_test

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
)

// walFaultFS is a vfs.FS whose WAL writes and syncs fail with errno once
// it is set (ENOSPC: as on a full disk), and whose WAL syncs first call
// syncHook once it is set (a stalled disk: the hook blocks).
type walFaultFS struct {
	vfs.FS
	errno    atomic.Uintptr // a syscall.Errno; 0: no fault
	syncHook atomic.Pointer[func()]
}

func (fs *walFaultFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &walFaultFile{File: f, fs: fs, name: name}, nil
}

func (fs *walFaultFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *walFaultFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *walFaultFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

type walFaultFile struct {
	vfs.File
	fs   *walFaultFS
	name string
}

func (f *walFaultFile) err(op string) error {
	if op == "sync" {
		if h := f.fs.syncHook.Load(); h != nil {
			(*h)()
		}
	}
	if e := syscall.Errno(f.fs.errno.Load()); e != 0 {
		return &os.PathError{Op: op, Path: f.name, Err: e}
	}
	return nil
}

func (f *walFaultFile) Write(p []byte) (int, error) {
	if err := f.err("write"); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *walFaultFile) Sync() error {
	if err := f.err("sync"); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *walFaultFile) SyncData() error {
	if err := f.err("sync"); err != nil {
		return err
	}
	return f.File.SyncData()
}

// TestNoSpaceAnswer (TEST-CATALOG 38, dbd side): when dbd's disk fills,
// the write that met it and every request after it that needs the store,
// reads included, get the error code no-space, which the Go client
// returns as wire.ErrNoSpace; dbd still answers ping. A store that failed
// for another reason answers unavailable (TestOtherFailureIsUnavailable).
func TestNoSpaceAnswer(t *testing.T) {
	fs := &walFaultFS{FS: vfs.NewMem()}
	d := startDBDOn(t, server.Config{}, fs)
	ctx := ctxT(t)
	admin := d.client(d.admin, nil)
	before := []byte("stored before the disk filled")
	if _, _, err := admin.FindOrInsert(ctx, model.Text, before); err != nil {
		t.Fatal(err)
	}
	if got := storageFigure(t, admin); got != "ok" {
		t.Errorf("status storage = %q, want ok", got)
	}
	fs.errno.Store(uintptr(syscall.ENOSPC))
	_, _, err := admin.FindOrInsert(ctx, model.Text, []byte("meets the full disk"))
	var we *wire.Error
	if !errors.Is(err, wire.ErrNoSpace) || !errors.As(err, &we) || we.Code != wire.CodeNoSpace {
		t.Fatalf("write on a full disk: %v, want the no-space code", err)
	}
	if _, err := admin.Set(ctx, model.Text, wire.Ref{Content: before}, "seen", 1); !errors.Is(err, wire.ErrNoSpace) {
		t.Errorf("write after the disk filled: %v, want no-space", err)
	}
	if _, err := admin.Find(ctx, model.Text, before); !errors.Is(err, wire.ErrNoSpace) {
		t.Errorf("read after the disk filled: %v, want no-space", err)
	}
	if err := admin.Ping(ctx); err != nil {
		t.Errorf("ping after the disk filled: %v", err)
	}
	if got := storageFigure(t, admin); got != "no-space" {
		t.Errorf("status storage = %q after the disk filled, want no-space", got)
	}
	d.stopFailed()
}

// TestOtherFailureIsUnavailable: a store that failed for another reason
// than a full disk (here EIO) answers unavailable, never no-space.
func TestOtherFailureIsUnavailable(t *testing.T) {
	fs := &walFaultFS{FS: vfs.NewMem()}
	d := startDBDOn(t, server.Config{}, fs)
	ctx := ctxT(t)
	admin := d.client(d.admin, nil)
	if _, _, err := admin.FindOrInsert(ctx, model.Text, []byte("before")); err != nil {
		t.Fatal(err)
	}
	fs.errno.Store(uintptr(syscall.EIO))
	for i, write := range []string{"meets the broken disk", "after it"} {
		_, _, err := admin.FindOrInsert(ctx, model.Text, []byte(write))
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeUnavailable || errors.Is(err, wire.ErrNoSpace) {
			t.Errorf("write %d after EIO: %v, want unavailable", i, err)
		}
	}
	if got := storageFigure(t, admin); got != "failed" {
		t.Errorf("status storage = %q after EIO, want failed", got)
	}
	d.stopFailed()
}

// stopFailed stops a dbd whose store failed. The WAL writer keeps its
// error, so closing the store reports it: the cleanup's stop, which wants
// a clean close, must find nothing left to do.
func (d *testDBD) stopFailed() {
	d.srv.Close()
	<-d.served
	d.st.Close()
	d.srv = nil
}

// storageFigure returns the storage figure of dbd's status.
func storageFigure(t *testing.T, c *client.Client) string {
	t.Helper()
	figs, err := c.Status(ctxT(t))
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, f := range figs {
		if f.Name == "storage" {
			return f.Value
		}
	}
	return ""
}
