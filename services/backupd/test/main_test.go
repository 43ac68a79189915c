// Package test holds backupd's black-box tests: they build the real dbd,
// dbctl and backupd binaries, run them as separate processes on 127.0.0.1,
// put a TCP proxy between backupd and each dbd, and kill processes with
// SIGKILL.
package test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("backupd-bin-", map[string]string{
		"dbd":     "github.com/twinmx/twinmx/services/dbd/cmd/dbd",
		"dbctl":   "github.com/twinmx/twinmx/services/dbd/cmd/dbctl",
		"backupd": "../cmd/backupd",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// world is N dbd processes, each behind a proxy, and one backupd process.
type world struct {
	t       *testing.T
	dir     string
	sites   map[string]*site
	names   []string
	backupd *exec.Cmd
	blog    *proctest.SyncBuffer
	metrics string
}

// site is one dbd process with its keys and data folder, behind a proxy.
type site struct {
	*proctest.DB
	proxy *backupdtest.Proxy
}

func newWorld(t *testing.T, names ...string) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), sites: map[string]*site{}, names: names}
	run(t, "dbctl", "keygen", "--out", filepath.Join(w.dir, "backupd"))
	run(t, "dbctl", "keygen", "--out", filepath.Join(w.dir, "operator"))
	for _, n := range names {
		// operator is an admin key listed at every site, for dbctl status --site.
		s := &site{DB: proctest.NewDB(t, proctest.DBConfig{Bin: binDir, Dir: filepath.Join(w.dir, n), Site: n,
			Clients: []string{"admin " + filepath.Join(w.dir, "operator.pub"), "backupd " + filepath.Join(w.dir, "backupd.pub")}})}
		s.Start()
		s.proxy = backupdtest.Start(t, s.Addr)
		w.sites[n] = s
	}
	t.Cleanup(w.killBackupd)
	return w
}

func run(t *testing.T, prog string, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, prog), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", prog, args, err, out)
	}
	return string(out)
}

// siteFlags returns the --site flags of every site (direct or through
// the proxies).
func (w *world) siteFlags(proxied bool) []string {
	var args []string
	for _, n := range w.names {
		s := w.sites[n]
		addr := s.Addr
		if proxied {
			addr = s.proxy.Addr()
		}
		args = append(args, "--site", fmt.Sprintf("%s=%s,%s", n, addr, filepath.Join(s.Dir, "keys", "dbd.pub")))
	}
	return args
}

// status runs dbctl status --site for every site with the operator key.
func (w *world) status() string {
	w.t.Helper()
	args := append([]string{"--key", filepath.Join(w.dir, "operator"), "--timeout", "10s", "status"}, w.siteFlags(false)...)
	return run(w.t, "dbctl", args...)
}

// startBackupd runs backupd with every site behind its proxy.
func (w *world) startBackupd() {
	w.t.Helper()
	if w.metrics == "" {
		w.metrics = proctest.FreePort(w.t)
	}
	args := append([]string{"--key", filepath.Join(w.dir, "backupd"), "--metrics", w.metrics}, w.siteFlags(true)...)
	w.blog = &proctest.SyncBuffer{}
	w.backupd = exec.Command(filepath.Join(binDir, "backupd"), args...)
	w.backupd.Stderr = w.blog
	if err := w.backupd.Start(); err != nil {
		w.t.Fatal(err)
	}
	proctest.WaitListening(w.t, w.metrics, 20*time.Second, w.blog)
}

func (w *world) killBackupd() {
	if w.backupd == nil || w.backupd.Process == nil {
		return
	}
	w.backupd.Process.Kill()
	w.backupd.Wait()
	w.backupd = nil
}

// metric returns the value of one series of backupd's /metrics, e.g.
// `twinmx_backupd_merged_rows_total{from="A",to="B"}` (0 if absent).
func (w *world) metric(series string) float64 {
	w.t.Helper()
	resp, err := http.Get("http://" + w.metrics + "/metrics")
	if err != nil {
		w.t.Fatalf("scrape backupd: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				w.t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// waitConverged waits until every site's dump is equal.
func (w *world) waitConverged(ctx context.Context) {
	w.t.Helper()
	var last string
	for {
		first, err := backupdtest.Dump(ctx, w.sites[w.names[0]].NewClient("admin"))
		same := err == nil
		for _, n := range w.names[1:] {
			if !same {
				break
			}
			d, err := backupdtest.Dump(ctx, w.sites[n].NewClient("admin"))
			if err != nil {
				same = false
				break
			}
			if diff := backupdtest.Diff(first, d); diff != "" {
				last = fmt.Sprintf("%s vs %s: %s", w.names[0], n, diff)
				same = false
			}
		}
		if same {
			return
		}
		select {
		case <-ctx.Done():
			w.t.Fatalf("sites did not converge: %s\nbackupd log:\n%s", last, proctest.Tail(w.blog.String(), 60))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
