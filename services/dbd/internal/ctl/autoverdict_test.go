package ctl

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// insertReceives inserts n receive rows of one mailbox and returns their
// keys, oldest first.
func insertReceives(t *testing.T, cl *client.Client, n int) []model.Key {
	t.Helper()
	mb := model.KeyOf(model.Mailbox, []byte("jo@x.example"))
	var keys []model.Key
	for i := 0; i < n; {
		var reqs []wire.Request
		for ; i < n && len(reqs) < wire.MaxBatchOps; i++ {
			var mail model.Key
			binary.BigEndian.PutUint64(mail[:], uint64(i)+1)
			rc := model.ReceiveContent(mail, mb)
			keys = append(keys, model.KeyOf(model.Receive, rc))
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc})
		}
		if _, err := cl.Batch(context.Background(), reqs); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// TestAutoverdictBacklogBound: autoverdict asked dbd for the newest 100000
// receive rows to catch up, but dbd answers a scan with at most 10000 and
// a scan could not page, so the older undecided rows were skipped (first
// without a word, then with a note). It pages through them now: every
// row is decided, and there is no note.
func TestAutoverdictBacklogBound(t *testing.T) {
	e, db := liveDB(t)
	ctx := context.Background()
	cl := e.Client(auth.Admin)
	const total = maxScan + 50 // rows beyond one scan's 10000
	keys := insertReceives(t, cl, total)

	// autoverdict runs until interrupted: it is stopped once it has
	// decided as many rows as there are, or has something to say (a
	// note of rows left out, a failed scan).
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	decided := 0
	out := &funcWriter{f: func(p []byte) {
		var n int
		if _, err := fmt.Sscanf(string(p), "decided %d\n", &n); err == nil {
			decided += n
		}
		if decided >= total {
			cancel()
		}
	}}
	errs := &funcWriter{f: func([]byte) { cancel() }}
	oldExit, oldErr := cli.OsExiter, cli.ErrWriter
	t.Cleanup(func() { cli.OsExiter, cli.ErrWriter = oldExit, oldErr })
	cli.OsExiter = func(int) {}
	cli.ErrWriter = errs
	app := App()
	app.Reader, app.Writer, app.ErrWriter = strings.NewReader(""), out, errs
	if err := app.RunContext(runCtx, append([]string{"dbctl"}, append(db, "autoverdict", "accept")...)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("autoverdict: %v", err)
	}
	if decided != total {
		t.Errorf("autoverdict decided %d rows, want %d", decided, total)
	}
	if s := errs.String(); s != "" {
		t.Errorf("autoverdict's error output %q, want none", s)
	}
	var undecided []int // by age, oldest first
	for i, k := range keys {
		r, err := cl.FindKey(ctx, model.Receive, k)
		if err != nil {
			t.Fatal(err)
		}
		if r.State.Cols[model.ColVerdict] == 0 {
			undecided = append(undecided, i)
		}
	}
	if len(undecided) != 0 {
		t.Errorf("%d of %d receive rows left undecided, the first (oldest first) %d", len(undecided), total, undecided[0])
	}
}

// TestAutoverdictBacklogNote: when the catch-up scan stops at its bound,
// the newest rows up to it are decided and the operator is told; the
// older ones stay undecided.
func TestAutoverdictBacklogNote(t *testing.T) {
	e, _ := liveDB(t)
	cl := e.Client(auth.Admin)
	const total, bound = 150, 100
	keys := insertReceives(t, cl, total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	decided, truncated := 0, 0
	var why string
	err := followReceives(ctx, cl, model.Accept, bound, func(n int) {
		if decided += n; decided >= bound {
			cancel()
		}
	}, func(w string) { truncated, why = truncated+1, w })
	if err != nil {
		t.Fatalf("followReceives: %v", err)
	}
	if decided != bound || truncated != 1 {
		t.Errorf("followReceives with a bound of %d: decided %d, told of the bound %d times; want %d and once", bound, decided, truncated, bound)
	}
	if want := "only the newest 100 receive rows were looked at"; why != want {
		t.Errorf("followReceives told %q, want %q", why, want)
	}
	for i, k := range keys {
		r, err := cl.FindKey(context.Background(), model.Receive, k)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.State.Cols[model.ColVerdict] != 0, i >= total-bound; got != want {
			t.Errorf("receive row %d (of %d, oldest first) decided: %v, want %v", i, total, got, want)
		}
	}
}

// funcWriter collects what is written and calls f with each write.
type funcWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
	f  func([]byte)
}

func (w *funcWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.f != nil {
		w.f(p)
	}
	return len(p), nil
}

func (w *funcWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
