package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerKeyRotationProcess (TEST-CATALOG 73, server key): dbd's key
// rotated as docs/roles.md §7 says. dbd restarts with a new --key and the
// old one as --old-key: clients pinning the old public key and clients
// pinning the new one are both served, on the same data. Once --old-key
// is dropped, the old pin is refused and the new one served.
func TestServerKeyRotationProcess(t *testing.T) {
	s := newSite(t)
	s.Flags = []string{"--site", "a"} // the site name must not follow the key
	s.Start()
	keys := filepath.Join(s.Dir, "keys")
	as := func(pub string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "dbctl"), append([]string{"--db", s.Addr, "--db-pub", filepath.Join(keys, pub),
			"--key", filepath.Join(keys, "admin"), "--timeout", "3s"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), 0
	}
	if out, code := as("dbd.pub", "find-or-insert", "text", "before the rotation"); code != 0 {
		t.Fatalf("before the rotation: %d %s", code, out)
	}

	s.Kill()
	for _, f := range []string{"dbd", "dbd.pub"} {
		if err := os.Rename(filepath.Join(keys, f), filepath.Join(keys, strings.Replace(f, "dbd", "dbd-old", 1))); err != nil {
			t.Fatal(err)
		}
	}
	s.Dbctl(nil, "keygen", "--out", filepath.Join(keys, "dbd"))
	s.Flags = []string{"--site", "a", "--old-key", filepath.Join(keys, "dbd-old")}
	s.Start()
	for _, pub := range []string{"dbd-old.pub", "dbd.pub"} {
		if out, code := as(pub, "find", "text", "before the rotation"); code != 0 {
			t.Errorf("during the rotation, a client pinning %s: %d %s", pub, code, out)
		}
		if out, code := as(pub, "find-or-insert", "text", "written with "+pub); code != 0 {
			t.Errorf("during the rotation, a client pinning %s cannot write: %d %s", pub, code, out)
		}
	}
	s.Kill() // the log is complete (and no longer written) once dbd is reaped
	if !strings.Contains(s.Log.String(), "accepting clients that pin an old dbd key") {
		t.Errorf("dbd does not say it accepts an old key:\n%s", s.Log)
	}

	s.Flags = []string{"--site", "a"}
	s.Start()
	if out, code := as("dbd-old.pub", "find", "text", "before the rotation"); code == 0 {
		t.Errorf("after the rotation a client pinning the old key was served: %s", out)
	}
	for _, content := range []string{"before the rotation", "written with dbd-old.pub", "written with dbd.pub"} {
		if out, code := as("dbd.pub", "find", "text", content); code != 0 {
			t.Errorf("after the rotation, %q with the new key: %d %s", content, code, out)
		}
	}
}
