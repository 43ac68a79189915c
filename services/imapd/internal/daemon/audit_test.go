package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// TestRenameOntoExistingSubfolder: RENAME a c, where a/x exists and so
// does c/x (c itself is only a level of the hierarchy), would give a/x
// the name c/x a second time. RFC 9051 §6.3.6: renaming to a name that
// exists is an error. Before, the RENAME succeeded and one of the two
// folders came back as "c/x~<id digits>": the client's folder c/x could
// change its name under it (the one with the smaller id keeps it).
func TestRenameOntoExistingSubfolder(t *testing.T) {
	k := start(t)
	r := k.rawLogin()
	for _, c := range []string{"CREATE a", "CREATE a/x", "CREATE c/x", "APPEND c/x {" + fmt.Sprint(len(mail(1))) + "+}\r\n" + mail(1)} {
		r.send("t " + c + "\r\n")
		if _, tagged := r.answer("t"); !strings.HasPrefix(tagged, "t OK") {
			t.Fatalf("%s: %q", c, tagged)
		}
	}
	r.send("t RENAME a c\r\n")
	if _, tagged := r.answer("t"); !strings.HasPrefix(tagged, "t NO [ALREADYEXISTS]") {
		t.Errorf("RENAME a c with a/x and c/x: %q, want NO [ALREADYEXISTS]", tagged)
	}
	r.send("l LIST \"\" *\r\n")
	lines, _ := r.answer("l")
	var names []string
	for _, l := range lines {
		names = append(names, strings.Trim(l[strings.LastIndexByte(l, ' ')+1:len(l)-2], `"`))
	}
	for _, want := range []string{"a", "a/x", "c", "c/x"} {
		if !slicesHas(names, want) {
			t.Errorf("LIST after the RENAME: %q, want %s among them", names, want)
		}
	}
	for _, n := range names {
		if strings.Contains(n, "~") {
			t.Errorf("LIST after the RENAME shows %q", n)
		}
	}
	// c/x is still the folder that holds the mail.
	r.send("s STATUS c/x (MESSAGES)\r\n")
	if lines, tagged := r.answer("s"); !strings.HasPrefix(tagged, "s OK") || len(lines) != 1 || !strings.Contains(lines[0], "MESSAGES 1") {
		t.Errorf("STATUS c/x: %q %q, want its one mail", lines, tagged)
	}
	// A subfolder renamed onto a free name still goes along.
	r.send("t RENAME a b\r\n")
	if _, tagged := r.answer("t"); !strings.HasPrefix(tagged, "t OK") {
		t.Errorf("RENAME a b: %q", tagged)
	}
	r.send("s STATUS b/x (MESSAGES)\r\n")
	if _, tagged := r.answer("s"); !strings.HasPrefix(tagged, "s OK") {
		t.Errorf("STATUS b/x after RENAME a b: %q", tagged)
	}
	noPanics(t, k.reg)
}

// kwList is a flag list of n keywords named prefix0, prefix1, ….
func kwList(prefix string, n int) string {
	kws := make([]string, n)
	for i := range kws {
		kws[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return "(" + strings.Join(kws, " ") + ")"
}

// TestKeywordFlood: every keyword a mail ever had is a column of its
// receive row, and a row has at most model.MaxColumns (256), shared with
// what other services write on it (ack, verdict, spam reasons, backedup,
// deleted) and with imapd's own membership and \Deleted columns. Before,
// a client could STORE keywords until the row was full: the mail could
// then not be expunged (its "out" column found no room: NO [UNAVAILABLE]
// for good), nor moved, nor marked deleted by pop3d or backed up. Now a
// mail takes at most maxKeywords keywords; past it STORE and APPEND get
// NO [LIMIT] and change nothing.
func TestKeywordFlood(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	r, _ := k.loginSelect()
	cmd := func(c, want string) {
		t.Helper()
		r.send("t " + c + "\r\n")
		if _, tagged := r.answer("t"); !strings.HasPrefix(tagged, "t "+want) {
			t.Fatalf("%.60s…: %q, want %s", c, tagged, want)
		}
	}
	cmd("STORE 1 +FLAGS.SILENT "+kwList("a", 300), "NO [LIMIT]")
	for i := range 3 {
		cmd("STORE 1 +FLAGS.SILENT "+kwList(fmt.Sprintf("b%d_", i), 30), "OK")
	}
	cmd("STORE 1 +FLAGS.SILENT "+kwList("c", 20), "NO [LIMIT]")
	// One at a time up to the bound, and not past it: before, the row
	// filled up (about 250 keywords) and then even \Seen failed.
	limited := false
	for i := 0; i < 300 && !limited; i++ {
		r.send(fmt.Sprintf("t STORE 1 +FLAGS.SILENT (z%d)\r\n", i))
		_, tagged := r.answer("t")
		switch {
		case strings.HasPrefix(tagged, "t NO [LIMIT]"):
			limited = true
		case !strings.HasPrefix(tagged, "t OK"):
			t.Fatalf("STORE of keyword %d: %q", i, tagged)
		}
	}
	if !limited {
		t.Fatal("300 more keywords, one at a time: never NO [LIMIT]")
	}
	// Keywords the mail has already, system flags, and clearing, still go.
	cmd("STORE 1 -FLAGS.SILENT (b0_0)", "OK")
	cmd("STORE 1 +FLAGS.SILENT (b0_0 b1_1 \\Seen)", "OK")
	r.send("f FETCH 1 (FLAGS)\r\n")
	if lines, tagged := r.answer("f"); !strings.HasPrefix(tagged, "f OK") || len(lines) != 1 || !strings.Contains(lines[0], `\Seen`) || strings.Contains(lines[0], " c0") || !strings.Contains(lines[0], " z0") {
		t.Errorf("FETCH FLAGS: %q %q", lines, tagged)
	}
	// The mail can still be deleted.
	cmd("STORE 1 +FLAGS.SILENT (\\Deleted)", "OK")
	cmd("EXPUNGE", "OK")
	r.send("n NOOP\r\n")
	r.answer("n")
	r.send("s STATUS INBOX (MESSAGES)\r\n")
	if lines, _ := r.answer("s"); len(lines) != 1 || !strings.Contains(lines[0], "MESSAGES 0") {
		t.Errorf("STATUS after EXPUNGE: %q, want no mail", lines)
	}
	// APPEND: the same bound.
	m := mail(2)
	cmd(fmt.Sprintf("APPEND INBOX %s {%d+}\r\n%s", kwList("d", 300), len(m), m), "NO [LIMIT]")
	cmd(fmt.Sprintf("APPEND INBOX %s {%d+}\r\n%s", kwList("d", 20), len(m), m), "OK")
	noPanics(t, k.reg)
}

// TestFolderFlood: every folder a mail is COPYed or MOVEd into gives its
// receive row a membership column (imap.in.<id>), and a \Deleted copy a
// \Deleted column for that folder too; columns never go away and a row
// has at most model.MaxColumns (256). Before, a mail with its 100
// keywords and \Deleted set filled its row after 76 copies (without
// keywords after 126, or 154 without \Deleted): the next COPY got NO
// [UNAVAILABLE], and so, for good, did STORE of a flag it never had
// (\Seen), EXPUNGE in INBOX and MOVE out of it: the mail could not be
// deleted. Now a mail goes into at most flags.MaxFolders folders (its
// home, INBOX, counts); a COPY or MOVE into one more gets NO [LIMIT] and
// changes nothing, and everything else still works.
func TestFolderFlood(t *testing.T) {
	k := start(t)
	rk, err := testkit.Deliver(k.ctx, k.admin, address, []byte(mail(1)), true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.deliver(mail(2))
	r, _ := k.loginSelect()
	cmd := func(c, want string) {
		t.Helper()
		r.send("t " + c + "\r\n")
		if _, tagged := r.answer("t"); !strings.HasPrefix(tagged, "t "+want) {
			t.Fatalf("%.60s…: %q, want %s", c, tagged, want)
		}
	}
	status := func(folder string, want int) {
		t.Helper()
		r.send("s STATUS " + folder + " (MESSAGES)\r\n")
		if lines, tagged := r.answer("s"); !strings.HasPrefix(tagged, "s OK") || len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf("MESSAGES %d)", want)) {
			t.Fatalf("STATUS %s: %q %q, want %d messages", folder, lines, tagged, want)
		}
	}
	// The most a client may give a mail otherwise: every keyword, and
	// \Deleted, which each copy takes along (a column per folder).
	cmd("STORE 1 +FLAGS.SILENT "+kwList("k", 100), "OK")
	cmd("STORE 1 +FLAGS.SILENT (\\Deleted)", "OK")
	last := -1
	for i := 0; i < 130 && last < 0; i++ {
		cmd(fmt.Sprintf("CREATE f%d", i), "OK")
		r.send(fmt.Sprintf("t COPY 1 f%d\r\n", i))
		switch _, tagged := r.answer("t"); {
		case strings.HasPrefix(tagged, "t NO [LIMIT]"):
			last = i
		case !strings.HasPrefix(tagged, "t OK"):
			t.Fatalf("COPY into folder %d: %q", i+1, tagged)
		}
	}
	if last < 0 {
		t.Fatal("COPY into 130 folders: never NO [LIMIT]")
	}
	t.Logf("COPY into f%d refused: the mail is in INBOX and %d other folders", last, last)
	full := fmt.Sprintf("f%d", last)
	status(full, 0)
	// A COPY or MOVE of several mails is refused whole: mail 2 has room,
	// mail 1 has none.
	cmd("COPY 1:2 "+full, "NO [LIMIT]")
	cmd("MOVE 1:2 "+full, "NO [LIMIT]")
	status(full, 0)
	status("INBOX", 2)
	cmd("COPY 2 "+full, "OK")
	status(full, 1)
	// Folders it has a column for, and every flag, still go.
	cmd("COPY 1 f0", "OK")
	cmd("STORE 1 +FLAGS.SILENT (\\Seen \\Answered \\Flagged \\Draft)", "OK")
	cmd("STORE 1 -FLAGS.SILENT (\\Deleted k0)", "OK")
	cmd("STORE 1 +FLAGS.SILENT (\\Deleted k0)", "OK")
	cmd("MOVE 1 f1", "OK") // out of INBOX: a column for INBOX
	status("INBOX", 1)
	cmd("SELECT f1", "OK")
	cmd("MOVE 1 INBOX", "OK")
	cmd("SELECT INBOX", "OK")
	r.send("f FETCH 1:* (FLAGS)\r\n")
	if lines, tagged := r.answer("f"); !strings.HasPrefix(tagged, "f OK") || len(lines) != 2 || !strings.Contains(lines[1], `\Deleted`) || !strings.Contains(lines[1], `\Seen`) {
		t.Fatalf("FETCH FLAGS in INBOX after the MOVE back: %q %q, want mail 1 \\Seen and \\Deleted", lines, tagged)
	}
	// The mail can still be expunged, here and in another folder.
	cmd("EXPUNGE", "OK")
	status("INBOX", 1)
	cmd("SELECT f0", "OK")
	cmd("STORE 1 +FLAGS.SILENT (\\Deleted)", "OK")
	cmd("EXPUNGE", "OK")
	status("f0", 0)
	// \Deleted went only into folders the mail has a membership column
	// for, or its home: MaxFolders bounds those columns too.
	row, err := k.admin.FindKey(k.ctx, model.Receive, rk)
	if err != nil || row == nil {
		t.Fatalf("read the receive row: %v, %v", row, err)
	}
	allowed := map[string]bool{flags.DeletedColumn(model.FolderInbox): true}
	for c := range row.State.Cols {
		if f, ok := model.ParseMemberColumn(c); ok {
			allowed[flags.DeletedColumn(f)] = true
		}
	}
	deleted := 0
	for c := range row.State.Cols {
		if strings.HasPrefix(c, "imap.flag.deleted.") {
			deleted++
			if !allowed[c] {
				t.Errorf("%s on a mail not in that folder", c)
			}
		}
	}
	if n := flags.FolderColumns(row.State.Cols, model.FolderInbox); n > flags.MaxFolders || deleted > n {
		t.Errorf("the row has %d folders and %d \\Deleted columns, want at most %d each", n, deleted, flags.MaxFolders)
	}
	t.Logf("the row has %d columns", len(row.State.Cols))
	noPanics(t, k.reg)
}

// TestKeywordBoundKeepsOlderRows: a mail stored before the keyword bound
// (2026-12-03) may hold more than flags.MaxKeywords keywords. Such a
// mail must still take system flags and keywords it has; only a new
// keyword is refused. Before, every STORE that set anything on it, even
// \Seen or \Deleted, got NO [LIMIT], so it could not be expunged.
func TestKeywordBoundKeepsOlderRows(t *testing.T) {
	k := start(t)
	rk, err := testkit.Deliver(k.ctx, k.admin, address, []byte(mail(1)), true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var reqs []wire.Request
	for i := range 150 {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: rk},
			Name: fmt.Sprintf("imap.kw.old%d", i), Value: flags.Value(1000, true)})
	}
	if _, err := k.admin.Batch(k.ctx, reqs); err != nil {
		t.Fatal(err)
	}
	r, _ := k.loginSelect()
	cmd := func(c, want string) {
		t.Helper()
		r.send("t " + c + "\r\n")
		if _, tagged := r.answer("t"); !strings.HasPrefix(tagged, "t "+want) {
			t.Fatalf("%.60s…: %q, want %s", c, tagged, want)
		}
	}
	cmd("STORE 1 +FLAGS.SILENT (\\Seen)", "OK")
	cmd("STORE 1 -FLAGS.SILENT (old0)", "OK")
	cmd("STORE 1 +FLAGS.SILENT (old0 old1)", "OK")
	cmd("STORE 1 +FLAGS.SILENT (new)", "NO [LIMIT]")
	cmd("STORE 1 +FLAGS.SILENT (\\Seen new)", "NO [LIMIT]")
	cmd("STORE 1 FLAGS.SILENT (\\Deleted old2)", "OK")
	cmd("EXPUNGE", "OK")
	noPanics(t, k.reg)
}
