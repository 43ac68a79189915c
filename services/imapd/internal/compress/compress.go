// Package compress gives imapd's sessions the deflaters of COMPRESS=DEFLATE
// (RFC 4978): github.com/klauspost/compress/flate at its fastest level,
// reused across sessions, and at most a set number at once, because each
// holds about 0.8 MiB while its session lasts.
package compress

import (
	"io"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/klauspost/compress/flate"
	"github.com/prometheus/client_golang/prometheus"
)

// Level is the deflate level: the fastest. On corpus mail it sends 28 % of
// the bytes where level 6 sends 24 %, for less CPU a byte (figures in
// docs/imapd.md, "COMPRESS"): a server with many clients runs out of CPU
// before a client's link runs out of bandwidth.
const Level = flate.BestSpeed

// Pool hands out deflaters, at most max at once.
type Pool struct {
	slots  chan struct{}
	free   sync.Pool // *flate.Writer
	active prometheus.Gauge
}

// New returns a Pool of at most max deflaters; active counts those in use.
func New(max int, active prometheus.Gauge) *Pool {
	return &Pool{slots: make(chan struct{}, max), active: active}
}

// errBusy answers COMPRESS when every slot is taken; the client goes on
// uncompressed.
var errBusy = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Too many compressed sessions; going on uncompressed"}

// Deflater is imapserver.Options.Compress: a deflater writing to w, and
// the function that gives it back when the connection ends.
func (p *Pool) Deflater(w io.Writer) (imapserver.Deflater, func(), error) {
	select {
	case p.slots <- struct{}{}:
	default:
		return nil, nil, errBusy
	}
	d, _ := p.free.Get().(*flate.Writer)
	if d == nil {
		var err error
		if d, err = flate.NewWriter(w, Level); err != nil {
			<-p.slots
			return nil, nil, err // unreachable: Level is valid
		}
	} else {
		d.Reset(w)
	}
	p.active.Inc()
	var once sync.Once
	release := func() {
		once.Do(func() {
			d.Reset(io.Discard) // drop the connection, keep the memory
			p.free.Put(d)
			p.active.Dec()
			<-p.slots
		})
	}
	return d, release, nil
}
