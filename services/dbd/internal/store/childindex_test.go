package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// sameAsFind fails the test unless every row Children lists for parent
// equals what Find reads for it under its row key, want rows in all.
func sameAsFind(t *testing.T, s *Store, table model.Table, parent model.Key, want int, when string) []Row {
	t.Helper()
	rows := childrenOf(t, s, table, parent, 0, 1000)
	if len(rows) != want {
		t.Fatalf("%s: %d children of %s, want %d", when, len(rows), parent, want)
	}
	v := mustView(t, s)
	defer v.Close()
	for _, r := range rows {
		f, ok, err := v.Find(table, r.Key)
		if err != nil || !ok {
			t.Fatalf("%s: Find(%s) = %v, %v", when, r.Key, ok, err)
		}
		if !reflect.DeepEqual(r, f) {
			t.Fatalf("%s: Children lists\n%+v\nFind reads\n%+v", when, r, f)
		}
	}
	return rows
}

// TestChildrenCarryRowState: the child index carries each row's meta, so
// a listing must show every change of a child exactly as Find does: a
// set column, a counter, a merged state from the other site, a row
// merged in. Each step also checks the layout invariants (the entry is
// the row's meta byte for byte).
func TestChildrenCarryRowState(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openTest(t, fs)
	a := model.KeyOf(model.Mailbox, model.MailboxContent("a@x.example"))
	r1, r2 := receiveIns("1", a), receiveIns("2", a)
	r1.Key, r2.Key = model.KeyOf(model.Receive, r1.Content), model.KeyOf(model.Receive, r2.Content)
	check := func(want int, when string) {
		t.Helper()
		sameAsFind(t, s, model.Receive, a, want, when)
		if _, err := checkInvariants(s); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	if _, err := s.Apply(ctx, []Mutation{r1, r2}); err != nil {
		t.Fatal(err)
	}
	check(2, "after the inserts")
	if _, err := s.Apply(ctx, []Mutation{{Kind: Set, Table: model.Receive, Key: r1.Key, Name: "imap.flag.seen", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	check(2, "after a set")
	if got := got0(t, s, a); got.State.Col("imap.flag.seen") != 1 {
		t.Fatalf("the listing does not show the set column: %+v", got.State)
	}
	if _, err := s.Apply(ctx, []Mutation{{Kind: Add, Table: model.Receive, Key: r2.Key, Name: "hits", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	check(2, "after an add")
	var other model.State
	if _, err := other.Set("verdict", 9); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Add("hits", "b", 5); err != nil {
		t.Fatal(err)
	}
	r3 := receiveIns("3", a)
	if _, err := s.Merge(ctx, []MergeRow{
		{Table: model.Receive, Key: r2.Key, State: other},
		{Table: model.Receive, Key: model.KeyOf(model.Receive, r3.Content), Content: r3.Content, State: other},
	}, "from-b", 1); err != nil {
		t.Fatal(err)
	}
	check(3, "after a merge")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, fs)
	defer s.Close()
	check(3, "after reopening")
}

// TestChildIndexUpgrade: a store whose child index entries hold only the
// row key (the layout up to 'vx2'), one of whose receive rows keeps its
// content in a chunk (written before inline contents), is rebuilt at
// open: the listing shows every row as Find does, the chunked row is
// made inline without changing its stamp or content, the old markers are
// gone, and a later change of that row reaches the index.
func TestChildIndexUpgrade(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openTest(t, fs)
	a := model.KeyOf(model.Mailbox, model.MailboxContent("a@x.example"))
	folder := model.FolderKey("alice", model.FolderJunk)
	pl := model.PlacementContent(model.Placement{Incarnation: 7, Folder: folder, Receive: model.KeyOf(model.Receive, []byte("r"))})
	var muts []Mutation
	for i := range 5 {
		muts = append(muts, receiveIns(fmt.Sprint(i), a))
	}
	muts = append(muts, Mutation{Kind: Insert, Table: model.Text, Content: pl})
	if _, err := s.Apply(ctx, muts); err != nil {
		t.Fatal(err)
	}
	old := model.KeyOf(model.Receive, muts[1].Content)
	if _, err := s.Apply(ctx, []Mutation{{Kind: Set, Table: model.Receive, Key: old, Name: "ack", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	before := sameAsFind(t, s, model.Receive, a, 5, "before")

	// Rewrite the store into the old layout.
	b := s.db.NewBatch()
	p := []byte{spaceChild}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := b.Set(it.Key(), it.Value()[:model.KeySize], nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	v := mustView(t, s)
	m, ok, err := getMeta(v, rowRef{model.Receive, old})
	v.Close()
	if err != nil || !ok {
		t.Fatalf("getMeta = %v, %v", ok, err)
	}
	chunked := m
	chunked.Inline = nil
	if err := b.Set(rowKey(model.Receive, old), chunked.encode(), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(contentKey(model.Receive, old, 0), m.Inline, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(childIndexDone, nil); err != nil {
		t.Fatal(err)
	}
	for _, mk := range oldChildIndexMarkers {
		if err := b.Set(mk, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, fs)
	defer s.Close()
	after := sameAsFind(t, s, model.Receive, a, 5, "after the upgrade")
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("after the upgrade the listing is\n%+v\nwant\n%+v", after, before)
	}
	sameAsFind(t, s, model.Text, model.PlacementParent(folder, 7), 1, "placements after the upgrade")
	if _, err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
	if _, closer, err := s.db.Get(contentKey(model.Receive, old, 0)); err == nil {
		closer.Close()
		t.Fatal("the chunk of the row made inline is still there")
	}
	for _, mk := range oldChildIndexMarkers {
		if _, closer, err := s.db.Get(mk); err == nil {
			closer.Close()
			t.Fatalf("old marker %q is still there", mk)
		}
	}
	if _, err := s.Apply(ctx, []Mutation{{Kind: Set, Table: model.Receive, Key: old, Name: "ack", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range sameAsFind(t, s, model.Receive, a, 5, "after a set") {
		if r.Key == old && r.State.Col("ack") != 3 {
			t.Fatalf("the listing shows ack %d of the upgraded row, want 3", r.State.Col("ack"))
		}
	}
}

// BenchmarkChildren lists a mailbox of 10,000 receive rows, flushed to
// sstables, in pages of 1,000 (what imapd's SELECT and pop3d's UIDL ask
// dbd for), each page in a view of its own. It reports the wall time and
// the process's CPU time per child: the machine is shared, and the CPU
// time is what a busy one does not stretch.
func BenchmarkChildren(b *testing.B) {
	const n = 10000
	s, err := Open(Options{Dir: b.TempDir(), Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a := model.KeyOf(model.Mailbox, model.MailboxContent("a@x.example"))
	for i := 0; i < n; i += 500 {
		var ms []Mutation
		for j := i; j < i+500; j++ {
			ms = append(ms, receiveIns(fmt.Sprint(j), a))
		}
		if _, err := s.Apply(context.Background(), ms); err != nil {
			b.Fatal(err)
		}
		// Some rows of each batch get a column, as mail clients set flags.
		var sets []Mutation
		for _, m := range ms[:100] {
			sets = append(sets, Mutation{Kind: Set, Table: model.Receive, Key: model.KeyOf(model.Receive, m.Content), Name: "imap.flag.seen", Value: 1})
		}
		if _, err := s.Apply(context.Background(), sets); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		var after uint64
		got := 0
		for {
			v, err := s.View()
			if err != nil {
				b.Fatal(err)
			}
			k := 0
			err = v.Children(model.Receive, a, after, 1000, func(r Row) error {
				after, k = r.RowNo, k+1
				return nil
			})
			v.Close()
			if err != nil {
				b.Fatal(err)
			}
			if got += k; k == 0 {
				break
			}
		}
		if got != n {
			b.Fatalf("listed %d rows, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1000/float64(b.N*n), "µs/child")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/1000/float64(b.N*n), "cpu-µs/child")
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
