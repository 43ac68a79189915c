package replica_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
)

// TestMarkPastAFullRow: one mail's receive row is full of status columns
// (model.MaxColumns, none of them the mark), so dbd refuses to mark it,
// and it waits in the marker together with another mail. The other mail
// must still be marked. The marker used to mark a round's mails in one
// batch per site, which dbd refuses whole: the two mails, scheduled
// together ever after, were never marked, and smtpd answered 451 for the
// healthy one for ever.
func TestMarkPastAFullRow(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 30*time.Second)
	full := backupdtest.NewMail(1, "alice@example.org")
	ok := backupdtest.NewMail(2, "alice@example.org")
	bf, bo := full.Batch(), ok.Batch()
	// The receive rows before the rest of their rows, so that neither
	// mail is complete in a merge and both go to the marker (in the same
	// merge, so in the same rounds); the full one filled at once.
	reqs := []wire.Request{bf[3], bo[3]}
	for i := range model.MaxColumns {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: full.RecvKey},
			Name: fmt.Sprintf("x.c%03d", i), Value: 1})
	}
	if _, err := c.admin("A").Batch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	for _, k := range []model.Key{full.RecvKey, ok.RecvKey} {
		for {
			if _, err := c.admin("B").FindKey(ctx, model.Receive, k); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("receive row never reached B: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var rest []wire.Request
	for _, b := range [][]wire.Request{bf, bo} {
		rest = append(rest, b[:3]...)
		rest = append(rest, b[4:]...)
	}
	if _, err := c.smtpd("A").Batch(ctx, rest); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"A", "B"} {
		if err := eventuallyMarked(ctx, c, n, ok); err != nil {
			t.Fatalf("the other mail at %s: %v (mark errors at A: %v)", n, err,
				counter(t, c, "twinmx_backupd_mark_errors_total", "site", "A"))
		}
	}
	if marked, err := backupdtest.Marked(ctx, c.admin("A"), full); err != nil || marked {
		t.Errorf("full mail at A: marked %v, %v; want not marked (its receive row cannot take the mark)", marked, err)
	}
}
