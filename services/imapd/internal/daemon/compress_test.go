package daemon

import (
	"bufio"
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingReader counts the bytes read through it: the compressed bytes
// on the wire.
type countingReader struct {
	r   io.Reader
	n   atomic.Int64
	rec *bytes.Buffer // if set, keeps the bytes read (the reading goroutine's only)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if c.rec != nil {
		c.rec.Write(p[:n])
	}
	return n, err
}

// compress sends COMPRESS DEFLATE, requires its OK, and switches r to
// deflate both ways (compress/flate, the other implementation than
// imapd's); it returns the counter of compressed bytes read.
func (r *raw) compress(tag string) *countingReader {
	r.t.Helper()
	r.send(tag + " COMPRESS DEFLATE\r\n")
	if l := r.line(); !strings.HasPrefix(l, tag+" OK") {
		r.t.Fatalf("COMPRESS answered %q", l)
	}
	if r.br.Buffered() > 0 {
		rest, _ := r.br.Peek(r.br.Buffered())
		r.t.Fatalf("bytes after the COMPRESS answer before the switch: %q", rest)
	}
	cr := &countingReader{r: r.c}
	r.br = bufio.NewReader(flate.NewReader(cr))
	z, err := flate.NewWriter(r.c, flate.DefaultCompression)
	if err != nil {
		r.t.Fatal(err)
	}
	r.z = z
	return cr
}

// deliverRepeating delivers mails 1..n, mail i with the line format
// (given i) repeated reps times as its text, and returns them by number.
func deliverRepeating(k *kit, n int, format string, reps int) map[int]string {
	want := map[int]string{}
	for i := 1; i <= n; i++ {
		m := mail(i) + strings.Repeat(fmt.Sprintf(format, i), reps)
		k.deliver(m)
		want[i] = m
	}
	return want
}

func capabilities(r *raw, tag string) string {
	r.t.Helper()
	r.send(tag + " CAPABILITY\r\n")
	untagged, tagged := r.answer(tag)
	if !strings.HasPrefix(tagged, tag+" OK") || len(untagged) != 1 {
		r.t.Fatalf("CAPABILITY: %q, %q", untagged, tagged)
	}
	return untagged[0]
}

// TestCompressDeflate: COMPRESS=DEFLATE (RFC 4978) is offered after login;
// once active, commands and answers go through deflate both ways, every
// mail comes back byte for byte in fewer bytes, a second COMPRESS is
// refused with [COMPRESSIONACTIVE], and the deflater is given back when
// the session ends.
func TestCompressDeflate(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CompressSessions = 10 })
	const n = 40
	want := deliverRepeating(k, n, "Line %d of a text that repeats, as text in mail does.\r\n", 50)
	r := k.raw()
	if c := capabilities(r, "a"); strings.Contains(c, "COMPRESS") {
		t.Errorf("COMPRESS offered before login: %q", c)
	}
	r.send(fmt.Sprintf("b LOGIN %s %q\r\n", login, password))
	r.until("b OK")
	if c := capabilities(r, "c"); !strings.Contains(c, " COMPRESS=DEFLATE") {
		t.Errorf("COMPRESS=DEFLATE not offered after login: %q", c)
	}
	wire := r.compress("d")
	if got := gaugeValue(t, k, "twinmx_imapd_compressed_sessions"); got != 1 {
		t.Errorf("compressed sessions = %v, want 1", got)
	}
	r.send("e SELECT INBOX\r\n")
	if _, tagged := r.answer("e"); !strings.HasPrefix(tagged, "e OK") {
		t.Fatalf("SELECT inside deflate: %q", tagged)
	}
	before := wire.n.Load()
	r.send("f FETCH 1:* BODY.PEEK[]\r\n")
	untagged, tagged := r.answer("f")
	if !strings.HasPrefix(tagged, "f OK") {
		t.Fatalf("FETCH inside deflate: %q", tagged)
	}
	got := fetchedBodies(untagged)
	plain := 0
	for i := 1; i <= n; i++ {
		if got[i] != want[i] {
			t.Errorf("mail %d came back changed through deflate", i)
		}
		plain += len(want[i])
	}
	if sent := wire.n.Load() - before; sent*3 > int64(plain) {
		t.Errorf("FETCH of %d bytes of mail took %d compressed bytes; want less than a third", plain, sent)
	} else {
		t.Logf("FETCH of %d bytes of mail in %d compressed bytes", plain, sent)
	}
	r.send("g COMPRESS DEFLATE\r\n")
	if _, tagged := r.answer("g"); !strings.HasPrefix(tagged, "g NO [COMPRESSIONACTIVE]") {
		t.Errorf("second COMPRESS answered %q, want NO [COMPRESSIONACTIVE]", tagged)
	}
	if c := capabilities(r, "h"); strings.Contains(c, "COMPRESS") {
		t.Errorf("COMPRESS still offered while active: %q", c)
	}
	r.send("i LOGOUT\r\n")
	r.until("i OK")
	waitGauge(t, k, "twinmx_imapd_compressed_sessions", 0)
}

// TestCompressFetchHeld: under COMPRESS, the responses of a FETCH of many
// mails are deflated as one stream, not each ended by a sync flush (the
// empty stored block 00 00 FF FF that makes everything sent so far
// readable): a flush a response cost some 40 % of the deflater's CPU and
// a few bytes each. Commands after the FETCH are still answered at once.
func TestCompressFetchHeld(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CompressSessions = 10 })
	const n = 60
	want := deliverRepeating(k, n, "Line %d of a short mail.\r\n", 5)
	r := k.raw()
	r.send(fmt.Sprintf("a LOGIN %s %q\r\n", login, password))
	r.until("a OK")
	wire := r.compress("b")
	r.send("c SELECT INBOX\r\n")
	if _, tagged := r.answer("c"); !strings.HasPrefix(tagged, "c OK") {
		t.Fatalf("SELECT: %q", tagged)
	}
	wire.rec = new(bytes.Buffer)
	r.send("d FETCH 1:* BODY.PEEK[]\r\n")
	untagged, tagged := r.answer("d")
	if !strings.HasPrefix(tagged, "d OK") {
		t.Fatalf("FETCH: %q", tagged)
	}
	for i, body := range fetchedBodies(untagged) {
		if body != want[i] {
			t.Errorf("mail %d came back changed", i)
		}
	}
	if got := len(fetchedBodies(untagged)); got != n {
		t.Fatalf("FETCH returned %d mails, want %d", got, n)
	}
	// The mails are small: without the hold every one of the 60
	// responses ended in a sync flush; with it, the buffers that filled
	// and the tagged answer do.
	flushes := bytes.Count(wire.rec.Bytes(), []byte{0, 0, 0xff, 0xff})
	if flushes > 6 {
		t.Errorf("FETCH of %d mails took %d sync flushes (%d compressed bytes); want the responses deflated together", n, flushes, wire.rec.Len())
	} else {
		t.Logf("FETCH of %d mails: %d sync flushes, %d compressed bytes", n, flushes, wire.rec.Len())
	}
	wire.rec = nil
	// The hold ends with the FETCH: the next answer comes whole.
	r.send("e NOOP\r\n")
	r.until("e OK")
	r.send("f FETCH 2 (UID)\r\n")
	if untagged, tagged := r.answer("f"); !strings.HasPrefix(tagged, "f OK") || len(untagged) != 1 {
		t.Fatalf("FETCH after the hold: %q, %q", untagged, tagged)
	}
}

// TestCompressRefusals: COMPRESS before login, with another mechanism or
// past --compress-sessions is refused, and the session goes on
// uncompressed; a slot given back is taken again; with COMPRESS off it
// is neither offered nor known.
func TestCompressRefusals(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CompressSessions = 1 })
	r := k.raw()
	r.send("a COMPRESS DEFLATE\r\n")
	if _, tagged := r.answer("a"); !strings.HasPrefix(tagged, "a BAD") {
		t.Errorf("COMPRESS before login answered %q, want BAD", tagged)
	}
	r.send(fmt.Sprintf("b LOGIN %s %q\r\n", login, password))
	r.until("b OK")
	r.send("c COMPRESS LZ4\r\n")
	if _, tagged := r.answer("c"); !strings.HasPrefix(tagged, "c BAD") {
		t.Errorf("COMPRESS LZ4 answered %q, want BAD", tagged)
	}
	r.compress("d")

	second := k.rawLogin()
	second.send("e COMPRESS DEFLATE\r\n")
	if _, tagged := second.answer("e"); !strings.HasPrefix(tagged, "e NO [LIMIT]") {
		t.Errorf("COMPRESS past the limit answered %q, want NO [LIMIT]", tagged)
	}
	second.send("f NOOP\r\n")
	if _, tagged := second.answer("f"); !strings.HasPrefix(tagged, "f OK") {
		t.Errorf("NOOP after a refused COMPRESS: %q", tagged)
	}

	r.send("g LOGOUT\r\n")
	r.until("g OK")
	waitGauge(t, k, "twinmx_imapd_compressed_sessions", 0)
	third := k.rawLogin()
	third.compress("h")
	third.send("i NOOP\r\n")
	if _, tagged := third.answer("i"); !strings.HasPrefix(tagged, "i OK") {
		t.Errorf("NOOP in a session compressed with a slot given back: %q", tagged)
	}

	off := start(t) // COMPRESS off: the default
	o := off.rawLogin()
	if c := capabilities(o, "j"); strings.Contains(c, "COMPRESS") {
		t.Errorf("COMPRESS offered with it off: %q", c)
	}
	o.send("k COMPRESS DEFLATE\r\n")
	if _, tagged := o.answer("k"); !strings.HasPrefix(tagged, "k BAD") {
		t.Errorf("COMPRESS with it off answered %q, want BAD", tagged)
	}
}

// TestCompressGarbage: bytes that are not deflate after the switch, or a
// stream that inflates to a huge command, end that connection only; the
// slot is given back and other sessions are served.
func TestCompressGarbage(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CompressSessions = 10 })
	for name, send := range map[string]func(r *raw){
		"not deflate": func(r *raw) { r.c.Write([]byte("e NOOP\r\n\xff\xff\xff\xff garbage")) },
		// 64 MiB of one byte inflates from a few kB: the command line
		// limit (50 KiB) ends it long before.
		"bomb": func(r *raw) {
			r.send("e NOOP ")
			chunk := strings.Repeat("x", 1<<20)
			for range 64 {
				if _, err := r.z.Write([]byte(chunk)); err != nil {
					return // the server closed: expected
				}
			}
			r.z.Flush()
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := k.rawLogin()
			r.compress("d")
			send(r)
			r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				if _, err := r.br.ReadString('\n'); err != nil {
					break // closed by imapd
				}
			}
			waitGauge(t, k, "twinmx_imapd_compressed_sessions", 0)
			other := k.rawLogin()
			other.send("z NOOP\r\n")
			if _, tagged := other.answer("z"); !strings.HasPrefix(tagged, "z OK") {
				t.Errorf("another session after %s: %q", name, tagged)
			}
		})
	}
}

// waitGauge waits up to 10 s for the gauge name to read want.
func waitGauge(t *testing.T, k *kit, name string, want float64) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := gaugeValue(t, k, name)
		if got == want {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestCompressPartialFlush: a client that ends its commands with zlib's
// Z_PARTIAL_FLUSH (an empty fixed block, as mbsync does) gets its answer;
// with compress/flate's inflater the command waited until the session
// timed out. The bytes are Python's zlib.compressobj(6, DEFLATED, -15):
// compress(b"c NAMESPACE\r\n") + flush(Z_PARTIAL_FLUSH).
func TestCompressPartialFlush(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CompressSessions = 10 })
	r := k.rawLogin()
	r.compress("b")
	r.c.Write([]byte{0x4a, 0x56, 0xf0, 0x73, 0xf4, 0x75, 0x0d, 0x0e, 0x70, 0x74, 0x76, 0xe5, 0xe5, 0x02, 0x08})
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, tagged := r.answer("c"); !strings.HasPrefix(tagged, "c OK") {
		t.Fatalf("NAMESPACE sent with a partial flush: %q", tagged)
	}
}

// TestCompressReuseAfterIdle: a compressed session in IDLE whose client
// hangs up while new mail is being announced gives its deflater back, and
// the next session that takes it (the limit is 1) gets a clean stream,
// twenty times. It fails when a reused deflater is not reset to its new
// connection. The patch also refuses writes to a deflater given back, so
// that a late update of the first session can never reach another user's
// stream. go-imap's IDLE returns on a failed read without waiting for the
// session's Idle goroutine, but imapd's Session.Close waits for it
// (idleMu), and the connection closes its session before it gives the
// deflater back: the guard is for any other writer, and five -race runs
// of this test without it caught no late write.
func TestCompressReuseAfterIdle(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CompressSessions = 1 })
	k.deliver(mail(0))
	for i := range 20 {
		a := k.rawLogin()
		a.compress("b")
		a.send("c SELECT INBOX\r\n")
		a.until("c OK")
		a.send("d IDLE\r\n")
		a.until("+ ")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for j := range 3 {
				k.deliver(mail(1000*i + j + 1))
			}
		}()
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		a.c.Close()
		<-done
		waitGauge(t, k, "twinmx_imapd_compressed_sessions", 0)

		b := k.rawLogin()
		b.compress("e")
		b.send("f SELECT INBOX\r\n")
		if _, tagged := b.answer("f"); !strings.HasPrefix(tagged, "f OK") {
			t.Fatalf("round %d: SELECT in the session that took the deflater: %q", i, tagged)
		}
		b.send("g FETCH 1 (BODY.PEEK[])\r\n")
		untagged, tagged := b.answer("g")
		if !strings.HasPrefix(tagged, "g OK") || fetchedBodies(untagged)[1] != mail(0) {
			t.Fatalf("round %d: FETCH in the session that took the deflater: %q, %q", i, untagged, tagged)
		}
		b.send("h LOGOUT\r\n")
		b.until("h OK")
		waitGauge(t, k, "twinmx_imapd_compressed_sessions", 0)
	}
}
