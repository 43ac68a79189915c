package store

import (
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
