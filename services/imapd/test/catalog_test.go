package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// bigAppendMiB is the size of TestAppendMemory's mail.
const bigAppendMiB = 60

// maxAppendGrowthMiB bounds how much the imapd process's peak RSS may
// grow over one 60 MiB APPEND. imapd holds the whole mail in one buffer
// of the literal's size (APPEND is not streamed to dbd: one dbd batch
// carries it): measured +60/+61 MiB on 2026-11-29, +124 MiB before the
// buffer was sized from the literal. Concurrent APPENDs share the
// --append-memory budget (TestAppendMemoryBudget), so the sum is bounded.
const maxAppendGrowthMiB = bigAppendMiB + bigAppendMiB/2

// TestAppendMemory (TEST-CATALOG 45): the imapd process's peak RSS
// (VmHWM) after a client announces a 400 MB literal and goes silent, and
// after one 60 MiB APPEND, streamed from a generator so the test holds
// none of it. The first costs nothing; the second is bounded by
// maxAppendGrowthMiB; the mail is stored whole.
func TestAppendMemory(t *testing.T) {
	s := newSite(t)
	pid := s.imapd.Cmd.Process.Pid
	peak := func() int64 {
		t.Helper()
		v, err := proctest.PeakRSS(pid)
		if err != nil {
			t.Skipf("no peak RSS on this system: %v", err)
		}
		return v
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", s.imapAddr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		return c, br
	}
	until := func(br *bufio.Reader, prefix string) string {
		t.Helper()
		for range 1000 {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no %q", prefix)
		return ""
	}

	c, br := dial()
	fmt.Fprintf(c, "a LOGIN %s %q\r\n", login, password)
	until(br, "a OK")
	before := peak()

	silent, _ := dial()
	fmt.Fprint(silent, "a LOGIN {400000000}\r\n")

	const header = "From: Bob <bob@y.example>\r\nTo: alice@x.example\r\nSubject: big\r\n\r\n"
	line := strings.Repeat("0123456789", 7) + "abcd\r\n" // 76 bytes
	size := bigAppendMiB << 20
	lines := (size - len(header)) / len(line)
	tail := size - len(header) - lines*len(line)
	fmt.Fprintf(c, "t APPEND INBOX {%d}\r\n", size)
	if l := until(br, "+"); !strings.HasPrefix(l, "+") {
		t.Fatal(l)
	}
	begin := time.Now()
	w := bufio.NewWriterSize(c, 1<<20)
	io.WriteString(w, header)
	for range lines {
		io.WriteString(w, line)
	}
	io.WriteString(w, strings.Repeat("z", tail))
	io.WriteString(w, "\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if l := until(br, "t "); !strings.HasPrefix(l, "t OK [APPENDUID") {
		t.Fatalf("APPEND of %d MiB: %q", bigAppendMiB, l)
	}
	took := time.Since(begin)
	after := peak()
	growth := (after - before) >> 20
	t.Logf("imapd peak RSS %d MiB before, %d MiB after a %d MiB APPEND (+%d MiB; %v)", before>>20, after>>20, bigAppendMiB, growth, took)
	if growth > maxAppendGrowthMiB {
		t.Errorf("peak RSS grew by %d MiB over a %d MiB APPEND, want at most %d", growth, bigAppendMiB, maxAppendGrowthMiB)
	}

	fmt.Fprint(c, "f SELECT INBOX\r\ng FETCH 1 RFC822.SIZE\r\n")
	until(br, "f OK")
	if l := until(br, "* 1 FETCH"); !strings.Contains(l, fmt.Sprintf("RFC822.SIZE %d", size)) {
		t.Errorf("stored mail: %q, want RFC822.SIZE %d", l, size)
	}
	// The silent client was never invited (it would be closed after 30 s).
	silent.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if l, _ := bufio.NewReader(silent).ReadString('\n'); strings.HasPrefix(l, "+") {
		t.Errorf("LOGIN {400000000} invited: %q", l)
	}
}
