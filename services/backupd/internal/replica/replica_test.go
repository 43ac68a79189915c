package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
)

// TestBackedUpMark: a mail stored at A, as smtpd stores it, gets its mark
// on both sites; with B down it does not; once B is back it does (SPEC §6,
// issue 4).
func TestBackedUpMark(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	smtpA := c.smtpd("A")

	m1 := backupdtest.NewMail(1, "alice@example.org")
	if _, err := smtpA.Batch(ctx, m1.Batch()); err != nil {
		t.Fatal(err)
	}
	if err := backupdtest.WaitMark(ctx, smtpA, m1); err != nil {
		t.Fatalf("mark of mail 1 at A: %v", err)
	}
	for _, n := range []string{"A", "B"} {
		if err := eventuallyMarked(ctx, c, n, m1); err != nil {
			t.Fatalf("mail 1 at %s: %v", n, err)
		}
	}

	c.stop("B")
	m2 := backupdtest.NewMail(2, "alice@example.org")
	if _, err := smtpA.Batch(ctx, m2.Batch()); err != nil {
		t.Fatal(err)
	}
	// "Never" is checked for a while: the watch must not see the mark.
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	err := backupdtest.WaitMark(wctx, smtpA, m2)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with B down, mail 2 at A: waitMark = %v, want no mark", err)
	}

	c.restart("B")
	if err := backupdtest.WaitMark(ctx, smtpA, m2); err != nil {
		t.Fatalf("mark of mail 2 at A after B is back: %v", err)
	}
	if err := eventuallyMarked(ctx, c, "B", m2); err != nil {
		t.Fatalf("mail 2 at B: %v", err)
	}
}

// TestMarkCarriedInMerge: a mail whose four rows cross in one merge is
// marked inside that merge at the destination, and the origin gets the
// mark back by replication, not by a set of its own. Site A's last change
// of each of the four rows is then the merge from B, which holds exactly
// B's state, so the A→B pump streams them without content: the body
// crosses the link once. With the mark set at A by the marker (before
// 2026-11-30, fifteenth session), that local change sent the four rows
// to B again, content and all, and B wrote each of them a second time.
//
// The second mail shares its body with the first, so its batch holds no
// body row (smtpd finds it): the pump knows the body is at B from its
// earlier merge (presence), and marks that mail in its merge too, where
// before it took a marker round.
func TestMarkCarriedInMerge(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	first := backupdtest.NewMail(3, "alice@example.org")
	// The same body under another header.
	raw := append([]byte("Message-ID: <second@test>\r\nSubject: again\r\n\r\n"), first.Rows.Parts.Body...)
	mr := model.NewMailRows(raw)
	recv := model.ReceiveContent(mr.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent("alice@example.org")))
	second := backupdtest.Mail{Rows: mr, Recv: recv, RecvKey: model.KeyOf(model.Receive, recv)}
	if second.Rows.BodyKey != first.Rows.BodyKey || second.Rows.MailKey == first.Rows.MailKey {
		t.Fatal("the second mail does not share the first one's body alone")
	}
	for _, m := range []backupdtest.Mail{first, second} {
		if _, err := c.smtpd("A").Batch(ctx, m.Batch()); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"A", "B"} {
			if err := eventuallyMarked(ctx, c, n, m); err != nil {
				t.Fatalf("mail at %s: %v", n, err)
			}
		}
	}
	c.waitConverged(ctx)
	if n := gathered(t, c, "twinmx_backupd_mark_rounds_total"); n != 0 {
		t.Errorf("%v marker rounds, want none", n)
	}
	// What the A→B pump is sent: A's changes, leaving out the content of
	// rows whose state came exactly from B.
	st, err := c.admin("A").Changes(ctx, 0, false, replica.CursorName("B", "A"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[model.Key]*wire.Row{}
	for {
		row, err := st.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[row.Key] = row
	}
	for _, k := range []model.Key{first.RecvKey, first.Rows.MailKey, first.Rows.HeaderKey, first.Rows.BodyKey,
		second.RecvKey, second.Rows.MailKey, second.Rows.HeaderKey} {
		row := got[k]
		switch {
		case row == nil:
			t.Errorf("row %s not in A's changes", k)
		case row.State.Col(model.ColBackedUp) != model.FlagSet:
			t.Errorf("%s row at A: not marked in its latest change", row.Table)
		case row.HasContent:
			t.Errorf("%s row at A: its latest change is A's own (its content would go to B again), want B's merge", row.Table)
		}
	}
}

// TestNoMarkWhenRowRefused: B refuses the batch that carries a mail (its
// body is larger than B takes in one request), so the pump merges the
// rows one by one and skips the body. The marks it would have put in
// that merge must not go in with the other rows: the mail is not on two
// sites, and neither site may show it backed up.
func TestNoMarkWhenRowRefused(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.stop("B")
	c.envs["B"] = dbdtest.Start(t, dbdtest.Options{Dir: c.dirs["B"], MaxMessage: 1 << 20})
	c.proxies["B"].SetTarget(c.envs["B"].Addr)
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	raw := append([]byte("Message-ID: <big@test>\r\nSubject: big\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdef\r\n"), (2<<20)/18)...)
	mr := model.NewMailRows(raw)
	recv := model.ReceiveContent(mr.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent("alice@example.org")))
	m := backupdtest.Mail{Rows: mr, Recv: recv, RecvKey: model.KeyOf(model.Receive, recv)}
	if _, err := c.smtpd("A").Batch(ctx, m.Batch()); err != nil {
		t.Fatal(err)
	}
	// The receive row reaches B (merged alone); its mark must not.
	for {
		if _, err := c.admin("B").FindKey(ctx, model.Receive, m.RecvKey); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("receive row never reached B: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, n := range []string{"A", "B"} {
			row, err := c.admin(n).FindKey(ctx, model.Receive, m.RecvKey)
			if err != nil {
				t.Fatal(err)
			}
			if row.State.Col(model.ColBackedUp) != 0 {
				t.Fatalf("receive row at %s marked backed up, but B lacks the body", n)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventuallyMarked waits until all four rows of m carry the mark at site
// n: the marker marks the sites of a round in parallel (and replication
// carries a mark too), so another site's mark can land a moment later.
func eventuallyMarked(ctx context.Context, c *cluster, n string, m backupdtest.Mail) error {
	for {
		ok, err := backupdtest.Marked(ctx, c.admin(n), m)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not marked: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// load runs n random operations at each site concurrently.
func load(t testing.TB, ctx context.Context, c *cluster, e *backupdtest.Expect, seed uint64, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(c.names))
	for si, name := range c.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(si)))
			cl := c.admin(name)
			for i := 0; i < n; i++ {
				if err := e.Apply(ctx, cl, backupdtest.RandomOp(rng)); err != nil {
					errs <- fmt.Errorf("site %s op %d: %w", name, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestThreeSitesConverge: random writes at three sites (mesh) converge to
// equal dumps with exact counter sums and marked mails.
func TestThreeSitesConverge(t *testing.T) {
	c := newCluster(t, "A", "B", "C")
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	e := backupdtest.NewExpect()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	load(t, ctx, c, e, seed, 150)
	c.waitConverged(ctx)
	for _, n := range c.names {
		e.Check(t, ctx, n, c.admin(n))
	}
}

// TestTwoSitesInProcessFaults: random writes at both sites while the
// replicator is stopped and restarted and B's link is cut and stalled; the
// sites converge exactly.
func TestTwoSitesInProcessFaults(t *testing.T) {
	c := newCluster(t, "A", "B")
	ctx := ctxT(t, 60*time.Second)
	e := backupdtest.NewExpect()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	stop := c.run(c.config())
	for round := 0; round < 4; round++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			load(t, ctx, c, e, seed+uint64(round), 60)
		}()
		switch round % 4 {
		case 0:
			stop()
			<-done
			stop = c.run(c.config())
		case 1:
			c.proxies["B"].Set(backupdtest.Cut)
			<-done
			c.proxies["B"].Set(backupdtest.Pass)
		case 2:
			c.proxies["A"].Set(backupdtest.Stall)
			<-done
			c.proxies["A"].Set(backupdtest.Pass)
		default:
			<-done
		}
	}
	c.waitConverged(ctx)
	for _, n := range c.names {
		e.Check(t, ctx, n, c.admin(n))
	}
}

// TestFullBatchWithKnownRows: a mail's mail, header and body rows went to
// B in an earlier merge without the mark (its receive row was not there
// yet); its receive row then comes in a full batch (wire.MaxMergeRows
// rows). Its mark goes in that merge only if the three state rows it
// needs fit: the merge used to grow past wire.MaxMergeRows, the encoder
// refused it, and the session ended with a merge error.
func TestFullBatchWithKnownRows(t *testing.T) {
	c := newCluster(t, "A", "B")
	cfg := c.config()
	cfg.HeartbeatTimeout = 20 * time.Second // the stall below must not end the session
	c.run(cfg)
	ctx := ctxT(t, 30*time.Second)
	m := backupdtest.NewMail(3, "erin@example.org")
	reqs := m.Batch()
	if _, err := c.smtpd("A").Batch(ctx, reqs[:3]); err != nil { // body, header, mail
		t.Fatal(err)
	}
	for {
		if _, err := c.admin("B").FindKey(ctx, model.Mail, m.Rows.MailKey); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("mail row never reached B: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One merge stuck behind the stalled link, so that the rows after it
	// queue up and go as one full batch.
	c.proxies["B"].Set(backupdtest.Stall)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("trigger") })
	time.Sleep(200 * time.Millisecond)
	fill := make([]wire.Request, wire.MaxMergeRows)
	fill[0] = reqs[3] // the receive row first: the full batch holds it
	for i := 1; i < len(fill); i++ {
		fill[i] = wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: fmt.Appendf(nil, "fill %d", i)}
	}
	if _, err := c.smtpd("A").Batch(ctx, fill[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin("A").Batch(ctx, fill[1:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the stream hands the rows to the queue
	c.proxies["B"].Set(backupdtest.Pass)
	if err := backupdtest.WaitMark(ctx, c.smtpd("A"), m); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(ctx)
	if n := counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B"); n != 0 {
		t.Fatalf("A→B: %v sessions ended with an error, want none", n)
	}
}

// TestMarkAfterMarkerWasFull: the marker is full (Config.MaxPending) when
// a mail's receive row is merged, so it does not take that mail; once it
// has room again, the mail must still get its mark. Before 2026-12-03 the
// pump only held its cursor below the mail, and nothing handed it to the
// marker again until the session ended (a healthy one may last for days):
// smtpd answered 451 for it all that time.
func TestMarkAfterMarkerWasFull(t *testing.T) {
	c := newCluster(t, "A", "B")
	cfg := c.config()
	cfg.MaxPending = 1
	c.run(cfg)
	ctx := ctxT(t, 30*time.Second)
	m1 := backupdtest.NewMail(1, "alice@example.org")
	m2 := backupdtest.NewMail(2, "alice@example.org")
	b1, b2 := m1.Batch(), m2.Batch()
	// The receive rows before the rest of their rows: neither mail is
	// complete in a merge, so both go to the marker, which takes the
	// first (it waits there for its other rows) and has no room for the
	// second.
	if _, err := c.smtpd("A").Batch(ctx, []wire.Request{b1[3], b2[3]}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []model.Key{m1.RecvKey, m2.RecvKey} {
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
	for _, b := range [][]wire.Request{b1, b2} {
		rest = append(rest, b[:3]...)
		rest = append(rest, b[4:]...)
	}
	if _, err := c.smtpd("A").Batch(ctx, rest); err != nil {
		t.Fatal(err)
	}
	for i, m := range []backupdtest.Mail{m1, m2} {
		for _, n := range []string{"A", "B"} {
			if err := eventuallyMarked(ctx, c, n, m); err != nil {
				t.Fatalf("mail %d at %s: %v", i+1, n, err)
			}
		}
	}
}
