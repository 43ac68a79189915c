package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSwaksHostile (TEST-CATALOG item 95): swaks, a real client, drives
// the hostile sequences of items 2, 12, 13 and 24 against the smtpd
// binary as smoke tests (item 8, pipelining, is in TestSwaks). swaks
// writes what it is given: --no-data-fixup sends a DATA portion byte for
// byte, and a CRLF inside --helo puts further command lines into the same
// write as its EHLO. The transcript is swaks's view; smtpd's log and dbd
// confirm the server side.
func TestSwaksHostile(t *testing.T) {
	t.Parallel()
	requireTool(t, swaksBin)
	s, d := edgeSite(t)
	token := fmt.Sprintf("swakshostile-%d", time.Now().UnixNano())
	dir := t.TempDir()

	// Item 2: each smuggling end-of-data variant with a smuggled
	// transaction behind it, then the real end. One reply to the end of
	// data (550 5.6.0: refused whole), then QUIT's 221: had the variant
	// ended the data, the smuggled MAIL, RCPT and DATA would have been
	// answered first and QUIT would have read one of their replies.
	t.Run("smuggling", func(t *testing.T) {
		for i, seq := range smugglingSequences {
			data := fmt.Sprintf("From: a@sender.test\r\nSubject: %s-outer-%d\r\n\r\nbefore%s"+
				"MAIL FROM:<spoof@victim.test>\r\nRCPT TO:<bob@twinmx.test>\r\nDATA\r\n"+
				"From: spoof@victim.test\r\nSubject: %s-smuggled-%d\r\n\r\nsmuggled\r\n.", token, i, seq, token, i)
			file := filepath.Join(dir, fmt.Sprintf("smuggle-%d", i))
			if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			out := swaks(t, d.addr, "--to", "bob@twinmx.test", "--no-data-fixup", "--data", "@"+file)
			if !strings.Contains(out, "<** 550 5.6.0") {
				t.Errorf("sequence %q: want 550 5.6.0 after the data; swaks:\n%s", seq, out)
			}
			if !strings.Contains(out, " -> QUIT\n<-  221 ") {
				t.Errorf("sequence %q: QUIT did not get 221 (a smuggled command was answered?); swaks:\n%s", seq, out)
			}
		}
		for _, m := range s.mails(50) {
			if strings.Contains(m.Fields["subject"], token) {
				t.Errorf("stored: %v", m)
			}
		}
	})

	// Item 13: STARTTLS with a MAIL FROM behind it in the same write (in
	// plain text, before the handshake). smtpd answers EHLO and STARTTLS
	// and discards the MAIL; swaks, out of step, reads the 220 as the
	// reply to its own MAIL and gives up; its MAIL and QUIT are no TLS
	// handshake, so smtpd closes. The injected MAIL is never answered.
	t.Run("STARTTLS injection", func(t *testing.T) {
		out := swaks(t, d.addr, "--helo", "client.test\r\nSTARTTLS\r\nMAIL FROM:<inj@sender.test>",
			"--to", "bob@twinmx.test", "--header", "Subject: "+token+"-starttls")
		i := strings.Index(out, " 220 2.0.0 Ready to start TLS")
		if i < 0 || !strings.Contains(out[:i], "-> MAIL FROM:<swaks@sender.test>") {
			t.Fatalf("want STARTTLS's 220 2.0.0 as the reply swaks reads to its MAIL; swaks:\n%s", out)
		}
		if after := out[i+1:]; strings.Contains(after, "<-") || strings.Contains(after, "<*") ||
			!strings.Contains(after, "closed connection") {
			t.Errorf("a reply after STARTTLS's 220 (the injected MAIL answered?), or the connection not closed; swaks:\n%s", out)
		}
		waitFor(t, 10*time.Second, "smtpd's log line on the discarded bytes", func() bool {
			return strings.Contains(d.Log.String(), "discarding bytes pipelined after STARTTLS")
		})
	})

	// Item 24: an HTTP request or a header line as a command, behind EHLO
	// in the same write: 221 2.7.0 and the connection closed; swaks reads
	// the 221 as the reply to its MAIL.
	t.Run("forbidden commands", func(t *testing.T) {
		for _, cmd := range []string{"GET / HTTP/1.1", "CONNECT x:25 HTTP/1.0", "POST /", "Subject: hi"} {
			out := swaks(t, d.addr, "--helo", "client.test\r\n"+cmd, "--to", "bob@twinmx.test",
				"--header", "Subject: "+token+"-forbidden")
			if !strings.Contains(out, "<** 221 2.7.0") && !strings.Contains(out, "<-  221 2.7.0") {
				t.Errorf("%q: want 221 2.7.0; swaks:\n%s", cmd, out)
			}
			if strings.Contains(out, "<-  354") {
				t.Errorf("%q: the session went on to DATA; swaks:\n%s", cmd, out)
			}
		}
		for _, m := range s.mails(50) {
			if strings.Contains(m.Fields["subject"], token+"-forbidden") {
				t.Errorf("stored: %v", m)
			}
		}
	})
}

// TestSwaksEarlyTalker (TEST-CATALOG items 95 and 12): swaks with TLS on
// connect sends its ClientHello before smtpd's greeting, which waits
// --greet-pause: smtpd refuses it as an early talker (logged, counted as
// a rejection) and swaks gets no SMTP greeting; a plain swaks waits for
// the greeting and delivers its mail.
func TestSwaksEarlyTalker(t *testing.T) {
	t.Parallel()
	requireTool(t, swaksBin)
	s := newSite(t)
	s.Start()
	s.addMailbox("bob@twinmx.test")
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{GreetPause: "1s", Metrics: true, DecisionWindow: 10 * time.Second, MinCopies: 1})
	token := fmt.Sprintf("swaksearly-%d", time.Now().UnixNano())

	out := swaks(t, d.addr, "--tls-on-connect", "--to", "bob@twinmx.test", "--header", "Subject: "+token+"-early")
	// smtpd's plain-text 554 is no TLS record to swaks.
	if !strings.Contains(out, "TLS startup failed") || strings.Contains(out, " 220 ") {
		t.Errorf("the early talker was greeted, or TLS did not fail; swaks:\n%s", out)
	}
	waitFor(t, 10*time.Second, "an early-talker rejection in smtpd's metrics", func() bool {
		return scrapeMetrics(t, d.metrics)[`twinmx_smtpd_rejections_total{reason="early-talker"}`] == 1
	})
	if !strings.Contains(d.Log.String(), "early talker") {
		t.Errorf("smtpd did not log the early talker")
	}

	out = swaks(t, d.addr, "--to", "bob@twinmx.test", "--header", "Subject: "+token+"-patient")
	if !strings.Contains(out, "<-  220 ") || !strings.Contains(out, " -> .\n<-  250 ") {
		t.Errorf("patient swaks: want the greeting and 250; swaks:\n%s", out)
	}
	s.waitMail("bob@twinmx.test", token+"-patient", 10*time.Second, func(m mailLine) bool { return m.Fields["ack"] == "yes" })
	for _, m := range s.mails(20) {
		if strings.Contains(m.Fields["subject"], token+"-early") {
			t.Errorf("the early talker's mail was stored: %v", m)
		}
	}
}
