package test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// crossMail is mail i of the two-site test.
func crossMail(i int) []byte {
	return []byte(fmt.Sprintf("From: s@y.example\r\nTo: %s\r\nSubject: cross %d\r\nMessage-ID: <cross%d@y.example>\r\n\r\nbody %d\r\n", address, i, i, i))
}

// view is what one client sees of a folder: UID -> mail, and flags by mail.
type view struct {
	validity uint32
	byUID    map[imap.UID]string
	flags    map[string][]imap.Flag
}

func look(t *testing.T, addr, box string) (*view, error) {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(login, password).Wait(); err != nil {
		return nil, err
	}
	sd, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, err
	}
	v := &view{validity: sd.UIDValidity, byUID: map[imap.UID]string{}, flags: map[string][]imap.Flag{}}
	if sd.NumMessages == 0 {
		return v, nil
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		body := string(m.FindBodySection(sec))
		v.byUID[m.UID] = body
		v.flags[body] = m.Flags
	}
	return v, nil
}

// eventually polls cond (bounded) until it holds: replication is
// asynchronous.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within 60s (last error %v)", what, last)
}

// TestTwoSites: two dbd processes with backupd between them and an imapd
// per site (SPEC §8, issue 6). Flags set at A appear at B; a flag cleared
// at B stays cleared after replication; a MOVE to Junk at A writes spam
// feedback that reaches B (where spamd's feedback package learns it; its
// own tests cover the learning); and a client that fails over to B sees
// another UIDVALIDITY and never another mail under a UID it knew.
func TestTwoSites(t *testing.T) {
	a, b, _ := twoSites(t)

	var mails [][]byte
	for i := range 4 {
		mails = append(mails, crossMail(i))
	}
	a.deliver(mails)
	va, err := look(t, a.imapAddr, "INBOX")
	if err != nil || len(va.byUID) != 4 {
		t.Fatalf("site A INBOX: %v, %v", va, err)
	}
	var vb *view
	eventually(t, "the account and mail at B", func() (bool, error) {
		vb, err = look(t, b.imapAddr, "INBOX")
		return err == nil && len(vb.byUID) == 4, err
	})
	if va.validity == vb.validity {
		t.Fatal("both sites show the same UIDVALIDITY: a failed-over client would trust A's UIDs at B")
	}

	// Flags: \Flagged set at A shows at B.
	m1 := string(mails[1])
	ca := dialLogin(t, a.imapAddr)
	if _, err := ca.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uidA := uidOf(va, m1)
	store(t, ca, uidA, imap.StoreFlagsAdd, imap.FlagFlagged)
	eventually(t, "\\Flagged from A at B", func() (bool, error) {
		v, err := look(t, b.imapAddr, "INBOX")
		return err == nil && slices.Contains(v.flags[m1], imap.FlagFlagged), err
	})
	// Cleared at B: stays cleared at B after replication, and A follows.
	cb := dialLogin(t, b.imapAddr)
	if _, err := cb.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store(t, cb, uidOf(vb, m1), imap.StoreFlagsDel, imap.FlagFlagged)
	eventually(t, "the clear from B at A", func() (bool, error) {
		v, err := look(t, a.imapAddr, "INBOX")
		return err == nil && !slices.Contains(v.flags[m1], imap.FlagFlagged), err
	})
	if v, err := look(t, b.imapAddr, "INBOX"); err != nil || slices.Contains(v.flags[m1], imap.FlagFlagged) {
		t.Fatalf("\\Flagged came back at B after replication: %v %v", v.flags[m1], err)
	}

	// MOVE to Junk at A: spam feedback, replicated to B for spamd there.
	m2 := string(mails[2])
	if _, err := ca.Move(imap.UIDSetNum(uidOf(va, m2)), "Junk").Wait(); err != nil {
		t.Fatalf("move: %v", err)
	}
	rk := model.KeyOf(model.Receive, model.ReceiveContent(model.NewMailRows(mails[2]).MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(address))))
	fk := model.KeyOf(model.Text, model.FeedbackContent(rk, login))
	ctx := proctest.Ctx(t, time.Minute)
	eventually(t, "spam feedback at B", func() (bool, error) {
		row, err := b.Client().FindKey(ctx, model.Text, fk)
		if err != nil {
			return false, err
		}
		spam, ok := model.DecodeFeedback(row.State.Col(model.ColFeedback))
		return ok && spam, nil
	})
	eventually(t, "the move at B", func() (bool, error) {
		j, err := look(t, b.imapAddr, "Junk")
		if err != nil {
			return false, err
		}
		in, err := look(t, b.imapAddr, "INBOX")
		return err == nil && len(j.byUID) == 1 && uidOf(j, m2) != 0 && uidOf(in, m2) == 0, err
	})
	// B's feedback rows are listed by parent: spamd there finds it.
	rows, err := b.Client().List(ctx, model.Text, model.FeedbackParent, 0, 100)
	if err != nil || len(rows) != 1 || rows[0].Key != fk {
		t.Fatalf("feedback rows listed at B: %d, %v", len(rows), err)
	}

	// Failover: the client knew A's UIDs; at B (another UIDVALIDITY) the
	// same mails have B's UIDs, and no UID names a different mail than
	// B's own listing says, whatever A had there.
	va2, err := look(t, a.imapAddr, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	vb2, err := look(t, b.imapAddr, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if va2.validity == vb2.validity {
		t.Fatal("failover without a UIDVALIDITY change")
	}
	if len(vb2.byUID) != 3 || len(va2.byUID) != 3 {
		t.Fatalf("INBOX sizes A %d, B %d; want 3", len(va2.byUID), len(vb2.byUID))
	}
	for uid, body := range vb2.byUID {
		if !slices.ContainsFunc(mails, func(m []byte) bool { return string(m) == body }) {
			t.Fatalf("B shows unknown content under UID %d", uid)
		}
	}
	// Placements replicate too, but each site lists only its own.
	for _, s := range []*site{a, b} {
		v, err := look(t, s.imapAddr, "Junk")
		if err != nil || len(v.byUID) != 1 {
			t.Fatalf("Junk lists %d mails (another site's placements counted?): %v", len(v.byUID), err)
		}
	}
}

func dialLogin(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(login, password).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func uidOf(v *view, body string) imap.UID {
	for u, b := range v.byUID {
		if b == body {
			return u
		}
	}
	return 0
}

func store(t *testing.T, c *imapclient.Client, uid imap.UID, op imap.StoreFlagsOp, f imap.Flag) {
	t.Helper()
	if _, err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: op, Flags: []imap.Flag{f}, Silent: true}, nil).Collect(); err != nil {
		t.Fatalf("store: %v", err)
	}
}
