package store

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// BenchmarkApplyMail64: the store's writes of a received mail, 64 mails
// at once: the store batch (seven new rows: header, body, mail, received,
// msgid, receive, throw-in; the body 10 kB), the filter's verdict on the
// receive row, and smtpd's acknowledgement (two columns of the receive
// row, two of the throw-in row). cpu-µs/op is the process's CPU time per
// mail (getrusage), the figure that matters on a saturated machine; ns/op
// is mostly fsync waits.
func BenchmarkApplyMail64(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var seq atomic.Uint64
	body := make([]byte, 10240)
	ins := func(t model.Table, c []byte) Mutation {
		return Mutation{Kind: Insert, Table: t, Key: model.KeyOf(t, c), Content: c}
	}
	set := func(t model.Table, k model.Key, col string, v uint64) Mutation {
		return Mutation{Kind: Set, Table: t, Key: k, Name: col, Value: v}
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.SetParallelism(32) // 32 × GOMAXPROCS(2) = 64 callers
	b.ResetTimer()
	start := cpu()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			n := seq.Add(1)
			c := func(size int, tag byte) []byte {
				c := make([]byte, size)
				binary.BigEndian.PutUint64(c, n)
				c[8] = tag
				return c
			}
			b := append([]byte(nil), body...)
			binary.BigEndian.PutUint64(b, n)
			recv, throw := c(64, 'r'), c(300, 't')
			rk, tk := model.KeyOf(model.Receive, recv), model.KeyOf(model.ThrowIn, throw)
			muts := []Mutation{ins(model.Header, c(600, 'h')), ins(model.Body, b), ins(model.Mail, c(64, 'm')),
				ins(model.Received, c(200, 'd')), ins(model.MsgID, c(40, 'i')), ins(model.Receive, recv), ins(model.ThrowIn, throw)}
			steps := [][]Mutation{muts,
				{set(model.Receive, rk, model.ColVerdict, 5)},
				{set(model.Receive, rk, model.ColAcknowledged, 1), set(model.Receive, rk, "rcvd.x", 7),
					set(model.ThrowIn, tk, "reply", 250), set(model.ThrowIn, tk, "decide.ms", 3)}}
			for _, m := range steps {
				if _, err := s.Apply(ctx, m); err != nil {
					panic(err)
				}
			}
		}
	})
	b.ReportMetric(float64((cpu()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}
