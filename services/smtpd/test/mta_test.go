package test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Postfix as the sending MTA (issue 3, "Must show"): it relays to smtpd on
// a loopback port and retries every second or two.

// TestPostfixDeferredUntilDecided: an undecided mail gets 451 4.7.1 and
// Postfix defers it; an accept verdict alone is not enough under the strict
// policy (the mail is not on both sites), so the retries still get 451;
// once the backed-up mark is set too, Postfix's next retry gets 250, its
// queue empties, and dbd shows the mail acknowledged.
func TestPostfixDeferredUntilDecided(t *testing.T) {
	t.Parallel()
	requirePostfix(t)
	s := newSite(t)
	s.Start()
	s.addMailbox("bob@twinmx.test")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: time.Second})
	p := newPostfix(t, postfixConfig{Relayhost: d.addr})

	token := fmt.Sprintf("deferred-%d", time.Now().UnixNano())
	qid := p.inject("alice@sender.test", []string{"bob@twinmx.test"},
		"From: Alice <alice@sender.test>\r\nTo: bob@twinmx.test\r\nSubject: "+token+"\r\n\r\nHello Bob.\r\n")
	line := p.deliveryLine(qid, "deferred", 30*time.Second)
	if !strings.Contains(line, "said: 451 4.7.1") || !strings.Contains(line, "end of DATA") {
		t.Fatalf("first attempt: want a 451 4.7.1 deferral after DATA, got: %s", line)
	}
	m := s.waitMail("bob@twinmx.test", token, 10*time.Second, nil)
	if m.Fields["ack"] != "no" {
		t.Fatalf("an undecided mail is acknowledged: %v", m)
	}

	s.Dbctl(nil, "verdict", "accept", m.Key)
	before := len(regexp.MustCompile(`\b`+qid+`: to=<bob@twinmx.test>.*status=deferred`).FindAllString(p.log(), -1))
	p.nthDeliveryLine(qid, "deferred", before+1, 30*time.Second) // a retry after the verdict
	if regexp.MustCompile(`status=sent`).MatchString(p.log()) {
		t.Fatalf("250 for an accepted mail that is not backed up, under the strict policy:\n%s", p.log())
	}
	m = s.waitMail("bob@twinmx.test", token, 10*time.Second, nil)
	if m.Fields["ack"] != "no" || !strings.HasPrefix(m.Fields["verdict"], "accept") {
		t.Fatalf("after the accept verdict: %v; want verdict accept, ack no", m)
	}

	// The backed-up mark, as backupd would set it.
	rk := receiveKeyOf(t, m.Key, "bob@twinmx.test")
	s.Dbctl(nil, "set", "--by-key", rk, "receive", "backedup", "1")
	line = p.deliveryLine(qid, "sent", 30*time.Second)
	if !strings.Contains(line, "status=sent (250") {
		t.Fatalf("after verdict and backup: want status=sent (250 ...), got: %s", line)
	}
	p.waitQueueEmpty(10 * time.Second)
	m = s.waitMail("bob@twinmx.test", token, 10*time.Second, nil)
	if m.Fields["ack"] != "yes" || m.Fields["backed-up"] != "yes" {
		t.Fatalf("after the 250: %v; want backed-up yes, ack yes", m)
	}
}

// TestPostfixRejectedBounces: a rejected mail gets 550 5.7.1 at the retry
// and Postfix bounces it (the sender learns at once); a mail to an unknown
// mailbox bounces at RCPT with 550 5.1.1. Neither is acknowledged. Postfix
// is made to use STARTTLS, so this also runs smtpd's TLS with a real MTA.
func TestPostfixRejectedBounces(t *testing.T) {
	t.Parallel()
	requirePostfix(t)
	s := newSite(t)
	s.Start()
	s.addMailbox("carol@twinmx.test")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: time.Second, MinCopies: 1, Extra: []string{"--tls-self-signed"}})
	// Postfix must use STARTTLS here (the certificate is not verified).
	p := newPostfix(t, postfixConfig{Relayhost: d.addr,
		Main: map[string]string{"smtp_tls_security_level": "encrypt", "smtp_tls_loglevel": "1"}})

	token := fmt.Sprintf("rejected-%d", time.Now().UnixNano())
	qid := p.inject("alice@sender.test", []string{"carol@twinmx.test"},
		"From: alice@sender.test\r\nTo: carol@twinmx.test\r\nSubject: "+token+"\r\n\r\nBuy now.\r\n")
	unknown := p.inject("alice@sender.test", []string{"nobody@twinmx.test"},
		"From: alice@sender.test\r\nTo: nobody@twinmx.test\r\nSubject: unknown\r\n\r\nAnyone?\r\n")

	line := p.deliveryLine(unknown, "bounced", 30*time.Second)
	if !strings.Contains(line, "said: 550 5.1.1") || !strings.Contains(line, "RCPT TO") {
		t.Errorf("unknown mailbox: want a bounce with 550 5.1.1 in reply to RCPT TO, got: %s", line)
	}

	p.deliveryLine(qid, "deferred", 30*time.Second)
	m := s.waitMail("carol@twinmx.test", token, 10*time.Second, nil)
	s.Dbctl(nil, "verdict", "reject", m.Key)
	line = p.deliveryLine(qid, "bounced", 30*time.Second)
	if !strings.Contains(line, "said: 550 5.7.1") {
		t.Fatalf("rejected mail: want a bounce with 550 5.7.1, got: %s", line)
	}
	p.waitQueueEmpty(10 * time.Second)
	m = s.waitMail("carol@twinmx.test", token, 10*time.Second, nil)
	if m.Fields["ack"] != "no" || !strings.HasPrefix(m.Fields["verdict"], "reject") {
		t.Fatalf("after the bounce: %v; want verdict reject, ack no", m)
	}
	if !strings.Contains(p.log(), "TLS connection established to 127.0.0.1") {
		t.Errorf("Postfix did not log its TLS connection to smtpd")
	}
	if regexp.MustCompile(`twinmx.test>, relay=127.*status=sent`).MatchString(p.log()) {
		t.Errorf("a mail was delivered to smtpd:\n%s", p.log())
	}
}

// waitFor polls cond every 50 ms until it holds, failing after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
