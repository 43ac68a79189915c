package session

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// fetchFake is a Store whose Fetch returns the row number as the mail and
// records how many reads run at once; every other method is unused.
type fetchFake struct {
	Store
	running, peak atomic.Int32
	fail          uint64 // the row number whose read fails
}

func (f *fetchFake) Fetch(ctx context.Context, m mailbox.Message, drop []string) ([]byte, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if m.RowNo == f.fail {
		return nil, errors.New("dbd gone")
	}
	return []byte(strconv.FormatUint(m.RowNo, 10)), ctx.Err()
}

// FetchMany counts the mails of a batch as reads running at once.
func (f *fetchFake) FetchMany(ctx context.Context, ms []mailbox.Message, drops [][]string) ([][]byte, []error) {
	n := f.running.Add(int32(len(ms)))
	defer f.running.Add(-int32(len(ms)))
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	raws, errs := make([][]byte, len(ms)), make([]error, len(ms))
	for i, m := range ms {
		if m.RowNo == f.fail {
			errs[i] = errors.New("dbd gone")
			continue
		}
		raws[i], errs[i] = []byte(strconv.FormatUint(m.RowNo, 10)), ctx.Err()
	}
	return raws, errs
}

func prefetchSession(t *testing.T, st Store, n int) (*Session, []int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &Session{b: &Backend{cfg: Config{Store: st, DBTimeout: time.Minute}}, ctx: ctx, acct: &mailbox.Account{}, sel: &selected{}}
	var idx []int
	for i := range n {
		s.sel.msgs = append(s.sel.msgs, &message{uid: imap.UID(i + 1), m: mailbox.Message{RowNo: uint64(i + 1)}})
		idx = append(idx, i)
	}
	return s, idx
}

// TestPrefetchOrderAndBound: mails come back in FETCH order, with at most
// fetchAhead reads at once, and stop in the middle ends every goroutine.
func TestPrefetchOrderAndBound(t *testing.T) {
	f := &fetchFake{}
	s, idx := prefetchSession(t, f, 100)
	p := s.prefetch(idx)
	for k := range 60 {
		raw, err := p.next()
		if err != nil || string(raw) != strconv.Itoa(k+1) {
			t.Fatalf("mail %d = %q, %v", k, raw, err)
		}
	}
	p.stop() // 40 never asked for
	if f.running.Load() != 0 {
		t.Fatal("reads still running after stop")
	}
	if pk := f.peak.Load(); pk > fetchAhead || pk < 1 {
		t.Fatalf("peak concurrent reads %d, want 1..%d", pk, fetchAhead)
	}
}

func TestPrefetchError(t *testing.T) {
	f := &fetchFake{fail: 3}
	s, idx := prefetchSession(t, f, 10)
	p := s.prefetch(idx)
	defer p.stop()
	for k := range 3 {
		_, err := p.next()
		if (k == 2) != (err != nil) {
			t.Fatalf("mail %d: err %v", k, err)
		}
	}
}
