package replica_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// TestBackedUpMark: a mail stored at A, as smtpd stores it, gets its mark
// on both sites; with B down it does not; once B is back it does (SPEC §6,
// issue 4).
func TestBackedUpMark(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	smtpA := c.smtpd("A")

	m1 := newMail(1, "alice@example.org")
	if _, err := smtpA.Batch(ctx, m1.batch()); err != nil {
		t.Fatal(err)
	}
	if err := waitMark(ctx, smtpA, m1); err != nil {
		t.Fatalf("mark of mail 1 at A: %v", err)
	}
	for _, n := range []string{"A", "B"} {
		if ok, err := marked(ctx, c.admin(n), m1); err != nil || !ok {
			t.Fatalf("mail 1 at %s: marked %v, %v", n, ok, err)
		}
	}

	c.stop("B")
	m2 := newMail(2, "alice@example.org")
	if _, err := smtpA.Batch(ctx, m2.batch()); err != nil {
		t.Fatal(err)
	}
	// "Never" is checked for a while: the watch must not see the mark.
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	err := waitMark(wctx, smtpA, m2)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with B down, mail 2 at A: waitMark = %v, want no mark", err)
	}

	c.restart("B")
	if err := waitMark(ctx, smtpA, m2); err != nil {
		t.Fatalf("mark of mail 2 at A after B is back: %v", err)
	}
	if ok, err := marked(ctx, c.admin("B"), m2); err != nil || !ok {
		t.Fatalf("mail 2 at B: marked %v, %v", ok, err)
	}
}

// op is one random write of the convergence tests.
type op struct {
	kind    int // 0 insert, 1 set, 2 increment, 3 mail
	table   model.Table
	content []byte
	name    string
	value   uint64
}

var randTables = []model.Table{model.Body, model.Header, model.Text, model.RDNS, model.Config}

// randomOp picks an operation on a small pool of contents, so sites often
// write the same rows.
func randomOp(rng *rand.Rand, i int) op {
	o := op{kind: rng.IntN(4), table: randTables[rng.IntN(len(randTables))]}
	o.content = []byte(fmt.Sprintf("content %d", rng.IntN(40)))
	switch o.kind {
	case 1:
		o.name = fmt.Sprintf("col%d", rng.IntN(3))
		o.value = uint64(1 + rng.IntN(1000))
	case 2:
		o.name = fmt.Sprintf("ctr%d", rng.IntN(2))
		o.value = uint64(1 + rng.IntN(10))
	case 3:
		o.value = uint64(rng.IntN(30))
	}
	return o
}

// expect records acknowledged writes; counters sum over every site.
type expect struct {
	mu       sync.Mutex
	inserted map[string]bool   // table/content
	cols     map[string]uint64 // table/content/col -> max value set
	counters map[string]uint64 // table/content/ctr -> sum of deltas
	mails    map[int]mail
}

func newExpect() *expect {
	return &expect{inserted: map[string]bool{}, cols: map[string]uint64{}, counters: map[string]uint64{}, mails: map[int]mail{}}
}

// apply performs o at a site (admin role) and records it when acknowledged.
func (e *expect) apply(ctx context.Context, c *client.Client, o op) error {
	id := o.table.String() + "/" + string(o.content)
	ref := wire.Ref{Content: o.content}
	switch o.kind {
	case 0:
		if _, _, err := c.FindOrInsert(ctx, o.table, o.content); err != nil {
			return err
		}
		e.mu.Lock()
		e.inserted[id] = true
		e.mu.Unlock()
	case 1, 2:
		req := wire.Request{Op: wire.OpSet, Table: o.table, Ref: ref, Name: o.name, Value: o.value}
		if o.kind == 2 {
			req.Op = wire.OpIncrement
		}
		// Insert and update in one batch, so the update never misses.
		_, err := c.Batch(ctx, []wire.Request{{Op: wire.OpFindOrInsert, Table: o.table, Content: o.content}, req})
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.inserted[id] = true
		k := id + "/" + o.name
		if o.kind == 1 {
			e.cols[k] = max(e.cols[k], o.value)
		} else {
			e.counters[k] += o.value
		}
		e.mu.Unlock()
	case 3:
		m := newMail(int(o.value), "bob@example.org")
		if _, err := c.Batch(ctx, m.batch()); err != nil {
			return err
		}
		e.mu.Lock()
		e.mails[int(o.value)] = m
		e.mu.Unlock()
	}
	return nil
}

// check verifies a converged site against the acknowledged writes:
// inserts present, columns at least the highest set (exactly, when
// exact), counters equal to the true sums, mails marked.
func (e *expect) check(t testing.TB, ctx context.Context, site string, c *client.Client) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	rows := map[string]*wire.Row{}
	get := func(id string) *wire.Row {
		if r, ok := rows[id]; ok {
			return r
		}
		var t0 model.Table
		var content string
		for _, tb := range randTables {
			if p := tb.String() + "/"; len(id) > len(p) && id[:len(p)] == p {
				t0, content = tb, id[len(p):]
			}
		}
		r, err := c.Find(ctx, t0, []byte(content))
		if err != nil {
			t.Fatalf("%s: acknowledged row %s: %v", site, id, err)
		}
		rows[id] = r
		return r
	}
	for id := range e.inserted {
		get(id)
	}
	for k, v := range e.cols {
		id, col := splitLast(k)
		if got := get(id).State.Col(col); got != v {
			t.Errorf("%s: %s column %s = %d, want %d", site, id, col, got, v)
		}
	}
	for k, v := range e.counters {
		id, ctr := splitLast(k)
		if got := get(id).State.Counter(ctr); got != v {
			t.Errorf("%s: %s counter %s = %d, want the true sum %d", site, id, ctr, got, v)
		}
	}
	for i, m := range e.mails {
		if ok, err := marked(ctx, c, m); err != nil || !ok {
			t.Errorf("%s: mail %d marked %v, %v", site, i, ok, err)
		}
	}
}

func splitLast(s string) (string, string) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// load runs n random operations at each site concurrently.
func load(t testing.TB, ctx context.Context, c *cluster, e *expect, seed uint64, n int) {
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
				if err := e.apply(ctx, cl, randomOp(rng, i)); err != nil {
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
	e := newExpect()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	load(t, ctx, c, e, seed, 150)
	c.waitConverged(ctx)
	for _, n := range c.names {
		e.check(t, ctx, n, c.admin(n))
	}
}

// TestTwoSitesInProcessFaults: random writes at both sites while the
// replicator is stopped and restarted and B's link is cut and stalled; the
// sites converge exactly.
func TestTwoSitesInProcessFaults(t *testing.T) {
	c := newCluster(t, "A", "B")
	ctx := ctxT(t, 60*time.Second)
	e := newExpect()
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
			c.proxies["B"].Set(1) // cut
			<-done
			c.proxies["B"].Set(0)
		case 2:
			c.proxies["A"].Set(2) // stall
			<-done
			c.proxies["A"].Set(0)
		default:
			<-done
		}
	}
	c.waitConverged(ctx)
	for _, n := range c.names {
		e.check(t, ctx, n, c.admin(n))
	}
}
