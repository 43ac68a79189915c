package test

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// history is what the crash test's clients did, with the test process's
// monotonic clock: per writer, every batch it sent (invoked) and, if dbd
// answered, when (acknowledged); per reader, every read of a writer's
// register. dbd runs in another process and is killed between rounds;
// the history spans all its lives. Safe for concurrent use.
//
// Each writer w owns a register: the text row registerContent(w), whose
// column "seq" every batch of w raises to the batch's sequence number, in
// the same atomic batch as the batch's body and header. Sequence numbers
// of a writer grow by one per batch across rounds, and a set never lowers
// a column, so the register is a max-register whose linearizable reads
// are easy to state (checkReads).
type history struct {
	mu      sync.Mutex
	writes  [][]write // by writer, in invocation order
	reads   []read
	batches []batch // acknowledged, in acknowledgement order
}

// write is one batch of a writer.
type write struct {
	seq         uint64
	invoke, ack time.Time // ack is zero if dbd never answered
	header      model.Key // the batch's header row
	round, i    int       // the batch's round and number in it (batchContent)
}

// read is one read of writer w's register that dbd answered.
type read struct {
	w                int
	value            uint64
	invoke, complete time.Time
}

// batch is one acknowledged batch: the keys of its rows, the digest of
// its body, and the header's ack column.
type batch struct {
	body, header model.Key
	digest       [32]byte
	ack          uint64
	round        int
}

func newHistory(writers int) *history { return &history{writes: make([][]write, writers)} }

// registerContent is the content of writer w's register row (table Text).
func registerContent(w int) []byte { return fmt.Appendf(nil, "register of writer %d", w) }

// batchContent is the body and header of batch i of writer w in a round.
func batchContent(round, w, i int) (body, header []byte) {
	pad := i % 700
	if i%4 == 3 {
		// A 12 KiB body: in a blob file once flushed.
		pad += 6 << 10
	}
	body = fmt.Appendf(nil, "round %d worker %d batch %d body %x", round, w, i, make([]byte, pad))
	header = fmt.Appendf(nil, "round %d worker %d batch %d header", round, w, i)
	return body, header
}

// invoke records that writer w is about to send a batch and returns its
// sequence number.
func (h *history) invoke(w int, header []byte, round, i int) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	seq := uint64(len(h.writes[w]) + 1)
	h.writes[w] = append(h.writes[w], write{seq: seq, invoke: time.Now(), header: model.KeyOf(model.Header, header), round: round, i: i})
	return seq
}

// acked records dbd's answer to writer w's batch seq.
func (h *history) acked(w int, seq uint64, body []byte) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	wr := &h.writes[w][seq-1]
	wr.ack = now
	h.batches = append(h.batches, batch{body: model.KeyOf(model.Body, body), header: wr.header,
		digest: sha256.Sum256(body), ack: uint64(wr.i + 1), round: wr.round})
}

// read records an answered read of writer w's register.
func (h *history) read(w int, value uint64, invoke, complete time.Time) {
	h.mu.Lock()
	h.reads = append(h.reads, read{w: w, value: value, invoke: invoke, complete: complete})
	h.mu.Unlock()
}

// someAcked returns a batch acknowledged before now, if any.
func (h *history) someAcked(pick func(n int) int) (batch, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.batches) == 0 {
		return batch{}, false
	}
	return h.batches[pick(len(h.batches))], true
}

// bounds returns, for a read of writer w's register invoked at invoke and
// answered at complete, the least value a linearizable read may return
// (the highest sequence number acknowledged before the read began: that
// write took effect before the read did) and the greatest (the highest
// sequence number sent before the read ended: a write not yet sent cannot
// have taken effect). A write sent but never answered, for instance cut
// off by a kill, may or may not have taken effect, in this process's life
// of dbd or, once durable, any later one.
func (h *history) bounds(w int, invoke, complete time.Time) (lo, hi uint64) {
	ws := h.writes[w]
	// Writes of one writer are sequential: each is sent after the one
	// before it was answered, so invocation and acknowledgement times both
	// grow with seq.
	n := sort.Search(len(ws), func(k int) bool { return !ws[k].invoke.Before(invoke) })
	for k := n - 1; k >= 0; k-- {
		if !ws[k].ack.IsZero() && ws[k].ack.Before(invoke) {
			lo = ws[k].seq
			break
		}
	}
	if m := sort.Search(len(ws), func(k int) bool { return !ws[k].invoke.Before(complete) }); m > 0 {
		hi = ws[m-1].seq
	}
	return lo, hi
}

// checkReads checks every read recorded since the first from (an index
// into the reads) against the writes: each must return a value within
// bounds. It returns the number of reads checked and the first violation.
func (h *history) checkReads(from int) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.reads[from:] {
		lo, hi := h.bounds(r.w, r.invoke, r.complete)
		if r.value < lo || r.value > hi {
			return 0, fmt.Errorf("read of writer %d's register returned %d, but a linearizable read returns between %d (acknowledged before it began) and %d (sent before it ended)",
				r.w, r.value, lo, hi)
		}
	}
	return len(h.reads) - from, nil
}

// registerBounds returns what writer w's register may hold after a kill:
// at least its highest acknowledged sequence number, at most its highest
// sent one, and the header of each sequence number (to check that the
// batch that set the value is there whole).
func (h *history) registerBounds(w int) (lo, hi uint64, header func(seq uint64) model.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.writes[w]
	for k := len(ws) - 1; k >= 0; k-- {
		if !ws[k].ack.IsZero() {
			lo = ws[k].seq
			break
		}
	}
	if len(ws) > 0 {
		hi = ws[len(ws)-1].seq
	}
	return lo, hi, func(seq uint64) model.Key { return ws[seq-1].header }
}

// acknowledged returns a copy of the acknowledged batches.
func (h *history) acknowledged() []batch {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]batch(nil), h.batches...)
}
