package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// storeFacts is what checkInvariants read from a store: every row's meta
// and the highest row number of each table.
type storeFacts struct {
	rows  map[rowRef]rowMeta
	maxNo [model.Config + 1]uint64
}

// checkInvariants reads the whole keyspace of a freshly opened, idle store
// and reports every broken invariant of the layout (layout.go) as one
// error (nil if all hold):
//
//   - the stored row count of each table ('m') equals its number of rows
//     ('r'), and so does Store.Count;
//   - each row's number is unique in its table, its number index entry
//     ('n') names the row, and the index has no other entries;
//   - the next row number the writer will hand out is above every
//     existing one (IMAP UIDs are derived from row numbers: a reused
//     number would give a new message an old UID);
//   - each row has exactly one change-log entry ('s'), at its current
//     stamp, naming it; the log has no other entries (the writer deletes
//     the entry of the old stamp in the same batch), and the next stamp
//     is above every one in the log;
//   - the parent index ('x') holds exactly the entries model.ParentOf
//     gives for the rows' contents, each at the row's number and with
//     the row's key and current meta value (childValue), and every row
//     with a parent has its content inline.
//
// It must run with no write in flight: it reads the writer's counters.
func checkInvariants(s *Store) (storeFacts, error) {
	f := storeFacts{rows: make(map[rowRef]rowMeta)}
	var errs []error
	bad := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	scan := func(space byte, fn func(k, v []byte)) {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{space}, UpperBound: []byte{space + 1}})
		if err != nil {
			bad("iterate space %c: %v", space, err)
			return
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			fn(it.Key(), it.Value())
		}
		if err := it.Error(); err != nil {
			bad("iterate space %c: %v", space, err)
		}
	}

	// Rows.
	var rows [model.Config + 1]uint64
	byNo := make(map[[2]uint64]model.Key) // (table, rowno) -> key
	wantChild := make(map[string][]byte)  // child key -> childValue
	scan(spaceRow, func(k, v []byte) {
		ref, err := decodeRowRef(k[1:])
		if err != nil {
			bad("row key %x: %v", k, err)
			return
		}
		m, err := decodeRowMeta(v)
		if err != nil {
			bad("row %s %s: %v", ref.Table, ref.Key, err)
			return
		}
		f.rows[ref] = m
		rows[ref.Table]++
		f.maxNo[ref.Table] = max(f.maxNo[ref.Table], m.RowNo)
		if m.RowNo == 0 {
			bad("row %s %s has row number 0", ref.Table, ref.Key)
		}
		id := [2]uint64{uint64(ref.Table), m.RowNo}
		if other, dup := byNo[id]; dup {
			bad("rows %s and %s of %s share row number %d", other, ref.Key, ref.Table, m.RowNo)
		}
		byNo[id] = ref.Key
		if model.Indexed(ref.Table) {
			c, err := s.readContent(ref, &m)
			if err != nil {
				bad("content of %s %s: %v", ref.Table, ref.Key, err)
				return
			}
			if parent, ok := model.ParentOf(ref.Table, c); ok {
				wantChild[string(childKey(ref.Table, parent, m.RowNo))] = childValue(ref.Key, v)
				if m.Inline == nil {
					bad("row %s %s names a parent but its content is not inline", ref.Table, ref.Key)
				}
			}
		}
	})

	// Row counts.
	for _, t := range model.Tables() {
		var stored uint64
		v, closer, err := s.db.Get(countKey(t))
		switch {
		case errors.Is(err, pebble.ErrNotFound):
		case err != nil:
			bad("read count of %s: %v", t, err)
		default:
			stored = binary.BigEndian.Uint64(v)
			closer.Close()
		}
		if stored != rows[t] || s.Count(t) != rows[t] {
			bad("%s: stored count %d, Count() %d, but %d rows", t, stored, s.Count(t), rows[t])
		}
		if f.maxNo[t] >= s.nextRow[t] {
			bad("%s: next row number %d is not above the highest one, %d", t, s.nextRow[t], f.maxNo[t])
		}
	}

	// Number index: a bijection with the rows of the numbered tables; in
	// the others, entries of rows with that number, among them the
	// highest number (recover takes the next one from it).
	seen := 0
	var numberedRows int
	for id := range byNo {
		if numbered(model.Table(id[0])) {
			numberedRows++
		}
	}
	var lastNo [model.Config + 1]uint64
	scan(spaceNumber, func(k, v []byte) {
		if len(k) != 10 {
			bad("number index key %x", k)
			return
		}
		t, no := model.Table(k[1]), binary.BigEndian.Uint64(k[2:])
		key, ok := byNo[[2]uint64{uint64(t), no}]
		if !ok || !bytes.Equal(v, key[:]) {
			bad("number index %s %d -> %x names no row with that number (row there: %v)", t, no, v, ok)
			return
		}
		lastNo[t] = max(lastNo[t], no)
		if numbered(t) {
			seen++
		}
	})
	if seen != numberedRows {
		bad("number index has %d good entries for %d rows of numbered tables", seen, numberedRows)
	}
	for _, t := range model.Tables() {
		if lastNo[t] != f.maxNo[t] {
			bad("%s: the number index ends at %d, the highest row number is %d", t, lastNo[t], f.maxNo[t])
		}
	}

	// Change log: exactly one entry per row, at its stamp.
	seen = 0
	var maxStamp uint64
	scan(spaceStamp, func(k, v []byte) {
		if len(k) != 9 {
			bad("change-log key %x", k)
			return
		}
		stamp := binary.BigEndian.Uint64(k[1:])
		maxStamp = max(maxStamp, stamp)
		ref, _, err := decodeChange(v)
		if err != nil {
			bad("change-log entry %d: %v", stamp, err)
			return
		}
		m, ok := f.rows[ref]
		if !ok || m.Stamp != stamp {
			bad("change-log entry %d names %s %s, whose stamp is %d (exists %v): a stale or phantom entry", stamp, ref.Table, ref.Key, m.Stamp, ok)
			return
		}
		seen++
	})
	if seen != len(f.rows) {
		bad("change log has %d good entries for %d rows", seen, len(f.rows))
	}
	if maxStamp > s.stamp {
		bad("next stamp %d is not above the highest logged one, %d", s.stamp+1, maxStamp)
	}

	// Parent index: exactly what model.ParentOf says, each entry with
	// its row's current meta.
	scan(spaceChild, func(k, v []byte) {
		want, ok := wantChild[string(k)]
		if !ok || !bytes.Equal(v, want) {
			bad("parent index entry %x -> %x is not one model.ParentOf gives with the row's meta (want %x, %v)", k, v, want, ok)
			return
		}
		delete(wantChild, string(k))
	})
	for k, want := range wantChild {
		bad("parent index lacks %x -> %x", k, want)
	}
	if len(errs) > 0 {
		return f, fmt.Errorf("broken invariants (at most 20 listed):\n%w", errors.Join(errs...))
	}
	return f, nil
}

// mustInvariants fails the test if checkInvariants finds anything, then
// writes one new row to each table that has rows and checks that it gets a
// number above every number before (the crash did not let a number be
// handed out again).
func mustInvariants(t *testing.T, s *Store, when string) storeFacts {
	t.Helper()
	f, err := checkInvariants(s)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	for _, tb := range model.Tables() {
		if f.maxNo[tb] == 0 {
			continue
		}
		// Longer than a pair (model.PairContentSize), so it names no
		// parent.
		m := ins(tb, fmt.Sprintf("probe row written after %s, when the highest row number was %d, %x", when, f.maxNo[tb], make([]byte, model.PairContentSize)))
		res, err := s.Apply(context.Background(), []Mutation{m})
		if err != nil {
			t.Fatalf("%s: probe insert: %v", when, err)
		}
		if res[0].New && res[0].RowNo <= f.maxNo[tb] {
			t.Fatalf("%s: new %s row got number %d, not above %d from before the crash", when, tb, res[0].RowNo, f.maxNo[tb])
		}
	}
	return f
}

// TestCrashInvariants runs a mixed workload (receive rows, which the parent
// index lists, with a column raised and a counter added) from several
// writers, crashes while requests are in flight, reopens and checks
// (TEST-CATALOG 78, and the per-key history part of 80 at store level):
// the layout invariants (checkInvariants); row numbers above all earlier
// ones after the crash; for every row, its column ("higher dominates") and
// this site's count of its counter lie between what was acknowledged before
// the crash and what was attempted, and neither goes below what an earlier
// reopen showed; a row once seen keeps its number; no row appears that no
// request wrote.
func TestCrashInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fs := vfs.NewCrashableMem()
	type val struct{ seen, hits uint64 }
	var parents [3]model.Key
	for i := range parents {
		parents[i] = model.KeyOf(model.Body, []byte(fmt.Sprintf("parent %d", i)))
	}
	const workers = 4
	attempted := map[model.Key]val{} // highest values any request asked for
	acked := map[model.Key]val{}     // values of acknowledged requests
	observed := map[model.Key]val{}  // values seen after the last reopen
	rownos := map[model.Key]uint64{} // row numbers seen after a reopen
	var owned [workers][]model.Key   // each worker's rows known to exist
	var next [workers]int            // each worker's next new row
	owner := map[model.Key]int{}     // the worker that writes a row
	totalAcked, rowsChecked, lost, survived := 0, 0, 0, 0
	for round := 0; round < 30; round++ {
		s := openTest(t, fs)
		var (
			mu      sync.Mutex
			stopped bool
			wg      sync.WaitGroup
		)
		acks := make(chan struct{}, 1024)
		for w := 0; w < workers; w++ {
			seed := rng.Uint64()
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(w)))
				for i := 0; i < 200; i++ {
					var muts []Mutation
					var k model.Key
					var v val
					mu.Lock()
					if stopped {
						mu.Unlock()
						return
					}
					switch op := r.IntN(3); {
					case op == 0 || len(owned[w]) == 0:
						pk := model.KeyOf(model.Body, []byte(fmt.Sprintf("worker %d row %d", w, next[w])))
						next[w]++
						c := append(pk[:len(pk):len(pk)], parents[r.IntN(len(parents))][:]...)
						k = model.KeyOf(model.Receive, c)
						v = val{seen: 1, hits: uint64(1 + r.IntN(5))}
						muts = []Mutation{{Kind: Insert, Table: model.Receive, Content: c},
							{Kind: Set, Table: model.Receive, Key: k, Name: "seen", Value: v.seen},
							{Kind: Add, Table: model.Receive, Key: k, Name: "hits", Value: v.hits}}
						owned[w] = append(owned[w], k)
						owner[k] = w
						v.hits += attempted[k].hits
					case op == 1:
						k = owned[w][r.IntN(len(owned[w]))]
						v = attempted[k]
						v.seen++
						muts = []Mutation{{Kind: Set, Table: model.Receive, Key: k, Name: "seen", Value: v.seen}}
					default:
						k = owned[w][r.IntN(len(owned[w]))]
						d := uint64(1 + r.IntN(5))
						v = attempted[k]
						v.hits += d
						muts = []Mutation{{Kind: Add, Table: model.Receive, Key: k, Name: "hits", Value: d}}
					}
					a := attempted[k]
					attempted[k] = val{max(a.seen, v.seen), v.hits}
					mu.Unlock()
					res, err := s.Apply(context.Background(), muts)
					if err != nil {
						t.Errorf("Apply: %v", err)
						return
					}
					for _, x := range res {
						if x.NotFound {
							t.Errorf("row %s of worker %d not found", k, w)
							return
						}
					}
					mu.Lock()
					if !stopped {
						// Acknowledged before the crash below.
						a := acked[k]
						acked[k] = val{max(a.seen, v.seen), max(a.hits, v.hits)}
						totalAcked++
					}
					mu.Unlock()
					acks <- struct{}{}
				}
			}(w)
		}
		allDone := make(chan struct{})
		go func() { wg.Wait(); close(allDone) }()
		// Crash after a random number of acknowledgements, with requests
		// in flight: no new ones start once stopped is set.
		want := 5 + rng.IntN(80)
	wait:
		for n := 0; n < want; n++ {
			select {
			case <-acks:
			case <-allDone:
				break wait
			}
		}
		mu.Lock()
		stopped = true
		mu.Unlock()
		fs = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(2) * rng.IntN(101), RNG: rng})
		go func() {
			for range acks { // let workers finish
			}
		}()
		<-allDone
		close(acks)
		s.Close()
		if t.Failed() {
			return
		}

		s = openTest(t, fs)
		when := fmt.Sprintf("crash %d", round)
		f, err := checkInvariants(s)
		if err != nil {
			s.Close()
			t.Fatalf("%s: %v", when, err)
		}
		for k, lo := range acked {
			m, ok := f.rows[rowRef{model.Receive, k}]
			if !ok {
				t.Fatalf("%s: acknowledged row %s lost", when, k)
			}
			if got := m.State.Col("seen"); got < lo.seen {
				t.Fatalf("%s: row %s column seen = %d, below the acknowledged %d", when, k, got, lo.seen)
			}
			if got := m.State.Counter("hits"); got < lo.hits {
				t.Fatalf("%s: row %s counter hits = %d, below the acknowledged %d", when, k, got, lo.hits)
			}
		}
		for w := range owned {
			owned[w] = owned[w][:0]
		}
		for ref, m := range f.rows {
			if ref.Table != model.Receive || m.Size != model.PairContentSize {
				continue // a probe row of mustInvariants: the workload writes pairs
			}
			k := ref.Key
			hi, ok := attempted[k]
			got := val{m.State.Col("seen"), m.State.Counter("hits")}
			if !ok || got.seen > hi.seen || got.hits > hi.hits || got.seen == 0 || got.hits == 0 {
				t.Fatalf("%s: row %s has seen %d hits %d, but requests asked for at most %+v (known %v): a phantom or half request", when, k, got.seen, got.hits, hi, ok)
			}
			if prev := observed[k]; got.seen < prev.seen || got.hits < prev.hits {
				t.Fatalf("%s: row %s went back from %+v to %+v", when, k, prev, got)
			}
			if no, ok := rownos[k]; ok && no != m.RowNo {
				t.Fatalf("%s: row %s changed number from %d to %d", when, k, no, m.RowNo)
			}
			if lo := acked[k]; got != lo {
				survived++ // (part of) an unacknowledged request is on disk
			}
			observed[k], rownos[k] = got, m.RowNo
			// The state on disk is now the truth for later rounds: a
			// request that was in flight and survived is as if acknowledged.
			attempted[k], acked[k] = got, got
			rowsChecked++
		}
		for k := range observed {
			if _, ok := f.rows[rowRef{model.Receive, k}]; !ok {
				t.Fatalf("%s: row %s, seen after an earlier crash, is gone", when, k)
			}
		}
		// Rows lost with their unacknowledged inserts: forget them, so
		// later inserts of the same content start from zero.
		for k := range attempted {
			if _, ok := f.rows[rowRef{model.Receive, k}]; !ok {
				delete(attempted, k)
				lost++
			}
		}
		for k := range attempted {
			owned[owner[k]] = append(owned[owner[k]], k)
		}
		mustInvariants(t, s, when)
		s.Close()
	}
	t.Logf("%d acknowledged requests before crashes, %d row states checked, %d rows with an unacknowledged change kept, %d unacknowledged inserts lost", totalAcked, rowsChecked, survived, lost)
	if totalAcked == 0 || len(observed) == 0 {
		t.Fatal("nothing was acknowledged: the test checked nothing")
	}
}
