// Package test holds dbd's black-box tests: they build the real dbd and
// dbctl binaries, run dbd as a separate process on 127.0.0.1, drive it
// with dbctl and the wire client, and kill it with SIGKILL.
package test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
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

// site is one dbd process with its keys and data folder.
type site struct {
	t    *testing.T
	dir  string
	addr string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	dbd  wire.PublicKey
	// flags are more dbd flags for the next start.
	flags []string
}

// newSite makes keys (dbd, admin, smtpd, mailbox) and a clients file.
func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{t: t, dir: t.TempDir()}
	for _, name := range []string{"dbd", "admin", "smtpd", "mailbox"} {
		s.dbctl(nil, "keygen", "--out", filepath.Join(s.dir, "keys", name))
	}
	clients := "admin keys/admin.pub\nsmtpd keys/smtpd.pub\nmailbox keys/mailbox.pub\n"
	if err := os.WriteFile(filepath.Join(s.dir, "clients"), []byte(clients), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := wire.LoadPublicKey(filepath.Join(s.dir, "keys", "dbd.pub"))
	if err != nil {
		t.Fatal(err)
	}
	s.dbd = pub
	t.Cleanup(s.kill)
	return s
}

// start runs dbd and waits until it serves.
func (s *site) start() {
	s.t.Helper()
	if s.addr == "" {
		s.addr = proctest.FreePort(s.t)
	}
	s.log = &bytes.Buffer{}
	args := append([]string{"--data", filepath.Join(s.dir, "data"), "--listen", s.addr,
		"--key", filepath.Join(s.dir, "keys", "dbd"), "--clients", filepath.Join(s.dir, "clients")}, s.flags...)
	s.cmd = exec.Command(filepath.Join(binDir, "dbd"), args...)
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		nc, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			nc.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("dbd did not start; log:\n%s", s.log)
}

// kill sends SIGKILL and reaps the process.
func (s *site) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// stop sends SIGTERM and requires a clean exit.
func (s *site) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(os.Interrupt)
	if err := s.cmd.Wait(); err != nil {
		s.t.Errorf("dbd exit after SIGINT: %v; log:\n%s", err, s.log)
	}
	s.cmd = nil
}

// dbctl runs dbctl with the admin key (unless args set --key), feeding
// stdin, and returns stdout, stderr and the exit code.
func (s *site) dbctlExit(stdin io.Reader, args ...string) (string, string, int) {
	s.t.Helper()
	full := args
	if s.addr != "" && args[0] != "keygen" && args[0] != "bench" {
		full = append([]string{"--db", s.addr, "--db-pub", filepath.Join(s.dir, "keys", "dbd.pub"),
			"--key", filepath.Join(s.dir, "keys", "admin"), "--timeout", "20s"}, args...)
	}
	cmd := exec.Command(filepath.Join(binDir, "dbctl"), full...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("dbctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (s *site) dbctl(stdin io.Reader, args ...string) string {
	s.t.Helper()
	out, errs, code := s.dbctlExit(stdin, args...)
	if code != 0 {
		s.t.Fatalf("dbctl %v: exit %d: %s", args, code, errs)
	}
	return out
}

// client returns a wire client with the admin key.
func (s *site) client(role string) *client.Client {
	s.t.Helper()
	kp, err := wire.LoadKeyPair(filepath.Join(s.dir, "keys", role))
	if err != nil {
		s.t.Fatal(err)
	}
	c, err := client.New(client.Config{Addr: s.addr, Static: kp, Server: s.dbd, Timeout: 20 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
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
