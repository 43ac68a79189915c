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
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// TestAutoverdictBacklogBound: autoverdict asked dbd for the newest 100000
// receive rows to catch up, but dbd answers a scan with at most 10000 and
// a scan cannot page, so the older undecided rows were skipped without a
// word. It still decides the newest 10000, and says that older ones stay
// undecided.
func TestAutoverdictBacklogBound(t *testing.T) {
	e, db := liveDB(t)
	ctx := context.Background()
	cl := e.Client(auth.Admin)
	const older = 50 // rows beyond the scan's bound
	mb := model.KeyOf(model.Mailbox, []byte("jo@x.example"))
	var keys []model.Key
	for i := 0; i < maxScan+older; {
		var reqs []wire.Request
		for ; i < maxScan+older && len(reqs) < wire.MaxBatchOps; i++ {
			var mail model.Key
			binary.BigEndian.PutUint64(mail[:], uint64(i)+1)
			rc := model.ReceiveContent(mail, mb)
			keys = append(keys, model.KeyOf(model.Receive, rc))
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc})
		}
		if _, err := cl.Batch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}

	// autoverdict runs until interrupted: it is stopped once it has
	// decided as many rows as a scan gives.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	decided := 0
	out := &funcWriter{f: func(p []byte) {
		var n int
		if _, err := fmt.Sscanf(string(p), "decided %d\n", &n); err == nil {
			decided += n
		}
		if decided >= maxScan {
			cancel()
		}
	}}
	errs := &funcWriter{}
	oldExit, oldErr := cli.OsExiter, cli.ErrWriter
	t.Cleanup(func() { cli.OsExiter, cli.ErrWriter = oldExit, oldErr })
	cli.OsExiter = func(int) {}
	cli.ErrWriter = errs
	app := App()
	app.Reader, app.Writer, app.ErrWriter = strings.NewReader(""), out, errs
	if err := app.RunContext(runCtx, append([]string{"dbctl"}, append(db, "autoverdict", "accept")...)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("autoverdict: %v", err)
	}
	if decided != maxScan {
		t.Errorf("autoverdict decided %d rows, want %d", decided, maxScan)
	}
	if s := errs.String(); !strings.Contains(s, "only the newest 10000 receive rows were looked at") {
		t.Errorf("autoverdict's error output %q does not say that older rows were not looked at", s)
	}
	// The bound as told: the newest rows are decided, the oldest not.
	for _, k := range []model.Key{keys[len(keys)-1], keys[0]} {
		r, err := cl.FindKey(ctx, model.Receive, k)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.State.Cols[model.ColVerdict] != 0, k == keys[len(keys)-1]; got != want {
			t.Errorf("receive row %s decided: %v, want %v", k, got, want)
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
