package imapserver

// twinmx patch: COMPRESS=DEFLATE (RFC 4978). See TWINMX-PATCH.md.

import (
	"bytes"
	"compress/flate"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// CapCompressDeflate is advertised after login when Options.Compress is set.
const CapCompressDeflate imap.Cap = "COMPRESS=DEFLATE"

// ResponseCodeCompressionActive answers a second COMPRESS (RFC 4978 §3).
const ResponseCodeCompressionActive imap.ResponseCode = "COMPRESSIONACTIVE"

// Deflater compresses what the server sends once COMPRESS is active.
// Flush must end the current deflate block (a sync flush), so the client
// can decompress everything written so far.
type Deflater interface {
	io.Writer
	Flush() error
}

// compressWriter flushes the deflater at every write: the connection's
// bufio.Writer writes to it only when it is flushed (at the end of each
// response) or full, and the client must be able to read a response as
// soon as it is sent. While held (a FETCH writing its responses, see
// Conn.hold) the writes of full buffers are deflated without a flush,
// and the next write after the hold, which a flush of the bufio.Writer
// makes, flushes them all.
//
// Its lock and close keep a deflater given back from being written once
// more: deflaters are reused by other connections, and a write that came
// late (an update written by another goroutine as the connection ends)
// would otherwise land in another user's stream.
type compressWriter struct {
	mu   sync.Mutex
	d    Deflater // nil once given back
	held bool
}

func (w *compressWriter) hold(on bool) {
	w.mu.Lock()
	w.held = on
	w.mu.Unlock()
}

func (w *compressWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.d == nil {
		return 0, net.ErrClosed
	}
	n, err := w.d.Write(p)
	if err != nil || w.held {
		return n, err
	}
	return n, w.d.Flush()
}

// close stops w's writes, then gives its deflater back.
func (w *compressWriter) close(release func()) {
	w.mu.Lock()
	w.d = nil
	w.mu.Unlock()
	release()
}

func (c *Conn) handleCompress(tag string, dec *imapwire.Decoder) error {
	var mech string
	if !dec.ExpectSP() || !dec.ExpectAtom(&mech) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	newDeflater := c.server.options.Compress
	if newDeflater == nil {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	if !strings.EqualFold(mech, "DEFLATE") {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown compression mechanism"}
	}
	if c.compressRelease != nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: ResponseCodeCompressionActive, Text: "DEFLATE active already"}
	}

	// Nothing else may be written until the streams are switched: keep
	// c.encMutex locked until the end, as STARTTLS does.
	enc := newResponseEncoder(c)
	defer enc.end()

	c.mutex.Lock()
	raw := c.conn
	c.mutex.Unlock()
	d, release, err := newDeflater(raw)
	if err != nil {
		return err
	}
	if err := writeStatusResp(enc.Encoder, tag, &imap.StatusResponse{
		Type: imap.StatusResponseTypeOK,
		Text: "DEFLATE active",
	}); err != nil {
		release()
		return err
	}

	// Bytes already read past the command line are the client's first
	// compressed bytes.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, c.br, int64(c.br.Buffered())); err != nil {
		panic(err) // unreachable
	}
	newInflater := c.server.options.Inflate
	if newInflater == nil {
		newInflater = flate.NewReader
	}
	inflater := newInflater(io.MultiReader(&buf, raw))
	cw := &compressWriter{d: d}
	c.compressW = cw // c.encMutex is held (enc)
	c.compressRelease = func() {
		inflater.Close()
		cw.close(release)
	}
	rw := c.server.options.wrapReadWriter(struct {
		io.Reader
		io.Writer
	}{
		Reader: inflater,
		Writer: cw,
	})
	c.br.Reset(rw)
	c.bw.Reset(rw)
	return nil
}
