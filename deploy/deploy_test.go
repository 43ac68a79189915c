package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// sourceFiles returns the non-test Go files under dirs (relative to the
// repository root).
func sourceFiles(t *testing.T, dirs ...string) []string {
	t.Helper()
	var files []string
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join("..", d), func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	envLiteral = regexp.MustCompile(`"(TWINMX_[A-Z0-9_]+)"`)
	envPrefix  = regexp.MustCompile(`func env\(\w+ string\) \[\]string \{ return \[\]string\{"(TWINMX_[A-Z0-9_]+_)" \+ \w+\} \}`)
	envCall    = regexp.MustCompile(`\benv\("([A-Z0-9_]+)"\)`)
	envFileVar = regexp.MustCompile(`(?m)^#?(TWINMX_[A-Z0-9_]+)=`)
	// svc.DBFlags("TWINMX_SMTPD", …): the program's own --db, --db-pub
	// and --key variables (the site-wide fallbacks need no line).
	envDBFlags = regexp.MustCompile(`svc\.DBFlags\("(TWINMX_[A-Z0-9_]+)"`)
)

// programEnv returns the TWINMX_* variables the flags of program read, from
// its cmd folder: literal names, env("X") calls with the prefix of the
// package's env function, and the variables of svc.DBFlags.
func programEnv(t *testing.T, program string) []string {
	t.Helper()
	files := sourceFiles(t, filepath.Join("services", program, "cmd", program))
	var all string
	for _, f := range files {
		all += read(t, f) + "\n"
	}
	var vars []string
	for _, m := range envLiteral.FindAllStringSubmatch(all, -1) {
		vars = append(vars, m[1])
	}
	if calls := envCall.FindAllStringSubmatch(all, -1); len(calls) > 0 {
		p := envPrefix.FindStringSubmatch(all)
		if p == nil {
			t.Fatalf("%s calls env(...) but its env function was not found", program)
		}
		for _, m := range calls {
			vars = append(vars, p[1]+m[1])
		}
	}
	for _, m := range envDBFlags.FindAllStringSubmatch(all, -1) {
		// The prefix itself is no variable.
		vars = slices.DeleteFunc(vars, func(v string) bool { return v == m[1] })
		vars = append(vars, m[1]+"_DB", m[1]+"_DB_PUB", m[1]+"_KEY")
	}
	// Names only mentioned in text (not flags) are not literals of their own.
	vars = slices.DeleteFunc(vars, func(v string) bool { return strings.HasSuffix(v, "_") })
	slices.Sort(vars)
	return slices.Compact(vars)
}

var programs = []string{"dbd", "smtpd", "backupd", "spamd", "pop3d", "imapd", "smsd"}

// TestEnvFiles: deploy/systemd/PROGRAM.env names every variable the
// program's flags read, and nothing else (commented lines count).
func TestEnvFiles(t *testing.T) {
	for _, p := range programs {
		want := programEnv(t, p)
		if len(want) < 3 {
			t.Fatalf("%s: only %q found in its source; the parser is broken", p, want)
		}
		var got []string
		for _, m := range envFileVar.FindAllStringSubmatch(read(t, filepath.Join("systemd", p+".env")), -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		got = slices.Compact(got)
		for _, v := range want {
			if !slices.Contains(got, v) {
				t.Errorf("systemd/%s.env lacks %s (read by %s's flags)", p, v, p)
			}
		}
		for _, v := range got {
			if !slices.Contains(want, v) {
				t.Errorf("systemd/%s.env names %s, which %s does not read", p, v, p)
			}
		}
	}
}

var (
	metricLiteral = regexp.MustCompile(`"(twinmx_[a-z0-9_]+)"`)
	anyLiteral    = regexp.MustCompile(`"([a-z0-9_]+)"`)
	metricUse     = regexp.MustCompile(`\b((?:twinmx|process|go)_[a-z0-9_]+)\b`)
)

// exported returns every metric name the programs export, read from the
// source: literal names, and a literal prefix ("twinmx_dbd_pebble_") joined
// with the literals of the same file. Go and process collectors are
// counted only when some program registers them.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	runtimeCollectors := false
	for _, f := range sourceFiles(t, "services", "pkg") {
		src := read(t, f)
		var prefixes []string
		for _, m := range metricLiteral.FindAllStringSubmatch(src, -1) {
			if strings.HasSuffix(m[1], "_") {
				prefixes = append(prefixes, m[1])
			} else {
				names[m[1]] = true
			}
		}
		for _, p := range prefixes {
			for _, m := range anyLiteral.FindAllStringSubmatch(src, -1) {
				names[p+m[1]] = true
			}
		}
		if strings.Contains(src, "collectors.NewProcessCollector") && strings.Contains(src, "collectors.NewGoCollector") {
			runtimeCollectors = true
		}
	}
	if runtimeCollectors {
		for _, n := range []string{"process_start_time_seconds", "process_resident_memory_bytes", "process_cpu_seconds_total", "go_goroutines"} {
			names[n] = true
		}
	}
	return names
}

// checkNames fails for every metric used in text that no program exports
// (histogram series are the name plus _bucket, _sum or _count).
func checkNames(t *testing.T, file, text string, names map[string]bool) int {
	t.Helper()
	n := len(regexp.MustCompile(`\bup\{`).FindAllString(text, -1)) // Prometheus' own per target
	for _, m := range metricUse.FindAllString(text, -1) {
		n++
		base := m
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, s); ok && names[b] {
				base = b
			}
		}
		if !names[base] {
			t.Errorf("%s uses %s, which no twinmx program exports", file, m)
		}
	}
	return n
}

func TestAlertMetricsExist(t *testing.T) {
	names := exported(t)
	for _, n := range []string{"twinmx_dbd_requests_total", "twinmx_dbd_pebble_disk_space_usage_bytes", "twinmx_backupd_lag_seconds", "go_goroutines"} {
		if !names[n] {
			t.Fatalf("%s not found in the source: the scan is broken", n)
		}
	}
	var exprs []string
	for _, l := range strings.Split(read(t, "prometheus/alerts.yml"), "\n") {
		if l := strings.TrimSpace(l); !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "summary:") && !strings.HasPrefix(l, "description:") {
			exprs = append(exprs, l)
		}
	}
	if checkNames(t, "alerts.yml", strings.Join(exprs, "\n"), names) < 20 {
		t.Error("alerts.yml uses fewer than 20 metric names: the scan is broken")
	}
}

type dashboard struct {
	Title  string
	Panels []struct {
		ID      int
		Type    string
		Title   string
		GridPos struct{ H, W, X, Y int }
		Targets []struct {
			Expr  string
			RefID string
		}
	}
}

func TestDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal([]byte(read(t, "grafana/twinmx.json")), &d); err != nil {
		t.Fatalf("grafana/twinmx.json: %v", err)
	}
	names := exported(t)
	ids := map[int]bool{}
	type cell struct{ x, y int }
	used := map[cell]string{}
	var services []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			services = append(services, p.Title)
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if checkNames(t, "panel "+p.Title, q.Expr, names) == 0 {
				t.Errorf("panel %q: query %q uses no metric", p.Title, q.Expr)
			}
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if o, ok := used[cell{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap", o, p.Title)
				}
				used[cell{x, y}] = p.Title
			}
		}
		if p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q is wider than the dashboard", p.Title)
		}
	}
	for _, s := range []string{"dbd", "smtpd", "spamd", "backupd", "pop3d and imapd", "smsd"} {
		if !slices.Contains(services, s) {
			t.Errorf("no row for %s (rows %q)", s, services)
		}
	}
}

// promtool runs promtool with args in prometheus/, or skips when it is not
// installed (apt-get install prometheus) unless TWINMX_REQUIRE_PROMTOOL=1.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("TWINMX_REQUIRE_PROMTOOL") == "1" {
			t.Fatal("promtool not installed and TWINMX_REQUIRE_PROMTOOL=1 (apt-get install prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus; TWINMX_REQUIRE_PROMTOOL=1 makes this fail)")
	}
	cmd := exec.Command("promtool", args...)
	cmd.Dir = "prometheus"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtoolRules(t *testing.T)  { promtool(t, "check", "rules", "alerts.yml") }
func TestPromtoolConfig(t *testing.T) { promtool(t, "check", "config", "prometheus.yml") }

// TestPromtoolRuleTests runs the alert unit tests (prometheus/alerts_test.yml).
func TestPromtoolRuleTests(t *testing.T) { promtool(t, "test", "rules", "alerts_test.yml") }

// TestAlertsDocumented: docs/operations.md explains every alert.
func TestAlertsDocumented(t *testing.T) {
	doc := read(t, "../docs/operations.md")
	alerts := regexp.MustCompile(`(?m)^\s+- alert: (\w+)$`).FindAllStringSubmatch(read(t, "prometheus/alerts.yml"), -1)
	if len(alerts) < 10 {
		t.Fatalf("only %d alerts found", len(alerts))
	}
	for _, a := range alerts {
		if !strings.Contains(doc, "`"+a[1]+"`") {
			t.Errorf("docs/operations.md does not explain alert %s", a[1])
		}
	}
}

var (
	labelList    = regexp.MustCompile(`(?:\[\]string|prometheus\.Labels)\{([^}]*)\}`)
	quoted       = regexp.MustCompile(`"([^"]*)"`)
	byClause     = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	labelMatcher = regexp.MustCompile(`([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	plainValue   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	number       = regexp.MustCompile(`\b[0-9]+\b`)
	jobName      = regexp.MustCompile(`(?m)^\s*- job_name:\s*(\S+)`)
)

// labelSource returns the label names the programs' metrics declare
// (label lists and constant labels in files that use Prometheus), the
// label values their source spells as string literals, and the job names
// of prometheus/prometheus.yml.
func labelSource(t *testing.T) (names, values, jobs map[string]bool) {
	t.Helper()
	names, values, jobs = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, f := range sourceFiles(t, "services", "pkg") {
		src := read(t, f)
		for _, m := range quoted.FindAllStringSubmatch(src, -1) {
			values[m[1]] = true
		}
		// Numbers too: smtpd's outcome label is strconv.Itoa of a reply code.
		for _, m := range number.FindAllString(src, -1) {
			values[m] = true
		}
		if !strings.Contains(src, "prometheus.") {
			continue
		}
		for _, l := range labelList.FindAllStringSubmatch(src, -1) {
			for _, q := range quoted.FindAllStringSubmatch(l[1], -1) {
				names[q[1]] = true
			}
		}
	}
	for _, m := range jobName.FindAllStringSubmatch(read(t, "prometheus/prometheus.yml"), -1) {
		jobs[m[1]] = true
	}
	return names, values, jobs
}

// checkLabels fails for a label name no metric (nor the scrape
// configuration: job, instance, site; histograms: le) has, and for a
// label value in a matcher that the source never spells: such a query is
// empty for ever (a renamed reason, result or kind).
func checkLabels(t *testing.T, file, expr string, names, values, jobs map[string]bool) {
	t.Helper()
	known := func(l string) bool {
		return names[l] || l == "job" || l == "instance" || l == "site" || l == "le" || l == "__name__"
	}
	for _, m := range byClause.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !known(l) {
				t.Errorf("%s: %q groups by label %s, which no metric has", file, expr, l)
			}
		}
	}
	for _, m := range labelMatcher.FindAllStringSubmatch(expr, -1) {
		l, v := m[1], m[3]
		if !known(l) {
			t.Errorf("%s: %q matches label %s, which no metric has", file, expr, l)
			continue
		}
		if l == "site" || l == "instance" || l == "le" {
			continue // the operator's own values
		}
		for _, alt := range strings.Split(v, "|") {
			if !plainValue.MatchString(alt) {
				continue // a pattern (twinmx-.*), not a value
			}
			if l == "job" && !jobs[alt] || l != "job" && !values[alt] {
				t.Errorf("%s: %q matches %s=%q, a value no twinmx program (or prometheus.yml) uses", file, expr, l, alt)
			}
		}
	}
}

// TestQueryLabels: the label names and values of the alert rules and the
// dashboard's queries exist (TestAlertMetricsExist and TestDashboard check
// the metric names).
func TestQueryLabels(t *testing.T) {
	names, values, jobs := labelSource(t)
	for _, n := range []string{"reason", "result", "from", "how", "kind", "outcome"} {
		if !names[n] {
			t.Fatalf("label %s not found in the source: the scan is broken", n)
		}
	}
	if !values["undecided"] || !values["no-space"] || !jobs["twinmx-dbd"] {
		t.Fatal("label values or job names not found: the scan is broken")
	}
	n := 0
	for _, l := range strings.Split(read(t, "prometheus/alerts.yml"), "\n") {
		if l := strings.TrimSpace(l); !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "summary:") && !strings.HasPrefix(l, "description:") {
			checkLabels(t, "alerts.yml", l, names, values, jobs)
			n++
		}
	}
	var d dashboard
	if err := json.Unmarshal([]byte(read(t, "grafana/twinmx.json")), &d); err != nil {
		t.Fatalf("grafana/twinmx.json: %v", err)
	}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			checkLabels(t, "panel "+p.Title, q.Expr, names, values, jobs)
			n++
		}
	}
	if n < 50 {
		t.Errorf("only %d queries checked: the scan is broken", n)
	}
}
