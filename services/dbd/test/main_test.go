// Package test holds dbd's black-box tests: they build the real dbd and
// dbctl binaries, run dbd as a separate process on 127.0.0.1, drive it
// with dbctl and the wire client, and kill it with SIGKILL.
package test

import (
	"crypto/rand"
	"fmt"
	"os"
	"testing"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("dbd-bin-", map[string]string{"dbd": "../cmd/dbd", "dbctl": "../cmd/dbctl"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newSite makes a dbd's keys (dbd, admin, smtpd, mailbox) and clients
// file; the test starts it.
func newSite(t *testing.T) *proctest.DB {
	t.Helper()
	return proctest.NewDB(t, proctest.DBConfig{Bin: binDir, Keys: map[string]string{"smtpd": "smtpd", "mailbox": "mailbox"}})
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := proctest.PeakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
