package store

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// slowWAL holds every WAL sync of a faultFS until the test lets it go, and
// numbers the syncs: a write submitted when started was n can be durable
// only once a sync numbered above n has returned (its record was appended
// after it was submitted, and a sync covers only what was appended before
// it began).
type slowWAL struct {
	started  atomic.Int64 // WAL syncs begun
	done     atomic.Int64 // highest number of a WAL sync that returned
	held     chan struct{}
	release  chan struct{}
	open     chan struct{} // closed: syncs run at once
	openOnce sync.Once
}

func newSlowWAL(fs *faultFS) *slowWAL {
	w := &slowWAL{held: make(chan struct{}), release: make(chan struct{}), open: make(chan struct{})}
	fs.set(func(op fsOp, path string) fsFault {
		if op != fsSync || !isWAL(path) {
			return fsFault{}
		}
		n := w.started.Add(1)
		return fsFault{
			Hold: func() {
				select {
				case w.held <- struct{}{}:
				case <-w.open:
					return
				}
				select {
				case <-w.release:
				case <-w.open:
				}
			},
			After: func() {
				for c := w.done.Load(); c < n && !w.done.CompareAndSwap(c, n); c = w.done.Load() {
				}
			},
		}
	})
	return w
}

// unblock lets every sync, held or to come, run at once.
func (w *slowWAL) unblock() { w.openOnce.Do(func() { close(w.open) }) }

// storeGoroutines counts the goroutines running store or Pebble code.
func storeGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cockroachdb/pebble") || strings.Contains(g, "internal/store.(*Store)") {
			count++
		}
	}
	return count
}

// TestSlowWALSync: every WAL sync blocks until all writers still running
// wait for an answer, then returns. No write is acknowledged before a WAL
// sync that began after it was submitted has returned. A caller whose ctx
// ends while its sync is held gets ctx's error at once, and its write may
// still land: here it does, since its record was already in the WAL being
// synced. Close leaves no goroutine behind. TEST-CATALOG 82.
func TestSlowWALSync(t *testing.T) {
	before := storeGoroutines()
	mem := vfs.NewCrashableMem()
	fs := newFaultFS(mem)
	s := openTest(t, fs)
	defer s.Close()
	w := newSlowWAL(fs)
	defer w.unblock()

	const writers = 8
	var active, inFlight atomic.Int32
	active.Store(writers)
	var early atomic.Int32
	stop, releaser := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(releaser)
		for {
			select {
			case <-w.held:
			case <-stop:
				return
			}
			// The slow disk returns only once every writer still running
			// waits for an answer.
			for inFlight.Load() < active.Load() {
				runtime.Gosched()
			}
			w.release <- struct{}{}
		}
	}()
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer active.Add(-1)
			for j := range 15 {
				m := []Mutation{ins(model.Body, strings.Repeat("x", j*500)+"slow"+string(rune('a'+i)))}
				submitted := w.started.Load()
				inFlight.Add(1)
				_, err := s.Apply(context.Background(), m)
				inFlight.Add(-1)
				if err != nil {
					t.Errorf("Apply: %v", err)
					return
				}
				if w.done.Load() <= submitted {
					early.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := early.Load(); n > 0 {
		t.Fatalf("%d writes acknowledged before a WAL sync begun after them returned", n)
	}
	t.Logf("%d WAL syncs for %d writes", w.started.Load(), writers*15)
	close(stop)
	<-releaser

	// A caller gives up while its sync is held.
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	m1 := ins(model.Body, "given up, in the held sync")
	go func() { _, err := s.Apply(ctx1, []Mutation{m1}); first <- err }()
	<-w.held // its group's sync began and is held
	ctx2, cancel2 := context.WithCancel(context.Background())
	second := make(chan error, 1)
	m2 := ins(model.Body, "given up, waiting for the next group")
	go func() { _, err := s.Apply(ctx2, []Mutation{m2}); second <- err }()
	cancel1()
	cancel2()
	for _, ch := range []chan error{first, second} {
		select {
		case err := <-ch:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Apply whose ctx ended during a held sync: %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second): // a guard against a hang, not a measurement
			t.Fatal("Apply did not return when its ctx ended while the WAL sync was held")
		}
	}
	w.release <- struct{}{} // the disk returns
	w.unblock()
	s.Close()
	// The write whose caller gave up landed; the second may have.
	if err := func() error {
		s := openTest(t, fs)
		defer s.Close()
		v := mustView(t, s)
		defer v.Close()
		if _, ok, err := v.Find(model.Body, m1.Key); err != nil || !ok {
			return errors.New("the write in the held sync did not land")
		}
		return nil
	}(); err != nil {
		t.Error(err)
	}
	for range 100 {
		if storeGoroutines() <= before {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("%d store or Pebble goroutines left after Close (%d before Open)", storeGoroutines(), before)
}
