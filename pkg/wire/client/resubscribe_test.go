package client

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestResubscribe: follow runs again after each end until ctx ends; ended
// sees each error, and an end caused by ctx is not reported.
func TestResubscribe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	runs, ends := 0, 0
	errStream := errors.New("stream ended")
	Resubscribe(ctx, time.Millisecond, func(ctx context.Context) error {
		runs++
		if runs == 3 {
			cancel()
			return ctx.Err()
		}
		return errStream
	}, func(err error) {
		if !errors.Is(err, errStream) {
			t.Errorf("ended(%v), want the stream's error", err)
		}
		ends++
	})
	if runs != 3 || ends != 2 {
		t.Fatalf("runs %d, ends %d; want 3 and 2", runs, ends)
	}
}
