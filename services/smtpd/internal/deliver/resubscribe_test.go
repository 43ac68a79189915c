package deliver

import (
	"testing"
	"time"
)

// TestResubscribeBackoff pins the watcher's resubscription waits: they
// double while the stream keeps failing, stop at the ceiling, and start
// again from the floor after a stream that stayed up.
func TestResubscribeBackoff(t *testing.T) {
	var b resubscribe
	quick := time.Millisecond
	want := []time.Duration{10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000}
	for i, w := range want {
		if got := b.next(quick); got != w*time.Millisecond {
			t.Fatalf("failure %d: wait %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := b.next(resubscribeStable); got != resubscribeMin {
		t.Fatalf("after a stable stream: wait %v, want %v", got, resubscribeMin)
	}
	if got := b.next(quick); got != 2*resubscribeMin {
		t.Fatalf("failure after the reset: wait %v, want %v", got, 2*resubscribeMin)
	}
}
