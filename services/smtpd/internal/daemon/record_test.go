package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
)

// batchDB records the batches a recorder writes.
type batchDB struct {
	mu      sync.Mutex
	batches [][]wire.Request
}

func (d *batchDB) Batch(_ context.Context, reqs []wire.Request) ([]wire.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.batches = append(d.batches, reqs)
	return make([]wire.Result, len(reqs)), nil
}

// TestRecorderBatches: records that queued up while a batch was being
// written go to dbd together, within the count and byte bounds, and none
// is lost when the queue is closed.
func TestRecorderBatches(t *testing.T) {
	db := &batchDB{}
	r := newRecorder(db, "p", time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(prometheus.NewRegistry()))
	const small, big = 100, 6
	for i := range small {
		r.queue <- []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Capture, Content: []byte(fmt.Sprintf("small %d", i))}}
	}
	for i := range big {
		r.queue <- []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Capture, Content: bytes.Repeat([]byte{byte('a' + i)}, 300<<10)}}
	}
	r.close()
	r.run(context.Background())
	total := 0
	for i, b := range db.batches {
		if len(b) > recordBatchMax {
			t.Errorf("batch %d has %d records, more than %d", i, len(b), recordBatchMax)
		}
		if n := contentBytes(b); len(b) > 1 && n-len(b[len(b)-1].Content) >= recordBatchBytes {
			t.Errorf("batch %d went on past %d bytes (%d)", i, recordBatchBytes, n)
		}
		total += len(b)
	}
	if total != small+big {
		t.Fatalf("%d records written, want %d", total, small+big)
	}
	// 100 small ones need two batches of at most 64; the six of 300 KiB
	// two more (four fit under 1 MiB before the bound stops a batch).
	if len(db.batches) > 5 {
		t.Errorf("%d batches for %d queued records, want them gathered", len(db.batches), small+big)
	}
}

// TestManyConnectionsAllRecorded: connections that close together each
// leave their capture row.
func TestManyConnectionsAllRecorded(t *testing.T) {
	e := start(t, func(c *Config) { c.Guard.MaxConnsPerIP = -1 })
	const n = 40
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(e.addr)
			if err != nil {
				t.Error(err)
				return
			}
			if err := c.Hello("client.test"); err != nil {
				t.Error(err)
			}
			c.Quit()
		}()
	}
	wg.Wait()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys, err := e.admin.ScanKeys(ctx, model.Capture, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d capture rows for %d connections", len(keys), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRecorderQueueBoundedInBytes: while dbd does not take records (down
// or slow), the queue holds at most recordQueueBytes of them, not
// recordQueue records of any size: 4096 captures of 256 KiB, each with
// the DATA of a mail that could not be stored, were 1 GiB. The records
// beyond it are dropped and counted.
func TestRecorderQueueBoundedInBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	r := newRecorder(&batchDB{}, "p", time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	// One buffer for all: the test itself need not hold what it queues.
	capture := bytes.Repeat([]byte("x"), 256<<10)
	const n = 1000 // under recordQueue: only the byte bound can refuse
	for range n {
		r.note([]wire.Request{{Op: wire.OpFindOrInsert, Table: model.Capture, Content: capture}})
	}
	queued, held := len(r.queue), 0
	r.close()
	for reqs := range r.queue {
		held += contentBytes(reqs)
	}
	if held > recordQueueBytes {
		t.Fatalf("%d records (%d bytes) queued, more than the %d bytes allowed", queued, held, recordQueueBytes)
	}
	if queued == 0 {
		t.Fatal("nothing queued")
	}
	if dropped := testutil.ToFloat64(m.DBErrors.WithLabelValues("throw-in")); int(dropped) != n-queued {
		t.Fatalf("%v records counted as dropped, want %d", dropped, n-queued)
	}
}
