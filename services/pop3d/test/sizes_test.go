package test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSizesPoplib is catalog item 55 with a real client: for mail with
// LF-only and mixed line ends, no final line end, a bare CR and lines
// starting with dots, Python's poplib finds STAT and LIST equal to the
// octets RETR delivers (poplib counts them un-stuffed, CRLFs included),
// in the first session and in a second one that reads cached sizes.
func TestSizesPoplib(t *testing.T) {
	requireTool(t, "python3", "python3")
	s := newSite(t, "A", "")
	s.user("alice", "alice password", "alice@x.example")
	mails := []string{
		"From: a@x.example\nSubject: LF only\n\n.\n..x\nend\n",
		"From: a@x.example\r\nSubject: no final line end\r\n\r\nlast",
		"From: a@x.example\nSubject: LF, no final line end\n\n.dot",
		"From: a@x.example\r\nSubject: bare CR\r\n\r\na\rb\r\n\r\r\n",
		"From: a@x.example\r\nSubject: mixed\r\n\r\ncrlf\r\nlf\n.x\r\n",
	}
	ctx := ctxFor(t, time.Minute)
	for _, m := range mails {
		if _, err := s.deliver(ctx, "alice@x.example", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	p := s.startPOP3D("")
	host, port, _ := strings.Cut(p.addr, ":")
	for _, session := range []string{"first", "second"} {
		if got := pythonScript(t, "testdata/poplib_sizes.py", host, port, "alice", "alice password"); got != fmt.Sprintf("ok %d", len(mails)) {
			t.Errorf("%s session: poplib found:\n%s", session, got)
		}
	}
}
