package guard

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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

// discardBackend's sessions read each message whole into a reused buffer,
// through go-smtp's reader or Conn.Message.
type discardBackend struct{ direct bool }

func (b discardBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &discardSession{direct: b.direct, gc: c.Conn().(*Conn)}, nil
}

type discardSession struct {
	direct bool
	gc     *Conn
	buf    bytes.Buffer
}

func (s *discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *discardSession) Reset()                               {}
func (s *discardSession) Logout() error                        { return nil }
func (s *discardSession) Data(r io.Reader) error {
	if s.direct {
		r = s.gc.Message()
	}
	s.buf.Reset()
	_, err := s.buf.ReadFrom(r)
	return err
}

// BenchmarkSessionData: transactions of a 10 kB message over one loopback
// connection into a real go-smtp server behind the guard, the session
// reading go-smtp's DATA reader (the baseline, smtpd before) or
// Conn.Message. Client and server share the machine.
func BenchmarkSessionData(b *testing.B) {
	body := []byte(stuff(strings.Repeat(strings.Repeat("0123456789", 7)+"abcdef\r\n.x\r\n", 128)))
	for _, direct := range []bool{false, true} {
		name := "go-smtp"
		if direct {
			name = "message"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			l, err := NewListener(ln, Config{GreetPause: -1, Hostname: "mx.test"})
			if err != nil {
				b.Fatal(err)
			}
			s := smtp.NewServer(discardBackend{direct: direct})
			s.MaxLineLength = 0
			s.ErrorLog = log.New(io.Discard, "", 0)
			go func() { _ = s.Serve(l) }()
			defer s.Close()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			expect := func(prefix string) {
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, prefix) {
					b.Fatalf("reply %q, %v; want %s", line, err, prefix)
				}
			}
			expect("220 ")
			_, _ = conn.Write([]byte("HELO c.test\r\n"))
			expect("250 ")
			tx := append([]byte("MAIL FROM:<a@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n"), body...)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := conn.Write(tx); err != nil {
					b.Fatal(err)
				}
				expect("250 ")
				expect("250 ")
				expect("354 ")
				expect("250 ")
			}
		})
	}
}
