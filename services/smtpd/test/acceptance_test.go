package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// The acceptance test runs SPEC §11 scenarios 1 to 4 against the whole
// two-site system as an operator runs it: per site dbd, smtpd in strict
// mode, spamd (its model trained by `spamd train` on the corpus minus the
// test mails, pushed into dbd), pop3d and imapd; backupd between the
// sites; a real Postfix as the sending MTA with MX A as its relay host and
// MX B as its fallback relay. Mail is read back with Python's poplib and
// imaplib at both sites.

const (
	accRcpt = "bob@twinmx.test"
	accUser = "bob"
	accPass = "bob's password"
)

// system is the two sites with every service, for the acceptance test.
type system struct {
	t      *testing.T
	bin    string // spamd, pop3d and imapd (binDir holds the others)
	a, b   *site
	smtpd  map[*site]*smtpdProc
	spamd  map[*site]*exec.Cmd
	pop3   map[*site]string
	imap   map[*site]string
	model  string
	logs   map[string]*proctest.SyncBuffer
	python string
}

// spawn starts one of the extra programs; it dies with the test.
func (y *system) spawn(name string, args ...string) *exec.Cmd {
	y.t.Helper()
	log := &proctest.SyncBuffer{}
	y.logs[fmt.Sprintf("%s %d", name, len(y.logs))] = log
	cmd := exec.Command(filepath.Join(y.bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	dieWithTest(cmd, syscall.SIGKILL)
	if err := cmd.Start(); err != nil {
		y.t.Fatal(err)
	}
	y.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func (y *system) dbFlags(s *site, key string) []string {
	return []string{"--db", s.Addr, "--db-pub", s.Key("dbd.pub"), "--key", s.Key(key)}
}

func (y *system) startSpamd(s *site) {
	y.t.Helper()
	y.spamd[s] = y.spawn("spamd", append(y.dbFlags(s, "spamd"), "--no-auth", "--grey-delay", "2s",
		"--digest-every", "3s", "--digest-claim-wait", "500ms", "--digest-smtp", y.smtpd[s].addr)...)
}

func (y *system) stopSpamd(s *site) {
	y.spamd[s].Process.Kill()
	y.spamd[s].Wait()
}

// readAll returns the mailbox's mails at addr as the client reads them:
// proto "pop3" (poplib) or "imap" (imaplib, INBOX).
func (y *system) readAll(proto, addr string) [][]byte {
	y.t.Helper()
	return proctest.ReadMailbox(y.t, y.python, proto, addr, accUser, accPass)
}

// holding returns the mails of the mailbox, read at every site with both
// protocols, whose body is exactly body: it fails unless all four reads
// agree byte for byte.
func (y *system) holding(body []byte) (count int) {
	y.t.Helper()
	var first []byte
	for _, s := range []*site{y.a, y.b} {
		for _, proto := range []string{"pop3", "imap"} {
			addr := map[string]map[*site]string{"pop3": y.pop3, "imap": y.imap}[proto][s]
			n := 0
			for _, m := range y.readAll(proto, addr) {
				if !bytes.HasSuffix(m, body) {
					continue
				}
				n++
				if first == nil {
					first = m
				} else if !bytes.Equal(m, first) {
					y.t.Errorf("%s at %s gives other bytes than the first read:\n%q\nvs\n%q", proto, addr, m, first)
				}
			}
			if s == y.a && proto == "pop3" {
				count = n
			} else if n != count {
				y.t.Errorf("%s at %s holds the mail %d times, POP3 at site A %d times", proto, addr, n, count)
			}
		}
	}
	return count
}

// waitHolding polls until the mail with body is in the mailbox at both
// sites (replication and the acknowledgement take a moment) and returns
// how often it is there.
func (y *system) waitHolding(body []byte) int {
	y.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if y.countAt(y.b, body) > 0 && y.countAt(y.a, body) > 0 {
			break
		}
	}
	return y.holding(body)
}

func (y *system) countAt(s *site, body []byte) int {
	n := 0
	for _, m := range y.readAll("pop3", y.pop3[s]) {
		if bytes.HasSuffix(m, body) {
			n++
		}
	}
	return n
}

// bodyOf returns the body of a mail in wire form (after the first empty
// line), the part no MTA on the way may change.
func bodyOf(t *testing.T, raw []byte) []byte {
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	if i < 0 || len(raw)-i < 40 {
		t.Fatalf("test mail without a body of some length:\n%.300s", raw)
	}
	return raw[i+4:]
}

// pickMails trains a model on the corpus without the test candidates and
// returns clear ham and clear spam mails (in wire form) by the model's own
// judgement (`spamd eval`), so the test checks the path, not the
// classifier.
func (y *system) pickMails(nHam, nSpam int) (ham, spam [][]byte) {
	y.t.Helper()
	dir := y.t.TempDir()
	var cands []string
	for _, sub := range []string{"ham", "spam", "cand"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	nh, ns := 0, 0
	for i, m := range proctest.Corpus(y.t) {
		name := filepath.Base(m.Name)
		sub := "spam"
		if strings.HasPrefix(m.Name, "ham/") {
			sub = "ham"
		}
		// Candidates: the first mails of easy-ham-1 and spam-2 of some
		// length (a body to compare), held out of the training.
		body := len(m.Raw) - bytes.Index(m.Raw, []byte("\n\n"))
		if (strings.HasPrefix(name, "easy-ham-1-") && nh < 20 || strings.HasPrefix(name, "spam-2-") && ns < 20) && body > 200 {
			if sub == "ham" {
				nh++
			} else {
				ns++
			}
			sub = "cand"
			cands = append(cands, filepath.Join(dir, sub, name))
		}
		// One mail in four of the rest is enough for a model that judges
		// the clear cases, in a quarter of the time.
		if sub != "cand" && i%4 != 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, sub, name), m.Raw, 0o600); err != nil {
			y.t.Fatal(err)
		}
	}
	y.model = filepath.Join(dir, "model")
	if out, err := exec.Command(filepath.Join(y.bin, "spamd"), "train", "--ham", filepath.Join(dir, "ham"),
		"--spam", filepath.Join(dir, "spam"), "--model", y.model).CombinedOutput(); err != nil {
		y.t.Fatalf("spamd train: %v\n%s", err, out)
	}
	out, _ := exec.Command(filepath.Join(y.bin, "spamd"), append([]string{"eval", "--model", y.model}, cands...)...).Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			continue
		}
		raw, err := os.ReadFile(f[0])
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(filepath.Base(f[0]), "easy-ham") && f[1] == "accept" && len(ham) < nHam:
			ham = append(ham, proctest.WireForm(raw))
		case strings.HasPrefix(filepath.Base(f[0]), "spam") && f[1] == "reject" && len(spam) < nSpam:
			spam = append(spam, proctest.WireForm(raw))
		}
	}
	if len(ham) < nHam || len(spam) < nSpam {
		y.t.Fatalf("spamd eval found %d clear ham and %d clear spam among the candidates, want %d and %d:\n%s", len(ham), len(spam), nHam, nSpam, out)
	}
	return ham, spam
}

// newSystem starts everything but Postfix.
// buildMore builds programs of other modules that TestMain does not
// (spamd, pop3d, imapd) into a folder of the test's and returns it.
func buildMore(t *testing.T, names ...string) string {
	t.Helper()
	bin := t.TempDir()
	for _, name := range names {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), "../../"+name+"/cmd/"+name).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return bin
}

// addClientKeys makes a key for each role (named after it) and adds it
// to the running dbd's clients file, which dbd reloads on SIGHUP. Call it
// once a site: it waits for the first "clients file reloaded".
func (s *site) addClientKeys(roles ...string) {
	t := s.T()
	t.Helper()
	f, err := os.OpenFile(filepath.Join(s.Dir, "clients"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		s.Dbctl(nil, "keygen", "--out", s.Key(r))
		fmt.Fprintf(f, "%s keys/%s.pub\n", r, r)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "dbd reloading its clients file", func() bool {
		return strings.Contains(s.Log.String(), "clients file reloaded")
	})
}

// addUser adds a login for POP3 and IMAP that reads mailbox.
func (s *site) addUser(user, password, mailbox string) {
	t := s.T()
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "dbctl"), append(s.DBFlags("admin"), "user", "add", user, "--mailbox", mailbox)...)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dbctl user add: %v\n%s", err, out)
	}
}

func newSystem(t *testing.T) *system {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed (poplib, imaplib): %v", err)
	}
	bin := buildMore(t, "spamd", "pop3d", "imapd")
	y := &system{t: t, bin: bin, python: py, smtpd: map[*site]*smtpdProc{}, spamd: map[*site]*exec.Cmd{},
		pop3: map[*site]string{}, imap: map[*site]string{}, logs: map[string]*proctest.SyncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			for name, l := range y.logs {
				t.Logf("%s log (tail):\n%s", name, proctest.Tail(l.String(), 20))
			}
		}
	})
	y.a, y.b = twoSites(t)
	// spamd's and the mailbox servers' keys, added to the running dbds'
	// clients files.
	for _, s := range []*site{y.a, y.b} {
		s.addClientKeys("spamd", "mailbox")
	}
	y.a.addMailbox(accRcpt)
	y.a.addUser(accUser, accPass, accRcpt)
	waitFor(t, 30*time.Second, "the mailbox and account at site B", func() bool {
		_, _, code := y.b.DbctlExit(nil, "user", "show", accUser)
		return code == 0
	})
	for _, s := range []*site{y.a, y.b} {
		y.smtpd[s] = s.startSMTPD(smtpdOptions{DecisionWindow: 3 * time.Second, MinCopies: 2})
		y.pop3[s], y.imap[s] = proctest.FreePort(t), proctest.FreePort(t)
		y.spawn("pop3d", append(y.dbFlags(s, "mailbox"), "--listen", y.pop3[s])...)
		y.spawn("imapd", append(y.dbFlags(s, "mailbox"), "--listen", y.imap[s])...)
		proctest.WaitListening(t, y.pop3[s], 20*time.Second, s.Log)
		proctest.WaitListening(t, y.imap[s], 20*time.Second, s.Log)
	}
	return y
}

// TestAcceptance: SPEC §11 scenarios 1-4, in that system, one after the
// other (4 before 3, which ends with MX A down).
func TestAcceptance(t *testing.T) {
	requirePostfix(t)
	start := time.Now()
	y := newSystem(t)
	ham, spam := y.pickMails(3, 1)
	t.Logf("system started and model trained in %s", time.Since(start).Round(time.Millisecond))
	if out, err := exec.Command(filepath.Join(y.bin, "spamd"), append(append([]string{"push"}, y.dbFlags(y.a, "spamd")...),
		"--model", y.model)...).CombinedOutput(); err != nil {
		t.Fatalf("spamd push: %v\n%s", err, out)
	}
	for _, s := range []*site{y.a, y.b} {
		y.startSpamd(s)
	}
	p := newPostfix(t, postfixConfig{Relayhost: y.smtpd[y.a].addr, Main: map[string]string{
		"smtp_fallback_relay": "[" + strings.Replace(y.smtpd[y.b].addr, ":", "]:", 1),
	}})
	relayOf := func(line string) string {
		m := regexp.MustCompile(`relay=127\.0\.0\.1\[127\.0\.0\.1\]:(\d+)`).FindStringSubmatch(line)
		if m == nil {
			return ""
		}
		return "127.0.0.1:" + m[1]
	}

	t.Run("1 ham: 250 in the first session, on both sites, byte-exact by POP3 and IMAP", func(t *testing.T) {
		qid := p.inject("friend@ham.example", []string{accRcpt}, string(ham[0]))
		line := p.deliveryLine(qid, "sent", time.Minute)
		if !strings.Contains(line, "status=sent (250") || relayOf(line) != y.smtpd[y.a].addr {
			t.Fatalf("want 250 from MX A: %s", line)
		}
		if regexp.MustCompile(qid + `: .*status=deferred`).MatchString(p.log()) {
			t.Errorf("the ham was deferred before its 250: not in the first session")
		}
		if n := y.waitHolding(bodyOf(t, ham[0])); n != 1 {
			t.Fatalf("the ham is in the mailbox %d times, want once at both sites", n)
		}
	})

	t.Run("2 spam: 550 after the greylisting retry, bounced, not in the mailbox, in the digest", func(t *testing.T) {
		qid := p.inject("bot@spam.example", []string{accRcpt}, string(spam[0]))
		line := p.deliveryLine(qid, "bounced", time.Minute)
		if !strings.Contains(line, "said: 550 5.7.1") {
			t.Fatalf("want a bounce with 550 5.7.1: %s", line)
		}
		if n := y.countAt(y.a, bodyOf(t, spam[0])) + y.countAt(y.b, bodyOf(t, spam[0])); n != 0 {
			t.Fatalf("the spam is in the mailbox (%d copies)", n)
		}
		subject := regexp.MustCompile(`(?m)^Subject: ([^\r\n]{1,40})`).FindSubmatch(spam[0])
		var digest []byte
		waitFor(t, 30*time.Second, "the digest listing the spam", func() bool {
			for _, m := range y.readAll("pop3", y.pop3[y.a]) {
				if bytes.Contains(m, []byte("Subject: twinmx: ")) && bytes.Contains(m, []byte("bot@spam.example")) {
					digest = m
					return true
				}
			}
			return false
		})
		if subject != nil && !bytes.Contains(digest, bytes.TrimSpace(subject[1])) {
			t.Logf("digest (the subject %q may be encoded):\n%s", subject[1], digest)
		}
	})

	t.Run("4 site B down: 451 in strict mode; B back: the retry gets 250, once", func(t *testing.T) {
		y.b.Kill()
		qid := p.inject("friend@ham.example", []string{accRcpt}, string(ham[1]))
		line := p.deliveryLine(qid, "deferred", time.Minute)
		if !strings.Contains(line, "451") {
			t.Fatalf("want a 451 deferral with site B down: %s", line)
		}
		if regexp.MustCompile(qid + `: .*status=sent`).MatchString(p.log()) {
			t.Fatal("250 while site B is down")
		}
		y.b.Start()
		line = p.deliveryLine(qid, "sent", 2*time.Minute)
		if !strings.Contains(line, "status=sent (250") {
			t.Fatalf("want 250 once site B is back: %s", line)
		}
		if n := y.waitHolding(bodyOf(t, ham[1])); n != 1 {
			t.Fatalf("the retried mail is in the mailbox %d times, want once at both sites", n)
		}
	})

	t.Run("3 spamd down: 451; spamd back: the retry at MX B gets 250", func(t *testing.T) {
		for _, s := range []*site{y.a, y.b} {
			y.stopSpamd(s)
		}
		qid := p.inject("friend@ham.example", []string{accRcpt}, string(ham[2]))
		line := p.deliveryLine(qid, "deferred", time.Minute)
		if !strings.Contains(line, "451") {
			t.Fatalf("want a 451 deferral with spamd down: %s", line)
		}
		y.smtpd[y.a].Kill() // MX A is down now: the retry goes to MX B
		for _, s := range []*site{y.a, y.b} {
			y.startSpamd(s)
		}
		line = p.deliveryLine(qid, "sent", 2*time.Minute)
		if !strings.Contains(line, "status=sent (250") || relayOf(line) != y.smtpd[y.b].addr {
			t.Fatalf("want 250 from MX B: %s", line)
		}
		if n := y.waitHolding(bodyOf(t, ham[2])); n != 1 {
			t.Fatalf("the mail is in the mailbox %d times, want once at both sites", n)
		}
	})
}
