package daemon

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// panicBackend panics in every session's MAIL.
type panicBackend struct{}

func (panicBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return panicSession{}, nil }

type panicSession struct{}

func (panicSession) Mail(string, *smtp.MailOptions) error { panic("bug in MAIL") }
func (panicSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (panicSession) Data(io.Reader) error                 { return nil }
func (panicSession) Reset()                               {}
func (panicSession) Logout() error                        { return nil }

// TestPanicCounted: a panic go-smtp recovers from in a session reaches us
// only as a log line; it is logged as an error and counted in
// twinmx_smtpd_panics_total (a bug the operator's alert must see), with
// go-smtp's own wording, so an upgrade that changes it fails here.
func TestPanicCounted(t *testing.T) {
	logs := &lockedBuffer{}
	panics := prometheus.NewCounter(prometheus.CounterOpts{Name: "p"})
	srv := smtp.NewServer(panicBackend{})
	srv.Domain = "mx.test"
	srv.ErrorLog = slogPrinter{log: slog.New(slog.NewTextHandler(logs, nil)), panics: panics}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	c.Write([]byte("EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n"))
	var last string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		last = line
	}
	if !strings.HasPrefix(last, "421") {
		t.Errorf("last reply %q, want 421 after the panic", last)
	}
	// go-smtp logs the panic after it has answered 421 and closed the
	// connection: wait for the line (a bound only so a hang fails).
	for i := 0; i < 1000 && !strings.Contains(logs.String(), "bug in MAIL"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.ToFloat64(panics); n != 1 {
		t.Errorf("%v panics counted, want 1; log:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "bug in MAIL") {
		t.Errorf("panic not logged as an error:\n%s", logs.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines and the
// test's at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
