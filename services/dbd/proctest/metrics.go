package proctest

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// LintMetrics checks a service's metrics as Prometheus will see them: no
// promlint problem, every name in want exported (give labelled metrics a
// sample first), and `promtool check metrics` passing when promtool is
// installed (required when TWINMX_REQUIRE_PROMTOOL is set, as in CI).
func LintMetrics(t testing.TB, g prometheus.Gatherer, want ...string) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range want {
		if !names[n] {
			t.Errorf("%s not exported", n)
		}
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("TWINMX_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool is not installed (TWINMX_REQUIRE_PROMTOOL is set)")
		}
		t.Log("promtool not installed: only promlint ran")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = &text
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
