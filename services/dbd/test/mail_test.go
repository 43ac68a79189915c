package test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// TestMailCommands stores a mail the way smtpd does (with the smtpd key)
// and drives mailbox add, mails and verdict through the real dbctl.
func TestMailCommands(t *testing.T) {
	s := newSite(t)
	s.Start()
	out := s.Dbctl(nil, "mailbox", "add", "--policy", "accept", "jo@Example.ORG")
	if !strings.Contains(out, "jo@example.org added") {
		t.Fatalf("mailbox add: %q", out)
	}
	if out := s.Dbctl(nil, "mailbox", "policy", "jo@example.org"); out != "jo@example.org accept\n" {
		t.Fatalf("mailbox policy: %q", out)
	}
	// Lowered again: the later setting wins although its code is smaller.
	if out := s.Dbctl(nil, "mailbox", "policy", "jo@example.org", "filter"); out != "jo@example.org filter\n" {
		t.Fatalf("mailbox policy filter: %q", out)
	}
	if _, _, code := s.DbctlExit(nil, "mailbox", "policy", "jo@example.org", "lenient"); code != 2 {
		t.Fatalf("mailbox policy with an unknown policy: exit %d, want 2", code)
	}
	if _, _, code := s.DbctlExit(nil, "mailbox", "policy", "nobody@example.org", "accept"); code != 1 {
		t.Fatalf("mailbox policy of a missing mailbox: exit %d, want 1", code)
	}
	if _, _, code := s.DbctlExit(nil, "mailbox", "add", "--policy", "2", "x@example.org"); code != 2 {
		t.Fatalf("mailbox add --policy 2 (a number): exit %d, want 2", code)
	}
	s.Dbctl(nil, "mailbox", "add", "--policy", "nogreylist", "abc@example.org")
	s.Dbctl(nil, "mailbox", "filter", "abc@example.org", "X-Spam-Status")
	if out := s.Dbctl(nil, "mailbox", "list"); out != "abc@example.org nogreylist drop:x-spam-status\njo@example.org filter\n" {
		t.Fatalf("mailbox list: %q", out)
	}
	if out := s.Dbctl(nil, "mailbox", "add", "jo@example.org"); !strings.Contains(out, "exists") {
		t.Fatalf("mailbox add again: %q", out)
	}
	if _, _, code := s.DbctlExit(nil, "mailbox", "add", "no-at-sign"); code != 2 {
		t.Fatalf("mailbox add without @: exit %d, want 2", code)
	}

	kp, err := wire.LoadKeyPair(filepath.Join(s.Dir, "keys", "smtpd"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Addr: s.Addr, Static: kp, Server: s.Pub})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rows := model.NewMailRows([]byte("From: Ann <ann@x.example>\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\nhello\r\n"))
	mb := model.KeyOf(model.Mailbox, model.MailboxContent("jo@example.org"))
	recv := model.ReceiveContent(rows.MailKey, mb)
	if _, err := cl.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: recv},
	}); err != nil {
		t.Fatal(err)
	}

	out = s.Dbctl(nil, "mails", "--last", "5")
	want := rows.MailKey.String() + ` from="Ann <ann@x.example>" to=jo@example.org subject=grüße verdict=none backed-up=no ack=no`
	if strings.TrimSpace(out) != want {
		t.Fatalf("mails:\n got %q\nwant %q", out, want)
	}
	// status shows the mail in spamd's queue (no verdict) and in strict
	// mode's (not backed up) until each is settled.
	if out := s.Dbctl(nil, "status"); !strings.Contains(out, "\nmails.scanned: 1\nmails.undecided: 1\nmails.not-backed-up: 1\n") {
		t.Fatalf("status before the verdict:\n%s", out)
	}
	s.Dbctl(nil, "verdict", "accept", rows.MailKey.String())
	if out := s.Dbctl(nil, "status"); !strings.Contains(out, "\nmails.undecided: 0\nmails.not-backed-up: 1\n") {
		t.Fatalf("status after the verdict:\n%s", out)
	}
	if out := s.Dbctl(nil, "mails"); !strings.Contains(out, "verdict=accept/operator") {
		t.Fatalf("after accept: %q", out)
	}
	// A later operator verdict outranks the earlier one, even a reject
	// (which loses to accept at the same epoch).
	time.Sleep(1100 * time.Millisecond) // epochs have one-second resolution
	s.Dbctl(nil, "verdict", "reject", rows.MailKey.String(), "jo@example.org")
	if out := s.Dbctl(nil, "mails"); !strings.Contains(out, "verdict=reject/operator") {
		t.Fatalf("after reject: %q", out)
	}
	if _, _, code := s.DbctlExit(nil, "verdict", "accept", model.KeyOf(model.Mail, []byte("none")).String()); code != 1 {
		t.Fatalf("verdict for an unknown mail: exit %d, want 1", code)
	}
	if _, _, code := s.DbctlExit(nil, "verdict", "maybe", rows.MailKey.String()); code != 2 {
		t.Fatalf("bad verdict word: exit %d, want 2", code)
	}
}

// TestAutoverdictDecidesBacklog: rows stored before autoverdict started
// (or while it was away) are decided, and so are new ones.
func TestAutoverdictDecidesBacklog(t *testing.T) {
	s := newSite(t)
	s.Start()
	cl := s.NewClient("smtpd")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	insert := func(name string) model.Key {
		c := model.ReceiveContent(model.KeyOf(model.Mail, []byte(name)), model.KeyOf(model.Mailbox, []byte("a@b")))
		if _, _, err := cl.FindOrInsert(ctx, model.Receive, c); err != nil {
			t.Fatal(err)
		}
		return model.KeyOf(model.Receive, c)
	}
	old := insert("before")
	cmd := exec.Command(filepath.Join(binDir, "dbctl"), "--db", s.Addr, "--db-pub", filepath.Join(s.Dir, "keys", "dbd.pub"),
		"--key", filepath.Join(s.Dir, "keys", "admin"), "autoverdict", "accept")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	decided := func(k model.Key) {
		t.Helper()
		for {
			row, err := cl.FindKey(ctx, model.Receive, k)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, v, ok := model.DecodeVerdict(row.State.Cols[model.ColVerdict]); ok && v == model.Accept {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("row %s never decided", k)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	decided(old)
	decided(insert("after"))
}
