package test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestSMTPSource1000 (TEST-CATALOG item 92): Postfix's smtp-source sends
// 1000 mails over 10 parallel sessions through a tap to smtpd, verdicts
// from `dbctl autoverdict accept`, --min-copies 1. Every mail must be
// answered 250 exactly once on the wire, dbd must hold each one
// acknowledged exactly once (1000 mails, no more), and each stored mail,
// after smtpd's Received field, must be byte for byte what smtp-source
// sent (the tap's record). Not the benchmark: nothing is timed.
func TestSMTPSource1000(t *testing.T) {
	t.Parallel()
	requireTool(t, smtpSource)
	const (
		n    = 1000
		rcpt = "source@twinmx.test"
	)
	s := newSite(t)
	s.Start()
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 20 * time.Second, MinCopies: 1})
	tp := startTap(t, d.addr)

	// smtp-source exits non-zero when a reply is not 2xx. Its mails
	// differ in Message-Id (and Date) and share a 1 kB body.
	cmd := exec.Command(smtpSource, "-s", "10", "-m", fmt.Sprint(n), "-l", "1024", "-f", "sender@source.test",
		"-t", rcpt, tp.addr)
	dieWithTest(cmd, syscall.SIGKILL)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}

	requireDeliveredOnce(t, s, tp, n, rcpt)
}

// requireDeliveredOnce checks that the client behind tp sent n distinct
// mails to rcpt, each answered 250 exactly once (other replies only 4xx,
// before a retry), and that dbd holds exactly those n, each acknowledged
// once and stored (after smtpd's Received field) byte for byte as sent.
func requireDeliveredOnce(t *testing.T, s *site, tp *tap, n int, rcpt string) {
	t.Helper()
	mails, err := tp.mails()
	if err != nil {
		t.Fatal(err)
	}
	// A temporary failure is allowed (Postfix retries it; smtp-source
	// would have exited non-zero): the retry is the same mail, and only
	// its one 250 counts.
	distinct := map[model.Key][]byte{}
	got250 := map[model.Key]int{}
	ok, temp := 0, 0
	for i, m := range mails {
		k := model.NewMailRows(m.Data).MailKey
		distinct[k] = m.Data
		switch c := m.Reply.Code; {
		case c == 250:
			ok++
			got250[k]++
		case c >= 400 && c < 500:
			temp++
		default:
			t.Errorf("mail %d: smtpd answered %v", i, m.Reply)
		}
	}
	for k, c := range got250 {
		if c != 1 {
			t.Errorf("mail %s was answered 250 %d times", k, c)
		}
	}
	if len(distinct) != n || len(got250) != n {
		t.Fatalf("the tap saw %d mails, %d distinct, %d of them answered 250; want %d distinct, each answered 250",
			len(mails), len(distinct), len(got250), n)
	}
	if temp > 0 {
		t.Logf("%d temporary failures on the wire, each retried", temp)
	}

	// dbd: each mail once, acknowledged.
	acked := map[string]int{}
	for _, m := range s.mails(2 * n) {
		if m.Fields["to"] != rcpt {
			continue
		}
		acked[m.Key]++
		if m.Fields["ack"] != "yes" {
			t.Errorf("not acknowledged: %v", m)
		}
	}
	if len(acked) != n {
		t.Errorf("dbd holds %d mails for %s, want %d", len(acked), rcpt, n)
	}
	for k, c := range acked {
		if c != 1 {
			t.Errorf("mail %s listed %d times", k, c)
		}
	}

	// Byte for byte, 8 readers in parallel.
	ctx := proctest.Ctx(t, 2*time.Minute)
	work := make(chan []byte)
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for data := range work {
				stored, err := s.storedMail(ctx, receiveKey(data, rcpt))
				var problem string
				if err != nil {
					problem = err.Error()
				} else if _, field, rest := stripOurFields(stored); !bytes.HasPrefix(field, []byte("Received: ")) {
					problem = fmt.Sprintf("no Received field of smtpd's first: %q", field)
				} else if !bytes.Equal(rest, data) {
					problem = "stored differently: " + firstDiff(rest, data)
				}
				if problem != "" {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%q: %s", data[:min(len(data), 120)], problem))
					mu.Unlock()
				}
			}
		}()
	}
	for _, data := range distinct {
		work <- data
	}
	close(work)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d of %d mails not stored byte for byte:\n%s", len(bad), n, strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
	tp.mu.Lock()
	conns := len(tp.conns)
	tp.mu.Unlock()
	t.Logf("%d mails over %d connections: %d answered 250, %d acknowledged in dbd, %d compared byte for byte",
		len(mails), conns, ok, len(acked), len(distinct)-len(bad))
}

// TestPostfixRelays1000 (TEST-CATALOG item 92, relay role): smtp-source
// sends 1000 mails into a real Postfix, which relays them (10 connections
// at most) through a tap to smtpd. Postfix must log each as sent once and
// none bounced, and requireDeliveredOnce holds for what Postfix sent.
func TestPostfixRelays1000(t *testing.T) {
	t.Parallel()
	requirePostfix(t)
	requireTool(t, smtpSource)
	const (
		n    = 1000
		rcpt = "relayed@twinmx.test"
	)
	s := newSite(t)
	s.Start()
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 20 * time.Second, MinCopies: 1})
	tp := startTap(t, d.addr)
	p := newPostfix(t, postfixConfig{Relayhost: tp.addr, Main: map[string]string{"smtp_destination_concurrency_limit": "10"}})

	cmd := exec.Command(smtpSource, "-s", "10", "-m", fmt.Sprint(n), "-l", "1024", "-f", "sender@sender.test",
		"-t", rcpt, p.addr)
	dieWithTest(cmd, syscall.SIGKILL)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("smtp-source into Postfix: %v\n%s", err, out)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("Postfix to log %d mails sent", n), func() bool {
		return strings.Count(p.log(), "status=sent") >= n
	})
	p.waitQueueEmpty(10 * time.Second)
	if log := p.log(); strings.Count(log, "status=sent") != n || strings.Contains(log, "status=bounced") {
		t.Errorf("Postfix logged %d sent (want %d) or a bounce:\n%s", strings.Count(log, "status=sent"), n, proctest.Tail(log, 20))
	}
	requireDeliveredOnce(t, s, tp, n, rcpt)
}
