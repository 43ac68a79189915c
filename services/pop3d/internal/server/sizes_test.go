package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// TestSizesEqualRETR is catalog item 55: for mail stored with LF-only or
// mixed line ends, without a final line end, with a bare CR and with lines
// that start with a dot, STAT, LIST and LIST n report exactly the octets
// RETR sends (CRLF counted, the CRLF added after a last line without one
// counted, dot-stuffing not), in the first session, before any RETR (what
// fetchmail compares to detect truncation), and in a later one (cached).
func TestSizesEqualRETR(t *testing.T) {
	e := startEnv(t, Config{})
	e.user("sam", "correct horse", "sam@x.example", "s@alias.example")
	e.filter("s@alias.example", "X-Junk")
	mails := []struct{ box, raw string }{
		{"sam@x.example", "From: a@b\nSubject: LF only\n\nline\n.dot\n..two\n.\n"},
		{"sam@x.example", mail("no final line end", "first\r\nlast")},
		{"sam@x.example", "From: a@b\nSubject: LF, no final line end\n\nx\n.y"},
		{"sam@x.example", mail("bare CR", "a\rb\r\n\rc\r\n")},
		{"sam@x.example", mail("CR at the end", "x\r")},
		{"sam@x.example", "From: a@b\r\nSubject: mixed\r\n\r\ncrlf\r\nlf\n\n.\r\n.lf dot\n"},
		{"sam@x.example", mail("empty body", "")},
		{"sam@x.example", mail("CRLF", "plain\r\n.dot\r\n")},
		{"s@alias.example", "From: a@b\nX-Junk: 1\n\tfolded\nSubject: filtered LF\n\nbody\n.x"},
	}
	var keys []model.Key
	for _, m := range mails {
		keys = append(keys, e.deliver(m.box, m.raw))
	}
	var sizes []string
	check := func(session string) {
		c := dialPOP(t, e.addr)
		c.login("sam", "correct horse")
		stat := c.cmd("STAT")
		list := lines(c.multi("LIST"))
		var single []string
		for i := range mails {
			single = append(single, strings.TrimPrefix(c.cmd(fmt.Sprintf("LIST %d", i+1)), "+OK "))
		}
		// Sent octets: the data as the client reads it, dot-unstuffed.
		var want []string
		total := 0
		for i := range mails {
			c.send(fmt.Sprintf("RETR %d", i+1))
			reply := c.line()
			got := c.data()
			total += len(got)
			want = append(want, fmt.Sprintf("%d %d", i+1, len(got)))
			if reply != fmt.Sprintf("+OK %d octets", len(got)) {
				t.Errorf("%s: RETR %d = %q, and sent %d octets", session, i+1, reply, len(got))
			}
		}
		if w := fmt.Sprintf("+OK %d %d", len(mails), total); stat != w {
			t.Errorf("%s: STAT before RETR = %q, want %q", session, stat, w)
		}
		if !slices.Equal(list, want) {
			t.Errorf("%s: LIST before RETR = %q, want (octets RETR sent) %q", session, list, want)
		}
		if !slices.Equal(single, want) {
			t.Errorf("%s: LIST n before RETR = %q, want %q", session, single, want)
		}
		if after := lines(c.multi("LIST")); !slices.Equal(after, want) {
			t.Errorf("%s: LIST after RETR = %q, want %q", session, after, want)
		}
		c.ok("QUIT")
		sizes = want
	}
	check("first session")
	// The first listing cached each size in the mail's receive row.
	for i, k := range keys {
		row, err := e.admin.FindMeta(e.ctx(), model.Receive, k)
		if err != nil {
			t.Fatal(err)
		}
		var drop []string
		if mails[i].box == "s@alias.example" {
			drop = []string{"X-Junk"}
		}
		m := mailbox.Message{State: row.State}
		if got := fmt.Sprintf("%d %d", i+1, row.State.Col(sizeColumn(m, drop))); got != sizes[i] {
			t.Errorf("cached size of mail %d: %q, want %q", i+1, got, sizes[i])
		}
	}
	check("second session")
}

// budgetStore lets left Fetch calls through and fails the rest as a dbd
// request past its deadline does: a maildrop too large to measure within
// one Config.DBTimeout.
type budgetStore struct {
	Store
	mu   sync.Mutex
	left int
}

func (s *budgetStore) Fetch(ctx context.Context, m mailbox.Message, drop []string) ([]byte, error) {
	s.mu.Lock()
	ok := s.left > 0
	if ok {
		s.left--
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("fetch: %w", context.DeadlineExceeded)
	}
	return s.Store.Fetch(ctx, m, drop)
}

// TestSizesKeptWhenListingFails: the first STAT of a maildrop whose sizes
// are not cached (imported mail, or a mailbox that just got a header
// filter) reads every mail within one DBTimeout. When that ran out, the
// sizes measured so far were dropped with the error, so each new session
// started again from the first mail and a maildrop larger than one
// DBTimeout's worth could never be listed (every STAT -ERR [SYS/TEMP],
// forever). They are now cached even when the listing fails, and the
// next session goes on from there.
func TestSizesKeptWhenListingFails(t *testing.T) {
	st := &budgetStore{}
	e := startEnvStore(t, Config{SizeWorkers: 1}, func(s Store) Store {
		st.Store = s
		return st
	})
	e.user("tia", "correct horse", "tia@x.example")
	total := 0
	for i := range 10 {
		raw := fmt.Sprintf("From: a@b\nSubject: imported %d\n\nLF only\n", i)
		e.deliver("tia@x.example", raw)
		total += len(raw) + strings.Count(raw, "\n")
	}
	want := fmt.Sprintf("+OK 10 %d", total)
	for session := 1; ; session++ {
		st.mu.Lock()
		st.left = 4 // a third of the maildrop per DBTimeout
		st.mu.Unlock()
		c := dialPOP(t, e.addr)
		c.login("tia", "correct horse")
		r := c.cmd("STAT")
		c.ok("QUIT")
		if r == want {
			if session != 3 {
				t.Errorf("STAT listed the maildrop in session %d, want 3 (4 of 10 sizes a session)", session)
			}
			return
		}
		if r != "-ERR [SYS/TEMP] temporary failure, try again later" {
			t.Fatalf("session %d: STAT = %q, want %q or -ERR [SYS/TEMP]", session, r, want)
		}
		if session == 4 {
			t.Fatalf("STAT still fails in session %d: the sizes measured before each failure were not kept", session)
		}
	}
}
