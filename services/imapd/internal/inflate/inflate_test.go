package inflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// limitedBuffer fails a write past 1 MiB: a few bytes of deflate can
// stand for megabytes (a fuzz input must not take minutes).
type limitedBuffer struct{ bytes.Buffer }

var errTooMuch = errors.New("more than 1 MiB decoded")

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > 1<<20 {
		return 0, errTooMuch
	}
	return b.Buffer.Write(p)
}

// decodeAll decodes data whole (at most 1 MiB of it), without the
// goroutine and pipe.
func decodeAll(data []byte) ([]byte, error) {
	var out limitedBuffer
	d := &decoder{in: bufio.NewReader(bytes.NewReader(data)), out: &out}
	err := d.run()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return out.Bytes(), err
}

func testInputs() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 100<<10)
	for i := range random {
		random[i] = byte(r.IntN(256))
	}
	text := []byte(strings.Repeat("a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)])\r\n", 2000))
	mixed := append(append([]byte{}, text[:7000]...), random[:50000]...)
	return [][]byte{nil, []byte("x"), []byte("c NAMESPACE\r\n"), text, random, mixed, bytes.Repeat([]byte{0}, 70000)}
}

// TestRoundTrip: what compress/flate writes, at every level (stored,
// Huffman only, fixed and dynamic blocks, matches across the whole
// window), decodes to the input.
func TestRoundTrip(t *testing.T) {
	for _, in := range testInputs() {
		for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, 1, 5, 9} {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, level)
			w.Write(in)
			w.Close()
			got, err := decodeAll(buf.Bytes())
			if err != nil || !bytes.Equal(got, in) {
				t.Errorf("level %d, %d bytes: decoded %d bytes, %v", level, len(in), len(got), err)
			}
		}
	}
}

// blockingReader hands out its data, then blocks until closed: a client
// that has sent a command and waits for the answer.
type blockingReader struct {
	data []byte
	stop chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		<-b.stop
		return 0, io.EOF
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

// TestPartialFlush: a command ended by zlib's Z_PARTIAL_FLUSH (these
// bytes: Python's zlib.compressobj(6, DEFLATED, -15), compress() of the
// command and flush(Z_PARTIAL_FLUSH)) is handed out whole while the
// client waits; compress/flate holds it.
func TestPartialFlush(t *testing.T) {
	partial := []byte{0x4a, 0x56, 0xf0, 0x73, 0xf4, 0x75, 0x0d, 0x0e, 0x70, 0x74, 0x76, 0xe5, 0xe5, 0x02, 0x08}
	read := func(r io.Reader) chan string {
		got := make(chan string, 1)
		go func() {
			buf := make([]byte, 64)
			n, _ := io.ReadAtLeast(r, buf, len("c NAMESPACE\r\n"))
			got <- string(buf[:n])
		}()
		return got
	}
	src := &blockingReader{data: partial, stop: make(chan struct{})}
	defer close(src.stop)
	r := NewReader(src)
	defer r.Close()
	select {
	case s := <-read(r):
		if s != "c NAMESPACE\r\n" {
			t.Errorf("decoded %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not come out while the client waited")
	}
	std := &blockingReader{data: partial, stop: make(chan struct{})}
	defer close(std.stop)
	select {
	case s := <-read(flate.NewReader(std)):
		t.Logf("compress/flate gave %q: it no longer holds a partial flush", s)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSyncFlushes: commands written one by one with sync flushes, as a
// client does, each come out before the next is sent.
func TestSyncFlushes(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewReader(pr)
	defer r.Close()
	w, _ := flate.NewWriter(pw, 6)
	br := bufio.NewReader(r)
	cmds := make(chan string)
	go func() { // the client: one command at a time, each flushed
		for cmd := range cmds {
			w.Write([]byte(cmd))
			w.Flush()
		}
		pw.Close()
	}()
	defer close(cmds)
	for i := range 50 {
		cmd := strings.Repeat("x", i*37) + "\r\n"
		cmds <- cmd
		got, err := br.ReadString('\n')
		if err != nil || got != cmd {
			t.Fatalf("command %d: %q, %v", i, got, err)
		}
	}
}

// bitWriter writes deflate's bit order: values lowest bit first, Huffman
// codes highest bit first.
type bitWriter struct {
	out   []byte
	nbits uint
}

func (w *bitWriter) bits(v uint32, n uint) *bitWriter {
	for i := uint(0); i < n; i++ {
		if w.nbits%8 == 0 {
			w.out = append(w.out, 0)
		}
		w.out[len(w.out)-1] |= byte(v>>i&1) << (w.nbits % 8)
		w.nbits++
	}
	return w
}

// code writes a Huffman code of n bits, highest bit first.
func (w *bitWriter) code(v uint32, n uint) *bitWriter {
	for i := n; i > 0; i-- {
		w.bits(v>>(i-1)&1, 1)
	}
	return w
}

// TestCorrupt: malformed streams are errors wrapping ErrCorrupt (a
// truncated one io.ErrUnexpectedEOF), never a hang or a panic.
func TestCorrupt(t *testing.T) {
	// Fixed codes: literal 0-143 are 8 bits from 0x30, length symbols
	// 257-279 are 7 bits from 1, distances 5 bits.
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"block type 3", new(bitWriter).bits(1, 1).bits(3, 2).out, ErrCorrupt},
		{"stored length", []byte{0x01, 0x05, 0x00, 0x00, 0x00}, ErrCorrupt},
		{"distance before the stream", new(bitWriter).bits(1, 1).bits(1, 2).
			code(0x30+'a', 8). // one literal
			code(1, 7).        // length 3
			code(1, 5).        // distance 2
			code(0, 7).out, ErrCorrupt},
		{"length symbol 286", new(bitWriter).bits(1, 1).bits(1, 2).code(0xc6, 8).out, ErrCorrupt},
		{"distance symbol 30", new(bitWriter).bits(1, 1).bits(1, 2).code(0x30+'a', 8).code(1, 7).code(30, 5).out, ErrCorrupt},
		{"over-subscribed code length code", new(bitWriter).bits(1, 1).bits(2, 2).
			bits(0, 5).bits(0, 5).bits(15, 4).                                    // 257, 1, 19 code length codes
			bits(0x249249, 24).bits(0x249249, 24).bits(0x49, 9).out, ErrCorrupt}, // 19 lengths of 1
		{"no code length code", new(bitWriter).bits(1, 1).bits(2, 2).
			bits(0, 5).bits(0, 5).bits(15, 4).bits(0, 3*19).bits(0, 16).out, ErrCorrupt},
		{"repeat first", new(bitWriter).bits(1, 1).bits(2, 2).
			bits(0, 5).bits(0, 5).bits(0, 4). // 4 code length codes: 16, 17, 18, 0
			bits(1, 3).bits(1, 3).bits(0, 3).bits(0, 3).
			code(0, 1).out, ErrCorrupt}, // symbol 16 (code 0) first
		{"truncated", []byte{0x4a, 0x56}, io.ErrUnexpectedEOF},
		{"stored, data missing", []byte{0x01, 0x05, 0x00, 0xfa, 0xff, 'a'}, io.ErrUnexpectedEOF},
		{"empty", nil, io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeAll(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("decoding %x: %v, want %v", c.in, err, c.want)
			}
			if _, stdErr := io.ReadAll(flate.NewReader(bytes.NewReader(c.in))); stdErr == nil {
				t.Errorf("compress/flate decodes %x: the case is not corrupt", c.in)
			}
		})
	}
}

// FuzzInflate: any input decodes without a panic; when compress/flate
// decodes it whole, this decoder gives the same bytes.
func FuzzInflate(f *testing.F) {
	for _, in := range testInputs() {
		for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, 1, 9} {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, level)
			w.Write(in[:min(len(in), 2000)])
			w.Close()
			f.Add(buf.Bytes())
		}
	}
	f.Add([]byte{0x4a, 0x56, 0xf0, 0x73, 0xf4, 0x75, 0x0d, 0x0e, 0x70, 0x74, 0x76, 0xe5, 0xe5, 0x02, 0x08})
	f.Add([]byte{0x07})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := decodeAll(in)
		want, stdErr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(in)), 1<<20))
		if stdErr == nil && len(want) < 1<<20 {
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("compress/flate decodes %x to %d bytes; this decoder %d bytes, %v", in, len(want), len(got), err)
			}
		}
	})
}

// TestCloseEndsDecoder: closing the reader ends the decoding goroutine
// even while it waits to hand out output nobody reads (a client's stream
// that inflates to far more than imapd takes before it hangs up).
func TestCloseEndsDecoder(t *testing.T) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, 9)
	w.Write(bytes.Repeat([]byte("x"), 10<<20))
	w.Close()
	before := runtime.NumGoroutine()
	r := NewReader(bytes.NewReader(buf.Bytes()))
	if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	for end := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d goroutines after Close, %d before NewReader", runtime.NumGoroutine(), before)
		}
	}
}

// BenchmarkInflate decodes 300 corpus mails deflated at level 6 (what a
// client APPENDing them sends) with this decoder and, as the baseline,
// compress/flate's. The figure is MB/s of decoded bytes.
func BenchmarkInflate(b *testing.B) {
	var in []byte
	for _, m := range proctest.Corpus(b)[:300] {
		in = append(in, m.Raw...)
	}
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, 6)
	w.Write(in)
	w.Close()
	b.Run("inflate", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			if _, err := io.Copy(io.Discard, NewReader(bytes.NewReader(buf.Bytes()))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compress-flate", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			if _, err := io.Copy(io.Discard, flate.NewReader(bytes.NewReader(buf.Bytes()))); err != nil {
				b.Fatal(err)
			}
		}
	})
}
