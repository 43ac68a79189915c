package test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// TestExportImportReturnPath: a mail stored as smtpd stores it since
// 2026-12-03 — its Return-Path and Received field in the received row —
// is exported with the Return-Path first and the envelope sender in the
// mbox separator line, and importing that export into the same mailbox
// (mbox or Maildir) finds the mail already there instead of storing it a
// second time under the key its leading Return-Path would give it.
func TestExportImportReturnPath(t *testing.T) {
	s := newSite(t)
	s.Start()
	const box = "jo@example.org"
	s.Dbctl(nil, "mailbox", "add", box)
	admin := s.NewClient("admin")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	raw := []byte("From: Ann <ann@x.example>\r\nSubject: return path\r\nMessage-ID: <rp@x.example>\r\n\r\nbody\r\n")
	rows := model.NewMailRows(raw)
	parts, err := rows.Parts.WithTrace([]byte("Received: from a.x.example ([192.0.2.1])\r\n\tby mx-a (twinmx) with ESMTP id s1.1;\r\n\tThu, 03 Dec 2026 12:00:00 +0000\r\n"))
	if err == nil {
		parts, err = parts.WithTrace([]byte("Return-Path: <bounces+ann@x.example>\r\n"))
	}
	if err != nil {
		t.Fatal(err)
	}
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(box))
	recv := model.ReceiveContent(rows.MailKey, mb)
	rk, rcvd := model.KeyOf(model.Receive, recv), model.KeyOf(model.Received, parts.Received)
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Received, Content: parts.Received},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: recv},
	}
	ref := wire.Ref{ByKey: true, Key: rk}
	for name, v := range map[string]uint64{
		model.ColVerdict:           model.EncodeVerdict(model.SourceFilter, model.Epoch(time.Now()), model.Accept),
		model.ColAcknowledged:      model.FlagSet,
		model.ReceivedColumn(rcvd): uint64(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixMilli()),
	} {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: name, Value: v})
	}
	if _, err := admin.Batch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	delivered, err := model.Join(parts)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	mbox := filepath.Join(dir, "jo.mbox")
	s.Dbctl(nil, "export", "--mailbox", box, "--format", "mbox", "--out", mbox)
	got, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	sep, rest, _ := strings.Cut(string(got), "\n")
	if !strings.HasPrefix(sep, "From bounces+ann@x.example ") || !strings.HasPrefix(rest, "Return-Path: <bounces+ann@x.example>\r\nReceived: ") {
		t.Fatalf("mbox export:\n%q\nwant the envelope sender in the separator line and the Return-Path first", got)
	}
	md := filepath.Join(dir, "md")
	s.Dbctl(nil, "export", "--mailbox", box, "--format", "maildir", "--out", md)
	files := readFiles(t, md)
	if len(files) != 1 {
		t.Fatalf("maildir export: %d files", len(files))
	}
	for name, b := range files {
		if string(b) != string(delivered) {
			t.Fatalf("maildir export %s:\n%q\nwant\n%q", name, b, delivered)
		}
	}

	for _, c := range []struct{ format, path string }{{"mbox", mbox}, {"maildir", md}} {
		out, errs, code := s.DbctlExit(nil, "import", "--mailbox", box, "--format", c.format, c.path)
		if code != 0 || !regexp.MustCompile(`(?m)^0 new, 1 already there, 0 failed`).MatchString(out) {
			t.Fatalf("import of the %s export into the same mailbox: exit %d: %s%s", c.format, code, out, errs)
		}
	}
	if n := strings.Count(s.Dbctl(nil, "mails", "--last", "10"), "ack=yes"); n != 1 {
		t.Fatalf("%d mails in the mailbox after importing its export, want 1", n)
	}
}
