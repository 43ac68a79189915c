package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

func openCached(t *testing.T, size int64) *Store {
	t.Helper()
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Site: "a", RowCacheSize: size,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// verdictOf reads row (t, k) with FindEncoded from a new view and returns
// its verdict column.
func verdictOf(t *testing.T, s *Store, tb model.Table, k model.Key) uint64 {
	t.Helper()
	v := mustView(t, s)
	defer v.Close()
	return findVerdict(t, v, tb, k)
}

func findVerdict(t *testing.T, v *View, tb model.Table, k model.Key) uint64 {
	t.Helper()
	row, ok, err := v.FindEncoded(tb, k)
	if err != nil || !ok {
		t.Fatalf("FindEncoded %s %s: %v, %v", tb, k, ok, err)
	}
	st, _, err := model.DecodeState(row.EncodedState)
	if err != nil {
		t.Fatalf("decode state of %s %s: %v", tb, k, err)
	}
	return st.Col("verdict")
}

func setVerdict(t *testing.T, s *Store, tb model.Table, k model.Key, v uint64) {
	t.Helper()
	if _, err := s.Apply(context.Background(), []Mutation{{Kind: Set, Table: tb, Key: k, Name: "verdict", Value: v}}); err != nil {
		t.Fatalf("set verdict %d: %v", v, err)
	}
}

// clearRowCache drops every entry, as the generations' rotation does.
func clearRowCache(s *Store) {
	s.rcache.mu.Lock()
	s.rcache.cur, s.rcache.prev = cacheGen{}, cacheGen{}
	s.rcache.mu.Unlock()
}

// TestRowCacheWrittenThrough: a row a mail reader reads is in the cache
// from its insert, and a view that starts after a change was acknowledged
// finds the changed row, whether the change or an older read put it there.
func TestRowCacheWrittenThrough(t *testing.T) {
	s := openCached(t, 0)
	m := ins(model.Receive, "a receive row")
	if _, err := s.Apply(context.Background(), []Mutation{m, ins(model.ThrowIn, "not read by mail readers")}); err != nil {
		t.Fatal(err)
	}
	if got := verdictOf(t, s, model.Receive, m.Key); got != 0 {
		t.Fatalf("verdict %d, want 0", got)
	}
	if h, miss := s.rcache.hits.Load(), s.rcache.misses.Load(); h != 1 || miss != 0 {
		t.Fatalf("first read after the insert: %d hits, %d misses; want a hit", h, miss)
	}
	if _, ok := s.rcache.get(rowRef{model.ThrowIn, model.KeyOf(model.ThrowIn, []byte("not read by mail readers"))}); ok {
		t.Fatal("a throw-in row was cached: only the tables op mails reads are")
	}
	for i := uint64(1); i <= 3; i++ {
		setVerdict(t, s, model.Receive, m.Key, i)
		if got := verdictOf(t, s, model.Receive, m.Key); got != i {
			t.Fatalf("after set %d: verdict %d from the cache", i, got)
		}
	}
	// A read fills what the cache lost, and a change replaces the fill.
	clearRowCache(s)
	if got := verdictOf(t, s, model.Receive, m.Key); got != 3 {
		t.Fatalf("read after the cache was cleared: verdict %d, want 3", got)
	}
	if _, ok := s.rcache.get(rowRef{model.Receive, m.Key}); !ok {
		t.Fatal("a read did not fill the cache")
	}
	setVerdict(t, s, model.Receive, m.Key, 4)
	if got := verdictOf(t, s, model.Receive, m.Key); got != 4 {
		t.Fatalf("after set 4: verdict %d", got)
	}
}

// TestRowCacheNoStaleFill: a view that started before a change reads the
// row from its snapshot, before the change, and must not put that value
// in the cache, where a later view would find it. The change's own entry
// is gone here (as after the generations' rotation).
func TestRowCacheNoStaleFill(t *testing.T) {
	s := openCached(t, 0)
	m := ins(model.Body, "a body")
	if _, err := s.Apply(context.Background(), []Mutation{m}); err != nil {
		t.Fatal(err)
	}
	old := mustView(t, s)
	defer old.Close()
	setVerdict(t, s, model.Body, m.Key, 7)
	clearRowCache(s)
	if got := findVerdict(t, old, model.Body, m.Key); got != 0 {
		t.Fatalf("the older view read verdict %d, want its snapshot's 0", got)
	}
	if _, ok := s.rcache.get(rowRef{model.Body, m.Key}); ok {
		t.Fatal("a view older than the last change filled the cache")
	}
	if got := verdictOf(t, s, model.Body, m.Key); got != 7 {
		t.Fatalf("a new view read verdict %d, want 7", got)
	}
}

// TestRowCacheOff: with a negative size nothing is cached and reads still
// see every change.
func TestRowCacheOff(t *testing.T) {
	s := openCached(t, -1)
	m := ins(model.Mail, "a mail row")
	if _, err := s.Apply(context.Background(), []Mutation{m}); err != nil {
		t.Fatal(err)
	}
	setVerdict(t, s, model.Mail, m.Key, 2)
	if got := verdictOf(t, s, model.Mail, m.Key); got != 2 {
		t.Fatalf("verdict %d, want 2", got)
	}
	if h, miss := s.rcache.hits.Load(), s.rcache.misses.Load(); h != 0 || miss != 0 || len(s.rcache.cur.rows) != 0 {
		t.Fatalf("cache off: %d hits, %d misses, %d rows", h, miss, len(s.rcache.cur.rows))
	}
}

// TestRowCacheBounded: the values kept stay within the size, however many
// rows are written and read.
func TestRowCacheBounded(t *testing.T) {
	const size = 64 << 10
	s := openCached(t, size)
	var muts []Mutation
	for i := range 2000 {
		muts = append(muts, ins(model.Header, fmt.Sprintf("Subject: %d\r\n\r\n%0200d", i, i)))
	}
	if _, err := s.Apply(context.Background(), muts); err != nil {
		t.Fatal(err)
	}
	v := mustView(t, s)
	for _, m := range muts {
		if _, ok, err := v.FindEncoded(model.Header, m.Key); err != nil || !ok {
			t.Fatalf("FindEncoded: %v, %v", ok, err)
		}
	}
	v.Close()
	s.rcache.mu.Lock()
	held := s.rcache.cur.bytes + s.rcache.prev.bytes
	s.rcache.mu.Unlock()
	if held > size || held < size/4 {
		t.Fatalf("%d bytes of values held, want at most %d (and some)", held, size)
	}
}

// TestRowCacheConcurrent: writers raise the verdicts of a few rows while
// readers read them through views, with the cache cleared now and then;
// every read finds at least the verdict acknowledged before its view
// started. Bounded in count.
func TestRowCacheConcurrent(t *testing.T) {
	s := openCached(t, 4<<10) // small: the generations turn over often
	const rows, writes, readers = 4, 300, 3
	keys := make([]model.Key, rows)
	acked := make([]atomic.Uint64, rows)
	for i := range keys {
		m := ins(model.Receive, fmt.Sprintf("row %d", i))
		keys[i] = m.Key
		if _, err := s.Apply(context.Background(), []Mutation{m}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, rows+readers)
	for i := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := uint64(1); n <= writes; n++ {
				if _, err := s.Apply(context.Background(), []Mutation{{Kind: Set, Table: model.Receive, Key: keys[i], Name: "verdict", Value: n}}); err != nil {
					errs <- err
					return
				}
				acked[i].Store(n)
				if n%50 == 0 {
					clearRowCache(s)
				}
			}
		}()
	}
	var rg sync.WaitGroup
	for range readers {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for reads := 0; reads < 20000; reads++ {
				select {
				case <-done:
					return
				default:
				}
				var floor [rows]uint64
				for i := range floor {
					floor[i] = acked[i].Load()
				}
				v, err := s.View()
				if err != nil {
					errs <- err
					return
				}
				for i, k := range keys {
					row, ok, err := v.FindEncoded(model.Receive, k)
					if err != nil || !ok {
						errs <- fmt.Errorf("FindEncoded: %v, %v", ok, err)
						v.Close()
						return
					}
					st, _, err := model.DecodeState(row.EncodedState)
					if err != nil {
						errs <- err
						v.Close()
						return
					}
					if got := st.Col("verdict"); got < floor[i] {
						errs <- fmt.Errorf("row %d: verdict %d read after %d was acknowledged", i, got, floor[i])
						v.Close()
						return
					}
				}
				v.Close()
			}
		}()
	}
	wg.Wait()
	close(done)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("hits %d, misses %d", s.rcache.hits.Load(), s.rcache.misses.Load())
}
