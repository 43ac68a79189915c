package proctest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// PanicLog is a slog.Handler for a server run in a test's process that
// keeps the log lines reporting a panic (a server recovers a panic in one
// connection, logs it and goes on) and drops the rest, so a fuzz target
// can fail on a recovered panic too.
type PanicLog struct {
	mu     sync.Mutex
	panics []string
}

// Enabled implements slog.Handler.
func (h *PanicLog) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (h *PanicLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(strings.ToLower(r.Message), "panic") {
		return nil
	}
	text := r.Message
	r.Attrs(func(a slog.Attr) bool {
		text += " " + a.Key + "=" + a.Value.String()
		return true
	})
	h.mu.Lock()
	h.panics = append(h.panics, text)
	h.mu.Unlock()
	return nil
}

// WithAttrs implements slog.Handler.
func (h *PanicLog) WithAttrs([]slog.Attr) slog.Handler { return h }

// WithGroup implements slog.Handler.
func (h *PanicLog) WithGroup(string) slog.Handler { return h }

// Take returns the panics logged since the last call, "" for none.
func (h *PanicLog) Take() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := strings.Join(h.panics, "\n")
	h.panics = nil
	return p
}

// Converse dials addr, writes msg while it reads, and returns all the
// server sent until it closed the connection or limit passed. It is the
// body of a fuzz target that feeds a whole session: the write runs on its
// own, because a server may answer, or stop reading, before it has read
// everything.
func Converse(t testing.TB, addr string, msg []byte, limit time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("the server no longer accepts connections: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	go c.Write(msg)
	got, _ := io.ReadAll(c)
	return got
}
