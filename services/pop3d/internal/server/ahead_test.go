package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// batchStore records the batches FetchMany is asked for; every other
// method is unused.
type batchStore struct {
	Store
	mu      sync.Mutex
	batches [][]uint64 // row numbers
}

func (b *batchStore) FetchMany(ctx context.Context, ms []mailbox.Message, drops [][]string) ([][]byte, []error) {
	var rows []uint64
	for _, m := range ms {
		rows = append(rows, m.RowNo)
	}
	b.mu.Lock()
	b.batches = append(b.batches, rows)
	b.mu.Unlock()
	return make([][]byte, len(ms)), make([]error, len(ms))
}

// aheadConn is a connection whose maildrop holds messages of the given
// sizes (row number = message number).
func aheadConn(t *testing.T, st Store, sizes []int64) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &conn{s: &Server{cfg: Config{Store: st, DBTimeout: time.Minute}, ctx: ctx}, drop: &maildrop{}}
	for i, sz := range sizes {
		c.drop.msgs = append(c.drop.msgs, message{m: mailbox.Message{RowNo: uint64(i + 1)}, size: sz, sized: true})
	}
	return c
}

func heldAhead(c *conn) (n int, bytes int64) {
	for k := range c.ahead.pending {
		n++
		bytes += c.drop.msgs[k-1].size
	}
	return n, bytes
}

// TestReadAheadBounds: small messages are fetched many to a request, up
// to aheadCount ahead; large ones only up to aheadBytes ahead; one larger
// than aheadMaxSize is left to its RETR.
func TestReadAheadBounds(t *testing.T) {
	st := &batchStore{}
	small := make([]int64, 100)
	for i := range small {
		small[i] = 5000
	}
	c := aheadConn(t, st, small)
	c.prefetch(0)
	c.ahead.wg.Wait()
	if n, _ := heldAhead(c); n != aheadCount {
		t.Fatalf("%d small messages ahead, want %d", n, aheadCount)
	}
	if len(st.batches) != 1 || len(st.batches[0]) != aheadCount {
		t.Fatalf("batches %v, want one of %d", st.batches, aheadCount)
	}
	// Taking one leaves room for one: not worth a request yet.
	c.ahead.take(1)
	c.prefetch(1)
	c.ahead.wg.Wait()
	if len(st.batches) != 1 {
		t.Fatalf("a request for fewer than aheadBatch messages: %v", st.batches[1:])
	}

	st = &batchStore{}
	large := []int64{300 << 10, 300 << 10, 300 << 10, 300 << 10, 2 << 20, 10}
	c = aheadConn(t, st, large)
	c.prefetch(0)
	c.ahead.wg.Wait()
	if n, b := heldAhead(c); n != 3 || b > aheadBytes {
		t.Fatalf("%d large messages (%d bytes) ahead, want 3 within %d bytes", n, b, aheadBytes)
	}
	for _, k := range []int{1, 2, 3} {
		c.ahead.take(k)
	}
	c.prefetch(3)
	c.ahead.wg.Wait()
	if _, ok := c.ahead.pending[5]; ok {
		t.Fatal("a message over aheadMaxSize was fetched ahead")
	}
	if _, ok := c.ahead.pending[4]; !ok {
		t.Fatal("message 4 not fetched ahead once there was room")
	}
}
