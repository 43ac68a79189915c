package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/imapd/internal/session"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

func (k *kit) selectBox(c *imapclient.Client, name string) *imap.SelectData {
	k.t.Helper()
	sd, err := c.Select(name, nil).Wait()
	if err != nil {
		k.t.Fatalf("select %s: %v", name, err)
	}
	return sd
}

// uids returns the UIDs and bodies of a selected folder.
func (k *kit) contents(c *imapclient.Client) (uids []imap.UID, bodies []string) {
	k.t.Helper()
	sec := &imap.FetchItemBodySection{Peek: true}
	// UID FETCH: a sequence set is the client's error in an empty folder.
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		k.t.Fatalf("fetch: %v", err)
	}
	for _, m := range msgs {
		uids = append(uids, m.UID)
		bodies = append(bodies, string(m.FindBodySection(sec)))
	}
	return uids, bodies
}

// TestLateAckUIDAboveUIDNEXT guards issue 6's known bug: a mail
// acknowledged after a later mail was shown (greylisting) got a UID below
// UIDNEXT, so sync clients (mbsync) never fetched it. With placements it
// gets a UID at or above the UIDNEXT the client saw.
func TestLateAckUIDAboveUIDNEXT(t *testing.T) {
	k := start(t)
	if _, err := testkit.Deliver(k.ctx, k.admin, address, []byte(mail(1)), false, time.Now()); err != nil {
		t.Fatal(err)
	}
	k.deliver(mail(2))
	c := k.loggedIn(nil)
	sd := k.selectBox(c, "INBOX")
	if sd.NumMessages != 1 {
		t.Fatalf("INBOX has %d mails, want 1 (mail 1 not acknowledged)", sd.NumMessages)
	}
	next := sd.UIDNext
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	k.deliver(mail(1)) // the greylisted retry: the same receive row, acknowledged now
	// A client that syncs "UIDs from the last UIDNEXT on" finds it.
	sd2 := k.selectBox(c, "INBOX")
	if sd2.UIDValidity != sd.UIDValidity {
		t.Fatal("UIDVALIDITY changed")
	}
	msgs, err := c.Fetch(imap.UIDSet{{Start: next, Stop: 0}}, &imap.FetchOptions{UID: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID < next {
		t.Fatalf("UID FETCH %d:* = %d mails, %v; want the late mail above UIDNEXT", next, len(msgs), err)
	}
	if got := string(msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true})); got != mail(1) {
		t.Fatalf("late mail content %q", got)
	}
}

func listNames(t *testing.T, c *imapclient.Client, o *imap.ListOptions) map[string][]imap.MailboxAttr {
	t.Helper()
	ls, err := c.List("", "*", o).Collect()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	out := map[string][]imap.MailboxAttr{}
	for _, l := range ls {
		out[l.Mailbox] = l.Attrs
	}
	return out
}

func TestFolders(t *testing.T) {
	k := start(t)
	c := k.loggedIn(nil)
	got := listNames(t, c, nil)
	for _, n := range []string{"INBOX", "Junk", "Sent", "Trash", "Drafts"} {
		if _, ok := got[n]; !ok {
			t.Fatalf("LIST lacks %s: %v", n, got)
		}
	}
	if !slices.Contains(got["Junk"], imap.MailboxAttrJunk) {
		t.Errorf("Junk attrs %v lack \\Junk", got["Junk"])
	}
	for _, n := range []string{"Work", "Work/Sub"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatalf("create %s: %v", n, err)
		}
	}
	if err := c.Create("Work", nil).Wait(); err == nil {
		t.Error("CREATE of an existing folder succeeded")
	}
	if err := c.Create("junk", nil).Wait(); err == nil {
		t.Error("CREATE of a system folder's name succeeded")
	}
	got = listNames(t, c, nil)
	if !slices.Contains(got["Work"], imap.MailboxAttrHasChildren) || !slices.Contains(got["Work/Sub"], imap.MailboxAttrHasNoChildren) {
		t.Fatalf("LIST after CREATE: %v", got)
	}
	// A mail in Work/Sub keeps its UID across RENAME of the parent.
	ad, err := appendMail(c, "Work/Sub", mail(5), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("Work", "Job", nil).Wait(); err != nil {
		t.Fatalf("rename: %v", err)
	}
	got = listNames(t, c, nil)
	if _, ok := got["Work"]; ok {
		t.Fatalf("Work still listed after RENAME: %v", got)
	}
	if _, ok := got["Job/Sub"]; !ok {
		t.Fatalf("Job/Sub missing after RENAME: %v", got)
	}
	sd := k.selectBox(c, "Job/Sub")
	if sd.UIDValidity != ad.UIDValidity {
		t.Fatal("RENAME changed the UIDVALIDITY")
	}
	if uids, _ := k.contents(c); len(uids) != 1 || uids[0] != ad.UID {
		t.Fatalf("Job/Sub UIDs %v, want [%d]", uids, ad.UID)
	}
	if err := c.Delete("Job/Sub").Wait(); err == nil {
		t.Fatal("DELETE of the selected folder succeeded")
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	// Subscriptions.
	if err := c.Unsubscribe("Job").Wait(); err != nil {
		t.Fatal(err)
	}
	sub := listNames(t, c, &imap.ListOptions{SelectSubscribed: true})
	if _, ok := sub["Job"]; ok {
		t.Fatalf("LIST (SUBSCRIBED) shows an unsubscribed folder: %v", sub)
	}
	if _, ok := sub["INBOX"]; !ok {
		t.Fatalf("LIST (SUBSCRIBED) lacks INBOX: %v", sub)
	}
	if err := c.Subscribe("Job").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := listNames(t, c, &imap.ListOptions{SelectSubscribed: true})["Job"]; !ok {
		t.Fatal("SUBSCRIBE did not show again")
	}
	st, err := c.Status("Job/Sub", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true}).Wait()
	if err != nil || *st.NumMessages != 1 || st.UIDNext <= ad.UID {
		t.Fatalf("STATUS = %+v, %v", st, err)
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Fatal("DELETE INBOX succeeded")
	}
	if err := c.Delete("Job/Sub").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := listNames(t, c, nil)["Job/Sub"]; ok {
		t.Fatal("deleted folder listed")
	}
	// The same name again is a new folder: new UIDVALIDITY, empty.
	if err := c.Create("Job/Sub", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sd = k.selectBox(c, "Job/Sub")
	if sd.NumMessages != 0 || sd.UIDValidity == ad.UIDValidity {
		t.Fatalf("recreated folder: %d mails, UIDVALIDITY %d (old %d)", sd.NumMessages, sd.UIDValidity, ad.UIDValidity)
	}
}

func appendMail(c *imapclient.Client, box, raw string, fl []imap.Flag, date time.Time) (*imap.AppendData, error) {
	cmd := c.Append(box, int64(len(raw)), &imap.AppendOptions{Flags: fl, Time: date})
	if _, err := cmd.Write([]byte(raw)); err != nil {
		return nil, err
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	return cmd.Wait()
}

// TestJunkKeywordFeedback: STORE of $Junk (or Thunderbird's Junk) is spam
// feedback and of $NotJunk (or NonJunk) ham feedback, as a move into or
// out of Junk is; clearing them, or setting both at once, records
// nothing.
func TestJunkKeywordFeedback(t *testing.T) {
	k := start(t)
	for i := 1; i <= 3; i++ {
		k.deliver(mail(i))
	}
	c := k.loggedIn(nil)
	k.selectBox(c, "INBOX")
	store := func(n uint32, op imap.StoreFlagsOp, fl ...imap.Flag) {
		t.Helper()
		if err := c.Store(imap.SeqSetNum(n), &imap.StoreFlags{Op: op, Silent: true, Flags: fl}, nil).Close(); err != nil {
			t.Fatalf("STORE %v %v: %v", op, fl, err)
		}
	}
	// feedback returns mail i's feedback column (0: no feedback row).
	feedback := func(i int) uint64 {
		t.Helper()
		rk := model.KeyOf(model.Receive, model.ReceiveContent(model.NewMailRows([]byte(mail(i))).MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(address))))
		row, err := k.admin.FindKey(k.ctx, model.Text, model.KeyOf(model.Text, model.FeedbackContent(rk, login)))
		if errors.Is(err, client.ErrNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return row.State.Col(model.ColFeedback)
	}
	verdict := func(i int, wantSpam bool) uint64 {
		t.Helper()
		v := feedback(i)
		if spam, ok := model.DecodeFeedback(v); !ok || spam != wantSpam {
			t.Fatalf("mail %d: feedback %d (spam %v, %v), want spam %v", i, v, spam, ok, wantSpam)
		}
		return v
	}
	store(1, imap.StoreFlagsAdd, imap.FlagJunk)
	spamV := verdict(1, true)
	store(2, imap.StoreFlagsAdd, "NonJunk")
	verdict(2, false)
	// Clearing $Junk is not "this is ham".
	store(1, imap.StoreFlagsDel, imap.FlagJunk)
	if v := feedback(1); v != spamV {
		t.Fatalf("feedback after -FLAGS $Junk = %d, want unchanged %d", v, spamV)
	}
	// Both at once say nothing; then $NotJunk alone is newer ham.
	store(3, imap.StoreFlagsSet, imap.FlagJunk, imap.FlagNotJunk)
	if v := feedback(3); v != 0 {
		t.Fatalf("feedback after $Junk and $NotJunk at once = %d, want none", v)
	}
	time.Sleep(2 * time.Millisecond) // a later verdict has a later time
	store(1, imap.StoreFlagsAdd, imap.FlagNotJunk)
	if v := verdict(1, false); v <= spamV {
		t.Fatalf("ham feedback %d not newer than the spam feedback %d", v, spamV)
	}
	store(3, imap.StoreFlagsSet, "Junk")
	verdict(3, true)
}

func TestAppendCopyMoveFeedback(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	k.deliver(mail(2))
	c := k.loggedIn(nil)
	date := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	ad, err := appendMail(c, "Sent", mail(9), []imap.Flag{imap.FlagSeen, "Custom+Kw"}, date)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if ad.UID == 0 || ad.UIDValidity == 0 {
		t.Fatalf("APPENDUID = %+v", ad)
	}
	if _, err := appendMail(c, "NoSuch", mail(9), nil, time.Time{}); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("APPEND to a missing folder: %v, want TRYCREATE", err)
	}
	sd := k.selectBox(c, "Sent")
	if sd.UIDValidity != ad.UIDValidity || sd.NumMessages != 1 {
		t.Fatalf("Sent: %+v", sd)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Flags: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	m := msgs[0]
	if m.UID != ad.UID || !m.InternalDate.Equal(date) || !slices.Contains(m.Flags, imap.FlagSeen) || !slices.Contains(m.Flags, "custom+kw") ||
		string(m.FindBodySection(&imap.FetchItemBodySection{Peek: true})) != mail(9) {
		t.Fatalf("appended mail: uid %d date %v flags %v body %q want %q", m.UID, m.InternalDate, m.Flags, m.FindBodySection(&imap.FetchItemBodySection{Peek: true}), mail(9))
	}
	// The appended mail is not in INBOX, and POP3's view (the SMTP
	// mailbox) never shows it.
	in := k.selectBox(c, "INBOX")
	if in.NumMessages != 2 {
		t.Fatalf("INBOX has %d mails, want 2", in.NumMessages)
	}
	inUIDs, _ := k.contents(c)
	// COPY the first to Trash: COPYUID, and INBOX keeps it.
	cd, err := c.Copy(imap.SeqSetNum(1), "Trash").Wait()
	if err != nil || cd.UIDValidity == 0 || len(cd.DestUIDs) != 1 {
		t.Fatalf("copy: %+v, %v", cd, err)
	}
	// MOVE the second to Junk: spam feedback.
	md, err := c.Move(imap.SeqSetNum(2), "Junk").Wait()
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	if md.UIDValidity == 0 {
		t.Fatalf("MOVE without COPYUID: %+v", md)
	}
	if uids, _ := k.contents(c); len(uids) != 1 || uids[0] != inUIDs[0] {
		t.Fatalf("INBOX after MOVE: %v", uids)
	}
	rk := model.KeyOf(model.Receive, model.ReceiveContent(model.NewMailRows([]byte(mail(2))).MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(address))))
	fk := model.KeyOf(model.Text, model.FeedbackContent(rk, login))
	row, err := k.admin.FindKey(k.ctx, model.Text, fk)
	if err != nil {
		t.Fatalf("no feedback row after MOVE to Junk: %v", err)
	}
	spamV := row.State.Col(model.ColFeedback)
	if spam, ok := model.DecodeFeedback(spamV); !ok || !spam {
		t.Fatalf("feedback after MOVE to Junk = %d, want spam", spamV)
	}
	// And back: ham feedback, a new UID above INBOX's UIDNEXT.
	k.selectBox(c, "Junk")
	if uids, bodies := k.contents(c); len(uids) != 1 || bodies[0] != mail(2) {
		t.Fatalf("Junk: %v", uids)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Fatal(err)
	}
	row, err = k.admin.FindKey(k.ctx, model.Text, fk)
	if err != nil {
		t.Fatal(err)
	}
	if spam, ok := model.DecodeFeedback(row.State.Col(model.ColFeedback)); !ok || spam || row.State.Col(model.ColFeedback) <= spamV {
		t.Fatalf("feedback after MOVE out of Junk = %d, want a newer ham", row.State.Col(model.ColFeedback))
	}
	k.selectBox(c, "INBOX")
	uids, bodies := k.contents(c)
	if len(uids) != 2 || uids[1] < in.UIDNext || bodies[1] != mail(2) {
		t.Fatalf("INBOX after moving back: %v (old UIDNEXT %d)", uids, in.UIDNext)
	}
	// EXPUNGE from Trash leaves the INBOX copy alone (and POP3's view).
	k.selectBox(c, "Trash")
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if u, _ := k.contents(c); len(u) != 0 {
		t.Fatalf("Trash after EXPUNGE: %v", u)
	}
	if sd := k.selectBox(c, "INBOX"); sd.NumMessages != 2 {
		t.Fatalf("INBOX after expunging the Trash copy: %d mails", sd.NumMessages)
	}
	// Re-APPEND of the same mail after it was expunged shows it again.
	k.selectBox(c, "Sent")
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	ad2, err := appendMail(c, "Sent", mail(9), nil, time.Time{})
	if err != nil || ad2.UID <= ad.UID {
		t.Fatalf("re-APPEND: %+v, %v", ad2, err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != ad2.UID || slices.Contains(msgs[0].Flags, imap.FlagDeleted) {
		t.Fatalf("Sent after re-APPEND: %+v, %v", msgs, err)
	}
}

// TestMailboxRoleCannotShowRefusedMail: with only the mailbox role's
// rights (what a compromised imapd or pop3d has), a delivery that smtpd
// did not acknowledge (refused spam) stays invisible in every folder:
// membership columns and forged placements do not count without ack.
func TestMailboxRoleCannotShowRefusedMail(t *testing.T) {
	k := start(t)
	rk, err := testkit.Deliver(k.ctx, k.admin, address, []byte(mail(7)), false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.deliver(mail(1))
	c := k.loggedIn(nil)
	sd := k.selectBox(c, "INBOX")
	st, err := k.admin.Status(k.ctx)
	if err != nil {
		t.Fatal(err)
	}
	inc, _, err := wire.FigureUint(st, "incarnation")
	if err != nil {
		t.Fatal(err)
	}
	mb := k.env.Client("mailbox")
	now := time.Now()
	var reqs []wire.Request
	for _, id := range []model.FolderID{model.FolderInbox, model.FolderJunk} {
		fk := model.FolderKey(login, id)
		reqs = append(reqs,
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: rk}, Name: model.MemberColumn(id), Value: model.MemberValue(now, true)},
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: model.PlacementContent(model.Placement{Incarnation: inc, Folder: fk, Receive: rk})},
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: model.PlacementContent(model.Placement{Incarnation: inc, Folder: fk, Receive: rk, Gen: model.MemberValue(now, true)})})
	}
	if _, err := mb.Batch(k.ctx, reqs); err != nil {
		t.Fatalf("mailbox role batch: %v", err)
	}
	// The role cannot set ack (dbd refuses), so nothing can make it count.
	if _, err := mb.Batch(k.ctx, []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: rk}, Name: model.ColAcknowledged, Value: 1}}); err == nil {
		t.Fatal("the mailbox role set ack")
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	for _, box := range []string{"INBOX", "Junk"} {
		k.selectBox(c, box)
		_, bodies := k.contents(c)
		for _, b := range bodies {
			if b == mail(7) {
				t.Fatalf("refused mail visible in %s", box)
			}
		}
	}
	if got := k.selectBox(c, "INBOX"); got.NumMessages != sd.NumMessages {
		t.Fatalf("INBOX went from %d to %d mails", sd.NumMessages, got.NumMessages)
	}
}

// lateWatch is a store whose watch events each come 300 ms late, as they
// may on a loaded machine.
type lateWatch struct{ session.Store }

func (s lateWatch) Watch(ctx context.Context, box model.Key) (store.Events, error) {
	ev, err := s.Store.Watch(ctx, box)
	if err != nil {
		return nil, err
	}
	return lateEvents{ev}, nil
}

type lateEvents struct{ store.Events }

func (e lateEvents) Next(ctx context.Context) (*wire.Row, error) {
	row, err := e.Events.Next(ctx)
	if err == nil {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return row, err
}

// TestAppendToSelectedSaysExists: an APPEND into the selected folder is
// answered with its untagged EXISTS before the tagged OK (RFC 9051
// §6.3.12), not at whichever later command comes after dbd's watch event
// (here each event comes 300 ms late; CI once saw a NOOP right after an
// APPEND miss the new mail).
func TestAppendToSelectedSaysExists(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.wrapStore = func(s session.Store) session.Store { return lateWatch{s} }
	})
	k.deliver(mail(1))
	r := k.raw()
	r.send("a1 LOGIN " + login + " \"" + password + "\"\r\n")
	if s := r.until("a1 "); !strings.HasPrefix(s, "a1 OK") {
		t.Fatalf("login: %q", s)
	}
	r.send("a2 SELECT INBOX\r\n")
	if s := r.until("a2 "); !strings.HasPrefix(s, "a2 OK") {
		t.Fatalf("select: %q", s)
	}
	// response reads one command's answer: whether an untagged EXISTS
	// of want came before the tagged line.
	response := func(tag string, want int) (exists bool, tagged string) {
		for i := 0; i < 1000; i++ {
			s := r.line()
			if strings.HasPrefix(s, tag+" ") {
				return exists, s
			}
			exists = exists || s == fmt.Sprintf("* %d EXISTS\r\n", want)
		}
		t.Fatalf("no answer to %s", tag)
		return false, ""
	}
	n := 1
	for i := range 10 {
		body := fmt.Sprintf("Subject: appended %d\r\n\r\nbody %d\r\n", i, i)
		tag := fmt.Sprintf("b%d", i)
		r.send(fmt.Sprintf("%s APPEND INBOX {%d}\r\n", tag, len(body)))
		if s := r.line(); !strings.HasPrefix(s, "+") {
			t.Fatalf("APPEND literal: %q", s)
		}
		r.send(body + "\r\n")
		n++
		exists, s := response(tag, n)
		if !strings.HasPrefix(s, tag+" OK") || !exists {
			t.Fatalf("APPEND %d into the selected INBOX: EXISTS %d before %q: %v", i, n, s, exists)
		}
	}
}

// TestUIDCopyOfNoMail: UID COPY of UIDs that name no mail (expunged
// meanwhile by another session) succeeds without COPYUID, which has no
// empty form; the connection goes on.
func TestUIDCopyOfNoMail(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	r, _ := k.loginSelect()
	r.send("c1 CREATE Other\r\n")
	if _, tagged := r.answer("c1"); !strings.HasPrefix(tagged, "c1 OK") {
		t.Fatalf("CREATE: %q", tagged)
	}
	r.send("c2 UID COPY 999 Other\r\n")
	if _, tagged := r.answer("c2"); tagged != "c2 OK COPY completed\r\n" {
		t.Fatalf("UID COPY of no mail: %q", tagged)
	}
	r.send("c3 NOOP\r\n")
	if _, tagged := r.answer("c3"); !strings.HasPrefix(tagged, "c3 OK") {
		t.Fatalf("NOOP after it: %q", tagged)
	}
}

// UIDNEXT changes only when mail is added (RFC 9051 §2.3.1.1): when the
// newest mail leaves the folder — expunged, moved away, or deleted over
// POP3 — a later SELECT and STATUS still answer the UIDNEXT seen before.
// It was the last shown UID + 1, so it went down.
func TestUIDNEXTDoesNotGoDown(t *testing.T) {
	k := start(t)
	for i := 1; i <= 4; i++ {
		k.deliver(mail(i))
	}
	c := k.loggedIn(nil)
	if err := c.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	other := k.loggedIn(nil)
	sd := k.selectBox(c, "INBOX")
	if sd.NumMessages != 4 {
		t.Fatalf("INBOX has %d mails, want 4", sd.NumMessages)
	}
	want := sd.UIDNext
	check := func(step string) {
		t.Helper()
		if err := c.Unselect().Wait(); err != nil {
			t.Fatal(err)
		}
		st, err := other.Status("INBOX", &imap.StatusOptions{UIDNext: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if st.UIDNext != want {
			t.Errorf("after %s: STATUS UIDNEXT %d, want %d", step, st.UIDNext, want)
		}
		if sd := k.selectBox(c, "INBOX"); sd.UIDNext != want {
			t.Errorf("after %s: SELECT UIDNEXT %d, want %d", step, sd.UIDNext, want)
		}
	}
	// The newest mail expunged.
	if err := c.Store(imap.SeqSetNum(4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	check("EXPUNGE of the newest mail")
	// The newest left moved to another folder.
	if _, err := c.Move(imap.SeqSetNum(3), "Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	check("MOVE of the newest mail")
	// Mail added still raises it.
	k.deliver(mail(5))
	sd = k.selectBox(c, "INBOX")
	if sd.UIDNext <= want || sd.NumMessages != 3 {
		t.Fatalf("after a new mail: %d mails, UIDNEXT %d, want 3 mails and UIDNEXT above %d", sd.NumMessages, sd.UIDNext, want)
	}
}
