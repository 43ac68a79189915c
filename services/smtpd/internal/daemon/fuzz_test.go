package daemon

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
)

// FuzzSMTPSession sends arbitrary bytes over TCP into an smtpd and dbd in
// this process: the guard, go-smtp's command parser and our session
// behind them, with a real mailbox and store, meet what a hostile client
// sends. The input's first byte picks where they start: even, right
// after the greeting; odd, after EHLO. Whatever the answers, smtpd must not panic — a panic it
// or go-smtp recovers from is logged, and counts as a failure here — and
// must go on serving: the next input's greeting needs it. The guard's own
// fuzz targets (internal/guard) cover its parsers without the session.
//
//	go test -run XXX -fuzz FuzzSMTPSession ./services/smtpd/internal/daemon/
func FuzzSMTPSession(f *testing.F) {
	for _, seed := range []string{
		"MAIL FROM:<a@s.test>\r\nRCPT TO:<fuzz@twinmx.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
		"MAIL FROM:<a@s.test> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<nobody@twinmx.test>\r\nRCPT TO:<Postmaster>\r\n",
		"MAIL FROM:<>\r\nRCPT TO:<\"quoted local\"@twinmx.test>\r\nRCPT TO:<@route:fuzz@twinmx.test>\r\nDATA\r\n.\r\n",
		"MAIL FROM:<a@s.test> RET=HDRS ENVID=x\r\nRCPT TO:<fuzz@twinmx.test> NOTIFY=NEVER\r\n",
		"MAIL FROM:<a@[127.0.0.1]>\r\nRCPT TO:<fuzz@TWINMX.TEST.>\r\nDATA\r\nline\rwith\nbare\x00\r\n..\r\n.\r\n",
		"VRFY fuzz\r\nEXPN list\r\nHELP\r\nNOOP x\r\nRSET\r\n",
		"STARTTLS\r\nAUTH PLAIN AGZ1enoAcHc=\r\nBDAT 10 LAST\r\n",
		"MAIL FROM:<ä@s.test> SMTPUTF8\r\nRCPT TO:<fuzz@twinmx.test>\r\n",
		"DATA\r\nMAIL\r\nRCPT\r\nMAIL FROM:\r\nRCPT TO:<>\r\n",
		"\x00\xff\r\n\r\n\n",
	} {
		f.Add(append([]byte{1}, seed...))
	}
	for _, seed := range []string{
		"HELO x\r\nMAIL FROM:<a@s.test>\r\n",
		"EHLO\r\nEHLO [127.0.0.1]\r\nLHLO x\r\n",
		"MAIL FROM:<a@s.test>\r\nDATA\r\n",
		"QUIT\r\n",
	} {
		f.Add(append([]byte{0}, seed...))
	}
	logs := &proctest.PanicLog{}
	e := start(f, func(c *Config) {
		c.Logger = slog.New(logs)
		// Answers come at once: a mail gets its 451 after 100 ms without
		// a verdict, and errors are not tarpitted.
		c.DecisionWindow = 100 * time.Millisecond
		c.Guard = guard.Config{GreetPause: -1, SoftErrors: -1}
	})
	e.mailbox("fuzz@twinmx.test", 0)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 || len(in) > 64<<10 {
			return
		}
		var msg bytes.Buffer
		if in[0]%2 == 1 {
			msg.WriteString("EHLO fuzz.test\r\n")
		}
		msg.Write(in[1:])
		msg.WriteString("\r\n.\r\nRSET\r\nQUIT\r\n")
		got := proctest.Converse(t, e.addr, msg.Bytes(), 3*time.Second)
		if !bytes.HasPrefix(got, []byte("220 ")) {
			t.Fatalf("no greeting: %q", got)
		}
		if p := logs.Take(); p != "" {
			t.Fatalf("smtpd panicked on %q: %s", in, p)
		}
	})
}
