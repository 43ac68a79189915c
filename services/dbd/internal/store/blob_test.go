package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestCrashKeepsAcknowledgedBlobs is TestCrashKeepsAcknowledged for
// contents kept in blob files (see valueSeparation): large contents are
// written while memtables are flushed, the machine "crashes" at a random
// moment (only synced data survives, sometimes with part of the unsynced),
// and every acknowledged content must read back byte for byte, from the
// WAL or from a blob file.
func TestCrashKeepsAcknowledgedBlobs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	fs := vfs.NewCrashableMem()
	var mu sync.Mutex
	acked := map[model.Key][]byte{}
	for round := 0; round < 10; round++ {
		s := openTest(t, fs)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			seed := rng.Uint64()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, 0))
				for i := 0; i < 20; i++ {
					c := make([]byte, inlineMax+1+r.IntN(20<<10))
					for j := range c {
						c[j] = byte(r.Uint32())
					}
					m := Mutation{Kind: Insert, Table: model.Body, Content: c}
					if _, err := s.Apply(context.Background(), []Mutation{m}); err != nil {
						t.Errorf("Apply: %v", err)
						return
					}
					mu.Lock()
					acked[model.KeyOf(model.Body, c)] = c
					mu.Unlock()
					if i%5 == 4 {
						// A flush writes the contents to a blob file.
						if err := s.db.Flush(); err != nil {
							t.Errorf("Flush: %v", err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			s.Close()
			return
		}
		fs = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(2) * rng.IntN(101), RNG: rng})
		if round == 0 && s.db.Metrics().BlobFiles.LiveCount == 0 {
			t.Fatal("no blob file written: the test does not test blob files")
		}
		s.Close()
		s = openTest(t, fs)
		mustInvariants(t, s, fmt.Sprintf("crash %d", round))
		for k, want := range acked {
			if got := content(t, s, model.Body, k); !bytes.Equal(got, want) {
				t.Fatalf("round %d: acknowledged content %s read back as %d bytes, want %d", round, k, len(got), len(want))
			}
		}
		s.Close()
	}
}
