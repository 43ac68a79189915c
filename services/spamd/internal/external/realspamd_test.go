package external

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// gtube is SpamAssassin's Generic Test for Unsolicited Bulk Email: any
// SpamAssassin scores a mail containing it at 1000.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// startRealSpamd runs the system's SpamAssassin spamd on a loopback port
// with network tests off, or skips the test when it is not installed.
func startRealSpamd(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the real SpamAssassin test (starting spamd takes seconds)")
	}
	bin, err := exec.LookPath("spamd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/spamd"); serr != nil {
			t.Skip("spamd not installed (Debian: apt-get install spamd); skipping the real SpamAssassin test")
		}
		bin = "/usr/sbin/spamd"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	args := []string{
		"--listen=" + addr, "--allowed-ips=127.0.0.1",
		"--local",         // no DNS blocklists or other network tests
		"--nouser-config", // no per-user files
		"--max-children=1", "--min-children=1",
		"--pidfile=" + filepath.Join(dir, "spamd.pid"),
		"--syslog=stderr",
	}
	if os.Geteuid() == 0 {
		// spamd refuses to scan as root; nobody is its own fallback.
		args = append(args, "--username=nobody")
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Its own process group, so the preforked child goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start spamd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	// spamd compiles its rules before it listens: poll until it accepts.
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case err := <-exited:
			t.Fatalf("spamd exited before listening: %v\n%s", err, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("spamd not listening on %s after 90s\n%s", addr, logs.String())
		}
	}
}

func TestRealSpamAssassin(t *testing.T) {
	addr := startRealSpamd(t)
	sa := NewSpamAssassin(SpamAssassinConfig{Addr: addr, Limits: Limits{Timeout: 60 * time.Second}})
	spam := "From: a@example.com\r\nTo: b@example.org\r\nSubject: test\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n" + gtube + "\r\n"
	got, err := sa.Check(t.Context(), signal.Envelope{}, []byte(spam))
	if err != nil {
		t.Fatalf("Check(GTUBE): %v", err)
	}
	if !got.Spam || got.Score < 900 || got.Threshold <= 0 || got.Engine != "spamassassin" {
		t.Errorf("Check(GTUBE) = %+v, want spam scored about 1000", got)
	}
	found := false
	for _, r := range got.Rules {
		found = found || r == "GTUBE"
	}
	if !found {
		t.Errorf("Check(GTUBE) rules = %v, want GTUBE among them", got.Rules)
	}

	ham, err := sa.Check(t.Context(), signal.Envelope{}, []byte(testMail))
	if err != nil {
		t.Fatalf("Check(plain mail): %v", err)
	}
	if ham.Spam || ham.Score >= ham.Threshold {
		t.Errorf("Check(plain mail) = %+v, want not spam", ham)
	}

	// A request spamd cannot read is an error, not a verdict.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, _ = c.Write([]byte("CHECK SPAMC/1.5\r\nContent-length: nope\r\n\r\n"))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	_, perr := parseSpamdResponse(buf[:n])
	var se *SpamdError
	if !errors.As(perr, &se) && !errors.Is(perr, ErrMalformed) {
		t.Errorf("bad request answer %q parsed to %v, want an error", buf[:n], perr)
	}
}
