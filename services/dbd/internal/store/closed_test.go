package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestWriteAfterCloseAnswers: a write that reaches a closed store is
// answered ErrClosed at once. enqueue could hand it to the writer's queue
// after the writer had drained it for the last time (a send on the
// buffered queue and the closed quit channel were both ready), and the
// caller then waited for an answer that never came: an Apply, Merge or
// Arm racing Close hung until its context ended, for ever without one.
// The context's deadline only bounds the old behaviour; the check is on
// the error.
func TestWriteAfterCloseAnswers(t *testing.T) {
	s := openTest(t, vfs.NewMem())
	s.Close()
	k := model.KeyOf(model.Receive, []byte("x"))
	for i := range 32 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.Apply(ctx, []Mutation{ins(model.Text, "after close")})
		if !errors.Is(err, ErrClosed) {
			cancel()
			t.Fatalf("Apply %d after Close = %v, want ErrClosed", i, err)
		}
		_, err = s.Merge(ctx, nil, "peer", 7)
		if !errors.Is(err, ErrClosed) {
			cancel()
			t.Fatalf("Merge %d after Close = %v, want ErrClosed", i, err)
		}
		_, err = s.Arm(ctx, []Cond{acceptCond(k)}, []Mutation{setCol(k, model.ColAcknowledged, model.FlagSet)}, time.Now().Add(time.Minute))
		if !errors.Is(err, ErrClosed) {
			cancel()
			t.Fatalf("Arm %d after Close = %v, want ErrClosed", i, err)
		}
		cancel()
	}
}
