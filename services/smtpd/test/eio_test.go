package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
)

// straceBin injects system call faults into a running dbd.
const straceBin = "/usr/bin/strace"

// TestSyncEIO (TEST-CATALOG item 37): strace attaches to a running dbd
// (every thread) and makes each fsync and fdatasync from then on fail
// with EIO, as a dying disk would. The mails through smtpd from then on
// get 451 4.3.0, never 250: dbd does not retry the sync and acknowledge,
// it stops acknowledging and exits, and those mails are not
// acknowledged. After dbd restarts (the faults gone with strace), a new
// mail gets 250, and the mail that got 250 before the fault is there,
// acknowledged, byte for byte.
func TestSyncEIO(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(straceBin); err != nil {
		if os.Getenv("TWINMX_REQUIRE_POSTFIX") != "" {
			t.Fatalf("%s is missing and TWINMX_REQUIRE_POSTFIX is set (apt-get install strace)", straceBin)
		}
		t.Skipf("%s is not installed (apt-get install strace)", straceBin)
	}
	const rcpt = "eio@twinmx.test"
	s := newSite(t)
	s.Start()
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 10 * time.Second, MinCopies: 1,
		Extra: []string{"--db-timeout", "2s"}})
	token := fmt.Sprintf("eio-%d", time.Now().UnixNano())
	mail := func(name string) []byte {
		return []byte("From: a@sender.test\r\nTo: " + rcpt + "\r\nSubject: " + token + "-" + name + "\r\n\r\nbody of " + name + "\r\n")
	}
	before := mail("before")
	if r, err := sendMail(d.addr, "a@sender.test", []string{rcpt}, before, 20*time.Second); err != nil || r.Code != 250 {
		t.Fatalf("a mail before the fault: %v %v", r, err)
	}

	out := &proctest.SyncBuffer{}
	st := exec.Command(straceBin, "-f", "-p", fmt.Sprint(s.Cmd.Process.Pid), "-e", "trace=fsync,fdatasync",
		"-e", "inject=fsync,fdatasync:error=EIO", "-o", "/dev/null")
	st.Stderr = out
	dieWithTest(st, syscall.SIGKILL)
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	stopStrace := func() {
		if st.Process != nil {
			st.Process.Kill()
			st.Wait()
			st.Process = nil
		}
	}
	t.Cleanup(stopStrace)
	waitFor(t, 10*time.Second, "strace to attach to dbd", func() bool {
		return strings.Contains(out.String(), "attached")
	})

	during := [][]byte{mail("during-1"), mail("during-2")}
	for i, m := range during {
		r, err := sendMail(d.addr, "a@sender.test", []string{rcpt}, m, 30*time.Second)
		if err != nil {
			t.Fatalf("mail %d during the fault: %v", i+1, err)
		}
		if r.Code != 451 || !strings.HasPrefix(r.Text, "4.3.0") {
			t.Errorf("mail %d during the fault: %v; want 451 4.3.0", i+1, r)
		}
	}
	pid := s.Cmd.Process.Pid
	waitFor(t, 10*time.Second, "dbd to exit after the failed sync", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || bytes.Contains(stat, []byte(") Z "))
	})
	if !strings.Contains(s.Log.String(), "input/output error") {
		t.Errorf("dbd did not log the EIO; log (tail):\n%s", proctest.Tail(s.Log.String(), 10))
	}

	stopStrace()
	s.Kill()
	s.Start()
	after := mail("after")
	waitFor(t, 30*time.Second, "250 for a new mail after dbd's restart", func() bool {
		r, err := sendMail(d.addr, "a@sender.test", []string{rcpt}, after, 30*time.Second)
		return err == nil && r.Code == 250
	})
	ctx := proctest.Ctx(t, time.Minute)
	for _, m := range [][]byte{before, after} {
		stored, err := s.storedMail(ctx, receiveKey(m, rcpt))
		if err != nil {
			t.Errorf("%q got 250 but is not there: %v", m, err)
			continue
		}
		if _, _, rest := stripOurFields(stored); !bytes.Equal(rest, m) {
			t.Errorf("stored differently: %s", firstDiff(rest, m))
		}
	}
	for i, m := range during {
		row, err := s.receiveRow(ctx, receiveKey(m, rcpt))
		if err != nil {
			t.Fatal(err)
		}
		if row == nil {
			continue
		}
		if _, ok := model.AcknowledgedReceived(*row); ok {
			t.Errorf("mail %d during the fault got 451 but is acknowledged", i+1)
		}
	}
}
