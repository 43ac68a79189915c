package daemon

import (
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestExamineRefusesMoveOut (TEST-CATALOG 43): MOVE out of a folder
// opened with EXAMINE is refused and leaves the mail; COPY out is
// allowed (it does not change the source, RFC 9051 §6.4.7).
func TestExamineRefusesMoveOut(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "Trash").Wait(); err == nil {
		t.Fatal("MOVE out of an EXAMINEd folder succeeded")
	}
	if _, err := c.Move(imap.UIDSetNum(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "Trash").Wait(); err == nil {
		t.Fatal("UID MOVE out of an EXAMINEd folder succeeded")
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Trash").Wait(); err != nil {
		t.Fatalf("COPY out of an EXAMINEd folder: %v", err)
	}
	for box, want := range map[string]uint32{"INBOX": 1, "Trash": 1} {
		st, err := c.Status(box, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != want {
			t.Fatalf("STATUS %s = %+v, %v; want %d mails", box, st, err, want)
		}
	}
}

// TestHostileOnEmptyFolder (TEST-CATALOG 47, the empty half; the full
// one is in TestHostileCommands): sequence sets that name nothing in an
// empty folder get a tagged answer, and the server goes on.
func TestHostileOnEmptyFolder(t *testing.T) {
	k := start(t)
	r := k.raw()
	r.send("a LOGIN alice \"correct horse\"\r\nb SELECT Drafts\r\n")
	r.until("b OK")
	var set []string
	for i := range 10000 {
		set = append(set, strconv.Itoa(2*i+1))
	}
	for _, cmd := range []string{"FETCH 0 FLAGS", "FETCH *:1 FLAGS", "UID FETCH 1:4294967295 FLAGS",
		"FETCH 4294967296 FLAGS", "FETCH " + strings.Join(set, ",") + " FLAGS", "STORE 1:* +FLAGS (\\Seen)",
		"UID STORE 1:* +FLAGS (\\Seen)", "SEARCH 1:*", "UID SEARCH UID 1:4294967295", "COPY 1:* INBOX", "UID MOVE 1:* INBOX",
		"UID EXPUNGE 1:*", "EXPUNGE"} {
		r.send("t " + cmd + "\r\n")
		if s := r.until("t "); !strings.HasPrefix(s, "t OK") && !strings.HasPrefix(s, "t NO") && !strings.HasPrefix(s, "t BAD") {
			t.Errorf("%.40s: %q", cmd, s)
		}
	}
	r.send("z NOOP\r\n")
	if s := r.until("z "); !strings.HasPrefix(s, "z OK") {
		t.Fatalf("after hostile sets on an empty folder: %q", s)
	}
}

// TestBadMailboxNames (TEST-CATALOG 48): names that are not valid
// modified UTF-7 are refused by CREATE and never listed; a valid encoded
// name round-trips.
func TestBadMailboxNames(t *testing.T) {
	k := start(t)
	r := k.raw()
	r.send("a LOGIN alice \"correct horse\"\r\n")
	r.until("a OK")
	for _, name := range []string{"&", "&AGE", "&Jjo!", "a&b", "&AGE-", "&AGEAZQ-"} {
		r.send("t CREATE \"" + name + "\"\r\n")
		if s := r.until("t "); !strings.HasPrefix(s, "t NO") && !strings.HasPrefix(s, "t BAD") {
			t.Errorf("CREATE %q: %q, want NO or BAD", name, s)
		}
	}
	r.send("t CREATE \"&ZeVnLIqe-\"\r\n") // 日本語
	if s := r.until("t "); !strings.HasPrefix(s, "t OK") {
		t.Fatalf("CREATE of a valid encoded name: %q", s)
	}
	r.send("l LIST \"\" *\r\n")
	var listed []string
	for {
		s := r.line()
		if strings.HasPrefix(s, "l ") {
			break
		}
		listed = append(listed, s)
	}
	all := strings.Join(listed, "")
	if !strings.Contains(all, "&ZeVnLIqe-") {
		t.Errorf("LIST lacks the valid name:\n%s", all)
	}
	for _, bad := range []string{"\"&\"", "&AGE\"", "&Jjo!", "a&b"} {
		if strings.Contains(all, bad) {
			t.Errorf("LIST shows an invalid name %s:\n%s", bad, all)
		}
	}
}
