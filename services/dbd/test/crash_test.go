package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// TestKill9KeepsAcknowledged runs dbd as a real process under concurrent
// batches from several clients, kills it with SIGKILL at a random moment,
// restarts it, and checks that every acknowledged batch is there with its
// exact content, and that no batch is there by halves (SPEC §4;
// TEST-CATALOG 80).
//
// It also checks that reads are linearizable across processes and kills
// (the Jepsen/porcupine method, for a max-register, by hand): the test
// records, with its own monotonic clock, when each batch was sent and
// when dbd acknowledged it, and, while the writers run, readers read each
// writer's register (a column every batch of the writer raises to the
// batch's sequence number; history). Every read must return at least the
// last value acknowledged before the read began and at most the last one
// sent before it ended; so must the first read after each restart, and
// the batch that set the value must be there whole. Readers also re-read
// random batches acknowledged before the read began: each must be found.
//
// TWINMX_CRASH_ROUNDS sets the number of kills (default 5; the catalog's
// long run is 100).
func TestKill9KeepsAcknowledged(t *testing.T) {
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("TWINMX_CRASH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	const writers, readers = 8, 2
	start := time.Now()
	s := newSite(t)
	s.Start()
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))
	h := newHistory(writers)
	setup := s.NewClient("admin")
	for w := range writers {
		if _, _, err := setup.FindOrInsert(proctest.Ctx(t, 20*time.Second), model.Text, registerContent(w)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	totalErrs, batchReads, readsChecked := 0, 0, 0
	var violation error
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		firstRead := len(h.reads)
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c := s.NewClient("admin")
				for i := 0; ctx.Err() == nil && i < 100000; i++ {
					body, header := batchContent(round, w, i)
					seq := h.invoke(w, header, round, i)
					_, err := c.Batch(ctx, []wire.Request{
						{Op: wire.OpFindOrInsert, Table: model.Body, Content: body},
						{Op: wire.OpFindOrInsert, Table: model.Header, Content: header},
						{Op: wire.OpSet, Table: model.Header, Ref: wire.Ref{Content: header}, Name: "ack", Value: uint64(i + 1)},
						{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: registerContent(w)}, Name: "seq", Value: seq},
					})
					if err != nil {
						mu.Lock()
						totalErrs++
						mu.Unlock()
						return // the kill: this batch is unacknowledged
					}
					h.acked(w, seq, body)
				}
			}(w)
		}
		for r := 0; r < readers; r++ {
			wg.Add(1)
			go func(r int) {
				defer wg.Done()
				c := s.NewClient("admin")
				rr := mrand.New(mrand.NewPCG(uint64(round), uint64(r)))
				for j := 0; ctx.Err() == nil && j < 100000; j++ {
					w := rr.IntN(writers)
					t0 := time.Now()
					row, err := c.Find(ctx, model.Text, registerContent(w))
					if err != nil {
						return // the kill
					}
					h.read(w, row.State.Col("seq"), t0, time.Now())
					b, ok := h.someAcked(rr.IntN)
					if !ok {
						continue
					}
					hr, err := c.FindKey(ctx, model.Header, b.header)
					if errors.Is(err, client.ErrNotFound) || (err == nil && hr.State.Col("ack") != b.ack) {
						mu.Lock()
						violation = fmt.Errorf("round %d: a batch acknowledged (round %d) before the read began: header %v, %v", round, b.round, hr, err)
						mu.Unlock()
						return
					}
					if err != nil {
						return // the kill
					}
					mu.Lock()
					batchReads++
					mu.Unlock()
				}
			}(r)
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		s.Kill()
		cancel()
		wg.Wait()
		if violation != nil {
			t.Fatal(violation)
		}
		n, err := h.checkReads(firstRead)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		readsChecked += n
		checkStoreInvariants(t, s, round)
		s.Start()
		checkCrashState(t, s, h, round)
	}
	acked := len(h.acknowledged())
	t.Logf("%d kills in %s: %d acknowledged batches all present, %d batches cut off by a kill; %d register reads and %d re-reads of acknowledged batches linearizable",
		rounds, time.Since(start).Round(time.Second), acked, totalErrs, readsChecked, batchReads)
	if acked == 0 || readsChecked == 0 || batchReads == 0 {
		t.Fatal("no batch was acknowledged or read: the test measured nothing")
	}
}

// checkCrashState checks a restarted dbd against the history: every
// acknowledged batch of every round is there (body with its digest,
// header with its ack column; the bodies of the last round are also read
// back byte for byte), no batch is there by halves, and each writer's
// register lies between its last acknowledged and its last sent sequence
// number, with the batch that set it there whole.
func checkCrashState(t *testing.T, s *proctest.DB, h *history, round int) {
	t.Helper()
	ctx := proctest.Ctx(t, 2*time.Minute)
	c := s.NewClient("admin")
	for w := range h.writes {
		lo, hi, header := h.registerBounds(w)
		row, err := c.Find(ctx, model.Text, registerContent(w))
		if err != nil {
			t.Fatalf("after kill %d: writer %d's register: %v", round, w, err)
		}
		v := row.State.Col("seq")
		if v < lo || v > hi {
			t.Fatalf("after kill %d: writer %d's register is %d, want between %d (acknowledged) and %d (sent)", round, w, v, lo, hi)
		}
		if v > 0 {
			if hr, err := c.FindKey(ctx, model.Header, header(v)); err != nil || hr.State.Col("ack") == 0 {
				t.Fatalf("after kill %d: writer %d's register is %d, but that batch's header is %v, %v", round, w, v, hr, err)
			}
		}
	}
	type got struct {
		digest [32]byte
		ack    uint64
	}
	rows := map[model.Key]got{}
	// No half batches, acknowledged or not: every body has its header
	// with the column the same batch set.
	st, err := c.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bodies, headers := 0, 0
	for {
		r, err := st.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch r.Table {
		case model.Body:
			bodies++
			rows[r.Key] = got{digest: r.Digest}
		case model.Header:
			headers++
			if r.State.Col("ack") == 0 {
				t.Fatalf("after kill %d: a header without the column its batch set", round)
			}
			rows[r.Key] = got{ack: r.State.Col("ack")}
		}
	}
	if bodies != headers {
		t.Fatalf("after kill %d: %d bodies but %d headers: a batch was applied by halves", round, bodies, headers)
	}
	for _, b := range h.acknowledged() {
		if g, ok := rows[b.body]; !ok || g.digest != b.digest {
			t.Fatalf("after kill %d: the body of a batch acknowledged in round %d is missing or differs (%v)", round, b.round, ok)
		}
		if g, ok := rows[b.header]; !ok || g.ack != b.ack {
			t.Fatalf("after kill %d: the header of a batch acknowledged in round %d: found %v, ack %d, want %d", round, b.round, ok, g.ack, b.ack)
		}
	}
	// The last round's acknowledged bodies, byte for byte.
	type wb struct{ w, i int }
	var last []wb
	h.mu.Lock()
	for w, ws := range h.writes {
		for _, wr := range ws {
			if wr.round == round && !wr.ack.IsZero() {
				last = append(last, wb{w, wr.i})
			}
		}
	}
	h.mu.Unlock()
	for _, b := range last {
		body, _ := batchContent(round, b.w, b.i)
		row, err := c.Find(ctx, model.Body, body)
		if err != nil || !bytes.Equal(row.Content, body) {
			t.Fatalf("after kill %d: acknowledged body %q: %v (content differs: %v)", round, body[:30], err, err == nil)
		}
	}
}
