package proctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildPrebuilt: with PrebuiltEnv set, Build takes the programs from
// that folder (by package folder name, under the caller's names) and
// builds nothing; a program missing there is an error naming it.
func TestBuildPrebuilt(t *testing.T) {
	pre := t.TempDir()
	for _, n := range []string{"dbd", "dbctl"} {
		if err := os.WriteFile(filepath.Join(pre, n), []byte("#!/bin/sh\necho "+n+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(PrebuiltEnv, pre)
	dir, err := Build("prebuilt-", map[string]string{"dbd": "../cmd/dbd", "admin-tool": "../cmd/dbctl"})
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for name, want := range map[string]string{"dbd": "dbd", "admin-tool": "dbctl"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !strings.Contains(string(b), "echo "+want) {
			t.Errorf("%s: %q, %v; want the prebuilt %s", name, b, err, want)
		}
	}
	if _, err := Build("prebuilt-", map[string]string{"smtpd": "../../smtpd/cmd/smtpd"}); err == nil || !strings.Contains(err.Error(), "smtpd") {
		t.Errorf("missing prebuilt program: %v, want an error naming it", err)
	}
	// The prebuilt folder is untouched by removing Build's.
	if _, err := os.Stat(filepath.Join(pre, "dbd")); err != nil {
		t.Errorf("prebuilt program gone: %v", err)
	}
}
