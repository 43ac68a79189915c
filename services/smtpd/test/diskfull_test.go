package test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestDiskFull (TEST-CATALOG items 38 and, for the reply, 37): dbd's data
// folder is a small tmpfs mounted by the test (so it must run as root; CI
// does), nearly filled by a file. Mails of 100 kB go through smtpd until
// the disk is full. A client may see 250 only for a mail that is durably
// stored: once dbd fails to write (it stops acknowledging writes and
// answers no-space), the mail that met the full disk and every mail after
// it get 452 4.3.1 (at DATA, or at MAIL while smtpd remembers the full
// disk), never 250, and none of them is acknowledged. Then space is
// freed: dbd sees it and exits by itself (status 1), and the test starts
// it again as systemd would. New mail gets 250, and every mail that got
// 250 is there, acknowledged and byte for byte.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("TestDiskFull mounts a tmpfs for dbd's data and must run as root (CI does); run it as root or exclude it with -skip TestDiskFull")
	}
	const rcpt = "full@twinmx.test"
	s := newSite(t)
	data := filepath.Join(s.Dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", data).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for dbd's data: %v: %s", err, out)
	}
	// Cleanups run last in, first out: this one before newSite's (and
	// before its TempDir is removed), so dbd is killed, then unmounted.
	t.Cleanup(func() {
		s.Kill()
		if out, err := exec.Command("umount", "-l", data).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", data, err, out)
		}
	})
	s.Start()
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 10 * time.Second, MinCopies: 1,
		Extra: []string{"--db-timeout", "1s"}})

	// Leave about 1 MiB free.
	var st syscall.Statfs_t
	if err := syscall.Statfs(data, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	filler := filepath.Join(data, "filler")
	if err := os.WriteFile(filler, make([]byte, free-1<<20), 0o600); err != nil {
		t.Fatalf("fill the tmpfs: %v", err)
	}

	token := fmt.Sprintf("full-%d", time.Now().UnixNano())
	mail := func(i int) []byte {
		return []byte(fmt.Sprintf("From: a@sender.test\r\nTo: %s\r\nSubject: %s-%d\r\n\r\n%s", rcpt, token, i,
			bytes.Repeat([]byte(fmt.Sprintf("%06d 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n", i)), 1200)))
	}
	// After the first 452, this many more mails are sent while dbd
	// reports its disk full.
	const whileFull = 3
	var acked []int
	failed := -1
	for i := 0; i < 200; i++ {
		r, err := sendMail(d.addr, "a@sender.test", []string{rcpt}, mail(i), 30*time.Second)
		if err != nil {
			t.Fatalf("mail %d: %v", i, err)
		}
		switch {
		case r.Code == 250 && failed < 0:
			acked = append(acked, i)
		case r.Code == 250:
			t.Errorf("mail %d: 250 after mail %d met the full disk", i, failed)
			acked = append(acked, i)
		case r.Code == 452 && strings.HasPrefix(r.Text, "4.3.1"):
			if failed < 0 {
				failed = i
				t.Logf("mail %d met the full disk: %v", i, r)
			}
		case failed < 0:
			t.Fatalf("mail %d: %v; want 250, or 452 4.3.1 once the disk is full", i, r)
		default:
			t.Errorf("mail %d: %v; want 452 4.3.1 while dbd's disk is full", i, r)
		}
		if failed >= 0 && i >= failed+whileFull {
			break
		}
	}
	if failed < 0 {
		t.Fatalf("200 mails of 100 kB fitted into 1 MiB: the disk never filled")
	}
	if len(acked) == 0 {
		t.Errorf("no mail got 250 before the disk was full (is 1 MiB too little for one?)")
	}
	t.Logf("%d mails got 250, then the disk was full; dbd log (tail):\n%s", len(acked), proctest.Tail(s.Log.String(), 5))

	if !strings.Contains(s.Log.String(), "disk full: answering no-space") {
		t.Errorf("dbd did not log that it answers no-space")
	}
	if out, errOut, code := s.DbctlExit(nil, "status"); code != 0 || !strings.Contains(out, "\nstorage: no-space\n") {
		t.Errorf("dbctl status while the disk is full (exit %d): %s%s; want storage: no-space", code, out, errOut)
	}

	// Space again: dbd, which waits for it, exits to be restarted (1);
	// the test restarts it as systemd's Restart=on-failure would.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.Cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("dbd ended with %v once space was back, want exit status 1", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("dbd still runs 30 s after space was freed; log (tail):\n%s", proctest.Tail(s.Log.String(), 5))
	}
	s.Cmd = nil
	s.Start()
	next := mail(1000)
	waitFor(t, 30*time.Second, "250 for a new mail once space is free", func() bool {
		r, err := sendMail(d.addr, "a@sender.test", []string{rcpt}, next, 30*time.Second)
		return err == nil && r.Code == 250
	})

	// Every 250 is there byte for byte, acknowledged; the mails that met
	// the full disk are not acknowledged.
	ctx := proctest.Ctx(t, time.Minute)
	for _, i := range append(acked, 1000) {
		m := mail(i)
		stored, err := s.storedMail(ctx, receiveKey(m, rcpt))
		if err != nil {
			t.Errorf("mail %d got 250 but is not there: %v", i, err)
			continue
		}
		if _, _, rest := stripOurFields(stored); !bytes.Equal(rest, m) {
			t.Errorf("mail %d stored differently: %s", i, firstDiff(rest, m))
		}
	}
	for i := failed; i <= failed+whileFull; i++ {
		row, err := s.receiveRow(ctx, receiveKey(mail(i), rcpt))
		if err != nil {
			t.Fatal(err)
		}
		if row == nil {
			continue
		}
		if _, ok := model.AcknowledgedReceived(*row); ok {
			t.Errorf("mail %d got 4xx but is acknowledged", i)
		}
	}
}
