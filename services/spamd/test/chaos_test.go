package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// service is one program of the system under test, restartable with the
// same flags after a kill -9.
type service struct {
	name  string
	label string // name and site, for the report
	args  []string
	addr  string // waited for after each start ("": nothing to wait for)
	log   *proctest.SyncBuffer

	mu    sync.Mutex
	cmd   *exec.Cmd
	kills int
}

// start starts the program and waits until addr accepts connections.
func (s *service) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(filepath.Join(binDir, s.name), s.args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	proctest.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	s.cmd = cmd
	if s.addr == "" {
		return nil
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if nc, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
			nc.Close()
			return nil
		}
	}
	return fmt.Errorf("%s does not listen on %s after 30 s", s.name, s.addr)
}

// kill9 kills the program with SIGKILL and reaps it.
func (s *service) kill9() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
	s.kills++
}

// chaosMail is the i-th mail of the load: a distinct Message-ID, and every
// seventh one with a body large enough for dbd's chunked contents.
func chaosMail(i int) []byte {
	body := fmt.Sprintf("mail %d of the chaos load\r\n", i)
	if i%7 == 0 {
		body += strings.Repeat(fmt.Sprintf("line %d of a larger body, to be stored in chunks\r\n", i), 400)
	}
	return []byte(fmt.Sprintf("From: Sender <s%d@sender.example>\r\nTo: u@x.test\r\nSubject: chaos %d\r\n"+
		"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <chaos-%d@sender.example>\r\n\r\n%s", i%10, i, i, body))
}

// smtpTry makes one SMTP delivery attempt of raw to addr and returns the
// final reply code, or 0 when the connection failed without one.
func smtpTry(addr string, raw []byte) (int, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second)) // the decision window is 5 s
	c, err := smtp.NewClient(nc, "mx.x.test")
	if err != nil {
		return replyCode(err)
	}
	if err := c.Hello("client.sender.example"); err != nil {
		return replyCode(err)
	}
	if err := c.Mail("s@sender.example"); err != nil {
		return replyCode(err)
	}
	if err := c.Rcpt("u@x.test"); err != nil {
		return replyCode(err)
	}
	w, err := c.Data()
	if err != nil {
		return replyCode(err)
	}
	if _, err := w.Write(raw); err != nil {
		return replyCode(err)
	}
	if err := w.Close(); err != nil {
		return replyCode(err)
	}
	c.Quit()
	return 250, nil
}

func replyCode(err error) (int, error) {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, err
	}
	return 0, err
}

// envInt reads a positive count from the environment, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestChaosAllServices is SPEC §11 scenario 5: the whole two-site system
// (per site dbd, smtpd in strict mode, spamd, pop3d and imapd; backupd between
// them) under a load of mails sent by senders that behave like MTAs
// (retry on 4xx or a broken connection, alternating between the two
// MXs), while a chaos loop kills a random service with SIGKILL and starts
// it again. Afterwards both sites' dumps are identical, and POP3 and IMAP
// at each site list every mail that got 250 exactly once, byte for byte,
// and no mail twice. TWINMX_CHAOS_MAILS and TWINMX_CHAOS_KILLS size it (default
// 2000 mails, 44 kills: four of each of the 11 services, as long as the
// load lasts; every service must have been killed at least once).
func TestChaosAllServices(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	py := "python3"
	if _, err := exec.LookPath(py); err != nil {
		t.Fatalf("python3 is needed to read the mailboxes with poplib: %v", err)
	}
	nMails, maxKills := envInt("TWINMX_CHAOS_MAILS", 2000), envInt("TWINMX_CHAOS_KILLS", 44)
	dir := t.TempDir()
	key := func(site, n string) string { return filepath.Join(dir, site, "keys", n) }
	run(t, "dbctl", "keygen", "--out", filepath.Join(dir, "backupd"))
	db := map[string]string{}
	for _, site := range []string{"a", "b"} {
		for _, n := range []string{"dbd", "admin", "smtpd", "spamd", "mailbox"} {
			run(t, "dbctl", "keygen", "--out", key(site, n))
		}
		clients := "admin keys/admin.pub\nsmtpd keys/smtpd.pub\nspamd keys/spamd.pub\nmailbox keys/mailbox.pub\nbackupd " +
			filepath.Join(dir, "backupd.pub") + "\n"
		if err := os.WriteFile(filepath.Join(dir, site, "clients"), []byte(clients), 0o600); err != nil {
			t.Fatal(err)
		}
		db[site] = proctest.FreePort(t)
	}
	dbFlags := func(site, role string) []string {
		return []string{"--db", db[site], "--db-pub", key(site, "dbd.pub"), "--key", key(site, role)}
	}
	var all []*service
	add := func(name, site, addr string, args ...string) *service {
		s := &service{name: name, label: strings.TrimSpace(name + " " + site), args: args, addr: addr, log: &proctest.SyncBuffer{}}
		all = append(all, s)
		if err := s.start(); err != nil {
			t.Fatalf("%v\n%s", err, s.log)
		}
		return s
	}
	t.Cleanup(func() {
		for _, s := range all {
			s.kill9()
			if t.Failed() {
				t.Logf("%s log (tail):\n%s", s.label, proctest.Tail(s.log.String(), 20))
			}
		}
	})
	for _, site := range []string{"a", "b"} {
		add("dbd", site, db[site], "--data", filepath.Join(dir, site, "data"), "--listen", db[site], "--key", key(site, "dbd"),
			"--clients", filepath.Join(dir, site, "clients"), "--site", site)
	}
	add("backupd", "", "", "--key", filepath.Join(dir, "backupd"),
		"--site", "A="+db["a"]+","+key("a", "dbd.pub"), "--site", "B="+db["b"]+","+key("b", "dbd.pub"))
	run(t, "dbctl", append(dbFlags("a", "admin"), "mailbox", "add", "u@x.test")...)
	user := exec.Command(filepath.Join(binDir, "dbctl"), append(dbFlags("a", "admin"), "user", "add", "u", "--mailbox", "u@x.test")...)
	user.Stdin = strings.NewReader("chaos password\n")
	if out, err := user.CombinedOutput(); err != nil {
		t.Fatalf("dbctl user add: %v\n%s", err, out)
	}
	mx, pop, imap := map[string]string{}, map[string]string{}, map[string]string{}
	for _, site := range []string{"a", "b"} {
		mx[site], pop[site] = proctest.FreePort(t), proctest.FreePort(t)
		add("smtpd", site, mx[site], append(dbFlags(site, "smtpd"), "--listen", mx[site], "--hostname", "mx-"+site+".x.test",
			"--min-copies", "2", "--decision-window", "5s", "--db-timeout", "3s", "--greet-pause", "0s")...)
		add("spamd", site, "", append(dbFlags(site, "spamd"), "--no-auth", "--grey-delay", "0", "--digest-every", "0")...)
		add("pop3d", site, pop[site], append(dbFlags(site, "mailbox"), "--listen", pop[site])...)
		imap[site] = proctest.FreePort(t)
		add("imapd", site, imap[site], append(dbFlags(site, "mailbox"), "--listen", imap[site])...)
	}
	// Until replication has brought the mailbox to B, B's smtpd refuses
	// the recipient: wait for it (bounded).
	waitFor(t, "the mailbox at site B", func() bool {
		return exec.Command(filepath.Join(binDir, "dbctl"), append(dbFlags("b", "admin"), "find", "mailbox", "u@x.test")...).Run() == nil
	})

	// The load: senders that retry like an MTA, at most 2 minutes a mail.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	mails := make(chan int)
	acked := make([]atomic.Bool, nMails)
	var rejected, gaveUp, attempts atomic.Int64
	var senders sync.WaitGroup
	for range 8 {
		senders.Go(func() {
			for i := range mails {
				raw := chaosMail(i)
				deadline := time.Now().Add(2 * time.Minute)
				for try := 0; ; try++ {
					if time.Now().After(deadline) || ctx.Err() != nil {
						gaveUp.Add(1)
						break
					}
					attempts.Add(1)
					code, err := smtpTry(mx[[]string{"a", "b"}[(i+try)%2]], raw)
					if code == 250 {
						acked[i].Store(true)
						break
					}
					if code >= 500 {
						rejected.Add(1)
						t.Errorf("mail %d refused for good: %d %v", i, code, err)
						break
					}
					time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
				}
			}
		})
	}
	// The chaos: one service at a time killed with SIGKILL and started
	// again after a pause, every service in turn (in a fresh random order
	// each round), until the load is done or the kills are spent.
	loadDone := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Go(func() {
		var order []int
		for kills := 0; kills < maxKills; kills++ {
			select {
			case <-loadDone:
				return
			case <-time.After(time.Duration(50+rand.IntN(150)) * time.Millisecond):
			}
			if len(order) == 0 {
				order = rand.Perm(len(all))
			}
			s := all[order[0]]
			order = order[1:]
			s.kill9()
			time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
			if err := s.start(); err != nil {
				t.Errorf("restart after kill -9: %v", err)
				return
			}
		}
	})
	start := time.Now()
	for i := range nMails {
		mails <- i
	}
	close(mails)
	senders.Wait()
	close(loadDone)
	chaos.Wait()
	loadTime := time.Since(start)
	nAcked := 0
	for i := range acked {
		if acked[i].Load() {
			nAcked++
		}
	}
	var killed []string
	for _, s := range all {
		killed = append(killed, fmt.Sprintf("%s %d", s.label, s.kills))
	}
	t.Logf("%d mails in %s: %d got 250, %d refused, %d given up, %d attempts; kills: %s",
		nMails, loadTime.Round(time.Millisecond), nAcked, rejected.Load(), gaveUp.Load(), attempts.Load(), strings.Join(killed, ", "))
	for _, s := range all {
		if s.kills == 0 {
			t.Errorf("%s was never killed: the load ended before the chaos reached it", s.label)
		}
	}
	if nAcked < nMails/2 {
		t.Errorf("only %d of %d mails got 250: the system did not recover from the kills", nAcked, nMails)
	}

	// Both sites converge to identical dumps.
	var dumpA, dumpB string
	converged := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		dumpA = run(t, "dbctl", append(dbFlags("a", "admin"), "dump")...)
		dumpB = run(t, "dbctl", append(dbFlags("b", "admin"), "dump")...)
		if dumpA == dumpB {
			converged = true
			break
		}
	}
	if !converged {
		t.Fatalf("the two sites' dumps still differ after 2 minutes (%d and %d lines)", strings.Count(dumpA, "\n"), strings.Count(dumpB, "\n"))
	}

	// Every mail that got 250 is readable at both sites, by POP3 and by
	// IMAP, once, byte for byte after smtpd's trace field; no mail is
	// there twice.
	for _, site := range []string{"a", "b"} {
		for _, proto := range []string{"pop3", "imap"} {
			addr := map[string]string{"pop3": pop[site], "imap": imap[site]}[proto]
			got := proctest.ReadMailbox(t, py, proto, addr, "u", "chaos password")
			seen := map[int]int{}
			for _, m := range got {
				id := chaosID.FindSubmatch(m)
				if id == nil {
					t.Errorf("site %s, %s: a mail that was not sent:\n%.300s", site, proto, m)
					continue
				}
				i, _ := strconv.Atoi(string(id[1]))
				seen[i]++
				if i < 0 || i >= nMails || !bytes.HasSuffix(m, chaosMail(i)) {
					t.Errorf("site %s, %s: mail %d is not what was sent:\n%.300s", site, proto, i, m)
				}
			}
			missing := 0
			for i := range nMails {
				if seen[i] > 1 {
					t.Errorf("site %s, %s lists mail %d %d times", site, proto, i, seen[i])
				}
				if acked[i].Load() && seen[i] == 0 {
					missing++
					if missing <= 5 {
						t.Errorf("site %s, %s: mail %d got 250 and is not in the mailbox", site, proto, i)
					}
				}
			}
			t.Logf("site %s, %s: %d mails in the mailbox (%d got 250), %d missing", site, proto, len(got), nAcked, missing)
		}
	}
}

var chaosID = regexp.MustCompile(`Message-ID: <chaos-(\d+)@sender\.example>`)
