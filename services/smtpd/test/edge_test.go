package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// Protocol edge cases with real clients: swaks and Python's smtplib.

const (
	swaksBin  = "/usr/bin/swaks"
	python3   = "/usr/bin/python3"
	edgeLimit = 100000 // --max-size of the edge tests' smtpd
)

// edgeSite is a dbd with mailboxes bob, carol and dave@twinmx.test, an
// autoverdict accept, and an smtpd with --min-copies 1, a 100 kB SIZE
// limit and a self-signed STARTTLS certificate.
func edgeSite(t *testing.T) (*site, *smtpdProc) {
	t.Helper()
	s := newSite(t)
	s.Start()
	s.addMailbox("bob@twinmx.test", "carol@twinmx.test", "dave@twinmx.test")
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 10 * time.Second, MinCopies: 1,
		Extra: []string{"--max-size", strconv.Itoa(edgeLimit), "--tls-self-signed"}})
	return s, d
}

// swaks runs swaks against addr and returns its transcript.
func swaks(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	full := append([]string{"--server", host, "--port", port, "--from", "swaks@sender.test", "--helo", "swaks.sender.test",
		"--timeout", "30"}, args...)
	out, err := exec.Command(swaksBin, full...).CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("swaks: %v", err)
	}
	return string(out)
}

// TestSwaks: unknown mailbox, pipelining with a refused recipient,
// STARTTLS, and a message over the SIZE limit, each as swaks sees it; the
// accepted mails are acknowledged in dbd, the refused one is not stored.
func TestSwaks(t *testing.T) {
	t.Parallel()
	requireTool(t, swaksBin)
	s, d := edgeSite(t)
	token := fmt.Sprintf("swaks-%d", time.Now().UnixNano())

	out := swaks(t, d.addr, "--to", "nobody@twinmx.test", "--quit-after", "RCPT")
	if !strings.Contains(out, "<** 550 5.1.1") {
		t.Errorf("unknown mailbox: want 550 5.1.1 at RCPT; swaks:\n%s", out)
	}

	// Pipelining (RFC 2920): MAIL, both RCPTs and DATA in one write.
	out = swaks(t, d.addr, "--pipeline", "--to", "bob@twinmx.test,nobody@twinmx.test",
		"--header", "Subject: "+token+"-pipeline")
	if !strings.Contains(out, "PIPELINING") {
		t.Errorf("smtpd does not offer PIPELINING; swaks:\n%s", out)
	}
	if i, j := strings.Index(out, "<** 550 5.1.1 <nobody@twinmx.test>"), strings.Index(out, "<-  354"); i < 0 || j < i {
		t.Errorf("pipelined: want the 550 for nobody before the 354; swaks:\n%s", out)
	}
	if !strings.Contains(out, " -> .\n<-  250 ") {
		t.Errorf("pipelined: want 250 after the data; swaks:\n%s", out)
	}
	s.waitMail("bob@twinmx.test", token+"-pipeline", 10*time.Second, func(m mailLine) bool { return m.Fields["ack"] == "yes" })

	// STARTTLS with the self-signed certificate, then the whole
	// transaction encrypted.
	out = swaks(t, d.addr, "-tls", "--to", "carol@twinmx.test", "--header", "Subject: "+token+"-tls")
	if !strings.Contains(out, "<-  220 2.0.0") || !strings.Contains(out, " ~> .\n<~  250 ") {
		t.Errorf("STARTTLS: want 220 then 250 over TLS; swaks:\n%s", out)
	}
	s.waitMail("carol@twinmx.test", token+"-tls", 10*time.Second, func(m mailLine) bool { return m.Fields["ack"] == "yes" })

	// A message over the SIZE limit, not declared at MAIL: 552 after the
	// data, and nothing stored.
	big := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopq\r\n", edgeLimit/90+10)
	out = swaks(t, d.addr, "--to", "dave@twinmx.test", "--header", "Subject: "+token+"-big", "--body", big)
	if !strings.Contains(out, "<** 552") {
		t.Errorf("oversized message: want 552; swaks (tail):\n%s", proctest.Tail(out, 6))
	}
	for _, m := range s.mails(20) {
		if strings.Contains(m.Fields["subject"], token+"-big") {
			t.Errorf("an oversized message was stored: %v", m)
		}
	}
}

// TestPythonSmtplib: SIZE declared over the limit (552 at MAIL), RSET
// forgets the envelope, several recipients with one unknown, STARTTLS,
// as Python's smtplib sees them.
func TestPythonSmtplib(t *testing.T) {
	t.Parallel()
	requireTool(t, python3)
	s, d := edgeSite(t)
	token := fmt.Sprintf("py-%d", time.Now().UnixNano())
	host, port, _ := strings.Cut(d.addr, ":")
	cmd := exec.Command(python3, "testdata/smtplib_cases.py", host, port, token)
	raw, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib_cases.py: %v\n%s", err, raw)
	}
	res := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("smtplib_cases.py printed %q: %v", sc.Text(), err)
		}
		res[m["case"].(string)] = m
	}
	t.Logf("smtplib: %s", raw)

	if r := res["size-declared"]; r == nil || r["limit"] != float64(edgeLimit) || r["code"] != float64(552) {
		t.Errorf("SIZE=%d declared at MAIL: got %v; want SIZE %d advertised and 552", edgeLimit+1, r, edgeLimit)
	}
	if r := res["rset"]; r == nil || r["code"] != float64(250) {
		t.Errorf("RSET: %v, want 250", r)
	}
	if r := res["rset-data"]; r == nil || r["code"] != float64(250) {
		t.Errorf("mail after RSET: %v, want 250", r)
	}
	if r := res["multi"]; r == nil || r["error"] != nil {
		t.Errorf("several recipients: %v", r)
	} else if ref, _ := r["refused"].(map[string]any); len(ref) != 1 || ref["nobody@twinmx.test"] == nil ||
		!strings.HasPrefix(fmt.Sprint(ref["nobody@twinmx.test"]), "[550 5.1.1") {
		t.Errorf("several recipients: refused %v; want only nobody@twinmx.test with 550 5.1.1", ref)
	}
	if r := res["starttls"]; r == nil || r["offered"] == false || r["code"] != float64(220) || r["error"] != nil {
		t.Errorf("STARTTLS: %v; want 220 and a mail sent over TLS", r)
	}

	// In dbd: the RSET mail reached only carol; the multi-recipient mail
	// every known recipient; the TLS mail dave; all acknowledged.
	acked := func(m mailLine) bool { return m.Fields["ack"] == "yes" }
	s.waitMail("carol@twinmx.test", token+"-rset", 10*time.Second, acked)
	for _, to := range []string{"bob@twinmx.test", "carol@twinmx.test", "dave@twinmx.test"} {
		s.waitMail(to, token+"-multi", 10*time.Second, acked)
	}
	s.waitMail("dave@twinmx.test", token+"-tls", 10*time.Second, acked)
	for _, m := range s.mails(50) {
		if strings.Contains(m.Fields["subject"], token+"-rset") && m.Fields["to"] != "carol@twinmx.test" {
			t.Errorf("RSET did not forget a recipient: %v", m)
		}
		if m.Fields["to"] == "nobody@twinmx.test" {
			t.Errorf("a mail for an unknown mailbox: %v", m)
		}
	}
}

// TestRetryMatchedByContent: a retry of the same mail with other Received
// fields (another relay, another path) is the same mail: it finds the
// stored verdict and gets 250; dbd holds one mail, acknowledged, whose
// stored delivery is the one that got the 250.
func TestRetryMatchedByContent(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.Start()
	s.addMailbox("erin@twinmx.test")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 500 * time.Millisecond, MinCopies: 1})
	token := fmt.Sprintf("retry-%d", time.Now().UnixNano())
	rest := "From: a@sender.test\r\nTo: erin@twinmx.test\r\nSubject: " + token + "\r\n\r\nsame content\r\n"
	first := []byte("Received: from relay1.sender.test by out.sender.test; Sun, 29 Nov 2026 10:00:00 +0000\r\n" + rest)
	retry := []byte("Received: from relay2.sender.test by out2.sender.test; Sun, 29 Nov 2026 10:05:00 +0000\r\n" +
		"Received: from origin.sender.test by relay2.sender.test; Sun, 29 Nov 2026 10:04:59 +0000\r\n" + rest)

	r, err := sendMail(d.addr, "a@sender.test", []string{"erin@twinmx.test"}, first, 20*time.Second)
	if err != nil || r.Code != 451 || !strings.HasPrefix(r.Text, "4.7.1") {
		t.Fatalf("first attempt, undecided: %v %v; want 451 4.7.1", r, err)
	}
	m := s.waitMail("erin@twinmx.test", token, 10*time.Second, nil)
	s.Dbctl(nil, "verdict", "accept", m.Key)
	r, err = sendMail(d.addr, "a@sender.test", []string{"erin@twinmx.test"}, retry, 20*time.Second)
	if err != nil || r.Code != 250 {
		t.Fatalf("retry with other Received fields after the accept: %v %v; want 250", r, err)
	}
	var lines []mailLine
	for _, x := range s.mails(20) {
		if strings.Contains(x.Fields["subject"], token) {
			lines = append(lines, x)
		}
	}
	if len(lines) != 1 || lines[0].Key != m.Key || lines[0].Fields["ack"] != "yes" {
		t.Fatalf("dbd after the retry: %v; want one mail %s, acknowledged", lines, m.Key)
	}
	stored, err := s.storedMail(proctest.Ctx(t, 20*time.Second), receiveKey(retry, "erin@twinmx.test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, got := stripOurFields(stored); string(got) != string(retry) {
		t.Errorf("the acknowledged delivery is not the retry: %s", firstDiff(got, retry))
	}
}
