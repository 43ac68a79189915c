package replica

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

func TestValidate(t *testing.T) {
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	site := func(n string) Site { return Site{Name: n, Addr: "127.0.0.1:1", Server: kp.Public} }
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, all must appear
	}{
		{"ok", Config{Sites: []Site{site("A"), site("B")}, Key: kp}, nil},
		{"three", Config{Sites: []Site{site("A"), site("B"), site("c_3")}, Key: kp, MinCopies: 3}, nil},
		{"one site", Config{Sites: []Site{site("A")}, Key: kp}, []string{"need at least 2"}},
		{"twice", Config{Sites: []Site{site("A"), site("a")}, Key: kp}, []string{"listed twice"}},
		{"bad names", Config{Sites: []Site{site("a-b"), site(strings.Repeat("x", 28))}, Key: kp},
			[]string{"only letters", "1 to 27"}},
		{"no key, no addr", Config{Sites: []Site{{Name: "A", Server: kp.Public}, site("B")}},
			[]string{"key is required", "address is required"}},
		{"copies", Config{Sites: []Site{site("A"), site("B")}, Key: kp, MinCopies: 3}, []string{"MinCopies 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.applyDefaults()
			err := cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

func TestCursorName(t *testing.T) {
	n := CursorName("SiteA", "b")
	if n != "repl.sitea-to-b" {
		t.Fatalf("CursorName = %q", n)
	}
	long := strings.Repeat("x", maxSiteName)
	if err := model.CheckName(CursorName(long, long)); err != nil {
		t.Fatalf("longest cursor name is invalid: %v", err)
	}
}

func TestParseSite(t *testing.T) {
	for _, in := range []string{"", "A", "A=host:1", "=h:1,f", "A=,f"} {
		if _, err := ParseSite(in); err == nil {
			t.Errorf("ParseSite(%q) = nil error, want one", in)
		}
	}
}

// TestTrackerCursor: the stored cursor never passes an unsettled receive
// row, and rises when the marker settles it.
func TestTrackerCursor(t *testing.T) {
	tr := newTracker()
	tr.reset(10)
	k1, k2 := model.Key{1}, model.Key{2}
	if got := tr.cursorFor(20); got != 20 {
		t.Fatalf("cursorFor(20) with nothing pending = %d, want 20", got)
	}
	tr.mergedUpTo(20, []pendingRecv{{key: k1, stamp: 15}, {key: k2, stamp: 18}})
	if got := tr.floor(); got != 14 {
		t.Fatalf("floor with receives at 15 and 18 = %d, want 14", got)
	}
	if got := tr.cursorFor(30); got != 14 {
		t.Fatalf("cursorFor(30) = %d, want 14", got)
	}
	tr.settle(k1)
	if got := tr.floor(); got != 17 {
		t.Fatalf("floor after settling 15 = %d, want 17", got)
	}
	tr.untracked(k2, 18)
	if got := tr.floor(); got != 17 {
		t.Fatalf("floor with 18 untracked = %d, want 17", got)
	}
	tr.reset(17)
	tr.mergedUpTo(25, nil)
	if got := tr.floor(); got != 25 {
		t.Fatalf("floor after a new session = %d, want 25", got)
	}
}

func TestLagTracker(t *testing.T) {
	var l lagTracker
	t0 := time.Unix(1000, 0)
	l.seen(5, t0)
	l.seen(9, t0.Add(time.Second))
	if rows, secs := l.values(t0.Add(3 * time.Second)); rows != 9 || secs != 3 {
		t.Fatalf("values = %d, %v; want 9, 3", rows, secs)
	}
	l.done(5)
	if rows, secs := l.values(t0.Add(3 * time.Second)); rows != 4 || secs != 2 {
		t.Fatalf("after merging 5: values = %d, %v; want 4, 2", rows, secs)
	}
	l.done(9)
	if rows, secs := l.values(t0.Add(3 * time.Second)); rows != 0 || secs != 0 {
		t.Fatalf("caught up: values = %d, %v; want 0, 0", rows, secs)
	}
}

// TestLagTrackerStampGap: the source restarted, and its stamps jumped from
// 9 to above 1,000,000 (wire.Stamps); the lag in rows counts changes, not
// the stamps of the gap.
func TestLagTrackerStampGap(t *testing.T) {
	var l lagTracker
	t0 := time.Unix(1000, 0)
	l.seen(9, t0)
	l.done(6)
	l.status(wire.Stamps{Last: 1000004, Before: 9, Floor: 1000000}, t0.Add(time.Second))
	if rows, _ := l.values(t0.Add(2 * time.Second)); rows != 3+4 {
		t.Fatalf("values across the gap = %d rows, want 7", rows)
	}
	l.done(1000001)
	if rows, _ := l.values(t0.Add(2 * time.Second)); rows != 3 {
		t.Fatalf("after merging into the new run: %d rows, want 3", rows)
	}
}

// TestLagTrackerCursorBack: a session reads a cursor below what was
// merged (the destination is a restored copy): the changes above it count
// again, their age from the session's start.
func TestLagTrackerCursorBack(t *testing.T) {
	var l lagTracker
	t0 := time.Unix(1000, 0)
	l.seen(9, t0)
	l.start(9, t0)
	if rows, secs := l.values(t0.Add(time.Second)); rows != 0 || secs != 0 {
		t.Fatalf("caught up: values = %d, %v; want 0, 0", rows, secs)
	}
	l.start(4, t0.Add(2*time.Second))
	if rows, secs := l.values(t0.Add(5 * time.Second)); rows != 5 || secs != 3 {
		t.Fatalf("cursor back to 4: values = %d, %v; want 5, 3", rows, secs)
	}
	l.seen(12, t0.Add(6*time.Second))
	l.done(9)
	if rows, secs := l.values(t0.Add(7 * time.Second)); rows != 3 || secs != 1 {
		t.Fatalf("merged up to 9: values = %d, %v; want 3, 1", rows, secs)
	}
}

func TestQueueBounds(t *testing.T) {
	q := newQueue(100)
	big := &wire.Row{Content: make([]byte, 500)}
	if err := q.put(t.Context(), big); err != nil {
		t.Fatal(err) // a row over the bound fits an empty queue
	}
	// The queue is over its bound: the next put waits.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	err := q.put(ctx, &wire.Row{Content: make([]byte, 40)})
	cancel()
	if err == nil {
		t.Fatal("put into a full queue did not wait")
	}
	if got := q.take(10, 1000); len(got) != 1 || got[0] != big {
		t.Fatalf("take = %d rows, want the big one alone", len(got))
	}
	for range 2 {
		if err := q.put(t.Context(), &wire.Row{Content: make([]byte, 40)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := q.take(10, 50); len(got) != 1 {
		t.Fatalf("take(10, 50) of two 40-byte rows = %d rows, want 1", len(got))
	}
	if got := q.take(10, 50); len(got) != 1 {
		t.Fatalf("second take = %d rows, want 1", len(got))
	}
	if got := q.take(10, 50); len(got) != 0 {
		t.Fatalf("take of an empty queue = %d rows", len(got))
	}
}
