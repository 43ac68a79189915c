package compress

import (
	"bytes"
	stdflate "compress/flate"
	"errors"
	"io"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/klauspost/compress/flate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestPool: at most max deflaters at once, the next refused with NO
// [LIMIT]; a release (twice is harmless) frees the slot, and a reused
// deflater writes only to its new connection, from a clean state.
func TestPool(t *testing.T) {
	active := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	p := New(2, active)
	var a, b, c bytes.Buffer
	da, ra, err := p.Deflater(&a)
	if err != nil {
		t.Fatal(err)
	}
	_, rb, err := p.Deflater(&b)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Deflater(&c)
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeLimit {
		t.Fatalf("third deflater: %v, want NO [LIMIT]", err)
	}
	if got := testutil.ToFloat64(active); got != 2 {
		t.Errorf("active = %v, want 2", got)
	}
	da.Write([]byte("first session, half written"))
	ra()
	ra()
	if got := testutil.ToFloat64(active); got != 1 {
		t.Errorf("active after a release (twice) = %v, want 1", got)
	}
	a.Reset()
	dc, rc, err := p.Deflater(&c)
	if err != nil {
		t.Fatalf("deflater after a release: %v", err)
	}
	defer rc()
	defer rb()
	msg := []byte("* 1 FETCH (BODY[] {5}\r\nhello)\r\n")
	if _, err := dc.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := dc.Flush(); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 0 {
		t.Errorf("a released deflater wrote %d bytes to its old connection", a.Len())
	}
	got, err := io.ReadAll(io.LimitReader(stdflate.NewReader(&c), int64(len(msg))))
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("inflated %q, %v; want %q", got, err, msg)
	}
}

// BenchmarkDeflate deflates corpus mails as a FETCH BODY[] answer does
// (a write and a sync flush a mail) with imapd's deflater (klauspost,
// Level) beside the standard library at level 6 (zlib's default, which
// Dovecot's COMPRESS uses) and at level 1, in one run. Figures: MB/s of
// mail, and wire-% (compressed bytes as a share of the mail's).
func BenchmarkDeflate(b *testing.B) {
	corpus := proctest.Corpus(b)
	var mails [][]byte
	total := 0
	for _, m := range corpus[:min(1000, len(corpus))] {
		mails = append(mails, m.Raw)
		total += len(m.Raw)
	}
	type deflater interface {
		io.Writer
		Flush() error
		Reset(io.Writer)
	}
	for _, c := range []struct {
		name string
		new  func(w io.Writer) (deflater, error)
	}{
		{"imapd", func(w io.Writer) (deflater, error) { return flate.NewWriter(w, Level) }},
		{"stdlib-1", func(w io.Writer) (deflater, error) { return stdflate.NewWriter(w, 1) }},
		{"stdlib-6", func(w io.Writer) (deflater, error) { return stdflate.NewWriter(w, 6) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var out counter
			d, err := c.new(&out)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(total))
			for i := 0; i < b.N; i++ {
				out = 0
				d.Reset(&out)
				for _, m := range mails {
					d.Write(m)
					d.Flush()
				}
			}
			b.ReportMetric(100*float64(out)/float64(total), "wire-%")
		})
	}
}

type counter int

func (c *counter) Write(p []byte) (int, error) { *c += counter(len(p)); return len(p), nil }
