package store

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TestBackgroundWatch: a run of background errors is logged once and then
// every bgLogEvery; it ends the process only after failAfter with no
// successful flush, and a successful flush starts the count afresh.
func TestBackgroundWatch(t *testing.T) {
	var logs bytes.Buffer
	now := time.Unix(1000, 0)
	var exits []string
	w := &bgWatch{log: slog.New(slog.NewTextHandler(&logs, nil)), failAfter: time.Minute,
		now: func() time.Time { return now }, exit: func(msg string) { exits = append(exits, msg) }}
	disk := errors.New("write 000123.sst: input/output error")
	// 400 errors a second for 50 s: five log lines, no exit.
	for range 50 * 400 {
		w.onError(disk)
		now = now.Add(time.Second / 400)
	}
	if n := strings.Count(logs.String(), "background error"); n != 5 {
		t.Errorf("%d log lines for 50 s of errors, want 5:\n%s", n, logs.String())
	}
	if len(exits) != 0 {
		t.Fatalf("exited after 50 s: %q", exits)
	}
	// A flush succeeds: the run is over; 50 s more of errors are a new run.
	w.onFlushEnd(pebble.FlushInfo{Done: true})
	for range 50 {
		w.onError(disk)
		now = now.Add(time.Second)
	}
	if len(exits) != 0 {
		t.Fatalf("exited in a new run of 50 s: %q", exits)
	}
	// A failed flush does not end the run.
	w.onFlushEnd(pebble.FlushInfo{Done: true, Err: disk})
	for range 11 {
		w.onError(disk)
		now = now.Add(time.Second)
	}
	if len(exits) == 0 || !strings.Contains(exits[0], "background writes failing for 1m") {
		t.Fatalf("exits = %q, want one after a minute of errors", exits)
	}
}

// TestBackgroundWatchIsolatedErrors: errors far apart are not a run. Pebble
// also reports one-off background errors (a table's stats that could not
// be read, a statfs that failed), and a store that takes few writes may
// flush only hours apart. A single such error used to open a run that
// only a flush closed, so the next one, hours later, ended dbd with
// "background writes failing for 3h0m0s (2 errors ...)".
func TestBackgroundWatchIsolatedErrors(t *testing.T) {
	var logs bytes.Buffer
	now := time.Unix(1000, 0)
	var exits []string
	w := &bgWatch{log: slog.New(slog.NewTextHandler(&logs, nil)), failAfter: time.Minute,
		now: func() time.Time { return now }, exit: func(msg string) { exits = append(exits, msg) }}
	stats := errors.New("load table stats 000042.sst: input/output error")
	for range 4 {
		w.onError(stats)
		now = now.Add(3 * time.Hour)
	}
	if len(exits) != 0 {
		t.Fatalf("exited after four errors three hours apart: %q", exits)
	}
	if n := strings.Count(logs.String(), "background error"); n != 4 {
		t.Errorf("%d log lines for four isolated errors, want 4:\n%s", n, logs.String())
	}
	// Errors closer together than failAfter are still one run: 70 s of an
	// error every 10 s ends the process.
	for range 8 {
		w.onError(stats)
		now = now.Add(10 * time.Second)
	}
	if len(exits) == 0 || !strings.Contains(exits[0], "background writes failing for 1m") {
		t.Fatalf("exits = %q, want one after a minute of errors every 10 s", exits)
	}
}
