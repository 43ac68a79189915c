package store

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twinmx/twinmx/pkg/model"
)

// BenchmarkApplyInsert64 measures find-or-insert of 1 KiB rows through the
// store's group-commit writer with 64 concurrent callers, on the real disk.
// Compare with BenchmarkPebbleSync64, the baseline of the same run.
func BenchmarkApplyInsert64(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var seq atomic.Uint64
	b.SetParallelism(32) // 32 × GOMAXPROCS(2) = 64 callers
	b.SetBytes(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 1024)
		for pb.Next() {
			binary.BigEndian.PutUint64(buf, seq.Add(1))
			if _, err := s.Apply(context.Background(), []Mutation{{Kind: Insert, Table: model.Body, Content: buf}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPebbleSync64 is the baseline: the same rows committed straight
// to Pebble with pebble.Sync by 64 concurrent callers.
func BenchmarkPebbleSync64(b *testing.B) {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: pebbleLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var seq atomic.Uint64
	b.SetParallelism(32)
	b.SetBytes(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 1024)
		for pb.Next() {
			binary.BigEndian.PutUint64(buf, seq.Add(1))
			k := model.KeyOf(model.Body, buf)
			if err := db.Set(k[:], buf, pebble.Sync); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFindFive: five point reads of random rows under one view (what
// op mail does per mail), through Pebble's Snapshot.Get (the baseline: an
// iterator stack built per read) and through View.Find (one iterator kept
// for the view). 20,000 rows of 512 bytes, flushed to sstables.
func BenchmarkFindFive(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var keys []model.Key
	for i := range 200 {
		var ms []Mutation
		for j := range 100 {
			c := make([]byte, 512)
			binary.BigEndian.PutUint64(c, uint64(i*100+j))
			ms = append(ms, Mutation{Kind: Insert, Table: model.Body, Content: c})
			keys = append(keys, model.KeyOf(model.Body, c))
		}
		if _, err := s.Apply(context.Background(), ms); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	read := func(b *testing.B, find func(v *View, k model.Key) bool) {
		n := 0
		for b.Loop() {
			v, err := s.View()
			if err != nil {
				b.Fatal(err)
			}
			for range 5 {
				n = (n + 7919) % len(keys)
				if !find(v, keys[n]) {
					b.Fatal("row not found")
				}
			}
			v.Close()
		}
	}
	b.Run("snapshot-get", func(b *testing.B) {
		read(b, func(v *View, k model.Key) bool {
			_, ok, err := getMeta(v.snap, rowRef{model.Body, k})
			return ok && err == nil
		})
	})
	b.Run("view-find", func(b *testing.B) {
		read(b, func(v *View, k model.Key) bool {
			_, ok, err := v.Find(model.Body, k)
			return ok && err == nil
		})
	})
}
