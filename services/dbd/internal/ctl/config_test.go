package ctl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/config"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// TestConfigApplyLargeSite: `config show` promises a file `config apply`
// accepts, but apply refused a file of more than 500 commands (the bound
// on a mailed one) and sent the whole file as one batch, which dbd caps
// at 4096 operations; a site of a few hundred mailboxes and accounts got a
// show it could not apply. A large file is applied in atomic parts, and
// the show of the site applies again and shows the same.
func TestConfigApplyLargeSite(t *testing.T) {
	_, db := liveDB(t)

	// 2n commands: more than config.MaxCommands (500), and over 4096
	// operations (a mailbox create is 3, a mailbox add more).
	const n = 700
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "mailbox create m%03d@x.example\n", i)
	}
	for i := range n {
		fmt.Fprintf(&b, "mailbox add u%03d m%03d@x.example\n", i, i)
	}
	file := filepath.Join(t.TempDir(), "site.conf")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCtl(t, "", append(db, "config", "apply", file)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d changes applied\n", 2*n)) || !strings.Contains(out, "atomic parts") {
		t.Fatalf("config apply of %d commands: exit %d, stderr %q, stdout ends %q", 2*n, code, errs, tail(out))
	}

	show, errs, code := runCtl(t, "", append(db, "config", "show")...)
	if code != 0 {
		t.Fatalf("config show: exit %d: %s", code, errs)
	}
	for _, want := range []string{"mailbox create m000@x.example\n", fmt.Sprintf("mailbox create m%03d@x.example\n", n-1),
		"mailbox add u000 m000@x.example\n", fmt.Sprintf("mailbox add u%03d m%03d@x.example\n", n-1, n-1)} {
		if !strings.Contains(show, want) {
			t.Errorf("config show lacks %q", want)
		}
	}
	if got := strings.Count(show, "\nmailbox "); got != 2*n {
		t.Errorf("config show has %d mailbox lines, want %d", got, 2*n)
	}
	if err := os.WriteFile(file, []byte(show), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := runCtl(t, "", append(db, "config", "apply", file)...); code != 0 {
		t.Fatalf("config apply of config show's output: exit %d, stderr %q, stdout ends %q", code, errs, tail(out))
	}
	again, errs, code := runCtl(t, "", append(db, "config", "show")...)
	if code != 0 || again != show {
		t.Errorf("config show after applying its own output: exit %d (%s), changed: %v", code, errs, again != show)
	}
}

// tail is the end of a long output, for a failure message.
func tail(s string) string { return s[max(0, len(s)-300):] }

// TestConfigShowOverScanBound: config show read each table with one scan,
// which dbd cuts to the newest 10000 rows; once the config table held more
// (a change row for every command ever applied), show left out the oldest
// rows, the admins, and printed the rest as the whole configuration, and
// later refused such a table, so a long-lived site lost config show. It
// pages through the table now: show has the oldest row (the admin) and
// history every change, without a note.
func TestConfigShowOverScanBound(t *testing.T) {
	e, db := liveDB(t)
	if out, errs, code := runCtl(t, "admin add boss@x.example\n", append(db, "config", "apply", "-")...); code != 0 {
		t.Fatalf("config apply: exit %d: %s%s", code, out, errs)
	}
	cl := e.Client(auth.Admin)
	const changes = maxScan + 50
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := 0; i < changes; {
		var reqs []wire.Request
		for ; i < changes && len(reqs) < wire.MaxBatchOps; i++ {
			ch := config.ChangeContent(config.Change{When: t1.Add(time.Duration(i) * time.Millisecond), Who: "dbctl", Via: "dbctl",
				Line: fmt.Sprintf("zone m%d@x.example UTC", i), Previous: "none"})
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Config, Content: ch})
		}
		if _, err := cl.Batch(context.Background(), reqs); err != nil {
			t.Fatal(err)
		}
	}
	out, errs, code := runCtl(t, "", append(db, "config", "show")...)
	if code != 0 || !strings.Contains(out, "admin add boss@x.example") {
		t.Errorf("config show of a config table over a scan's 10000 rows: exit %d, stderr %q, admin shown: %v; want exit 0 and the admin",
			code, errs, strings.Contains(out, "admin add boss@x.example"))
	}
	out, errs, code = runCtl(t, "", append(db, "config", "history")...)
	if code != 0 || errs != "" {
		t.Fatalf("config history: exit %d, stderr %q; want 0 and no note", code, errs)
	}
	seen := make([]bool, changes)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, l := range lines {
		var i int
		if _, err := fmt.Sscanf(l[strings.Index(l, `line="`)+len(`line="`):], "zone m%d@x.example", &i); err == nil && i >= 0 && i < changes {
			seen[i] = true
		}
	}
	if n := len(lines); n != changes+1 {
		t.Errorf("config history: %d lines, want %d (every change and the admin's)", n, changes+1)
	}
	for i, ok := range seen {
		if !ok {
			t.Errorf("config history does not show change %d (zone m%d@x.example)", i, i)
		}
	}
	if !strings.Contains(out, `line="admin add boss@x.example"`) {
		t.Errorf("config history does not show the oldest change, the admin add: ...%s", tail(out))
	}
}
