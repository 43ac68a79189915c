// Package test runs spamd as a process against real dbd and smtpd
// processes: the path a mail takes in production (SPEC §7, §11). The
// chaos test (chaos_test.go) runs the whole two-site system, pop3d and
// backupd included, and kills its services at random (SPEC §11
// scenario 5).
package test

import (
	"bytes"
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/corpus"
	"github.com/twinmx/twinmx/services/spamd/internal/decide"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("spamd-bin-", map[string]string{
		"dbd": "../../dbd/cmd/dbd", "dbctl": "../../dbd/cmd/dbctl", "smtpd": "../../smtpd/cmd/smtpd", "spamd": "../cmd/spamd",
		"backupd": "../../backupd/cmd/backupd", "pop3d": "../../pop3d/cmd/pop3d",
		"imapd": "../../imapd/cmd/imapd",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startDB starts a dbd in dir with the keys of spamdKeys.
func startDB(t *testing.T, dir string, config bool) *proctest.DB {
	t.Helper()
	d := proctest.NewDB(t, proctest.DBConfig{Bin: binDir, Dir: dir, Keys: spamdKeys(config)})
	d.Start()
	return d
}

// spamdKeys are the client keys of a site with smtpd and spamd: smtpd's,
// spamd's and, with config, spamd's key for configuration by mail (an
// admin key).
func spamdKeys(config bool) map[string]string {
	keys := map[string]string{"smtpd": "smtpd", "spamd": "spamd"}
	if config {
		keys["spamd-config"] = "admin"
	}
	return keys
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// loadCorpus reads ../shared/corpus (or $TWINMX_CORPUS); it skips the test
// when the corpus is missing unless TWINMX_REQUIRE_CORPUS is set.
func loadCorpus(t *testing.T) []corpus.Mail {
	dir := os.Getenv("TWINMX_CORPUS")
	if dir == "" {
		dir = "../../../../shared/corpus"
	}
	mails, err := corpus.Load(filepath.Join(dir, "spamassassin-train.tar.gz"))
	if err != nil {
		if os.Getenv("TWINMX_REQUIRE_CORPUS") != "" {
			t.Fatalf("corpus: %v (TWINMX_REQUIRE_CORPUS is set)", err)
		}
		t.Skipf("corpus not found: %v", err)
	}
	return mails
}

// send delivers raw (LF line ends, as in the corpus) to the SMTP server and
// returns the final reply code.
func send(t *testing.T, addr, from, rcpt string, raw []byte) int {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	// The corpus's mbox "From " line is not part of a mail on the wire.
	if bytes.HasPrefix(raw, []byte("From ")) {
		raw = raw[bytes.IndexByte(raw, '\n')+1:]
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	var te *textproto.Error
	switch {
	case err == nil:
		c.Quit()
		return 250
	case errors.As(err, &te):
		return te.Code
	}
	t.Fatalf("end of DATA: %v", err)
	return 0
}

// TestEndToEnd: spam gets 550 after one greylisting retry, clear ham 250
// at once; with spamd killed smtpd answers 451 and the retry after a
// restart gets its answer; two spamd instances give one verdict.
func TestEndToEnd(t *testing.T) {
	mails := loadCorpus(t)
	// Train on one of every four of four fifths of the mails; pick test
	// mails from the fifth left, ones the model judges clearly (this
	// tests the path, not the classifier: its figures come from the
	// k-fold test, and training on all four fifths took 38 s of this
	// test's 57 under the race detector).
	var docs []classify.Doc
	var held []corpus.Mail
	for i, m := range mails {
		switch {
		case i%5 == 0:
			held = append(held, m)
		case i%4 == 1:
			docs = append(docs, classify.Doc{Tokens: classify.Tokens(m.Raw), Class: m.Class})
		}
	}
	model := classify.Train(docs)
	var spam, ham []corpus.Mail
	for _, m := range held {
		if len(spam) == 4 && len(ham) == 4 {
			break
		}
		p := model.Score(m.Raw).Prob
		switch {
		case m.Class == classify.Spam && p >= decide.RejectAt && len(spam) < 4:
			spam = append(spam, m)
		case m.Class == classify.Ham && strings.HasPrefix(m.Group, "easy-ham") && p < decide.ClearHam && len(ham) < 4:
			ham = append(ham, m)
		}
	}
	if len(spam) < 4 || len(ham) < 4 {
		t.Fatalf("the held-out fifth has %d clear spam and %d clear ham mails, want 4 and 4", len(spam), len(ham))
	}
	dir := t.TempDir()
	modelDir := filepath.Join(dir, "model")
	if err := os.MkdirAll(modelDir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := model.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(modelDir, "model.bin"), b, 0o600); err != nil {
		t.Fatal(err)
	}

	d := startDB(t, dir, false)
	key := d.Key
	db := []string{"--db", d.Addr, "--db-pub", key("dbd.pub")}
	admin := append(append([]string{}, db...), "--key", key("admin"))
	run(t, "dbctl", append(admin, "mailbox", "add", "u@x.test")...)
	run(t, "spamd", append(append([]string{"push"}, db...), "--key", key("spamd"), "--model", modelDir)...)

	smtpAddr := proctest.FreePort(t)
	proctest.StartProc(t, binDir, "smtpd", smtpAddr, append(append([]string{}, db...), "--key", key("smtpd"), "--listen", smtpAddr,
		"--hostname", "mx.x.test", "--min-copies", "1", "--decision-window", "3s", "--greet-pause", "0s")...)
	spamdArgs := append(append([]string{}, db...), "--key", key("spamd"), "--no-auth", "--grey-delay", "2s")
	s1 := proctest.StartProc(t, binDir, "spamd", "", spamdArgs...)

	// Clear ham from a first contact is not greylisted.
	if code := send(t, smtpAddr, "friend@ham.example", "u@x.test", ham[0].Raw); code != 250 {
		time.Sleep(time.Second)
		t.Logf("mails:\n%s", run(t, "dbctl", append(admin, "mails", "--last", "5")...))
		t.Fatalf("clear ham: %d, want 250", code)
	}
	// Spam: greylisted first, rejected when it comes back after the delay.
	if code := send(t, smtpAddr, "bot@spam.example", "u@x.test", spam[0].Raw); code != 451 {
		t.Fatalf("spam, first attempt: %d, want 451 (greylisting)", code)
	}
	if code := send(t, smtpAddr, "bot@spam.example", "u@x.test", spam[0].Raw); code != 451 {
		t.Fatalf("spam, retried at once: %d, want 451 (before the greylisting delay)", code)
	}
	time.Sleep(2100 * time.Millisecond) // the greylisting delay
	if code := send(t, smtpAddr, "bot@spam.example", "u@x.test", spam[0].Raw); code != 550 {
		t.Fatalf("spam, retried after the delay: %d, want 550", code)
	}
	out := run(t, "dbctl", append(admin, "mails", "--last", "5")...)
	if !strings.Contains(out, "verdict=reject") || !strings.Contains(out, "verdict=accept") || !strings.Contains(out, `reason="classifier`) {
		t.Errorf("dbctl mails does not show both verdicts with reasons:\n%s", out)
	}
	// The block list outranks a clear ham verdict.
	run(t, "spamd", append(append([]string{"list"}, db...), "--key", key("spamd"), "block", "u@x.test", "@blocked.example")...)
	if code := send(t, smtpAddr, "someone@blocked.example", "u@x.test", ham[3].Raw); code != 550 {
		t.Fatalf("ham from a blocked domain: %d, want 550", code)
	}

	// Mailbox policies: postmaster takes even sure spam at once (RFC 5321
	// §4.5.1), with what the check would have said in the reason; a
	// nogreylist mailbox rejects sure spam from a first contact at once.
	run(t, "dbctl", append(admin, "mailbox", "add", "--policy", "accept", "postmaster@x.test")...)
	run(t, "dbctl", append(admin, "mailbox", "add", "--policy", "nogreylist", "sales@x.test")...)
	if code := send(t, smtpAddr, "bot@spam.example", "postmaster@x.test", spam[2].Raw); code != 250 {
		t.Fatalf("spam to an accept-policy mailbox: %d, want 250", code)
	}
	if out := run(t, "dbctl", append(admin, "mails", "--last", "1")...); !strings.Contains(out, `reason="mailbox policy accept (would be retry`) {
		t.Errorf("accept-policy mail's reason:\n%s", out)
	}
	if code := send(t, smtpAddr, "other-bot@spam.example", "sales@x.test", spam[3].Raw); code != 550 {
		t.Fatalf("spam from a first contact to a nogreylist mailbox: %d, want 550 at once", code)
	}

	// spamd down: the mail is stored and deferred, never lost; after a
	// restart the sender's retry gets its answer.
	s1.Kill()
	if code := send(t, smtpAddr, "friend@ham.example", "u@x.test", ham[1].Raw); code != 451 {
		t.Fatalf("ham with spamd down: %d, want 451", code)
	}
	proctest.StartProc(t, binDir, "spamd", "", spamdArgs...)
	proctest.StartProc(t, binDir, "spamd", "", spamdArgs...) // a second instance at once
	deadline := time.Now().Add(20 * time.Second)
	code := 0
	for time.Now().Before(deadline) {
		if code = send(t, smtpAddr, "friend@ham.example", "u@x.test", ham[1].Raw); code == 250 {
			break
		}
	}
	if code != 250 {
		t.Fatalf("ham retried after spamd's restart: %d, want 250", code)
	}
	// Two instances: a spam from a sender past greylisting is rejected
	// once, with one verdict value in the row.
	if code := send(t, smtpAddr, "bot@spam.example", "u@x.test", spam[1].Raw); code != 550 {
		t.Fatalf("spam with two spamds, greylisting passed before: %d, want 550", code)
	}
	if code := send(t, smtpAddr, "friend@ham.example", "u@x.test", ham[2].Raw); code != 250 {
		t.Fatalf("known correspondent with two spamds: %d, want 250", code)
	}
}
