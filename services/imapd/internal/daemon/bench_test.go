//go:build unix

package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
	"github.com/twinmx/twinmx/services/imapd/internal/mailcache"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// cpuTime is the CPU time this process used so far (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchSession delivers up to 1000 corpus mails to a dbd and imapd in this
// process (so -cpuprofile sees both), imapd's Config changed by mod, and
// returns a logged-in, selected plain connection's command function, the
// mails' count and bytes, and the kit.
func benchSession(b *testing.B, mod func(*Config)) (cmd func(tag, line string), mails int, size int64, k *kit) {
	corpus := proctest.Corpus(b)
	if len(corpus) > 1000 {
		corpus = corpus[:1000]
	}
	k = startWith(b, mod)
	for _, m := range corpus {
		if _, err := testkit.Deliver(k.ctx, k.admin, address, m.Raw, true, time.Now()); err != nil {
			b.Fatal(err)
		}
		size += int64(len(m.Raw))
	}
	c, err := net.Dial("tcp", k.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	r := bufio.NewReaderSize(c, 64<<10)
	cmd = func(tag, line string) {
		b.Helper()
		if _, err := fmt.Fprintf(c, "%s %s\r\n", tag, line); err != nil {
			b.Fatal(err)
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					b.Fatalf("%s: %s", line, l)
				}
				return
			}
			// A literal: skip its bytes.
			if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}\r\n") {
				var n int64
				fmt.Sscanf(l[i+1:], "%d", &n)
				if _, err := io.CopyN(io.Discard, r, n); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	r.ReadString('\n') // greeting
	cmd("l", fmt.Sprintf("LOGIN %s %q", login, password))
	cmd("s", "SELECT INBOX")
	return cmd, len(corpus), size, k
}

// BenchmarkFetchBody measures UID FETCH 1:* BODY.PEEK[] of up to 1000
// corpus mails over one plain connection. The figure is mails/s. Cases:
// off (no cache, the build before the cache), cold (whole mails cached,
// BodyCacheBytes 64 MiB, but the cache emptied before every FETCH: the
// cost of filling it), warm (the same, not emptied: every FETCH after
// the first finds all mails cached).
func BenchmarkFetchBody(b *testing.B) {
	benchCached(b, "UID FETCH 1:* BODY.PEEK[]", func(c *Config) { c.BodyCacheBytes = 64 << 20 })
	b.Run("dbcold", func(b *testing.B) { benchDBCold(b, "UID FETCH 1:* BODY.PEEK[]") })
}

// benchDBCold runs line with imapd's cache off and dbd restarted before
// each run, so dbd reads every row from blocks not yet in its block cache
// (the page cache stays warm), as in the first FETCH of mail just
// delivered. The restart's CPU is not counted. dbd flushes the memtable
// it recovers at open, and waits for the flush when it stops: restarted
// once before the runs, it reads the mails from sstables, not from a
// memtable.
func benchDBCold(b *testing.B, line string) {
	cmd, mails, size, k := benchSession(b, func(c *Config) { c.CacheBytes = -1 })
	b.SetBytes(size)
	k.env.Restart()
	b.ResetTimer()
	var busy, cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		k.env.Restart()
		cmd("n", "UID FETCH 1 (UID)") // imapd reconnects to dbd
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime(b)
		cmd("f", line)
		busy += time.Since(start)
		cpu += cpuTime(b) - cpu0
	}
	n := float64(b.N * mails)
	b.ReportMetric(n/busy.Seconds(), "mails/s")
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/mail")
}

// BenchmarkFetchHeaders measures what a client fetches to list a folder
// (mutt, Thunderbird): FLAGS, ENVELOPE and BODYSTRUCTURE of every mail.
// Cases as BenchmarkFetchBody's, with the default parsed-mail cache.
func BenchmarkFetchHeaders(b *testing.B) {
	benchCached(b, "UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)", nil)
}

// BenchmarkFetchHeaderFields is Thunderbird's listing: sizes and a choice
// of header fields.
func BenchmarkFetchHeaderFields(b *testing.B) {
	benchCached(b, "UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])", nil)
}

// benchCached runs line with no cache (off), a cache emptied before each
// run (cold: dbd's block cache is warm after the first run all the same)
// and a cache kept (warm); mod sets the cache's budgets.
func benchCached(b *testing.B, line string, mod func(*Config)) {
	b.Run("off", func(b *testing.B) {
		benchCommand(b, line, func(c *Config) { c.CacheBytes = -1 }, false)
	})
	b.Run("cold", func(b *testing.B) { benchCommand(b, line, mod, true) })
	b.Run("warm", func(b *testing.B) { benchCommand(b, line, mod, false) })
}

// BenchmarkSearchHeader measures a SEARCH on a header field (a client's
// quick filter), with cases as BenchmarkFetchHeaders'.
func BenchmarkSearchHeader(b *testing.B) {
	benchCached(b, "UID SEARCH FROM \"no.such.sender@nowhere.example\"", nil)
}

// BenchmarkSearchText measures a SEARCH that reads every mail's bytes:
// from dbd (no body cache), and from the body cache after a FETCH of
// every mail filled it.
func BenchmarkSearchText(b *testing.B) {
	const search = "UID SEARCH TEXT \"no such words anywhere\""
	b.Run("dbd", func(b *testing.B) { benchCommand(b, search, nil, false) })
	b.Run("bodycache", func(b *testing.B) {
		benchCommand(b, search, func(c *Config) { c.BodyCacheBytes = 64 << 20 }, false, "UID FETCH 1:* BODY.PEEK[]")
	})
}

// benchCommand measures line, run b.N times in one session. cold
// empties the cache before each run; otherwise line runs once before
// the timer starts, after the prime commands.
func benchCommand(b *testing.B, line string, mod func(*Config), cold bool, prime ...string) {
	var cache *mailcache.Cache
	cmd, mails, size, _ := benchSession(b, func(c *Config) {
		if mod != nil {
			mod(c)
		}
		c.onCache = func(m *mailcache.Cache) { cache = m }
	})
	b.SetBytes(size)
	for i, p := range prime {
		cmd(fmt.Sprintf("p%d", i), p)
	}
	if !cold {
		cmd("f0", line) // the first FETCH fills the cache
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	for i := 0; i < b.N; i++ {
		if cold {
			cache.Reset()
		}
		cmd("f", line)
	}
	n := float64(b.N * mails)
	b.ReportMetric(n/time.Since(start).Seconds(), "mails/s")
	// CPU per mail (dbd, imapd and this client together) varies less
	// than the rate on a shared machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/n, "cpu-µs/mail")
	b.ReportMetric(float64(cache.Bytes())/(1<<20), "cache-MiB")
}
