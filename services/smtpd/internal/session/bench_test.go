package session

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
)

// BenchmarkRcptCached is one RCPT whose mailbox lookup is answered from
// the cache, as under load (every mail of a busy MX goes to a few
// mailboxes): smtpd's own work for the command, without dbd.
func BenchmarkRcptCached(b *testing.B) {
	be := NewBackend(context.Background(), Config{MailboxTTL: time.Hour, Metrics: metrics.New(prometheus.NewRegistry())}, &fakeDB{})
	s := &Session{b: be, ctx: context.Background()}
	b.ReportAllocs()
	for b.Loop() {
		s.txn = &txn{}
		if err := s.Rcpt("bench@twinmx.test", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadData reads a 10 kB message into a pooled buffer under the
// memory budget, as Data does when memory is free.
func BenchmarkReadData(b *testing.B) {
	be := NewBackend(context.Background(), Config{Budget: NewBudget(144 << 20), Metrics: metrics.New(prometheus.NewRegistry())}, &fakeDB{})
	s := &Session{b: be, ctx: context.Background()}
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 10240/38)
	var r bytes.Reader
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(msg)
		raw, release, err := s.readData(&r, 0)
		if err != nil || len(raw) != len(msg) {
			b.Fatal(err)
		}
		release()
	}
}
