package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// fsOp is the kind of file operation a faultFS rule sees.
type fsOp int

const (
	fsWrite  fsOp = iota + 1 // Write, WriteAt
	fsSync                   // Sync, SyncData, SyncTo
	fsCreate                 // Create, ReuseForWrite, OpenReadWrite
)

func (o fsOp) String() string {
	switch o {
	case fsWrite:
		return "write"
	case fsSync:
		return "sync"
	case fsCreate:
		return "create"
	}
	return "?"
}

// fsFault is what a rule does to one operation. The zero value lets it
// through.
type fsFault struct {
	// Err fails the operation (wrapped in an *os.PathError, as the os
	// package returns it).
	Err error
	// Partial makes a failing write write the first half of its bytes
	// first, as a write(2) that runs out of space does.
	Partial bool
	// Hold, if set, is called before the operation and may block: a slow
	// disk.
	Hold func()
	// After, if set, is called once the operation (not failed) returned.
	After func()
	// Skip makes the operation report success without doing it: a sync
	// skipped this way is what an acknowledgement committed with
	// pebble.NoSync amounts to (TestCrashCheckCatchesUnsyncedAcks).
	Skip bool
}

// faultFS is a vfs.FS whose writes, syncs and file creations a test can
// fail, cut short or slow down while Pebble runs on it. Reads are never
// touched. Safe for concurrent use.
type faultFS struct {
	vfs.FS
	rule atomic.Pointer[func(op fsOp, path string) fsFault]
}

func newFaultFS(fs vfs.FS) *faultFS { return &faultFS{FS: fs} }

// set installs rule (nil: no faults).
func (fs *faultFS) set(rule func(op fsOp, path string) fsFault) {
	if rule == nil {
		fs.rule.Store(nil)
		return
	}
	fs.rule.Store(&rule)
}

func (fs *faultFS) fault(op fsOp, path string) fsFault {
	if r := fs.rule.Load(); r != nil {
		return (*r)(op, path)
	}
	return fsFault{}
}

func (fs *faultFS) wrap(path string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs, path: path}, nil
}

// do runs op under fault f: Hold first, then Err instead of op, nothing if
// Skip, or op and then After.
func (f fsFault) do(name, path string, op func() error) error {
	if f.Hold != nil {
		f.Hold()
	}
	if f.Err != nil {
		return &os.PathError{Op: name, Path: path, Err: f.Err}
	}
	if f.Skip {
		return nil
	}
	err := op()
	if err == nil && f.After != nil {
		f.After()
	}
	return err
}

func (fs *faultFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.fault(fsCreate, name).do("open", name, func() error { return nil }); err != nil {
		return nil, err
	}
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.fault(fsCreate, newname).do("open", newname, func() error { return nil }); err != nil {
		return nil, err
	}
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *faultFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	if err := fs.fault(fsCreate, name).do("open", name, func() error { return nil }); err != nil {
		return nil, err
	}
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	return fs.wrap(name, f, err)
}

type faultFile struct {
	vfs.File
	fs   *faultFS
	path string
}

func (f *faultFile) Write(p []byte) (int, error) {
	ft := f.fs.fault(fsWrite, f.path)
	if ft.Err != nil && ft.Partial {
		n, err := f.File.Write(p[:len(p)/2])
		if err != nil {
			return n, err
		}
		return n, &os.PathError{Op: "write", Path: f.path, Err: ft.Err}
	}
	var n int
	err := ft.do("write", f.path, func() (err error) { n, err = f.File.Write(p); return err })
	return n, err
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	ft := f.fs.fault(fsWrite, f.path)
	if ft.Err != nil && ft.Partial {
		n, err := f.File.WriteAt(p[:len(p)/2], off)
		if err != nil {
			return n, err
		}
		return n, &os.PathError{Op: "write", Path: f.path, Err: ft.Err}
	}
	var n int
	err := ft.do("write", f.path, func() (err error) { n, err = f.File.WriteAt(p, off); return err })
	return n, err
}

func (f *faultFile) Sync() error {
	return f.fs.fault(fsSync, f.path).do("sync", f.path, f.File.Sync)
}

func (f *faultFile) SyncData() error {
	return f.fs.fault(fsSync, f.path).do("sync", f.path, f.File.SyncData)
}

func (f *faultFile) SyncTo(length int64) (full bool, err error) {
	err = f.fs.fault(fsSync, f.path).do("sync", f.path, func() (err error) { full, err = f.File.SyncTo(length); return err })
	return full, err
}

func isWAL(path string) bool      { return strings.HasSuffix(path, ".log") }
func isManifest(path string) bool { return strings.Contains(path, "MANIFEST") }

// ---- workload --------------------------------------------------------------

// faultLoad drives a store with concurrent writers and keeps what each
// request wrote and whether it was acknowledged. Every request inserts a
// body (inline, chunked or blob-sized) and a header that names it, so a
// half-applied request shows as one without the other.
type faultLoad struct {
	mu    sync.Mutex
	sent  map[model.Key]faultReq // by body key
	acked int
	errs  map[string]int // error text -> count
}

type faultReq struct {
	body, header []byte
	acked        bool
}

func newFaultLoad() *faultLoad {
	return &faultLoad{sent: map[model.Key]faultReq{}, errs: map[string]int{}}
}

// faultRequest returns writer w's i-th request of a run.
func faultRequest(r *rand.Rand, run string, w, i int) faultReq {
	var body []byte
	switch r.IntN(3) {
	case 0:
		body = []byte(fmt.Sprintf("%s-w%d-i%d small", run, w, i))
	default:
		body = make([]byte, inlineMax+1+r.IntN(3*chunkSize/2))
		for j := range body {
			body[j] = byte(r.Uint32())
		}
		copy(body, fmt.Sprintf("%s-w%d-i%d", run, w, i))
	}
	return faultReq{body: body, header: []byte(fmt.Sprintf("hdr %x", model.KeyOf(model.Body, body)))}
}

// run starts writers goroutines, each sending up to n requests (stopping
// at the first ErrFailed), and waits for them. ctxFor gives each request
// its context; onAck, if set, is called after each acknowledgement with
// the writer and the request's number.
func (l *faultLoad) run(s *Store, run string, writers, n int, seed uint64, ctxFor func() (context.Context, context.CancelFunc), onAck func(w, i int)) {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range n {
				q := faultRequest(r, run, w, i)
				k := model.KeyOf(model.Body, q.body)
				l.mu.Lock()
				l.sent[k] = q
				l.mu.Unlock()
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if ctxFor != nil {
					ctx, cancel = ctxFor()
				}
				_, err := s.Apply(ctx, []Mutation{
					{Kind: Insert, Table: model.Body, Content: q.body},
					{Kind: Insert, Table: model.Header, Content: q.header},
				})
				cancel()
				l.mu.Lock()
				if err == nil {
					q.acked = true
					l.sent[k] = q
					l.acked++
				} else {
					l.errs[err.Error()]++
				}
				l.mu.Unlock()
				if err == nil && onAck != nil {
					onAck(w, i)
				}
				if errors.Is(err, ErrFailed) || errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// verify opens the store in fs and checks that every acknowledged request
// is there with its exact content, that every other one is there whole or
// not at all, and that the row counts match the rows. It returns how many
// unacknowledged requests were found applied.
func (l *faultLoad) verify(t *testing.T, fs vfs.FS, dir string) (unackedApplied int) {
	t.Helper()
	s, err := Open(Options{Dir: dir, FS: fs, Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("reopen after the fault: %v", err)
	}
	defer s.Close()
	v := mustView(t, s)
	defer v.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, q := range l.sent {
		_, hasBody, err := v.Find(model.Body, k)
		if err != nil {
			t.Fatalf("Find body: %v", err)
		}
		_, hasHeader, err := v.Find(model.Header, model.KeyOf(model.Header, q.header))
		if err != nil {
			t.Fatalf("Find header: %v", err)
		}
		switch {
		case q.acked && !hasBody:
			t.Errorf("acknowledged body %s lost", k)
			continue
		case hasBody != hasHeader:
			t.Errorf("request %s half applied: body %v, header %v (acknowledged %v)", k, hasBody, hasHeader, q.acked)
			continue
		case !hasBody:
			continue
		}
		if !q.acked {
			unackedApplied++
		}
		var buf bytes.Buffer
		if err := v.Content(model.Body, k, func(c []byte) error { buf.Write(c); return nil }); err != nil {
			t.Fatalf("Content: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), q.body) {
			t.Errorf("body %s read back as %d bytes, want %d (acknowledged %v)", k, buf.Len(), len(q.body), q.acked)
		}
	}
	counted := map[model.Table]uint64{}
	if err := v.Rows(func(r Row) error { counted[r.Table]++; return nil }); err != nil {
		t.Fatalf("Rows: %v", err)
	}
	for _, tb := range []model.Table{model.Body, model.Header} {
		if got := s.Count(tb); got != counted[tb] {
			t.Errorf("Count(%s) = %d, but %d rows", tb, got, counted[tb])
		}
	}
	return unackedApplied
}

// logCapture is a slog handler that keeps error records.
type logCapture struct {
	mu   sync.Mutex
	errs []string
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCapture) WithGroup(string) slog.Handler            { return c }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		return nil
	}
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	c.mu.Lock()
	c.errs = append(c.errs, line)
	c.mu.Unlock()
	return nil
}

func (c *logCapture) has(sub string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.errs {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
