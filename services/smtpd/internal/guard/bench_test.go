package guard

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// memConn is a net.Conn that reads from a buffer and discards writes.
type memConn struct {
	r *bytes.Reader
}

func (m *memConn) Read(p []byte) (int, error)       { return m.r.Read(p) }
func (m *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 25} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

// benchMessage is a 10 MB dot-stuffed message of 78-byte lines.
var benchMessage = func() []byte {
	line := strings.Repeat("abcdefghij", 7) + "123456\r\n"
	var b bytes.Buffer
	for b.Len() < 10<<20 {
		b.WriteString(line)
		b.WriteString("..stuffed\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}()

// BenchmarkDataPassThrough reads a message in DATA mode through a guard
// Conn the way go-smtp does (a 4 KiB bufio.Reader).
func BenchmarkDataPassThrough(b *testing.B) {
	cfg := Config{}.withDefaults()
	b.SetBytes(int64(len(benchMessage)))
	for b.Loop() {
		c := newConn(&memConn{r: bytes.NewReader(benchMessage)}, connParams{cfg: &cfg})
		c.mu.mode, c.mu.dataStart = modeData, true
		if _, err := io.Copy(io.Discard, bufio.NewReaderSize(c, 4096)); err != nil {
			b.Fatal(err)
		}
		if c.DataViolation() != "" {
			b.Fatal(c.DataViolation())
		}
	}
}

// BenchmarkDataRawCopy is the baseline: the same bytes copied by io.Copy
// through the same bufio.Reader, without the guard. The struct wrappers
// hide WriterTo/ReaderFrom so that the bytes are really copied.
func BenchmarkDataRawCopy(b *testing.B) {
	b.SetBytes(int64(len(benchMessage)))
	for b.Loop() {
		m := &memConn{r: bytes.NewReader(benchMessage)}
		dst := struct{ io.Writer }{io.Discard}
		src := struct{ io.Reader }{bufio.NewReaderSize(m, 4096)}
		if _, err := io.Copy(dst, src); err != nil {
			b.Fatal(err)
		}
	}
}
