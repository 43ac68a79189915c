package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/imapd/internal/session"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// TestAppendMemoryBudget: APPENDs share one memory budget (Config.
// AppendMemory, here its least, 81 MiB: one mail of the 64 MiB
// APPENDLIMIT at its peak). While one session holds 56 MB of it with a
// mail sent all but its end, another's 30 MB APPEND waits AppendWait for
// the rest of its mail's memory and gets NO [LIMIT] (its literal is read
// and dropped, the session goes on); once the first mail is complete,
// both the first APPEND and a later 30 MB one succeed, and the mails are
// stored whole.
func TestAppendMemoryBudget(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.AppendMemory = 1 // raised to its least
		c.AppendWait = time.Second
	})
	login := func() *raw {
		r := k.raw()
		r.c.SetDeadline(time.Now().Add(2 * time.Minute))
		r.send(fmt.Sprintf("a LOGIN %s %q\r\n", login, password))
		if s := r.until("a "); !strings.HasPrefix(s, "a OK") {
			t.Fatalf("login: %q", s)
		}
		return r
	}
	// The memory is taken as the bytes come: the holder sends most of its
	// mail. Its write returns once imapd has read all but what the
	// sockets' buffers keep (a few MB), well past the quarter after
	// which imapd holds the whole mail's size.
	big := bigMail(56_000_000, "holder")
	const sentFirst = 40_000_000
	a := login()
	a.send(fmt.Sprintf("h APPEND INBOX {%d}\r\n", len(big)))
	if s := a.line(); !strings.HasPrefix(s, "+") {
		t.Fatalf("APPEND of 56 MB: %q", s)
	}
	a.send(string(big[:sentFirst])) // and hold the rest back

	waiter := bigMail(30_000_000, "waiter")
	b := login()
	b.send(fmt.Sprintf("w APPEND INBOX {%d}\r\n", len(waiter)))
	if s := b.line(); !strings.HasPrefix(s, "+") {
		t.Fatalf("APPEND of 30 MB: %q", s)
	}
	b.send(string(waiter) + "\r\n")
	if s := b.until("w "); !strings.HasPrefix(s, "w NO [LIMIT]") {
		t.Fatalf("a second large APPEND with the budget taken: %q, want NO [LIMIT]", s)
	}
	b.send("n NOOP\r\n")
	if s := b.until("n "); !strings.HasPrefix(s, "n OK") {
		t.Fatalf("the session after the refused APPEND: %q", s)
	}

	a.send(string(big[sentFirst:]) + "\r\n")
	if s := a.until("h "); !strings.HasPrefix(s, "h OK") {
		t.Fatalf("the first APPEND, completed: %q", s)
	}
	later := bigMail(30_000_000, "later")
	b.send(fmt.Sprintf("l APPEND INBOX {%d}\r\n", len(later)))
	if s := b.line(); !strings.HasPrefix(s, "+") {
		t.Fatalf("APPEND once the budget is free: %q", s)
	}
	b.send(string(later) + "\r\n")
	if s := b.until("l "); !strings.HasPrefix(s, "l OK") {
		t.Fatalf("APPEND once the budget is free: %q", s)
	}

	// What is stored: the two that succeeded, byte for byte.
	r, _ := k.loginSelect()
	r.send("f UID FETCH 1:* (RFC822.SIZE)\r\n")
	lines, tagged := r.answer("f")
	if !strings.HasPrefix(tagged, "f OK") || len(lines) != 2 {
		t.Fatalf("after the APPENDs: %q %q, want the two stored mails", lines, tagged)
	}
	for i, want := range []int{len(big), len(later)} {
		if !strings.Contains(lines[i], fmt.Sprintf("RFC822.SIZE %d", want)) {
			t.Errorf("mail %d: %q, want RFC822.SIZE %d", i+1, lines[i], want)
		}
	}
}

// bigMail is a mail of n bytes whose Subject is tag.
func bigMail(n int, tag string) []byte {
	head := "From: Bob <bob@y.example>\r\nSubject: " + tag + "\r\n\r\n"
	line := strings.Repeat("x", 78) + "\r\n"
	b := bytes.NewBufferString(head)
	for b.Len()+len(line) <= n {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("y", n-b.Len()))
	return b.Bytes()
}

// TestAppendAnnouncedLiteralHoldsNothing: an APPEND takes memory from the
// shared budget as its literal's bytes arrive. Before, it took the
// announced size at once, and go-imap gives a literal 5 minutes: four
// connections announcing {64000000} and sending nothing held the whole
// budget (here its least, 81 MiB, taken by two), and every other APPEND
// got NO [LIMIT] for those 5 minutes, again and again.
func TestAppendAnnouncedLiteralHoldsNothing(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.AppendMemory = 1 // raised to its least
		c.AppendWait = 200 * time.Millisecond
	})
	for range 4 {
		r := k.rawLogin()
		r.send("h APPEND INBOX {64000000}\r\n")
		if s := r.line(); !strings.HasPrefix(s, "+") {
			t.Fatalf("APPEND of 64 MB: %q", s)
		}
		r.send("From: x") // a few bytes, then nothing more
	}
	r := k.rawLogin()
	m := mail(1)
	for i := range 3 {
		r.send(fmt.Sprintf("w%d APPEND INBOX {%d+}\r\n%s\r\n", i, len(m), m))
		if s := r.until(fmt.Sprintf("w%d ", i)); !strings.HasPrefix(s, fmt.Sprintf("w%d OK", i)) {
			t.Fatalf("APPEND while four 64 MB literals are announced: %q, want OK", s)
		}
	}
	if v := counterValue(t, k, "twinmx_imapd_errors_total", map[string]string{"kind": "append_memory"}); v != 0 {
		t.Errorf("append_memory errors = %v, want 0", v)
	}
}

// TestAppendMemoryPerAccount: the APPENDs of one account hold at most its
// share of the pool (Config.AppendMemoryPerAccount, here its default,
// 81 MiB), however many connections it opens, so another account can
// still APPEND; and the share comes back when a connection drops in the
// middle of its literal.
//
// The pool is 108 MiB. A 40 MB mail (38 MiB) holds its first quarter in
// pieces (10 MiB) before it takes its buffer: alice's first APPEND, sent
// all but its end, holds 38 MiB, and her second, on a second connection,
// would take her to 86 MiB; it waits AppendWait for her first and gets
// NO [LIMIT], though the pool has room. bob's 40 MB APPEND then fits
// (38 + 48 MiB at its peak). Before (no share), alice's second took its
// 38 MiB from the pool, she held 76 of the 108, and bob's waited
// AppendWait and got NO [LIMIT].
func TestAppendMemoryPerAccount(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.AppendMemory = 108 << 20
		c.AppendWait = time.Second
	})
	const bob = "bob"
	if err := testkit.AddUser(k.ctx, k.admin, bob, password, "bob@x.example"); err != nil {
		t.Fatal(err)
	}
	loginAs := func(user string) *raw {
		r := k.raw()
		r.c.SetDeadline(time.Now().Add(2 * time.Minute))
		r.send(fmt.Sprintf("a LOGIN %s %q\r\n", user, password))
		if s := r.until("a "); !strings.HasPrefix(s, "a OK") {
			t.Fatalf("login %s: %q", user, s)
		}
		return r
	}
	// begin announces an APPEND of m and writes its first n bytes; the
	// write returns once imapd has read all but what the sockets keep.
	begin := func(r *raw, tag string, m []byte, n int) {
		t.Helper()
		r.send(fmt.Sprintf("%s APPEND INBOX {%d}\r\n", tag, len(m)))
		if s := r.line(); !strings.HasPrefix(s, "+") {
			t.Fatalf("%s APPEND of %d bytes: %q", tag, len(m), s)
		}
		if _, err := r.c.Write(m[:n]); err != nil {
			t.Fatal(err)
		}
	}
	finish := func(r *raw, tag string, m []byte, n int) string {
		t.Helper()
		if _, err := r.c.Write(m[n:]); err != nil {
			t.Fatal(err)
		}
		r.send("\r\n")
		return r.until(tag + " ")
	}
	const size, sentFirst = 40_000_000, 30_000_000
	first := bigMail(size, "alice first")
	a := loginAs(login)
	begin(a, "h", first, sentFirst) // and hold the rest back

	second := bigMail(size, "alice second")
	b := loginAs(login)
	begin(b, "w", second, sentFirst) // returns once imapd refused it and reads on to discard it

	bobs := bigMail(size, "bob")
	c := loginAs(bob)
	begin(c, "o", bobs, 0)
	if s := finish(c, "o", bobs, 0); !strings.HasPrefix(s, "o OK") {
		t.Errorf("bob's APPEND while alice has two large APPENDs running: %q, want OK", s)
	}
	if s := finish(b, "w", second, sentFirst); !strings.HasPrefix(s, "w NO [LIMIT]") {
		t.Errorf("alice's second large APPEND beyond her share: %q, want NO [LIMIT]", s)
	}
	if v := counterValue(t, k, "twinmx_imapd_errors_total", map[string]string{"kind": "append_account_memory"}); v != 1 {
		t.Errorf("append_account_memory errors = %v, want 1", v)
	}
	b.send("n NOOP\r\n")
	if s := b.until("n "); !strings.HasPrefix(s, "n OK") {
		t.Fatalf("alice's session after the refused APPEND: %q", s)
	}

	// alice's first connection drops mid-literal: its 38 MiB go back to
	// her share once the session has ended (its APPEND first).
	sessions := gaugeValue(t, k, "twinmx_imapd_sessions")
	a.c.Close()
	for i := 0; gaugeValue(t, k, "twinmx_imapd_sessions") >= sessions; i++ {
		if i == 1000 {
			t.Fatal("the dropped APPEND's session is still open after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	begin(b, "l", first, 0)
	if s := finish(b, "l", first, 0); !strings.HasPrefix(s, "l OK") {
		t.Errorf("alice's APPEND once her dropped one ended: %q, want OK", s)
	}

	// Stored: alice's last and bob's, whole.
	for _, user := range []string{login, bob} {
		r := loginAs(user)
		r.send("s SELECT INBOX\r\nf UID FETCH 1:* (RFC822.SIZE)\r\n")
		r.answer("s")
		lines, tagged := r.answer("f")
		if !strings.HasPrefix(tagged, "f OK") || len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf("RFC822.SIZE %d", size)) {
			t.Errorf("%s's INBOX: %q %q, want one mail of %d bytes", user, lines, tagged, size)
		}
	}
}

// TestValidateAppendMemoryPerAccount: --append-memory-per-account is
// checked at start: at least one mail of the APPENDLIMIT at its peak
// (81 MiB) and at most the pool (--append-memory after its default and
// least), or 0 (the default) or negative (no share).
func TestValidateAppendMemoryPerAccount(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name              string
		total, perAccount int64
		wantErr           bool
	}{
		{"default", 0, 0, false},
		{"no share", 0, -1, false},
		{"least", 0, session.MinAppendMemory, false},
		{"below the least", 0, session.MinAppendMemory - 1, true},
		{"the default pool", 0, session.DefaultAppendMemory, false},
		{"above the default pool", 0, session.DefaultAppendMemory + 1, true},
		{"within a larger pool", 1024 * mib, 512 * mib, false},
		{"a pool raised to its least", 1, session.MinAppendMemory, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Listen: "127.0.0.1:0", DB: "127.0.0.1:1", AppendMemory: tt.total, AppendMemoryPerAccount: tt.perAccount}
			if err := c.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate with --append-memory %d, --append-memory-per-account %d = %v, want error %v", tt.total, tt.perAccount, err, tt.wantErr)
			}
		})
	}
}
