package proctest

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// RuntimeEnv returns the Go runtime settings (GOGC, GODEBUG, GOMAXPROCS,
// GOMEMLIMIT) that deploy/systemd/PROG.env gives program prog, as
// NAME=VALUE, so that a benchmark runs each program as it is deployed:
// dbd and smtpd with GOGC=400, imapd and pop3d with the default. A
// variable the environment already sets (GOGC=100 for an A/B run, GODEBUG=
// for the runtime's default) wins, as the program then inherits it.
func RuntimeEnv(t testing.TB, prog string) []string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime env: no source path for proctest")
	}
	// This file is services/dbd/proctest/runtimeenv.go.
	path := filepath.Join(filepath.Dir(self), "..", "..", "..", "deploy", "systemd", prog+".env")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("runtime env of %s: %v", prog, err)
	}
	var env []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, _, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		switch {
		case !ok:
			continue
		case name != "GOGC" && name != "GODEBUG" && name != "GOMAXPROCS" && name != "GOMEMLIMIT":
			continue // a flag's variable, or a comment
		}
		if _, set := os.LookupEnv(name); set {
			continue
		}
		env = append(env, strings.TrimSpace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("runtime env of %s: %v", prog, err)
	}
	return env
}
