package daemon

// Tests for TEST-CATALOG items 45 (literals) and 46 (hostile commands on a
// big mailbox); the memory of a 60 MiB APPEND is measured on the imapd
// process in ../../test (TestAppendMemory).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// bigMailboxSize is how many mails TestHostileSearchBigMailbox puts in
// INBOX: 10,000 (about 10 s; 1,000 under the race detector), or
// TWINMX_CATALOG_MAILS (the catalog asks for 100,000).
func bigMailboxSize(t *testing.T) int {
	if s := os.Getenv("TWINMX_CATALOG_MAILS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("TWINMX_CATALOG_MAILS=%q", s)
		}
		return n
	}
	if raceEnabled {
		return 1000
	}
	return 10000
}

// TestHostileSearchBigMailbox (TEST-CATALOG 46): the shapes of
// TestHostileCommands, each made to visit every mail of a 10,000-mail
// INBOX (bigMailboxSize), get their tagged answer within a time budget of
// 20 s each (the connection's deadline; a stack blow-up would be a
// crash, a CPU lock a timeout), and imapd goes on serving.
func TestHostileSearchBigMailbox(t *testing.T) {
	n := bigMailboxSize(t)
	k := start(t)
	begin := time.Now()
	const batch = 250
	for i := 0; i < n; i += batch {
		var raws [][]byte
		for j := i; j < min(n, i+batch); j++ {
			raws = append(raws, []byte(mail(j)))
		}
		if err := testkit.DeliverMany(k.ctx, k.admin, address, raws, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d mails delivered in %v", n, time.Since(begin))
	begin = time.Now()
	r, sel := k.loginSelect()
	if want := fmt.Sprintf("* %d EXISTS\r\n", n); !slicesHas(sel, want) {
		t.Fatalf("SELECT: %q, want %q", sel, want)
	}
	t.Logf("first SELECT (placements made) in %v", time.Since(begin))
	// DELETED is false for every mail, so each OR goes down its right
	// side and each NOT is evaluated: keys × mails steps. Over 1000 keys
	// SEARCH is refused (session.maxSearchKeys); 12,000 NOTs took 10 s
	// here before that.
	cases := []struct{ name, cmd, want string }{
		{"nested parens", "SEARCH " + strings.Repeat("(", 2000) + "ALL" + strings.Repeat(")", 2000), "t BAD [CLIENTBUG]"},
		{"12000 NOT", "SEARCH " + strings.Repeat("NOT ", 12000) + "DELETED", "t NO [LIMIT]"},
		{"5000 OR", "SEARCH " + strings.Repeat("OR DELETED ", 4500) + "SEEN", "t NO [LIMIT]"},
		{"4000 keys in a row", "SEARCH " + strings.Repeat("UNDELETED ", 4000), "t NO [LIMIT]"},
		{"998 NOT", "SEARCH " + strings.Repeat("NOT ", 998) + "DELETED", "t OK"},
		{"997 NOT", "SEARCH " + strings.Repeat("NOT ", 997) + "DELETED", "t OK"},
		{"332 OR", "SEARCH " + strings.Repeat("OR DELETED ", 332) + "UNSEEN", "t OK"},
		{"300 OR of headers", "SEARCH " + strings.Repeat("OR SUBJECT zzz ", 300) + "FROM zzz", "t NO [LIMIT]"},
		{"40 OR of headers", "SEARCH " + strings.Repeat("OR SUBJECT zzz ", 40) + "FROM zzz", "t OK"},
		{"NOT around TEXT", "SEARCH " + strings.Repeat("NOT ", 500) + "TEXT zzz", "t OK"},
		{"whole set, all flags", "STORE 1:* +FLAGS.SILENT (\\Flagged)", "t OK"},
		{"UID range", "UID SEARCH UID 1:4294967295 NOT FLAGGED", "t OK"},
	}
	wantHits := map[string]int{"998 NOT": 0, "997 NOT": n, "332 OR": n, "40 OR of headers": 0, "NOT around TEXT": 0, "UID range": 0}
	for _, c := range cases {
		begin := time.Now()
		r.c.SetDeadline(begin.Add(20 * time.Second))
		r.send("t " + c.cmd + "\r\n")
		lines, tagged := r.answer("t")
		if !strings.HasPrefix(tagged, c.want) {
			t.Errorf("%s: %.100q, want %q", c.name, tagged, c.want)
		}
		hits := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "* SEARCH") {
				hits = len(strings.Fields(l)) - 2
			}
		}
		t.Logf("%s: %.40q (%d hits) in %v", c.name, tagged, hits, time.Since(begin))
		if want, ok := wantHits[c.name]; ok && hits != want {
			t.Errorf("%s: %d hits, want %d", c.name, hits, want)
		}
	}
	// A line over go-imap's 50 KiB: BAD, or the connection ends.
	long, _ := k.loginSelect()
	long.c.SetDeadline(time.Now().Add(20 * time.Second))
	long.send("t SEARCH " + strings.Repeat("OR ALL ", 60<<10/7) + "ALL\r\n")
	if l, err := long.br.ReadString('\n'); err == nil && !strings.HasPrefix(l, "t BAD") && !strings.HasPrefix(l, "t NO") {
		t.Errorf("60 KiB SEARCH: %.100q", l)
	}
	noPanics(t, k.reg)
	r.c.SetDeadline(time.Now().Add(time.Minute))
	r.send("z FETCH " + strconv.Itoa(n) + " FLAGS\r\n")
	if lines, tagged := r.answer("z"); !strings.HasPrefix(tagged, "z OK") || len(lines) != 1 || !strings.Contains(lines[0], `\Flagged`) {
		t.Errorf("after the hostile commands: %q %q", lines, tagged)
	}
}

// TestLiteralLimits (TEST-CATALOG 45): literals imapd must not take.
// go-imap refuses a literal over 4096 bytes outside APPEND and an APPEND
// over APPENDLIMIT (64 MiB, session.appendLimit) without inviting it, so
// nothing is read or allocated for it; a sync literal at the limit is
// invited. A client that announces 400 MB and goes silent is closed by
// the pre-auth timeout. The memory of a 60 MiB APPEND is measured in
// ../../test TestAppendMemory.
func TestLiteralLimits(t *testing.T) {
	const limit = 64 << 20
	k := startWith(t, func(c *Config) { c.PreAuthTimeout = 500 * time.Millisecond })

	silent := k.raw()
	silent.send("a LOGIN {400000000}\r\n")
	silent.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		l, err := silent.br.ReadString('\n')
		if err != nil {
			break // closed, as it should be
		}
		if strings.HasPrefix(l, "+") {
			t.Fatalf("LOGIN {400000000} invited: %q", l)
		}
	}

	r := k.raw()
	r.send(fmt.Sprintf("a LOGIN %s %q\r\n", login, password))
	if _, tagged := r.answer("a"); !strings.Contains(tagged, fmt.Sprintf("APPENDLIMIT=%d", limit)) || !strings.Contains(tagged, "LITERAL-") || strings.Contains(tagged, "LITERAL+") {
		t.Errorf("capabilities after login: %q, want APPENDLIMIT=%d and LITERAL- (not LITERAL+)", tagged, limit)
	}
	for _, c := range []struct{ cmd, want string }{
		{fmt.Sprintf("APPEND INBOX {%d}", limit+1), "t NO [TOOBIG]"},
		{"APPEND INBOX (\\Seen) {104857601}", "t NO [TOOBIG]"},
		{"APPEND INBOX {99999999999999999999}", "t BAD"},
		{"NOOP", "t OK"},
	} {
		r.send("t " + c.cmd + "\r\n")
		lines, tagged := r.answer("t")
		if !strings.HasPrefix(tagged, c.want) {
			t.Errorf("%s: %q, want %s", c.cmd, tagged, c.want)
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "+") {
				t.Errorf("%s invited the literal: %q", c.cmd, l)
			}
		}
	}
	// Exactly the limit is invited; a client that then leaves after 1 MiB
	// stores nothing (it did: the part that came became a mail).
	r.send(fmt.Sprintf("t APPEND INBOX {%d}\r\n", limit))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Errorf("APPEND of exactly APPENDLIMIT: %q, want +", l)
	}
	r.send(strings.Repeat("x", 1<<20))
	r.c.Close()
	for i := 0; gaugeValue(t, k, "twinmx_imapd_sessions") > 0; i++ { // the APPEND has ended
		if i == 1000 {
			t.Fatal("the abandoned APPEND's session is still open after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, _ := k.loginSelect()
	c.send("s STATUS INBOX (MESSAGES)\r\n")
	if lines, _ := c.answer("s"); len(lines) != 1 || !strings.Contains(lines[0], "MESSAGES 0") {
		t.Errorf("after an abandoned APPEND: %q", lines)
	}
}

// TestNonSyncLiteralBeyondLiteralMinus (TEST-CATALOG 45, `{5000+}`):
// imapd offers LITERAL- (RFC 7888), so a non-synchronizing literal over
// 4096 bytes is refused with BAD. go-imap v2.0.0-beta.8 then read the
// literal's bytes as commands (ruby net-imap#701 describes the attack: a
// mail APPENDed by a LITERAL+ client becomes commands). Our copy of
// go-imap (third_party/go-imap/TWINMX-PATCH.md) answers the command, says
// BYE and closes the connection: nothing in the literal runs.
func TestNonSyncLiteralBeyondLiteralMinus(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	smuggled := "\r\nd LOGIN alice \"correct horse\"\r\ne CREATE Smuggled\r\n"
	pad := func(s string) string { return s + strings.Repeat("x", 5000-len(s)) }

	// Before login: the literal's lines must not log in.
	r := k.raw()
	r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r.send("c LOGIN {5000+}\r\n" + pad(smuggled) + " pw\r\n")
	expectRefusedThenClosed(t, r.br, "c ", "d OK", "e OK")
	// In APPEND: the mail's lines must not run. A header line "X: CMD
	// args" is tag and command; the blank line after the header ends the
	// connection (go-imap cannot read a tag), so the body is safe.
	a, _ := k.loginSelect()
	a.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	a.send("t APPEND INBOX {5000+}\r\n" + pad("X-Evil: CREATE Smuggled2\r\nSubject: x\r\n\r\nhello\r\n") + "\r\n")
	expectRefusedThenClosed(t, a.br, "t ", "X-Evil: OK")
	// The same over the APPENDLIMIT (a literal go-imap refuses before it
	// asks whether it may be non-synchronizing).
	b, _ := k.loginSelect()
	b.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b.send("u APPEND INBOX {104857601+}\r\nX-Evil: CREATE Smuggled3\r\n")
	expectRefusedThenClosed(t, b.br, "u ", "X-Evil: OK")
	c, _ := k.loginSelect()
	c.send("l LIST \"\" Smuggled*\r\n")
	// (Smuggled, Smuggled2, Smuggled3: none may exist.)
	if lines, _ := c.answer("l"); len(lines) != 0 {
		t.Errorf("the literal's CREATE ran: %q", lines)
	}
}

// TestNonSyncLiteralAfterParseError: a command that fails to parse
// before a non-synchronizing literal at the end of its line is refused,
// and the connection closed: the literal's bytes, which the client sends
// without waiting, must not run as commands. go-imap discarded the rest
// of the line and read the literal as the next command (an unknown
// SEARCH key in front of `{16+}` ran the CREATE inside it; found
// 2026-11-30). A command that fails before a synchronizing literal is
// answered and the session goes on: the client sends no literal it was
// not invited to.
func TestNonSyncLiteralAfterParseError(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	for i, cmd := range []string{
		"a SEARCH NOSUCHKEY {23+}\r\nz CREATE SmuggledSearch\r\n",
		"a FETCH 1 (NOSUCHITEM) {23+}\r\nz CREATE SmuggledFetch\r\n",
		"a STORE 1 +FLAGS (\\Seen \\Bad(flag)) {21+}\r\nz CREATE SmuggledStore\r\n",
		"a SORT (COLOR) UTF-8 SUBJECT {20+}\r\nz CREATE SmuggledSort\r\n",
	} {
		r, _ := k.loginSelect()
		r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		r.send(cmd)
		t.Logf("case %d", i)
		expectRefusedThenClosed(t, r.br, "a ", "z OK")
	}
	r, _ := k.loginSelect()
	r.send("b SEARCH NOSUCHKEY {5}\r\n")
	if s := r.until("b "); !strings.HasPrefix(s, "b BAD") {
		t.Errorf("unknown search key before a synchronizing literal: %q", s)
	}
	r.send("c LIST \"\" Smuggled*\r\n")
	if lines, _ := r.answer("c"); len(lines) != 0 {
		t.Errorf("a literal's CREATE ran: %q", lines)
	}
}

// expectRefusedThenClosed reads a connection until it ends: the command
// tagged tag must be refused (BAD or NO), no line may start with one of
// ran (a smuggled command's OK), and the server must close the
// connection (EOF or a reset, not the read deadline).
func expectRefusedThenClosed(t *testing.T, br *bufio.Reader, tag string, ran ...string) {
	t.Helper()
	refused := false
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			// A reset is a close too: the server closed with the
			// literal's bytes unread.
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("after the refused literal the connection stayed open: %v", err)
			}
			break
		}
		if strings.HasPrefix(l, tag+"BAD") || strings.HasPrefix(l, tag+"NO") {
			refused = true
		}
		for _, r := range ran {
			if strings.HasPrefix(l, r) {
				t.Errorf("a command inside a refused literal ran: %q", l)
			}
		}
	}
	if !refused {
		t.Errorf("the command %q was not refused", tag)
	}
}

// TestRefusedSyncLiteralAnswered: a synchronizing literal over 4096 bytes
// in LOGIN (or any command that buffers its literals) gets NO [TOOBIG] at
// once, and the session goes on: the client never sends the literal, as
// it was not invited. go-imap v2.0.0-beta.8 read on for the rest of the
// command instead, and answered only when its 30 s command timeout
// closed the connection (third_party/go-imap/TWINMX-PATCH.md).
func TestRefusedSyncLiteralAnswered(t *testing.T) {
	k := start(t)
	r := k.raw()
	r.c.SetDeadline(time.Now().Add(10 * time.Second)) // well inside the 30 s timeout
	r.send("a LOGIN {5000}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "a NO [TOOBIG]") {
		t.Fatalf("LOGIN {5000}: %q, want a NO [TOOBIG] without waiting for the literal", l)
	}
	r.send(fmt.Sprintf("b LOGIN %s %q\r\n", login, password))
	if _, tagged := r.answer("b"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("LOGIN after the refused literal: %q", tagged)
	}
	r.send("c SELECT {5000}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "c NO [TOOBIG]") {
		t.Fatalf("SELECT {5000}: %q", l)
	}
	r.send("d NOOP\r\n")
	if _, tagged := r.answer("d"); !strings.HasPrefix(tagged, "d OK") {
		t.Fatalf("NOOP after: %q", tagged)
	}
}

// TestID: ID (RFC 2971) is offered and answered before and after login,
// with NIL or a field list from the client; malformed lists get BAD and
// the session goes on.
func TestID(t *testing.T) {
	k := start(t)
	r := k.raw()
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, c := range []struct{ cmd, want string }{
		{`ID NIL`, `* ID ("name" "twinmx")`},
		{`ID ("name" "mutt" "version" NIL)`, `* ID ("name" "twinmx")`},
		{`ID ("name")`, `i BAD`},
		{`ID`, `i BAD`},
	} {
		r.send("i " + c.cmd + "\r\n")
		lines, tagged := r.answer("i")
		if got := strings.Join(lines, "") + tagged; !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q in it", c.cmd, got, c.want)
		}
	}
	r.send(fmt.Sprintf("l LOGIN %s %q\r\n", login, password))
	if _, tagged := r.answer("l"); !strings.HasPrefix(tagged, "l OK") {
		t.Fatalf("LOGIN after ID: %q", tagged)
	}
	r.send("i ID NIL\r\n")
	if lines, _ := r.answer("i"); len(lines) != 1 || !strings.HasPrefix(lines[0], `* ID ("name" "twinmx")`) {
		t.Errorf("ID after login: %q", lines)
	}
	r.send("c CAPABILITY\r\n")
	if lines, _ := r.answer("c"); len(lines) != 1 || !strings.Contains(lines[0], " ID") {
		t.Errorf("CAPABILITY after login: %q, want ID in it", lines)
	}
}
