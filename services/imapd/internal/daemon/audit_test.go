package daemon

import (
	"fmt"
	"strings"
	"testing"
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
