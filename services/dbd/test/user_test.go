package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// TestUserAndMailbox: dbctl makes an account (password on stdin), and the
// mailbox role logs in, lists, reads back byte for byte, filters a header
// and deletes — the path pop3d and imapd take.
func TestUserAndMailbox(t *testing.T) {
	s := newSite(t)
	s.Start()
	s.Dbctl(strings.NewReader("correct horse\n"), "user", "add", "Alice", "--mailbox", "alice@x.example", "--mailbox", "ali@x.example")
	out := s.Dbctl(nil, "user", "show", "alice")
	for _, want := range []string{"login: alice", "password: set ", "mailbox: alice@x.example", "mailbox: ali@x.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("user show lacks %q:\n%s", want, out)
		}
	}
	if _, errs, code := s.DbctlExit(strings.NewReader("short\n"), "user", "passwd", "alice"); code != 2 {
		t.Errorf("a 5-character password: exit %d (%s), want 2", code, errs)
	}
	if _, _, code := s.DbctlExit(nil, "user", "remove-mailbox", "nobody", "a@x.example"); code != 1 {
		t.Errorf("remove-mailbox of a missing account: exit %d, want 1", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := mailbox.New(s.NewClient("mailbox"))
	if _, err := st.Login(ctx, "alice", "wrong horse"); !errors.Is(err, mailbox.ErrAuth) {
		t.Fatalf("wrong password: %v, want ErrAuth", err)
	}
	if _, err := st.Login(ctx, "bob", "correct horse"); !errors.Is(err, mailbox.ErrAuth) {
		t.Fatalf("unknown login: %v, want ErrAuth", err)
	}
	acct, err := st.Login(ctx, "ALICE", "correct horse")
	if err != nil || len(acct.Mailboxes) != 2 {
		t.Fatalf("Login = %+v, %v; want two mailboxes", acct, err)
	}
	s.Dbctl(strings.NewReader("new horse battery\n"), "user", "passwd", "alice")
	if _, err := st.Login(ctx, "alice", "correct horse"); !errors.Is(err, mailbox.ErrAuth) {
		t.Fatalf("old password after passwd: %v, want ErrAuth", err)
	}
	if _, err := st.Login(ctx, "alice", "new horse battery"); err != nil {
		t.Fatalf("new password: %v", err)
	}

	// Deliver two mails the way smtpd does (rows, ack, received link); the
	// second is not acknowledged and must not show.
	admin := s.NewClient("admin")
	box := model.KeyOf(model.Mailbox, model.MailboxContent("alice@x.example"))
	raw := "Received: from a by b; Sat, 28 Nov 2026 10:00:00 +0000\r\nFrom: x@y.example\r\nX-Junk: 1\r\nSubject: hi\r\n\r\nbody\r\n"
	deliver := func(raw string, ack bool) model.Key {
		rows := model.NewMailRows([]byte(raw))
		rc := model.ReceiveContent(rows.MailKey, box)
		reqs := []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
			{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
			{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
			{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
			{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
		}
		if ack {
			ref := wire.Ref{Content: rc}
			reqs = append(reqs,
				wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet},
				wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReceivedColumn(rows.ReceivedKey), Value: 1})
		}
		if _, err := admin.Batch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
		return model.KeyOf(model.Receive, rc)
	}
	want := deliver(raw, true)
	deliver("Subject: not yet\r\n\r\nx\r\n", false)
	msgs, err := st.Messages(ctx, box, 0)
	if err != nil || len(msgs) != 1 || msgs[0].Receive != want {
		t.Fatalf("Messages = %+v, %v; want the one acknowledged mail", msgs, err)
	}
	got, err := st.Fetch(ctx, msgs[0], nil)
	if err != nil || string(got) != raw {
		t.Fatalf("Fetch = %q, %v; want the mail byte for byte", got, err)
	}
	if n, err := st.Size(ctx, msgs[0], nil); err != nil || n != int64(len(raw)) {
		t.Fatalf("Size = %d, %v; want %d", n, err, len(raw))
	}
	s.Dbctl(nil, "mailbox", "filter", "alice@x.example", "X-Junk")
	acct, err = st.Login(ctx, "alice", "new horse battery")
	if err != nil {
		t.Fatal(err)
	}
	var drop []string
	for _, b := range acct.Mailboxes {
		if b.Key == box {
			drop = b.Drop
		}
	}
	got, err = st.Fetch(ctx, msgs[0], drop)
	filtered := strings.Replace(raw, "X-Junk: 1\r\n", "", 1)
	if err != nil || string(got) != filtered {
		t.Fatalf("Fetch with filter %v = %q, %v; want %q", drop, got, err, filtered)
	}
	if n, _ := st.Size(ctx, msgs[0], drop); n != int64(len(filtered)) {
		t.Fatalf("Size with filter = %d, want %d", n, len(filtered))
	}
	if err := st.Delete(ctx, []model.Key{want}); err != nil {
		t.Fatal(err)
	}
	if msgs, err := st.Messages(ctx, box, 0); err != nil || len(msgs) != 0 {
		t.Fatalf("Messages after delete = %+v, %v; want none", msgs, err)
	}
	// The mailbox role cannot write accounts.
	if _, err := s.NewClient("mailbox").Batch(ctx, []wire.Request{{Op: wire.OpSet, Table: model.POP3, Ref: wire.Ref{Content: model.AccountContent("alice")}, Name: "x", Value: 1}}); err == nil {
		t.Fatal("the mailbox role set an account column")
	}
}
