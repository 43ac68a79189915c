package test

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestDeleteAcrossSites is catalog items 57, 88 and 90 for POP3: two sites
// with backupd between them, one pop3d each. Mail delivered at A reaches
// B. Python's poplib at A does DELE + QUIT on two mails while backupd is
// killed with SIGKILL and restarted: B stops listing them, and the others
// keep their UIDLs. At B a session that marks a mail and drops its
// connection, and one that marks a mail, RSETs and QUITs, delete nothing
// (RFC 1939 §6: only the UPDATE state removes mail); a DELE + QUIT at B
// after them is the barrier that shows it at A. After a SIGKILL of B's dbd
// the deleted mail stays deleted at B.
func TestDeleteAcrossSites(t *testing.T) {
	requireTool(t, "python3", "python3")
	dir := t.TempDir()
	runProg(t, nil, "dbctl", "keygen", "--out", filepath.Join(dir, "backupd"))
	a := newSite(t, "A", filepath.Join(dir, "backupd.pub"))
	b := newSite(t, "B", filepath.Join(dir, "backupd.pub"))
	bk := startBackupd(t, dir, a, b)

	a.user("alice", "alice password", "alice@x.example")
	ctx := ctxFor(t, 2*time.Minute)
	var keys []model.Key
	var uids []string
	for i := range 8 {
		k, err := a.deliver(ctx, "alice@x.example", fmt.Appendf(nil, "From: s@x.example\r\nSubject: dele %d\r\n\r\nbody %d\r\n", i, i))
		if err != nil {
			t.Fatal(err)
		}
		keys, uids = append(keys, k), append(uids, k.String()[:32])
	}
	pa, pb := a.startPOP3D(""), b.startPOP3D("")
	waitUIDs(t, pb.addr, uids)
	// keep returns uids without the given indexes.
	keep := func(gone ...int) []string {
		var out []string
		for i, u := range uids {
			if !slices.Contains(gone, i) {
				out = append(out, u)
			}
		}
		return out
	}

	// DELE + QUIT at A by poplib; backupd dies meanwhile and comes back.
	host, port, _ := strings.Cut(pa.addr, ":")
	if got := pythonScript(t, "testdata/poplib_dele.py", host, port, "alice", "alice password", uids[1], uids[4]); got != "deleted 2 +OK bye, 2 messages deleted" {
		t.Fatalf("poplib DELE + QUIT at A: %q", got)
	}
	bk.Kill()
	bk.Start()
	waitUIDs(t, pa.addr, keep(1, 4))
	waitUIDs(t, pb.addr, keep(1, 4))

	// At B: DELE, connection dropped; DELE, RSET, QUIT.
	nums := uidNumbers(t, pb.addr)
	c := mustPOP(t, pb.addr, "alice", "alice password")
	if _, err := c.cmd(fmt.Sprintf("DELE %d", nums[uids[0]])); err != nil {
		t.Fatal(err)
	}
	c.nc.Close()
	waitMetric(t, pb.metrics, "twinmx_pop3d_sessions_active", 0)
	if got, err := listUIDs(pb.addr, "alice", "alice password"); err != nil || len(got) != len(keep(1, 4)) {
		t.Fatalf("after DELE and a dropped connection B lists %q, %v; want %d mails", got, err, len(keep(1, 4)))
	}
	c = mustPOP(t, pb.addr, "alice", "alice password")
	for _, cmd := range []string{fmt.Sprintf("DELE %d", nums[uids[2]]), "RSET"} {
		if _, err := c.cmd(cmd); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.quit(); err != nil {
		t.Fatal(err)
	}
	// The barrier: a deletion at B written after both sessions ended.
	c = mustPOP(t, pb.addr, "alice", "alice password")
	if _, err := c.cmd(fmt.Sprintf("DELE %d", nums[uids[7]])); err != nil {
		t.Fatal(err)
	}
	if err := c.quit(); err != nil {
		t.Fatal(err)
	}
	want := keep(1, 4, 7)
	waitUIDs(t, pa.addr, want)
	waitUIDs(t, pb.addr, want)
	for i, k := range keys {
		wantDeleted := i == 1 || i == 4 || i == 7
		for _, s := range []*site{a, b} {
			if got := deletedAt(t, s, k); got != wantDeleted {
				t.Errorf("mail %d at %s: deleted %v, want %v", i, s.Site, got, wantDeleted)
			}
		}
	}

	// B's dbd killed with SIGKILL: the deletions it took stay.
	b.Kill()
	b.Start()
	waitUIDs(t, pb.addr, want)
	for _, i := range []int{1, 4, 7} {
		if !deletedAt(t, b, keys[i]) {
			t.Errorf("mail %d undeleted at B after a SIGKILL of its dbd", i)
		}
	}
}

// listUIDs returns the UIDLs login sees at addr, in listing order.
func listUIDs(addr, login, pass string) ([]string, error) {
	c, err := dialPOP(addr, login, pass)
	if err != nil {
		return nil, err
	}
	defer c.quit()
	_, order, err := c.uidl()
	return order, err
}

// uidNumbers returns alice's message numbers by UIDL at addr.
func uidNumbers(t *testing.T, addr string) map[string]int {
	t.Helper()
	c := mustPOP(t, addr, "alice", "alice password")
	nums, _, err := c.uidl()
	if err != nil {
		t.Fatal(err)
	}
	c.quit()
	return nums
}

// waitUIDs waits (at most a minute) until alice sees exactly the UIDLs of
// want at addr, in any order.
func waitUIDs(t *testing.T, addr string, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, err := listUIDs(addr, "alice", "alice password")
		if err == nil {
			slices.Sort(got)
			if slices.Equal(got, want) {
				return
			}
		}
		last = fmt.Sprintf("%q, %v", got, err)
	}
	t.Fatalf("alice at %s never saw exactly %q; last: %s", addr, want, last)
}

// deletedAt reports whether the receive row k carries the deleted mark at s.
func deletedAt(t *testing.T, s *site, k model.Key) bool {
	t.Helper()
	row, err := s.Client().FindMeta(ctxFor(t, 30*time.Second), model.Receive, k)
	if err != nil {
		t.Fatalf("find receive row %s at %s: %v", k, s.Site, err)
	}
	return row.State.Col(model.ColDeleted) == model.FlagSet
}

// waitMetric waits (at most 30 s) until the metric series at addr's
// /metrics has value v.
func waitMetric(t *testing.T, addr, series string, v float64) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if last, err = metricValue(addr, series); err != nil {
			last = err.Error()
			continue
		}
		if last == fmt.Sprint(v) {
			return
		}
	}
	t.Fatalf("%s stayed %s, want %v", series, last, v)
}

// metricValue returns the value of the metric series at addr's /metrics
// as written there ("" if it is not there).
func metricValue(addr, series string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v = s
		}
	}
	return v, sc.Err()
}
