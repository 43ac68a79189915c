package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
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
	mailOf := func(n int, tag string) []byte {
		head := "From: Bob <bob@y.example>\r\nSubject: " + tag + "\r\n\r\n"
		line := strings.Repeat("x", 78) + "\r\n"
		b := bytes.NewBufferString(head)
		for b.Len()+len(line) <= n {
			b.WriteString(line)
		}
		b.WriteString(strings.Repeat("y", n-b.Len()))
		return b.Bytes()
	}
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
	big := mailOf(56_000_000, "holder")
	const sentFirst = 40_000_000
	a := login()
	a.send(fmt.Sprintf("h APPEND INBOX {%d}\r\n", len(big)))
	if s := a.line(); !strings.HasPrefix(s, "+") {
		t.Fatalf("APPEND of 56 MB: %q", s)
	}
	a.send(string(big[:sentFirst])) // and hold the rest back

	waiter := mailOf(30_000_000, "waiter")
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
	later := mailOf(30_000_000, "later")
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
