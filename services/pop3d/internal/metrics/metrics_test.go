package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinmx/twinmx/services/dbd/proctest"
	"github.com/twinmx/twinmx/services/pop3d/internal/pop3"
)

// TestLint: every pop3d metric passes promtool's lint (promlint), with each
// labelled metric given a sample so it is exported.
func TestLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Logins.WithLabelValues(LoginOK).Inc()
	m.Commands.WithLabelValues(Command(pop3.RETR)).Inc()
	m.Errors.WithLabelValues(ErrorDB).Inc()
	proctest.LintMetrics(t, reg)
	if n := testutil.CollectAndCount(reg); n != 7 {
		t.Errorf("%d metrics, want 7", n)
	}
}

func TestCommand(t *testing.T) {
	for v, want := range map[pop3.Verb]string{pop3.RETR: "RETR", pop3.STLS: "STLS", "HELO": "unknown", "": "unknown"} {
		if got := Command(v); got != want {
			t.Errorf("Command(%q) = %q, want %q", v, got, want)
		}
	}
}
