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
)

// TestKill9KeepsAcknowledged runs dbd as a real process under concurrent
// batches from several clients, kills it with SIGKILL at a random moment,
// restarts it, and checks that every acknowledged batch is there with its
// exact content, and that no batch is there by halves (SPEC §4;
// TEST-CATALOG 80). TWINMX_CRASH_ROUNDS sets the number of kills
// (default 5).
func TestKill9KeepsAcknowledged(t *testing.T) {
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("TWINMX_CRASH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	s := newSite(t)
	s.start()
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var mu sync.Mutex
	var acked []pair
	totalAcked, totalErrs := 0, 0
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c := s.client("admin")
				for i := 0; ctx.Err() == nil && i < 100000; i++ {
					pad := i % 700
					if i%4 == 3 {
						// A 12 KiB body: in a blob file once flushed.
						pad += 6 << 10
					}
					body := []byte(fmt.Sprintf("round %d worker %d batch %d body %x", round, w, i, make([]byte, pad)))
					header := []byte(fmt.Sprintf("round %d worker %d batch %d header", round, w, i))
					_, err := c.Batch(ctx, []wire.Request{
						{Op: wire.OpFindOrInsert, Table: model.Body, Content: body},
						{Op: wire.OpFindOrInsert, Table: model.Header, Content: header},
						{Op: wire.OpSet, Table: model.Header, Ref: wire.Ref{Content: header}, Name: "ack", Value: uint64(i + 1)},
					})
					if err != nil {
						mu.Lock()
						totalErrs++
						mu.Unlock()
						return // the kill: this batch is unacknowledged
					}
					mu.Lock()
					acked = append(acked, pair{body, header})
					totalAcked++
					mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		s.kill()
		cancel()
		wg.Wait()
		checkStoreInvariants(t, s, round)
		s.start()
		checkCrashState(t, s, acked, round)
	}
	t.Logf("%d kills, %d acknowledged batches all present, %d batches cut off by a kill", rounds, totalAcked, totalErrs)
	if totalAcked == 0 {
		t.Fatal("no batch was acknowledged: the test measured nothing")
	}
}

// pair is one acknowledged batch: a body and the header set with it.
type pair struct{ body, header []byte }

func checkCrashState(t *testing.T, s *site, acked []pair, round int) {
	t.Helper()
	ctx := proctest.Ctx(t, 2*time.Minute)
	c := s.client("admin")
	for _, p := range acked {
		row, err := c.Find(ctx, model.Body, p.body)
		if err != nil {
			t.Fatalf("after kill %d: acknowledged body %q: %v", round, p.body[:30], err)
		}
		if !bytes.Equal(row.Content, p.body) {
			t.Fatalf("after kill %d: body content differs", round)
		}
		h, err := c.Find(ctx, model.Header, p.header)
		if err != nil || h.State.Col("ack") == 0 {
			t.Fatalf("after kill %d: acknowledged header %q: %v (ack %v)", round, p.header, err, h)
		}
	}
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
		case model.Header:
			headers++
			if r.State.Col("ack") == 0 {
				t.Fatalf("after kill %d: a header without the column its batch set", round)
			}
		}
	}
	if bodies != headers {
		t.Fatalf("after kill %d: %d bodies but %d headers: a batch was applied by halves", round, bodies, headers)
	}
}
