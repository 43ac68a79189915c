package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// Some disk faults end the process inside Pebble: a failed MANIFEST write
// or sync is fatal by design (Pebble cannot tell whether the edit reached
// the disk; it calls Logger.Fatalf, and dbd's logger exits 2), and an
// error that ends a blob file (its last write or its sync) makes Pebble
// v2.1.7 dereference nil: it aborts the file after finishing it (fixed
// upstream by pebble#6128, in no v2.1 release yet). Such a test
// runs the store in a child process: the test binary again, with
// faultChildEnv set, on a real folder.
const (
	faultChildEnv = "TWINMX_STORE_FAULT_CHILD"
	faultDirEnv   = "TWINMX_STORE_FAULT_DIR"

	childWriters  = 4
	childRequests = 150
	childSeed     = 7
)

// TestFatalDiskErrors: for each fault that kills the process, a child
// process writes under concurrent writers and prints each acknowledgement;
// after 30 the fault is armed and a flush asked for. The child must die
// (non-zero exit, a log line naming the cause) and must not survive its
// writes; the restarted store must hold every write the child
// acknowledged, byte for byte, no request half applied, and take writes.
// TEST-CATALOG 81.
func TestFatalDiskErrors(t *testing.T) {
	if mode := os.Getenv(faultChildEnv); mode != "" {
		faultChild(mode)
		return
	}
	for _, tc := range []struct {
		mode, wantLog string
	}{
		{"manifest-write", "pebble fatal: MANIFEST"},
		{"manifest-sync", "pebble fatal: MANIFEST"},
		{"blob-sync", "nil pointer dereference"},
		// Not fatal to Pebble (it retries the flush for ever); bgWatch
		// ends the process once the errors have gone on long enough.
		{"table-write-forever", "background writes failing"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang fails, not blocks CI
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFatalDiskErrors$", "-test.count=1")
			cmd.Env = append(os.Environ(), faultChildEnv+"="+tc.mode, faultDirEnv+"="+dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked := map[[2]int]bool{}
			sc := bufio.NewScanner(stdout)
			survived := false
			for sc.Scan() {
				var w, i int
				if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &w, &i); err == nil {
					acked[[2]int{w, i}] = true
				} else if sc.Text() == "survived" {
					survived = true
				}
			}
			err = cmd.Wait()
			var ee *exec.ExitError
			if survived || !errors.As(err, &ee) || ee.ExitCode() <= 0 {
				t.Fatalf("child survived the fault (exit %v); stderr:\n%s", err, tail(stderr.String()))
			}
			if !strings.Contains(stderr.String(), tc.wantLog) {
				t.Errorf("child's stderr does not say %q:\n%s", tc.wantLog, tail(stderr.String()))
			}
			t.Logf("child: %d writes acknowledged, then %v", len(acked), err)
			load := newFaultLoad()
			for w := range childWriters {
				r := rand.New(rand.NewPCG(childSeed, uint64(w)))
				for i := range childRequests {
					q := faultRequest(r, "child", w, i)
					q.acked = acked[[2]int{w, i}]
					load.sent[model.KeyOf(model.Body, q.body)] = q
				}
			}
			n := load.verify(t, vfs.Default, dir)
			t.Logf("restart: %d unacknowledged requests were applied whole", n)
			s, err := Open(Options{Dir: dir, Site: "a", Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Apply(context.Background(), []Mutation{ins(model.Body, "after restart")}); err != nil {
				t.Fatalf("write after restart: %v", err)
			}
		})
	}
}

// tail returns the last lines of a child's log.
func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// faultChild is the child process of TestFatalDiskErrors. It prints "ack W
// I" after each acknowledged request and "survived" if it outlives the
// fault, then exits.
func faultChild(mode string) {
	fs := newFaultFS(vfs.Default)
	s, err := Open(Options{Dir: os.Getenv(faultDirEnv), FS: fs, Site: "a", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		BackgroundFailAfter: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var rule func(op fsOp, path string) fsFault
	switch mode {
	case "manifest-write", "manifest-sync":
		op := map[string]fsOp{"manifest-write": fsWrite, "manifest-sync": fsSync}[mode]
		rule = func(o fsOp, path string) fsFault {
			if o == op && isManifest(path) {
				return fsFault{Err: syscall.EIO}
			}
			return fsFault{}
		}
	case "table-write-forever":
		rule = func(o fsOp, path string) fsFault {
			if o == fsWrite && strings.HasSuffix(path, ".sst") {
				return fsFault{Err: syscall.EIO}
			}
			return fsFault{}
		}
	case "blob-sync":
		rule = func(o fsOp, path string) fsFault {
			if o == fsSync && strings.HasSuffix(path, ".blob") {
				return fsFault{Err: syscall.EIO}
			}
			return fsFault{}
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(3)
	}
	var out sync.Mutex
	var acks atomic.Int32
	load := newFaultLoad()
	load.run(s, "child", childWriters, childRequests, childSeed, nil, func(w, i int) {
		out.Lock()
		fmt.Fprintf(os.Stdout, "ack %d %d\n", w, i) // one write(2): the parent sees it even if we die next
		out.Unlock()
		if acks.Add(1) == 30 {
			fs.set(rule)
			if _, err := s.db.AsyncFlush(); err != nil {
				fmt.Fprintln(os.Stderr, "AsyncFlush:", err)
			}
		}
	})
	// The flush may still be running: wait for it before declaring the
	// fault survived.
	s.db.Flush()
	fmt.Fprintln(os.Stdout, "survived")
	s.Close()
	os.Exit(0)
}
