package store

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestIdleWatchesAreSmall: a watch holds no buffer until rows wait for
// it, so dbd can serve the thousands that many IMAP sessions open (a
// preallocated queue of 4096 rows was about 650 KiB a watch).
func TestIdleWatchesAreSmall(t *testing.T) {
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	const n = 2000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	subs := make([]*Subscription, n)
	for i := range subs {
		box := model.KeyOf(model.Mailbox, model.MailboxContent("a@x.example"))
		subs[i] = s.Watch(Filter{Table: model.Receive, Parent: &box}, 4096)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d idle watches: %d bytes each", n, per)
	if per > 2048 {
		t.Fatalf("an idle watch holds %d bytes, want at most 2 KiB", per)
	}
	for _, sub := range subs {
		sub.Close()
	}
}

// TestParentIndex: among many watches by parent, a commit reaches exactly
// the watches of its rows' parents (and the table-wide ones).
func TestParentIndex(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	boxes := make([]model.Key, 500)
	subs := make([]*Subscription, len(boxes))
	for i := range boxes {
		boxes[i] = model.KeyOf(model.Mailbox, model.MailboxContent(fmt.Sprintf("u%d@x.example", i)))
		subs[i] = s.Watch(Filter{Table: model.Receive, Parent: &boxes[i]}, 16)
		defer subs[i].Close()
	}
	all := s.Watch(Filter{Table: model.Receive}, 16)
	defer all.Close()
	other := s.Watch(Filter{Table: model.Text, Parent: &boxes[7]}, 16) // same parent, other table
	defer other.Close()
	if _, err := s.Apply(ctx, []Mutation{receiveIns("m1", boxes[7]), receiveIns("m2", boxes[300]), receiveIns("m3", boxes[7])}); err != nil {
		t.Fatal(err)
	}
	want := map[int]int{7: 2, 300: 1}
	for i, sub := range subs {
		var got []Row
		select {
		case <-sub.Ready:
			got, _ = sub.Take(nil)
		default:
		}
		if len(got) != want[i] {
			t.Fatalf("watch of mailbox %d got %d rows, want %d", i, len(got), want[i])
		}
		for _, r := range got {
			if r.Parent != boxes[i] {
				t.Fatalf("watch of mailbox %d got a row of %s", i, r.Parent)
			}
		}
	}
	<-all.Ready
	if got, _ := all.Take(nil); len(got) != 3 {
		t.Fatalf("the table-wide watch got %d rows, want 3", len(got))
	}
	select {
	case <-other.Ready:
		t.Fatal("a text watch got receive rows")
	default:
	}
	if n := s.NumWatches(); n != len(subs)+2 {
		t.Fatalf("NumWatches = %d, want %d", n, len(subs)+2)
	}
}

// BenchmarkCommitWithIdleWatches: the writer's cost of a commit with no
// watch (the baseline) and with 10,000 idle watches by parent (IMAP
// sessions' folders). ns/op is one commit of one receive row.
func BenchmarkCommitWithIdleWatches(b *testing.B) {
	for _, n := range []int{0, 10000} {
		b.Run(fmt.Sprint(n, "watches"), func(b *testing.B) {
			// In memory: the fsync would hide what the hub costs.
			s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Site: "a", Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := range n {
				box := model.KeyOf(model.Mailbox, model.MailboxContent(fmt.Sprintf("u%d@x.example", i)))
				defer s.Watch(Filter{Table: model.Receive, Parent: &box}, 16).Close()
			}
			box := model.KeyOf(model.Mailbox, model.MailboxContent("busy@x.example"))
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := s.Apply(ctx, []Mutation{receiveIns(fmt.Sprint(i), box)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
