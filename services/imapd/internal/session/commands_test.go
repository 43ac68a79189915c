package session

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
)

// TestExpungeKeepsMailUndeletedElsewhere: EXPUNGE removes the mail that
// has \Deleted (RFC 9051 §6.4.3) when it runs, not the mail the session
// last showed with it. Session A marks both mails \Deleted, session B
// clears the flag again, then A, whose view has not been brought up to
// date (a STORE's poll sends no updates), expunges. Before, A's EXPUNGE
// (and CLOSE) went by its view and removed both: the mails B's user had
// just kept were gone for good.
func TestExpungeKeepsMailUndeletedElsewhere(t *testing.T) {
	for _, how := range []string{"EXPUNGE", "UID EXPUNGE 1:*", "CLOSE"} {
		t.Run(how, func(t *testing.T) {
			h := startHarness(t)
			h.deliver(testMail(1)) // an SMTP delivery
			a := h.login("INBOX")
			// An APPENDed mail (a row of the folder's own, not a delivery).
			a.appendMail("INBOX", testMail(2))
			b := h.login("INBOX")
			a.ok(`STORE 1:2 +FLAGS (\Deleted)`)
			b.awaitUpdates(nil, `\Deleted`, "* 1 FETCH", "* 2 FETCH")
			b.ok(`STORE 1:2 -FLAGS (\Deleted)`)
			u := a.ok(how)
			if has(u, "EXPUNGE") {
				t.Errorf("%s after another session cleared \\Deleted: %q", how, u)
			}
			if how != "CLOSE" {
				// A is told the flags it showed are gone.
				a.awaitUpdates(u, "FLAGS ()", "* 1 FETCH", "* 2 FETCH")
			}
			c := h.login("")
			if u := c.ok("SELECT INBOX"); !has(u, "* 2 EXISTS") {
				t.Errorf("INBOX after the %s: %q, want both mails", how, u)
			}
		})
	}
}

// TestStoreDecidesOnLatestFlags: STORE -FLAGS clears a flag that is set,
// whatever the session last showed (RFC 9051 §6.4.6). Session B sets
// \Seen; its watch event reaches session A, whose view still shows the
// mail unseen (its last command was a STORE, whose poll sends no
// updates). A's STORE -FLAGS (\Seen) then found the flag "already clear"
// by its view and wrote nothing: the user's "mark as unread", the later
// change, was lost (docs/imapd.md §3: the latest change wins).
func TestStoreDecidesOnLatestFlags(t *testing.T) {
	h := startHarness(t)
	h.deliver(testMail(1))
	h.deliver(testMail(2))
	a := h.login("INBOX")
	b := h.login("INBOX")
	a.ok(`STORE 2 +FLAGS (\Flagged)`) // A's last poll sends nothing
	b.ok(`STORE 1 +FLAGS (\Seen)`)
	h.awaitPending(2, "imap.flag.seen") // A's (and B's) watcher has B's change
	u := a.ok(`STORE 1 -FLAGS (\Seen)`)
	if has(u, `\Seen`) {
		t.Errorf("A's STORE -FLAGS answer: %q", u)
	}
	c := h.login("INBOX")
	if u := c.ok("FETCH 1 FLAGS"); has(u, `\Seen`) {
		t.Errorf("after A's STORE -FLAGS (\\Seen): %q, want no \\Seen", u)
	}
	// The other way round: a flag the view lacks and the mail has is
	// shown in the answer to a STORE that sets it.
	b.ok(`STORE 1 +FLAGS (\Answered)`)
	h.awaitPending(2, "imap.flag.answered")
	if u := a.ok(`STORE 1 +FLAGS (\Answered)`); !has(u, `\Answered`) {
		t.Errorf("A's STORE +FLAGS (\\Answered) answer: %q", u)
	}
}

// awaitPending waits until n session watchers hold a change not yet
// taken whose row has column col set: the watch event of a write has
// reached them.
func (h *harness) awaitPending(n int, col string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[*watcher]bool{}
		h.be.watches.mu.Lock()
		for _, sw := range h.be.watches.shared {
			for w := range sw.members {
				w.mu.Lock()
				for _, ch := range w.pending {
					if flags.Set(ch.state.Col(col)) {
						got[w] = true
					}
				}
				w.mu.Unlock()
			}
		}
		h.be.watches.mu.Unlock()
		if len(got) >= n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d watchers with a pending change of %s after 10 s, want %d", len(got), col, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitUpdates runs NOOP until the session has been sent, for each
// prefix, a response that starts with it and contains sub (in sent, the
// responses it had already, or after).
func (c *imapConn) awaitUpdates(sent []string, sub string, prefixes ...string) {
	c.t.Helper()
	got := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range sent {
			for _, p := range prefixes {
				if strings.HasPrefix(l, p) && strings.Contains(l, sub) {
					got[p] = true
				}
			}
		}
		if len(got) == len(prefixes) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after 10 s of NOOP: %v, want %q with %q", got, prefixes, sub)
		}
		time.Sleep(5 * time.Millisecond)
		sent = c.ok("NOOP")
	}
}

// TestStatusItemsNotOffered: STATUS (DELETED-STORAGE) belongs to QUOTA
// (RFC 9208 §4.2), which imapd does not offer, so it is the client's
// error: BAD, as go-imap answers any other unknown item. Before, STATUS
// left the value unset and go-imap's writer dereferenced it: the panic
// ended the connection without an answer (LIST-STATUS the same).
// STATUS (APPENDLIMIT) answers the 64 MiB limit (RFC 7889 §3.2); NIL,
// what it answered before, means "no limit" (§5: number / nil).
func TestStatusItemsNotOffered(t *testing.T) {
	h := startHarness(t)
	h.deliver(testMail(1))
	c := h.login("")
	for _, cmd := range []string{
		"STATUS INBOX (DELETED-STORAGE)",
		`LIST "" % RETURN (STATUS (MESSAGES DELETED-STORAGE))`,
	} {
		if _, tagged := c.cmd(cmd); !strings.HasPrefix(tagged, "t BAD") {
			t.Errorf("%s: %q, want BAD", cmd, tagged)
		}
	}
	want := "APPENDLIMIT " + strconv.Itoa(appendLimit)
	if u := c.ok("STATUS INBOX (MESSAGES APPENDLIMIT)"); !has(u, "MESSAGES 1 "+want+")") {
		t.Errorf("STATUS INBOX (MESSAGES APPENDLIMIT): %q, want %s", u, want)
	}
	if u := c.ok(`LIST "" INBOX RETURN (STATUS (APPENDLIMIT))`); !has(u, "("+want+")") {
		t.Errorf("LIST-STATUS APPENDLIMIT: %q, want %s", u, want)
	}
}

// TestSelectListsMailboxForIMAP4rev2: RFC 9051 §6.3.2 makes LIST one of
// SELECT's (and EXAMINE's) required untagged responses. A client that
// ENABLEd IMAP4rev2 got none. IMAP4rev1 (RFC 3501 §6.3.1) has no such
// response, and gets none.
func TestSelectListsMailboxForIMAP4rev2(t *testing.T) {
	h := startHarness(t)
	c := h.login("")
	if u := c.ok("SELECT INBOX"); has(u, "* LIST") {
		t.Errorf("IMAP4rev1 SELECT: %q, want no LIST", u)
	}
	c.ok("CREATE Work/2026")
	c.ok("ENABLE IMAP4rev2")
	for cmd, want := range map[string]string{
		"SELECT INBOX":       `* LIST (\HasNoChildren) "/" INBOX`,
		"EXAMINE Junk":       `* LIST (\HasNoChildren \Junk) "/" "Junk"`,
		`SELECT "Work/2026"`: `* LIST (\HasNoChildren) "/" "Work/2026"`,
		"SELECT inbox":       `* LIST (\HasNoChildren) "/" INBOX`,
	} {
		if u := c.ok(cmd); !has(u, want) {
			t.Errorf("IMAP4rev2 %s: %q, want %s", cmd, u, want)
		}
	}
}

// TestIdleGoesOnAfterFailedSync: a change IDLE could not read because dbd
// failed for a moment is reported once dbd answers again (RFC 2177: the
// client waits for untagged updates). Before, Idle returned at the first
// failed sync: the client, still in IDLE, heard of no new mail until it
// ended the command itself (up to 29 minutes later), and then got NO.
func TestIdleGoesOnAfterFailedSync(t *testing.T) {
	h := startHarness(t)
	h.deliver(testMail(1))
	c := h.login("INBOX")
	c.send("t IDLE")
	if s := c.line(); !strings.HasPrefix(s, "+") {
		t.Fatalf("IDLE: %q", s)
	}
	h.st.fail.Store(1) // the sync of the next change fails once
	h.deliver(testMail(2))
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		s, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatalf("no EXISTS within 10 s of a new mail after a failed sync: %v", err)
		}
		if s == "* 2 EXISTS\r\n" {
			break
		}
	}
	if h.st.fail.Load() != 0 {
		t.Fatal("IDLE's sync did not fail: the test tested nothing")
	}
	c.c.SetReadDeadline(time.Now().Add(time.Minute))
	c.send("DONE")
	for {
		if s := c.line(); strings.HasPrefix(s, "t ") {
			if !strings.HasPrefix(s, "t OK") {
				t.Errorf("IDLE's answer: %q", s)
			}
			break
		}
	}
}

// TestFailedPollKeepsAnswer: the updates after a command (Poll) are
// reported when dbd can be read; a moment when it cannot must not change
// the command's answer. Before, the failed sync came back from Poll and
// go-imap took it for the command's: a COPY that was done got NO
// [UNAVAILABLE] (RFC 9051 §6.4.7: a failed COPY leaves the target as it
// was, so the client believes the mail is not there), and after NOOP,
// STORE or EXPUNGE the connection was closed without a tagged answer.
func TestFailedPollKeepsAnswer(t *testing.T) {
	h := startHarness(t)
	h.deliver(testMail(1))
	c := h.login("INBOX")
	for i, cmd := range []string{"COPY 1 Trash", "NOOP"} {
		h.deliver(testMail(2 + i))
		h.awaitPending(1, model.ColAcknowledged) // the view is dirty
		h.st.fail.Store(1)                       // its sync fails once
		if _, tagged := c.cmd(cmd); !strings.HasPrefix(tagged, "t OK") {
			t.Errorf("%s with a failed poll: %q, want OK", cmd, tagged)
		}
		if h.st.fail.Load() != 0 {
			t.Fatalf("the poll after %s did not sync", cmd)
		}
		c.awaitUpdates(nil, "EXISTS", "* "+strconv.Itoa(2+i)+" EXISTS")
	}
	if u := c.ok("STATUS Trash (MESSAGES)"); !has(u, "MESSAGES 1") {
		t.Errorf("Trash after the COPY: %q", u)
	}
}

// TestLsubPercentShowsParents: RFC 3501 §6.3.9: when foo/bar is
// subscribed and foo is not, LSUB with "%" must return foo, flagged
// \Noselect, not foo/bar; a client that reads LSUB level by level
// otherwise never finds foo/bar. LSUB "" % answered the system folders
// only. LIST (SUBSCRIBED) keeps RFC 5258's rule: only subscribed names
// (RECURSIVEMATCH, which would add foo with CHILDINFO, is not handled).
func TestLsubPercentShowsParents(t *testing.T) {
	h := startHarness(t)
	c := h.login("")
	for _, name := range []string{"a/b", "b/x", "c", "c/d", "e"} {
		c.ok("CREATE " + name) // subscribed once made (docs/imapd.md §4)
	}
	for _, name := range []string{"b/x", "c", "e"} {
		c.ok("UNSUBSCRIBE " + name)
	}
	u := c.ok(`LSUB "" %`)
	for _, want := range []string{`* LSUB (\Noselect) "/" "a"`, `* LSUB (\Noselect) "/" "c"`} {
		if !has(u, want+"\r\n") || !has(u, `"/" INBOX`) {
			t.Errorf(`LSUB "" %%: %q, want %s`, u, want)
		}
	}
	for _, not := range []string{`"a/b"`, `"b"`, `"c/d"`, `"e"`} {
		if has(u, not) {
			t.Errorf(`LSUB "" %%: %q, want no %s`, u, not)
		}
	}
	if u := c.ok(`LSUB "" a/%`); len(u) != 1 || !has(u, `"/" "a/b"`) {
		t.Errorf(`LSUB "" a/%%: %q, want a/b alone`, u)
	}
	if u := c.ok(`LSUB "" *`); has(u, `"a"`) || !has(u, `"a/b"`) || has(u, `"c"`) || !has(u, `"c/d"`) {
		t.Errorf(`LSUB "" *: %q, want a/b and c/d, not a or c`, u)
	}
	if u := c.ok(`LIST (SUBSCRIBED) "" %`); has(u, `"a"`) || has(u, `"c"`) {
		t.Errorf(`LIST (SUBSCRIBED) "" %%: %q, want neither a nor c`, u)
	}
}

// TestUTF8MailboxNames: once a client ENABLEs UTF8=ACCEPT (RFC 6855 §3)
// or IMAP4rev2 (RFC 9051 §5.1), its mailbox names are UTF-8 both ways,
// '&' included. go-imap still read them as modified UTF-7: CREATE
// "Entwürfe & Co" got NO [SERVERBUG] (the '&' opens no valid shift), and
// LIST sent the name as "Entwürfe &- Co". A client that enabled neither
// sees the same folder as modified UTF-7.
func TestUTF8MailboxNames(t *testing.T) {
	const name, mutf7 = "Entwürfe & Co", "Entw&APw-rfe &- Co"
	h := startHarness(t)
	h.deliver(testMail(1))
	u := h.login("")
	u.ok("ENABLE UTF8=ACCEPT")
	u.ok(`CREATE "` + name + `"`)
	u.ok(`CREATE "` + name + `/Ünter"`)
	if l := u.ok(`LIST "" "Entw*"`); !has(l, `"/" "`+name+`"`+"\r\n") || !has(l, `"/" "`+name+`/Ünter"`+"\r\n") {
		t.Errorf(`UTF8=ACCEPT LIST "" "Entw*": %q, want %q and its child in UTF-8`, l, name)
	}
	if l := u.ok(`LIST "" "` + name + `"`); len(l) != 1 {
		t.Errorf(`UTF8=ACCEPT LIST "" %q: %q, want the folder alone`, name, l)
	}
	if l := u.ok(`STATUS "` + name + `" (MESSAGES)`); !has(l, `* STATUS "`+name+`" (MESSAGES 0)`) {
		t.Errorf("UTF8=ACCEPT STATUS: %q", l)
	}
	u.appendMail(`"`+name+`"`, testMail(2))
	u.ok(`SUBSCRIBE "` + name + `"`)
	if l := u.ok(`LSUB "" "Entw*"`); !has(l, `"/" "`+name+`"`+"\r\n") {
		t.Errorf("UTF8=ACCEPT LSUB: %q", l)
	}
	u.ok("SELECT INBOX")
	u.ok(`COPY 1 "` + name + `"`)
	if l := u.ok(`SELECT "` + name + `"`); !has(l, "* 2 EXISTS") {
		t.Errorf("UTF8=ACCEPT SELECT: %q, want 2 EXISTS", l)
	}

	r := h.login("") // IMAP4rev1, nothing enabled: modified UTF-7
	if l := r.ok(`LIST "" "Entw*"`); !has(l, `"/" "`+mutf7+`"`+"\r\n") || !has(l, `"/" "`+mutf7+`/&ANw-nter"`+"\r\n") {
		t.Errorf(`IMAP4rev1 LIST "" "Entw*": %q, want %q and its child`, l, mutf7)
	}
	if l := r.ok(`SELECT "` + mutf7 + `"`); !has(l, "* 2 EXISTS") {
		t.Errorf("IMAP4rev1 SELECT: %q, want 2 EXISTS", l)
	}
	r.ok(`MOVE 1 "` + mutf7 + `/&ANw-nter"`)

	v := h.login("")
	v.ok("ENABLE IMAP4rev2")
	if l := v.ok(`EXAMINE "` + name + `/Ünter"`); !has(l, "* 1 EXISTS") || !has(l, `* LIST (\HasNoChildren) "/" "`+name+`/Ünter"`) {
		t.Errorf("IMAP4rev2 EXAMINE: %q, want 1 EXISTS and its LIST in UTF-8", l)
	}
	v.ok("UNSELECT")
	v.ok(`RENAME "` + name + `/Ünter" "` + name + `/Über"`)
	v.ok(`DELETE "` + name + `/Über"`)
	if l := v.ok(`LIST "" "Entw*"`); len(l) != 1 || !has(l, `"/" "`+name+`"`+"\r\n") {
		t.Errorf(`IMAP4rev2 LIST "" "Entw*" after RENAME and DELETE: %q, want %q alone`, l, name)
	}
}

// TestSearchSmallerZero: SMALLER n matches RFC822.SIZE < n (RFC 9051
// §6.4.4), so SMALLER 0 matches no mail, nor does LARGER with the largest
// number64. SMALLER 0 matched every mail: go-imap's criteria hold 0 for
// "no SMALLER".
func TestSearchSmallerZero(t *testing.T) {
	h := startHarness(t)
	h.deliver(testMail(1))
	h.deliver(testMail(2))
	c := h.login("INBOX")
	for cmd, want := range map[string]string{
		"SEARCH SMALLER 0":                    "* SEARCH\r\n",
		"SEARCH SMALLER 1":                    "* SEARCH\r\n",
		"SEARCH LARGER 9223372036854775807":   "* SEARCH\r\n",
		"SEARCH SMALLER 0 LARGER 0":           "* SEARCH\r\n",
		"SEARCH OR SMALLER 0 SEEN":            "* SEARCH\r\n",
		"SEARCH NOT SMALLER 0":                "* SEARCH 1 2\r\n",
		"SEARCH OR SMALLER 0 ALL":             "* SEARCH 1 2\r\n",
		"SEARCH SMALLER 100000":               "* SEARCH 1 2\r\n",
		"SEARCH LARGER 0":                     "* SEARCH 1 2\r\n",
		"UID SEARCH RETURN (COUNT) SMALLER 0": "* ESEARCH (TAG \"t\") UID COUNT 0\r\n",
	} {
		if u := c.ok(cmd); len(u) != 1 || u[0] != want {
			t.Errorf("%s: %q, want %q", cmd, u, want)
		}
	}
}

// TestCommandFailsAfterLiteral: a command that fails after its literal
// argument was read (a name that is not modified UTF-7, nothing ENABLEd)
// is answered and the connection goes on. go-imap's decoder took the CRLF
// of the literal's announcement for the end of the command, so the CRLF
// after the literal was left unread, the next command failed to parse and
// the connection closed without a word. Both literal forms.
func TestCommandFailsAfterLiteral(t *testing.T) {
	h := startHarness(t)
	c := h.login("")
	c.send("t CREATE {3+}\r\na&b")
	if s := c.line(); !strings.HasPrefix(s, "t NO") && !strings.HasPrefix(s, "t BAD") {
		t.Errorf("CREATE {3+} a&b: %q, want NO or BAD", s)
	}
	c.ok("NOOP")
	c.send("t CREATE {3}")
	if s := c.line(); !strings.HasPrefix(s, "+") {
		t.Fatalf("CREATE {3}: %q, want +", s)
	}
	c.send("a&b")
	if s := c.line(); !strings.HasPrefix(s, "t NO") && !strings.HasPrefix(s, "t BAD") {
		t.Errorf("CREATE {3} a&b: %q, want NO or BAD", s)
	}
	c.ok("CREATE ok")
	if l := c.ok(`LIST "" "*"`); !has(l, `"ok"`) && !has(l, " ok\r\n") {
		t.Errorf(`LIST "" "*": %q, want ok`, l)
	}
}
