package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
)

// twoSites starts site A and site B, each with its own dbd, and a backupd
// between them whose key (site A's backupd key) both accept.
func twoSites(t *testing.T) (a, b *site) {
	t.Helper()
	return twoSitesOn(t, "127.0.0.1")
}

// twoSitesOn is twoSites with both dbds listening on host (a loopback
// address: "127.0.0.1" or "::1").
func twoSitesOn(t *testing.T, host string) (a, b *site) {
	t.Helper()
	a, b = newSite(t), newSite(t)
	a.Addr, b.Addr = proctest.FreePortOn(t, host), proctest.FreePortOn(t, host)
	f, err := os.OpenFile(filepath.Join(b.Dir, "clients"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "backupd %s\n", a.Key("backupd.pub"))
	f.Close()
	a.Start()
	b.Start()
	a.backupd = proctest.NewProc(t, binDir, "backupd", "",
		"--site", "A="+a.Addr+","+a.Key("dbd.pub"), "--site", "B="+b.Addr+","+b.Key("dbd.pub"), "--key", a.Key("backupd"))
	// The benchmark does not read deploy/systemd/backupd.env: its
	// environment (e.g. GODEBUG=schedtrace=2000000000) comes from here.
	a.backupd.Env = strings.Fields(os.Getenv("TWINMX_BENCH_BACKUPD_ENV"))
	a.backupd.Start()
	return a, b
}

// TestStrictTwoSites is SPEC §11 scenario 4 with real processes: in strict
// mode smtpd answers 250 only once the mail is on both sites; with site B
// down the sender gets 451 and nothing is acknowledged; with B back, the
// retry gets 250 and site B holds the mail acknowledged.
func TestStrictTwoSites(t *testing.T) {
	a, b := twoSites(t)
	const rcpt = "jo@twinmx.test"
	a.addMailbox(rcpt)
	a.autoverdict("accept")
	d := a.startSMTPD(smtpdOptions{DecisionWindow: 2 * time.Second, MinCopies: 2})

	msg := []byte("From: ann@example.net\r\nSubject: strict\r\nMessage-ID: <strict-1@example.net>\r\n\r\nstored twice\r\n")
	if r, err := sendMail(d.addr, "ann@example.net", []string{rcpt}, msg, 30*time.Second); err != nil || r.Code != 250 {
		t.Fatalf("both sites up: %v %v, want 250", r, err)
	}
	key := model.KeyOf(model.Receive, model.ReceiveContent(model.NewMailRows(msg).MailKey,
		model.KeyOf(model.Mailbox, model.MailboxContent(rcpt))))
	waitAck(t, b, key)

	b.Kill()
	msg2 := []byte("From: ann@example.net\r\nSubject: while B is down\r\n\r\nwait for B\r\n")
	if r, err := sendMail(d.addr, "ann@example.net", []string{rcpt}, msg2, 30*time.Second); err != nil || r.Code != 451 || !strings.HasPrefix(r.Text, "4.7.1") {
		t.Fatalf("site B down: %v %v, want 451 4.7.1", r, err)
	}
	key2 := model.KeyOf(model.Receive, model.ReceiveContent(model.NewMailRows(msg2).MailKey,
		model.KeyOf(model.Mailbox, model.MailboxContent(rcpt))))
	row, err := a.Client().FindKey(proctest.Ctx(t, 10*time.Second), model.Receive, key2)
	if err != nil || row.State.Cols[model.ColAcknowledged] != 0 || row.State.Cols[model.ColBackedUp] != 0 {
		t.Fatalf("after 451 at A: %v %v, want stored, not backed up, not acknowledged", row, err)
	}
	b.Start()
	// The sender's retry (a real MTA retries later) gets 250 once B has it.
	var r reply
	for i := 0; i < 20; i++ {
		if r, err = sendMail(d.addr, "ann@example.net", []string{rcpt}, msg2, 30*time.Second); err == nil && r.Code == 250 {
			break
		}
	}
	if r.Code != 250 {
		t.Fatalf("retry with B back: %v %v, want 250", r, err)
	}
	waitAck(t, b, key2)
}

// waitAck waits until the receive row is acknowledged at site s (it gets
// there by replication).
func waitAck(t *testing.T, s *site, key model.Key) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		row, err := s.Client().FindKey(ctx, model.Receive, key)
		if err == nil && row.State.Cols[model.ColAcknowledged] == model.FlagSet && row.State.Cols[model.ColBackedUp] == model.FlagSet {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("receive row %s never acknowledged and backed up at %s: %v %v", key, s.Addr, row, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRetryAtOtherMX is SPEC §11 scenario 3 with the stand-in filter: no
// filter runs, so MX A answers 451; the filter starts; the sender's retry
// goes to MX B, which finds the same mail (by content) with its verdict and
// answers 250. Both sites end with one acknowledged copy.
func TestRetryAtOtherMX(t *testing.T) {
	a, b := twoSites(t)
	const rcpt = "jo@twinmx.test"
	a.addMailbox(rcpt) // replicates to B
	da := a.startSMTPD(smtpdOptions{DecisionWindow: time.Second, MinCopies: 2})
	// No mailbox cache at B: the mailbox row arrives by replication while
	// the test already sends.
	db := b.startSMTPD(smtpdOptions{DecisionWindow: 5 * time.Second, MinCopies: 2, Extra: []string{"--mailbox-cache", "0"}})
	msg := []byte("From: ann@example.net\r\nSubject: retry elsewhere\r\n\r\nhello\r\n")
	if r, err := sendMail(da.addr, "ann@example.net", []string{rcpt}, msg, 30*time.Second); err != nil || r.Code != 451 {
		t.Fatalf("no filter running: %v %v, want 451", r, err)
	}
	a.autoverdict("accept")
	// The retry, with the Received line the sender's MTA would add.
	retry := append([]byte("Received: from mta.example.net by mx-b; Sun, 29 Nov 2026 01:00:00 +0000\r\n"), msg...)
	var r reply
	var err error
	for i := 0; i < 10; i++ { // until the mailbox row has reached B
		if r, err = sendMail(db.addr, "ann@example.net", []string{rcpt}, retry, 30*time.Second); err == nil && r.Code == 250 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.Code != 250 {
		t.Fatalf("retry at MX B: %v %v, want 250", r, err)
	}
	key := model.KeyOf(model.Receive, model.ReceiveContent(model.NewMailRows(msg).MailKey,
		model.KeyOf(model.Mailbox, model.MailboxContent(rcpt))))
	waitAck(t, a, key)
	waitAck(t, b, key)
}
