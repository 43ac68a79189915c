package daemon

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// FuzzCommands sends arbitrary bytes as commands over real TCP into an
// imapd and dbd in this process: the IMAP command parser (go-imap's,
// patched, and ours behind it) meets what a hostile client sends. The
// input's first byte picks the state they arrive in: even, right after
// the greeting (what anyone on the network can reach); odd, logged in
// with INBOX selected. Whatever the answers, imapd must not panic — a
// panic it recovers from is logged, and counts as a failure here — and
// must go on serving: the next input's login needs it.
//
//	go test -run XXX -fuzz FuzzCommands ./services/imapd/internal/daemon/
func FuzzCommands(f *testing.F) {
	for _, seed := range []string{
		"c NOOP\r\n",
		"c FETCH 1:* (FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\n",
		"c UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From Subject)] BODY.PEEK[1]<0.10>)\r\n",
		"c FETCH 2 (BODY[TEXT] BINARY[1] BINARY.SIZE[1] RFC822.HEADER)\r\n",
		"c SEARCH OR FROM bob (NOT SUBJECT \"mail 1\") LARGER 10 SINCE 1-Jan-2020\r\n",
		"c UID SEARCH RETURN (MIN MAX COUNT) CHARSET UTF-8 TEXT {4+}\r\nbody\r\n",
		"c STORE 1:2 +FLAGS.SILENT (\\Seen $Label1)\r\nd STORE 1 -FLAGS (\\Seen)\r\n",
		"c COPY 1 Trash\r\nd UID MOVE 2 Junk\r\ne EXPUNGE\r\n",
		"c APPEND INBOX (\\Flagged) \"01-Jan-2026 10:00:00 +0000\" {27+}\r\nSubject: hi\r\n\r\nappended\r\n\r\n",
		"c CREATE a/b\r\nd RENAME a/b c\r\ne LIST \"\" *\r\nf DELETE c\r\n",
		"c STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)\r\n",
		"c IDLE\r\nDONE\r\n",
		"c EXAMINE INBOX\r\nd STORE 1 +FLAGS (\\Deleted)\r\n",
		"c FETCH 1:4294967295,* (FLAGS)\r\n",
		"c FETCH 1 (BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.MIME])\r\n",
		"c SEARCH ((((((((((ALL))))))))))\r\n",
		"c SORT (REVERSE SUBJECT DATE) UTF-8 OR FROM bob SMALLER 100\r\nd UID SORT (ARRIVAL CC TO SIZE) US-ASCII ALL\r\n",
		"c THREAD REFERENCES UTF-8 ALL\r\nd UID THREAD ORDEREDSUBJECT UTF-8 SINCE 1-Jan-2020\r\n",
		"c SORT RETURN (MIN MAX COUNT ALL) (DISPLAYFROM REVERSE SIZE) UTF-8 ALL\r\nd UID SORT RETURN () (SUBJECT) UTF-8 ALL\r\n",
		"c LOGIN {5}\r\n",
		"c FETCH 1 BODY[]<4294967295.4294967295>\r\n",
		"c UID EXPUNGE 1:*\r\nd UNSELECT\r\ne CLOSE\r\n",
		"c COMPRESS DEFLATE\r\n\xf2\x48\xcd\xc9\xc9\x07\x00\r\n",
		"c COMPRESS deflate\r\nd COMPRESS DEFLATE\r\n",
		"c COMPRESS\r\nd COMPRESS LZ4 x\r\ne COMPRESS {7}\r\n",
		"\x00\xff\r\n* BAD\r\n\r\n",
	} {
		f.Add(append([]byte{1}, seed...))
	}
	for _, seed := range []string{
		"a CAPABILITY\r\nb ID (\"name\" \"x\")\r\nc ENABLE IMAP4rev2\r\n",
		"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHdyb25n\r\nb AUTHENTICATE PLAIN =\r\n",
		"a LOGIN {5+}\r\nalice {13+}\r\ncorrect horse\r\nb SELECT INBOX\r\n",
		"a STARTTLS\r\nb LOGIN alice x\r\n",
		"a COMPRESS DEFLATE\r\n",
		"a SELECT INBOX\r\nb FETCH 1 BODY[]\r\n",
	} {
		f.Add(append([]byte{0}, seed...))
	}
	logs := &proctest.PanicLog{}
	k := startWith(f, func(c *Config) {
		c.MaxAuthFailures, c.AuthFailDelay = -1, -1
		c.Logger = slog.New(logs)
	})
	for i := range 4 {
		k.deliver(mail(i))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 || len(in) > 64<<10 {
			return
		}
		loggedIn := in[0]%2 == 1
		var msg bytes.Buffer
		if loggedIn {
			msg.WriteString("a LOGIN alice \"correct horse\"\r\nb SELECT INBOX\r\n")
		}
		msg.Write(in[1:])
		msg.WriteString("\r\nzz LOGOUT\r\n")
		got := proctest.Converse(t, k.addr, msg.Bytes(), 3*time.Second)
		if !bytes.HasPrefix(got, []byte("* OK")) || loggedIn && (!bytes.Contains(got, []byte("\r\na OK")) || !bytes.Contains(got, []byte("\r\nb OK"))) {
			t.Fatalf("no greeting, login or SELECT before the input: %q", got)
		}
		if p := logs.Take(); p != "" {
			t.Fatalf("imapd panicked on %q: %s", in, p)
		}
	})
}
