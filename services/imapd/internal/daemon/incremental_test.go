package daemon

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
	"github.com/twinmx/twinmx/services/imapd/internal/session"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// folderView is what a session shows of a folder: UID -> Message-ID and
// sorted flags.
type folderView map[imap.UID]string

func viewOf(t *testing.T, c *imapclient.Client) folderView {
	t.Helper()
	sec := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader,
		HeaderFields: []string{"Message-ID"}}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true,
		BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		if strings.Contains(err.Error(), "No messages") || strings.Contains(err.Error(), "Invalid") {
			return folderView{}
		}
		t.Fatalf("fetch: %v", err)
	}
	v := folderView{}
	for _, m := range msgs {
		fl := make([]string, 0, len(m.Flags))
		for _, f := range m.Flags {
			if f != `\Recent` {
				fl = append(fl, string(f))
			}
		}
		slices.Sort(fl)
		v[m.UID] = strings.TrimSpace(string(m.FindBodySection(sec))) + " " + strings.Join(fl, ",")
	}
	return v
}

func statusOf(t *testing.T, c *imapclient.Client, box string) string {
	t.Helper()
	d, err := c.Status(box, &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true, NumDeleted: true}).Wait()
	if err != nil {
		t.Fatalf("status %s: %v", box, err)
	}
	return fmt.Sprintf("messages %d unseen %d deleted %d uidnext %d", *d.NumMessages, *d.NumUnseen, *d.NumDeleted, d.UIDNext)
}

func (v folderView) String() string {
	uids := make([]imap.UID, 0, len(v))
	for u := range v {
		uids = append(uids, u)
	}
	slices.Sort(uids)
	var b strings.Builder
	for _, u := range uids {
		fmt.Fprintf(&b, "%d: %s\n", u, v[u])
	}
	return b.String()
}

// TestIncrementalSyncMatchesFreshView: a session that stays in INBOX
// follows the folder from the rows its watch events carry (rowCache), not
// from a new listing. After each of many random changes (new mail, mail
// acknowledged late, flags set and cleared by another session, by itself
// and by the other site, moves out and back, copies in, its own COPY and
// EXPUNGE, APPENDs, mail moved in from a folder made after its SELECT,
// deletions as POP3 makes them), its
// view must become exactly what a new session's SELECT shows: same UIDs,
// same mails, same flags; and its STATUS of INBOX and of another folder,
// answered from its copy, what a session with nothing selected answers.
// TWINMX_SEED replays a run; TWINMX_STEPS sets
// its length (default 60).
func TestIncrementalSyncMatchesFreshView(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("TWINMX_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("TWINMX_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	steps := 60
	if v, err := strconv.Atoi(os.Getenv("TWINMX_STEPS")); err == nil && v > 0 {
		steps = v
	}
	k := start(t)
	for i := range 5 {
		k.deliver(mail(i))
	}
	actor := k.loggedIn(nil)
	unselected := k.loggedIn(nil)
	// Created first: the follower's copy then holds Other's rows too, and
	// its STATUS of Other is answered from the copy.
	if err := actor.Create("Other", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	follower := k.loggedIn(nil)
	if _, err := follower.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	box := model.KeyOf(model.Mailbox, model.MailboxContent(address))
	next := 5
	var unacked []model.Key // receive rows stored, not yet acknowledged
	flagsToUse := []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagAnswered, "$Label1"}

	var uidNext imap.UID // the highest UIDNEXT a SELECT of INBOX answered
	for step := range steps {
		sd, err := actor.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if sd.UIDNext < uidNext {
			t.Fatalf("seed %d step %d: SELECT's UIDNEXT went down from %d to %d", seed, step, uidNext, sd.UIDNext)
		}
		uidNext = sd.UIDNext
		fresh := viewOf(t, actor)
		uids := make([]imap.UID, 0, len(fresh))
		for u := range fresh {
			uids = append(uids, u)
		}
		slices.Sort(uids)
		pick := func() imap.UID { return uids[rng.IntN(len(uids))] }
		// store sets or clears a random flag on a random mail through c.
		store := func(who string, c *imapclient.Client) string {
			u, f := pick(), flagsToUse[rng.IntN(len(flagsToUse))]
			op := imap.StoreFlagsAdd
			if rng.IntN(2) == 0 {
				op = imap.StoreFlagsDel
			}
			if err := c.Store(imap.UIDSetNum(u), &imap.StoreFlags{Op: op, Flags: []imap.Flag{f}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("%sstore %v %s on %d", who, op, f, u)
		}
		op := rng.IntN(14)
		if len(uids) == 0 {
			op = 0
		}
		var what string
		switch op {
		case 0:
			what = "deliver"
			k.deliver(mail(next))
			next++
		case 1:
			what = "deliver without ack"
			rk, err := testkit.Deliver(k.ctx, k.admin, address, []byte(mail(next)), false, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			next++
			unacked = append(unacked, rk)
		case 2:
			what = "acknowledge late"
			if len(unacked) == 0 {
				k.deliver(mail(next))
				next++
				break
			}
			rk := unacked[0]
			unacked = unacked[1:]
			if _, err := k.admin.Batch(k.ctx, []wire.Request{{Op: wire.OpSet, Table: model.Receive,
				Ref: wire.Ref{ByKey: true, Key: rk}, Name: model.ColAcknowledged, Value: model.FlagSet}}); err != nil {
				t.Fatal(err)
			}
		case 3:
			what = store("", actor)
		case 4:
			u := pick()
			what = fmt.Sprintf("move %d out and back", u)
			if _, err := actor.Move(imap.UIDSetNum(u), "Other").Wait(); err != nil {
				t.Fatal(err)
			}
			if _, err := actor.Select("Other", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if _, err := actor.Move(imap.SeqSet{{Start: 1, Stop: 0}}, "INBOX").Wait(); err != nil {
				t.Fatal(err)
			}
		case 5:
			u := pick()
			what = fmt.Sprintf("move %d out", u)
			if _, err := actor.Move(imap.UIDSetNum(u), "Other").Wait(); err != nil {
				t.Fatal(err)
			}
		case 6:
			u := pick()
			what = fmt.Sprintf("expunge %d", u)
			if err := actor.Store(imap.UIDSetNum(u), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := actor.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
		case 7:
			what = "append"
			raw := mail(next)
			next++
			cmd := actor.Append("INBOX", int64(len(raw)), nil)
			if _, err := cmd.Write([]byte(raw)); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		case 8:
			// POP3's DELE+QUIT: the deleted column, by another program.
			what = "deleted by POP3"
			ms, err := k.admin.List(k.ctx, model.Receive, box, 0, 1000)
			if err != nil || len(ms) == 0 {
				t.Fatalf("list: %v", err)
			}
			r := ms[rng.IntN(len(ms))]
			if _, err := k.admin.Batch(k.ctx, []wire.Request{{Op: wire.OpSet, Table: model.Receive,
				Ref: wire.Ref{ByKey: true, Key: r.Key}, Name: model.ColDeleted, Value: model.FlagSet}}); err != nil {
				t.Fatal(err)
			}
		case 9:
			// The selected session's own STORE, on a row whose other
			// changes may still be on their way to it.
			what = store("follower's ", follower)
		case 10:
			// A flag change replicated from the other site: a column
			// set by another program, its time ahead of ours.
			u := pick()
			on := rng.IntN(2) == 0
			what = fmt.Sprintf("\\Seen %v from the other site on %d", on, u)
			ms, err := k.admin.List(k.ctx, model.Receive, box, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			col, _, _ := flags.Column(imap.FlagSeen, model.FolderInbox)
			for _, r := range ms {
				if rng.IntN(3) == 0 {
					if _, err := k.admin.Batch(k.ctx, []wire.Request{{Op: wire.OpSet, Table: model.Receive,
						Ref: wire.Ref{ByKey: true, Key: r.Key}, Name: col, Value: flags.Value(time.Now().UnixMilli()+int64(step)+1000, on)}}); err != nil {
						t.Fatal(err)
					}
				}
			}
		case 11:
			// A folder made after the follower selected INBOX, its
			// APPENDed mail moved into INBOX.
			name := fmt.Sprintf("New%d", step)
			what = "append to " + name + " and move into INBOX"
			if err := actor.Create(name, nil).Wait(); err != nil {
				t.Fatal(err)
			}
			raw := mail(next)
			next++
			cmd := actor.Append(name, int64(len(raw)), nil)
			if _, err := cmd.Write([]byte(raw)); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			if _, err := actor.Select(name, nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if _, err := actor.Move(imap.SeqSet{{Start: 1, Stop: 0}}, "INBOX").Wait(); err != nil {
				t.Fatal(err)
			}
		case 12:
			// The selected session moves a mail the old way: COPY,
			// \Deleted, EXPUNGE.
			u := pick()
			what = fmt.Sprintf("follower's copy of %d to Other and expunge", u)
			if _, err := follower.Copy(imap.UIDSetNum(u), "Other").Wait(); err != nil {
				t.Fatal(err)
			}
			if err := follower.Store(imap.UIDSetNum(u), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := follower.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
		case 13:
			// Mail copied into INBOX from Other (a second folder of the
			// same row).
			what = "copy Other into INBOX"
			if _, err := actor.Select("Other", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if _, err := actor.Copy(imap.UIDSet{{Start: 1, Stop: 0}}, "INBOX").Wait(); err != nil && !strings.Contains(err.Error(), "No") {
				t.Fatal(err)
			}
		}
		// The truth: a new session's listing.
		if _, err := actor.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		want := viewOf(t, actor)
		// STATUS from the selected session (its rows come from the copy)
		// and from a session with nothing selected (a new listing).
		for _, box := range []string{"INBOX", "Other"} {
			wantStatus := statusOf(t, unselected, box)
			var gotStatus string
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if gotStatus = statusOf(t, follower, box); gotStatus == wantStatus || time.Now().After(deadline) {
					break
				}
			}
			if gotStatus != wantStatus {
				t.Fatalf("step %d (%s): STATUS %s in the selected session %s, in a new one %s", step, what, box, gotStatus, wantStatus)
			}
		}
		var got folderView
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if err := follower.Noop().Wait(); err != nil {
				t.Fatal(err)
			}
			got = viewOf(t, follower)
			if got.String() == want.String() || time.Now().After(deadline) {
				break
			}
		}
		if got.String() != want.String() {
			t.Fatalf("step %d (%s): the selected session shows\n%s\na new session shows\n%s", step, what, got, want)
		}
	}
}

// TestOwnStoreDoesNotFlicker: a session's own STORE shows in its view at
// once, and a sync that runs before that STORE's watch event arrives (here
// every event comes 300 ms late, and another session's earlier change
// brings a sync in between) must not report the mail's flags as they were
// before the STORE.
func TestOwnStoreDoesNotFlicker(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.wrapStore = func(s session.Store) session.Store { return lateWatch{s} }
	})
	k.deliver(mail(1))
	k.deliver(mail(2))
	r, _ := k.loginSelect()
	other, _ := k.loginSelect()
	other.send("o STORE 2 +FLAGS (\\Seen)\r\n")
	if _, tagged := other.answer("o"); !strings.HasPrefix(tagged, "o OK") {
		t.Fatalf("other session's STORE: %q", tagged)
	}
	time.Sleep(150 * time.Millisecond)
	r.send("s STORE 1 +FLAGS (\\Flagged)\r\n")
	if lines, tagged := r.answer("s"); !strings.HasPrefix(tagged, "s OK") || !slicesHas(lines, "* 1 FETCH (FLAGS (\\Flagged))\r\n") {
		t.Fatalf("STORE: %q %q", lines, tagged)
	}
	sawSeen := false
	for i := 0; i < 40; i++ {
		time.Sleep(25 * time.Millisecond)
		r.send(fmt.Sprintf("n%d NOOP\r\n", i))
		lines, _ := r.answer(fmt.Sprintf("n%d", i))
		for _, l := range lines {
			if strings.HasPrefix(l, "* 1 FETCH") && !strings.Contains(l, "\\Flagged") {
				t.Fatalf("NOOP %d after the session's own STORE reported %q", i, l)
			}
			sawSeen = sawSeen || strings.HasPrefix(l, "* 2 FETCH") && strings.Contains(l, "\\Seen")
		}
	}
	if !sawSeen {
		t.Fatal("the other session's \\Seen never reached the session")
	}
}

// TestListStatusMatchesStatus: LIST-STATUS answers, for every folder, what
// a STATUS of that folder in a new session answers, whether the asking
// session has a folder selected (rows from its copy) or not (the
// account's rows listed once for all folders).
func TestListStatusMatchesStatus(t *testing.T) {
	k := start(t)
	for i := range 6 {
		k.deliver(mail(i))
	}
	c := k.loggedIn(nil)
	for _, f := range []string{"Other", "Other/Sub"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.SeqSetNum(2, 3), "Other").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Other/Sub").Wait(); err != nil {
		t.Fatal(err)
	}
	opts := &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true, NumDeleted: true}
	want := map[string]string{}
	for _, box := range []string{"INBOX", "Other", "Other/Sub", "Sent", "Trash", "Junk", "Drafts"} {
		want[box] = statusOf(t, k.loggedIn(nil), box)
	}
	for name, asker := range map[string]*imapclient.Client{"selected": c, "unselected": k.loggedIn(nil)} {
		list, err := asker.List("", "*", &imap.ListOptions{ReturnStatus: opts}).Collect()
		if err != nil {
			t.Fatalf("%s: LIST-STATUS: %v", name, err)
		}
		seen := 0
		for _, d := range list {
			w, ok := want[d.Mailbox]
			if !ok {
				continue
			}
			seen++
			if d.Status == nil {
				t.Fatalf("%s: LIST-STATUS of %s without STATUS", name, d.Mailbox)
			}
			got := fmt.Sprintf("messages %d unseen %d deleted %d uidnext %d", *d.Status.NumMessages, *d.Status.NumUnseen, *d.Status.NumDeleted, d.Status.UIDNext)
			if got != w {
				t.Errorf("%s: LIST-STATUS of %s: %s, STATUS in a new session: %s", name, d.Mailbox, got, w)
			}
		}
		if seen != len(want) {
			t.Errorf("%s: LIST-STATUS named %d of the %d folders", name, seen, len(want))
		}
	}
}

// TestCopyThenExpungeKeepsCopy: a client without MOVE copies a mail to
// another folder, marks it \Deleted and expunges it (RFC 9051 §6.4.8's
// old way), all before the COPY's watch event reaches the session (here
// every event comes 300 ms late). EXPUNGE gives a delivery in no other
// folder the deleted column, which is never undone: it must count the
// copy the session itself just made, or the mail is gone from both.
func TestCopyThenExpungeKeepsCopy(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.wrapStore = func(s session.Store) session.Store { return lateWatch{s} }
	})
	k.deliver(mail(1))
	c := k.loggedIn(nil)
	if err := c.Create("Other", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	copyThenExpunge(t, k, c, "Other")
}

// TestExpungeCountsFolderMadeAfterSelect: a folder created after the
// session selected INBOX (by it, or by another session) holds a copy of
// a mail; expunging the mail from INBOX must not delete it, though the
// folder set the session read at SELECT does not name the folder.
func TestExpungeCountsFolderMadeAfterSelect(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("New", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	copyThenExpunge(t, k, c, "New")
}

// TestFolderMadeAfterSelectIsFollowed: another session creates a folder
// after this one selected INBOX, appends a mail to it and moves the mail
// into INBOX. The mail's row lives under the new folder's key, which the
// session's watches and row copy did not cover: it must still show up,
// without any other change to INBOX, as in a new SELECT.
func TestFolderMadeAfterSelectIsFollowed(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	follower := k.loggedIn(nil)
	if _, err := follower.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	actor := k.loggedIn(nil)
	if err := actor.Create("New", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	raw := mail(2)
	cmd := actor.Append("New", int64(len(raw)), nil)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := actor.Select("New", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := actor.Move(imap.SeqSet{{Start: 1, Stop: 0}}, "INBOX").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := actor.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	want := viewOf(t, actor)
	var got folderView
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := follower.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		if got = viewOf(t, follower); got.String() == want.String() || time.Now().After(deadline) {
			break
		}
	}
	if got.String() != want.String() {
		t.Fatalf("the selected session shows\n%s\na new session shows\n%s", got, want)
	}
}

// copyThenExpunge copies the first mail of c's selected folder to
// folder, expunges it from the selected one, and checks that folder
// still holds it for a new session.
func copyThenExpunge(t *testing.T, k *kit, c *imapclient.Client, folder string) {
	t.Helper()
	if _, err := c.Copy(imap.SeqSetNum(1), folder).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	sd, err := k.loggedIn(nil).Select(folder, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.NumMessages != 1 {
		t.Fatalf("%s holds %d mails after COPY to it and EXPUNGE from the first folder, want 1", folder, sd.NumMessages)
	}
}

// TestOtherSessionsCopyThenExpunge: another session copies a mail to a
// folder, and this one expunges it from INBOX before the COPY's watch
// event arrives (every event 300 ms late here). EXPUNGE gives a delivery
// in no other folder the deleted column, which is never undone: it must
// ask dbd for the row, or the copy is deleted with it.
func TestOtherSessionsCopyThenExpunge(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.wrapStore = func(s session.Store) session.Store { return lateWatch{s} }
	})
	k.deliver(mail(1))
	c := k.loggedIn(nil)
	if err := c.Create("Other", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	other := k.loggedIn(nil)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Copy(imap.SeqSetNum(1), "Other").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	sd, err := k.loggedIn(nil).Select("Other", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.NumMessages != 1 {
		t.Fatalf("Other holds %d mails after another session's COPY to it and EXPUNGE from INBOX, want 1", sd.NumMessages)
	}
}
