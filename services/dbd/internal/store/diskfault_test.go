package store

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// openFault opens a store on fs that logs to c.
func openFault(t *testing.T, fs vfs.FS, c *logCapture) *Store {
	t.Helper()
	s, err := Open(Options{Dir: "db", FS: fs, Site: "a", Logger: slog.New(c)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestDiskFullOnWALWrite: the disk fills up under concurrent writers (every
// write returns ENOSPC after writing half its bytes, as write(2) does).
// No write whose WAL record did not reach the disk is acknowledged: the
// store fails (ErrFailed; dbd answers "no-space" when the cause is ENOSPC)
// and logs the cause at error level. It does not recover by itself once
// space returns: Pebble's WAL writer keeps its first error for good, so
// dbd exits and is restarted. The restarted store holds every acknowledged write, byte for
// byte, and no request half applied, and takes writes again.
// TEST-CATALOG 38.
func TestDiskFullOnWALWrite(t *testing.T) {
	mem := vfs.NewCrashableMem()
	fs := newFaultFS(mem)
	var logs logCapture
	s := openFault(t, fs, &logs)
	defer s.Close()
	load := newFaultLoad()
	full := func(op fsOp, path string) fsFault {
		if op == fsWrite {
			return fsFault{Err: syscall.ENOSPC, Partial: true}
		}
		return fsFault{}
	}
	var acks atomic.Int32
	load.run(s, "full", 8, 40, 1, nil, func(int, int) {
		if acks.Add(1) == 60 {
			fs.set(full)
		}
	})
	if load.acked < 60 {
		t.Fatalf("only %d writes acknowledged before the disk filled", load.acked)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatalf("store still acknowledging after ENOSPC on the WAL (errors: %v)", load.errs)
	}
	if !errors.Is(s.Err(), syscall.ENOSPC) {
		t.Errorf("Err() = %v, want ENOSPC in it", s.Err())
	}
	if !logs.has("storage failed") || !logs.has("no space left on device") {
		t.Errorf("no error log naming the full disk; error logs: %q", logs.errs)
	}
	t.Logf("%d acknowledged, errors: %v", load.acked, load.errs)

	// Space returns: the store stays failed until dbd is restarted.
	fs.set(nil)
	if _, err := s.Apply(context.Background(), []Mutation{ins(model.Body, "after space returned")}); !errors.Is(err, ErrFailed) {
		t.Fatalf("write after space returned: %v, want ErrFailed (restart required)", err)
	}
	fs.set(full) // dbd exits while the disk is still full
	s.Close()
	fs.set(nil)

	// The restart, as after a process exit (page cache kept), and as
	// after a machine crash (only synced data).
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	n := load.verify(t, fs, "db")
	t.Logf("restart: %d unacknowledged requests were applied whole", n)
	n = load.verify(t, crashed, "db")
	t.Logf("machine crash: %d unacknowledged requests were applied whole", n)
	s2 := openTest(t, fs)
	defer s2.Close()
	if _, err := s2.Apply(context.Background(), []Mutation{ins(model.Body, "after restart")}); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
}

// TestNoCommitAfterFailedSync: a request gathered into the next group
// while the WAL sync of the group before it fails is answered ErrFailed
// and never reaches Pebble. Pebble's WAL writer keeps its first error and
// its commit path panics on it, so committing after a failure killed dbd
// (TestDiskFullOnWALWrite hit it 1 run in 30 under -race).
func TestNoCommitAfterFailedSync(t *testing.T) {
	fs := newFaultFS(vfs.NewMem())
	s := openTest(t, fs)
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Apply(ctx, []Mutation{ins(model.Body, "before")}); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fs.set(func(op fsOp, path string) fsFault {
		if op != fsSync || !isWAL(path) {
			return fsFault{}
		}
		f := fsFault{Err: syscall.EIO}
		once.Do(func() { f.Hold = func() { close(entered); <-release } })
		return f
	})
	first := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, []Mutation{ins(model.Body, "first")})
		first <- err
	}()
	<-entered // the first group's sync is running (and will fail)
	m := ins(model.Body, "second")
	second := &writeReq{muts: []Mutation{m}, done: make(chan struct{})}
	s.reqs <- second
	for len(s.reqs) > 0 { // until the writer has taken it into a group
		runtime.Gosched()
	}
	walIn := s.db.Metrics().WAL.BytesIn
	close(release)
	if err := <-first; !errors.Is(err, ErrFailed) {
		t.Fatalf("first write: %v, want ErrFailed", err)
	}
	<-second.done
	if !errors.Is(second.err, ErrFailed) {
		t.Fatalf("second write: %v, want ErrFailed", second.err)
	}
	if got := s.db.Metrics().WAL.BytesIn; got != walIn {
		t.Fatalf("the writer committed %d bytes to Pebble after the store failed", got-walIn)
	}
}

// TestTableWriteErrors: EIO on sstable writes during flushes, then on a
// table sync during a compaction, under concurrent writers. These are Pebble background errors: Pebble logs each one
// ("background error", at error level), drops the half-written output and
// retries the flush (compactions are picked again later); the WAL that
// holds the writes is kept until a flush succeeds. So the store keeps
// acknowledging, loses nothing, and needs no restart. (Blob files are
// left out: a write error on one crashes Pebble v2.1.7, see
// TestFatalDiskErrors.) TEST-CATALOG 81.
func TestTableWriteErrors(t *testing.T) {
	mem := vfs.NewCrashableMem()
	fs := newFaultFS(mem)
	var logs logCapture
	s := openFault(t, fs, &logs)
	defer s.Close()
	load := newFaultLoad()

	// failN fails the next n operations op on table files with EIO.
	var hits atomic.Int32
	failN := func(op fsOp, n int32) {
		hits.Store(0)
		fs.set(func(o fsOp, path string) fsFault {
			if o == op && strings.HasSuffix(path, ".sst") && hits.Add(1) <= n {
				return fsFault{Err: syscall.EIO}
			}
			return fsFault{}
		})
	}

	// Flushes fail: the memtables fill (4 MiB each) under the writers, and
	// a flush is asked for while they write. Flush returns once one
	// succeeded, after the five failed attempts at least.
	failN(fsWrite, 5)
	var acks atomic.Int32
	load.run(s, "flush", 8, 25, 2, nil, func(int, int) {
		if acks.Add(1) == 20 {
			if _, err := s.db.AsyncFlush(); err != nil {
				t.Errorf("AsyncFlush: %v", err)
			}
		}
	})
	if err := s.db.Flush(); err != nil {
		t.Fatalf("Flush after the fault: %v", err)
	}
	if h := hits.Load(); h <= 5 {
		t.Fatalf("only %d table writes were attempted: no flush failed", h)
	}
	flushes := s.db.Metrics().Flush.Count

	// A compaction fails: fresh L0 tables overlap the older ones, so
	// compacting everything rewrites tables, and the first output's sync
	// returns EIO; writers go on meanwhile.
	load.run(s, "pre-compact", 8, 10, 3, nil, nil)
	if err := s.db.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	failN(fsSync, 1)
	compacted := make(chan error, 1)
	go func() { compacted <- s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false) }()
	load.run(s, "compact", 8, 10, 4, nil, nil)
	// Pebble reports the failed compaction as a background error and
	// compacts again; the manual Compact may still return nil.
	t.Logf("Compact with a failed table sync: %v", <-compacted)
	if hits.Load() == 0 || !logs.has("background error: sync") {
		t.Fatalf("no table sync failed (%d syncs); error logs: %q", hits.Load(), logs.errs)
	}
	fs.set(nil)
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatalf("Compact after the fault: %v", err)
	}

	if len(load.errs) > 0 {
		t.Fatalf("writes failed while tables could not be written: %v", load.errs)
	}
	select {
	case <-s.Failed():
		t.Fatalf("store failed: %v", s.Err())
	default:
	}
	if !logs.has("background error: write") || !logs.has("input/output error") {
		t.Errorf("no error log for the failed table writes; error logs: %q", logs.errs)
	}
	t.Logf("%d writes acknowledged, %d flushes; %d error log lines", load.acked, flushes, len(logs.errs))
	s.Close()
	load.verify(t, fs, "db")
	load.verify(t, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), "db")
}
