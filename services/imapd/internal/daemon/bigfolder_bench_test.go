//go:build unix

package daemon

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// bigFolder delivers n mails to INBOX and returns a logged-in plain
// connection's command function, which reports whether the answer carried
// an EXISTS. n is TWINMX_BENCH_FOLDER if set.
func bigFolder(b *testing.B, n int) (k *kit, cmd func(tag, line string) bool, mail func(int) []byte, size int) {
	if v, err := strconv.Atoi(os.Getenv("TWINMX_BENCH_FOLDER")); err == nil && v > 0 {
		n = v
	}
	k = start(b)
	mail = func(i int) []byte {
		return fmt.Appendf(nil, "From: s@y.example\r\nTo: %s\r\nSubject: %d\r\nMessage-ID: <big%d@y.example>\r\n\r\nbody %d\r\n", address, i, i, i)
	}
	for i := 0; i < n; i += 500 {
		var raws [][]byte
		for j := i; j < min(i+500, n); j++ {
			raws = append(raws, mail(j))
		}
		if err := testkit.DeliverMany(k.ctx, k.admin, address, raws, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	c, err := net.Dial("tcp", k.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	cmd = func(tag, line string) bool {
		b.Helper()
		fmt.Fprintf(c, "%s %s\r\n", tag, line)
		exists := false
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			exists = exists || strings.HasSuffix(l, " EXISTS\r\n")
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					b.Fatalf("%s: %s", line, l)
				}
				return exists
			}
		}
	}
	r.ReadString('\n')
	cmd("l", fmt.Sprintf("LOGIN %s %q", login, password))
	return k, cmd, mail, n
}

// timed runs op b.N times and reports, per run, the wall time and the CPU
// time of the whole process (dbd, imapd and the client) in ms, as
// "ms/"+unit and "cpu-ms/"+unit.
func timed(b *testing.B, unit string, op func(i int)) {
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	for i := 0; i < b.N; i++ {
		op(i)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/"+unit)
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/"+unit)
}

// BenchmarkSelectBigFolder measures SELECT INBOX of a big folder
// (TWINMX_BENCH_FOLDER mails, default 10,000), as a mail client does on
// each new connection.
func BenchmarkSelectBigFolder(b *testing.B) {
	_, cmd, _, _ := bigFolder(b, 10000)
	cmd("s", "SELECT INBOX")
	timed(b, "select", func(int) { cmd("s", "SELECT INBOX") })
}

// BenchmarkStatusWhileSelected measures STATUS of a small folder from a
// session that has the big INBOX selected, as mail clients poll their
// folders' counts.
func BenchmarkStatusWhileSelected(b *testing.B) {
	_, cmd, _, _ := bigFolder(b, 10000)
	cmd("c", "CREATE Other")
	cmd("s", "SELECT INBOX")
	cmd("t", "STATUS Other (MESSAGES UNSEEN UIDNEXT)")
	timed(b, "status", func(int) { cmd("t", "STATUS Other (MESSAGES UNSEEN UIDNEXT)") })
}

// BenchmarkListStatus measures LIST "" "*" RETURN (STATUS ...) from a
// session with nothing selected, over the system folders and one user
// folder, with the big INBOX.
func BenchmarkListStatus(b *testing.B) {
	_, cmd, _, _ := bigFolder(b, 10000)
	cmd("c", "CREATE Other")
	timed(b, "list", func(int) { cmd("t", `LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))`) })
}

// BenchmarkNewMailInBigFolder measures what one new mail costs a session
// that has a big INBOX selected: the mail is delivered, and the session's
// NOOP must answer with its EXISTS. TWINMX_BENCH_FOLDER sets the folder's
// size (default 10,000 mails). Figures: ms per new mail, and CPU (dbd,
// imapd and this client together) per new mail.
func BenchmarkNewMailInBigFolder(b *testing.B) {
	k, cmd, mail, n := bigFolder(b, 10000)
	t0 := time.Now()
	cmd("s", "SELECT INBOX")
	b.Logf("SELECT of %d mails: %v", n, time.Since(t0))
	timed(b, "mail", func(i int) {
		if _, err := testkit.Deliver(k.ctx, k.admin, address, mail(n+i), true, time.Now()); err != nil {
			b.Fatal(err)
		}
		for !cmd("n", "NOOP") {
		}
	})
}
