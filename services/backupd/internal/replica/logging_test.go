package replica_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// records is a slog.Handler that keeps every record (with the logger's
// attributes in its message, to tell the pumps apart).
type records struct {
	mu    *sync.Mutex
	all   *[]string
	attrs string
}

func newRecords() records { return records{mu: &sync.Mutex{}, all: &[]string{}} }

func (h records) Enabled(context.Context, slog.Level) bool { return true }
func (h records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.all = append(*h.all, r.Level.String()+" "+r.Message+h.attrs)
	h.mu.Unlock()
	return nil
}
func (h records) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		h.attrs += " " + a.String()
	}
	return h
}
func (h records) WithGroup(string) slog.Handler { return h }

// atLeast returns the records at level WARN or above.
func (h records) atLeast() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range *h.all {
		if strings.HasPrefix(r, "WARN") || strings.HasPrefix(r, "ERROR") {
			out = append(out, r)
		}
	}
	return out
}

func (h records) has(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(*h.all, func(r string) bool { return strings.Contains(r, s) })
}

// TestOneLinePerStateChange: while B is down the pumps to and from it
// retry many times; each writes one warning when its link goes down, not
// one per retry (a peer down for hours wrote a warning every 5 s per pump,
// and the dbd client another per failed dial), and one line when it
// comes back.
func TestOneLinePerStateChange(t *testing.T) {
	c := newCluster(t, "A", "B")
	cfg := c.config()
	// A session with B down ends when its first request's time is up.
	cfg.MinBackoff, cfg.MaxBackoff, cfg.HeartbeatTimeout = time.Millisecond, 4*time.Millisecond, 150*time.Millisecond
	h := newRecords()
	cfg.Logger = slog.New(h)
	c.stop("B")
	c.run(cfg)
	ctx := ctxT(t, 20*time.Second)
	for counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B") < 3 ||
		counter(t, c, "twinmx_backupd_errors_total", "from", "B", "to", "A") < 3 {
		if ctx.Err() != nil {
			t.Fatalf("the pumps did not retry 3 times with B down: %v %v %q", counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B"), counter(t, c, "twinmx_backupd_errors_total", "from", "B", "to", "A"), *h.all)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// One line per pump: the link went down.
	if got := h.atLeast(); len(got) > 2 {
		t.Fatalf("%d warnings for 6 failed sessions, want one per pump:\n%s", len(got), strings.Join(got, "\n"))
	}
	c.restart("B")
	c.waitConverged(ctx)
	for !h.has("replication session started again from=A to=B") || !h.has("replication session started again from=B to=A") {
		if ctx.Err() != nil {
			t.Fatal("no line said that the links to and from B are back")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
