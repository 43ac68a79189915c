package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// TestBackupWhileWriting runs `dbctl backup --out` while writers keep
// writing, then runs a second dbd on the copy: every write acknowledged
// before the backup started is there with its state, and the copy is a
// working store.
func TestBackupWhileWriting(t *testing.T) {
	s := newSite(t)
	s.Start()
	ctx := context.Background()

	var mu sync.Mutex
	var acked []string // contents whose batch was answered
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		cl := s.NewClient("admin")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := fmt.Sprintf("w%d-%d %s", w, i, strings.Repeat("x", i%5000))
				k := model.KeyOf(model.Body, []byte(c))
				_, err := cl.Batch(ctx, []wire.Request{
					{Op: wire.OpFindOrInsert, Table: model.Body, Content: []byte(c)},
					{Op: wire.OpSet, Table: model.Body, Ref: wire.Ref{ByKey: true, Key: k}, Name: "ack", Value: 1},
				})
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, c)
				mu.Unlock()
			}
		}()
	}
	pinger := s.NewClient("admin")
	waitFor := func(n int) {
		for {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= n || t.Failed() {
				return
			}
			pinger.Ping(ctx) // a round trip instead of a sleep
		}
	}
	waitFor(300)
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()

	copySite := newSite(t)
	out := filepath.Join(copySite.Dir, "data")
	got := s.Dbctl(nil, "backup", "--name", "nightly-1", "--out", out)
	waitFor(len(before) + 300) // writes went on during and after the backup
	close(stop)
	wg.Wait()

	wantPath := filepath.Join(s.Dir, "data", "checkpoints", "nightly-1")
	if !strings.Contains(got, "checkpoint: "+wantPath+"\n") || !strings.Contains(got, "copied: "+out) {
		t.Fatalf("dbctl backup printed %q, want the checkpoint %s and the copy %s", got, wantPath, out)
	}
	if _, err := os.Stat(wantPath); err != nil {
		t.Fatalf("checkpoint folder: %v", err)
	}
	// A second backup of the same name is refused; bad names are usage errors.
	if _, errs, code := s.DbctlExit(nil, "backup", "--name", "nightly-1"); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("backup of an existing name: exit %d, %q; want 1 and \"exists\"", code, errs)
	}
	for _, bad := range []string{"..", "a/b", "/tmp/x"} {
		if _, _, code := s.DbctlExit(nil, "backup", "--name", bad); code != 2 {
			t.Fatalf("backup --name %q: exit %d, want 2", bad, code)
		}
	}
	// Other roles may not take checkpoints.
	if _, err := s.NewClient("mailbox").Checkpoint(ctx, "sneaky"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("checkpoint with the mailbox role: %v, want forbidden", err)
	}

	copySite.Start()
	cl := copySite.NewClient("admin")
	for _, c := range before {
		row, err := cl.FindKey(ctx, model.Body, model.KeyOf(model.Body, []byte(c)))
		if err != nil {
			t.Fatalf("the backup lacks a write acknowledged before it (%.20q): %v", c, err)
		}
		if string(row.Content) != c || row.State.Col("ack") != 1 {
			t.Fatalf("row %.20q in the backup: content %d bytes, ack=%d", c, len(row.Content), row.State.Col("ack"))
		}
	}
	if _, _, err := cl.FindOrInsert(ctx, model.Body, []byte("written to the restored copy")); err != nil {
		t.Fatalf("the restored copy does not take writes: %v", err)
	}
	t.Logf("backup held all %d writes acknowledged before it; %d in total were written", len(before), len(acked))
}

// TestBackupSyncsFolders: `dbctl backup --out` syncs the folders it
// creates and the one it creates them in, not only the files, so a copy
// it reported done keeps every file's name after a power loss (the
// TWINMX-CHECKPOINT mark among them). A power loss cannot be made here;
// strace shows the fsync calls, with the paths of their descriptors.
func TestBackupSyncsFolders(t *testing.T) {
	const strace = "/usr/bin/strace"
	if _, err := os.Stat(strace); err != nil {
		if os.Getenv("TWINMX_REQUIRE_POSTFIX") != "" { // CI, which installs strace as well
			t.Fatalf("strace missing: %v", err)
		}
		t.Skipf("strace missing: %v", err)
	}
	s := newSite(t)
	s.Start()
	parent := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(parent, "copy")
	// -ff writes one file per thread, so a call another thread interrupts
	// is never split into "<unfinished ...>" and "<... resumed>" lines.
	traceDir := t.TempDir()
	args := []string{"-ff", "-y", "-e", "trace=fsync,fdatasync", "-o", filepath.Join(traceDir, "trace"), filepath.Join(binDir, "dbctl"),
		"--db", s.Addr, "--db-pub", filepath.Join(s.Dir, "keys", "dbd.pub"), "--key", filepath.Join(s.Dir, "keys", "admin"),
		"backup", "--name", "synced", "--out", out}
	if b, err := exec.Command(strace, args...).CombinedOutput(); err != nil {
		t.Fatalf("strace dbctl backup: %v\n%s", err, b)
	}
	if left, _ := filepath.Glob(filepath.Join(parent, ".copy.partial-*")); len(left) > 0 {
		t.Errorf("partial copy folders left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(out, "TWINMX-CHECKPOINT")); err != nil {
		t.Errorf("the finished copy: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(traceDir, "trace.*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no strace output in %s: %v", traceDir, err)
	}
	var b []byte
	for _, f := range files {
		part, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, part...)
	}
	// The copy is built in a hidden folder beside out and renamed once
	// synced; strace names each descriptor's path at the call.
	tmp := regexp.QuoteMeta(filepath.Join(parent, ".copy.partial-")) + `[0-9]+`
	if !regexp.MustCompile(`<` + tmp + `>\) = 0`).Match(b) {
		t.Errorf("no fsync of the copy's folder; trace:\n%s", b)
	}
	if !strings.Contains(string(b), "<"+parent+">) = 0") {
		t.Errorf("no fsync of folder %s; trace:\n%s", parent, b)
	}
	if !regexp.MustCompile(`<` + tmp + regexp.QuoteMeta(string(filepath.Separator)+"TWINMX-CHECKPOINT") + `>\) = 0`).Match(b) {
		t.Errorf("no fsync of the copied TWINMX-CHECKPOINT; trace:\n%s", b)
	}
}
