//go:build unix

package ctl

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCopyTreeCutShort: a copy that fails half way leaves nothing under
// the name asked for (where it would pass for a backup missing files) and
// no partial folder beside it; a complete one is there, whole.
func TestCopyTreeCutShort(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"000001.log", "MANIFEST-000001"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte("data of "+f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "copy")
	n, err := copyTree(src, out)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "sub", "x")); err != nil || string(b) != "x" || n != int64(len("data of 000001.log")+len("data of MANIFEST-000001")+1) {
		t.Fatalf("copied %d bytes, sub/x %q, %v", n, b, err)
	}

	// A FIFO is not a regular file: the walk fails after copying the
	// files before it in name order.
	if err := syscall.Mkfifo(filepath.Join(src, "zz-fifo"), 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	out2 := filepath.Join(parent, "copy2")
	if _, err := copyTree(src, out2); err == nil {
		t.Fatal("a copy of a folder holding a FIFO succeeded")
	}
	if _, err := os.Lstat(out2); !os.IsNotExist(err) {
		t.Errorf("the failed copy left %s: %v", out2, err)
	}
	if left, _ := filepath.Glob(filepath.Join(parent, ".copy2.partial-*")); len(left) > 0 {
		t.Errorf("partial copy folders left: %v", left)
	}
}
