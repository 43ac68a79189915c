package digest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestPassDecodesCharsets: a refused mail's Subject and From in encoded
// words of a charset other than UTF-8 or Latin-1 (windows-1252 from
// Outlook, KOI8-R, ISO-8859-2, Shift_JIS, ...) are listed decoded. Before,
// the whole field was listed as its raw encoded words
// ("=?windows-1252?Q?R=E9union_=96_ordre_du_jour?="), so the owner could
// not recognise a wanted mail in the digest.
func TestPassDecodesCharsets(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-30*time.Minute))
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(w.mbox))
	mails := []struct{ header, want string }{
		{"Subject: =?windows-1252?Q?R=E9union_=96_ordre_du_jour?=\r\nFrom: a@b.example\r\n\r\n", "Subject: Réunion – ordre du jour"},
		{"Subject: =?koi8-r?B?8NLJ18XU?=\r\nFrom: c@d.example\r\n\r\n", "Subject: Привет"},
		{"Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\nFrom: e@f.example\r\n\r\n", "Subject: こんにちは"},
		// One word of another charset must not leave the UTF-8 ones raw.
		{"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= =?iso-8859-15?q?=E0_vous_=A4?=\r\nFrom: g@h.example\r\n\r\n", "Subject: Grüßeà vous €"},
		{"Subject: invoice\r\nFrom: =?iso-8859-2?q?Pawe=B3_=A3ukasz?= <p@l.example>\r\n\r\n", "From:    Paweł Łukasz <p@l.example>"},
		// An unknown charset keeps its ASCII readable.
		{"Subject: =?x-unknown?q?Invoice_12?=\r\nFrom: i@j.example\r\n\r\n", "Subject: Invoice 12"},
	}
	for i, m := range mails {
		w.addRefusal(mb, now.Add(time.Duration(i-20)*time.Minute), "s@x.example", m.header)
	}
	if n, err := w.digester(time.Hour).Pass(ctx, now); err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want 1 digest", n, err)
	}
	sent := w.sender.mails()
	if len(sent) != 1 {
		t.Fatalf("sent %d digests, want 1", len(sent))
	}
	text := digestText(t, sent[0].msg)
	for _, m := range mails {
		if !strings.Contains(text, m.want) {
			t.Errorf("digest lacks %q:\n%s", m.want, text)
		}
	}
	if strings.Contains(text, "=?") {
		t.Errorf("digest lists raw encoded words:\n%s", text)
	}
}

// TestPassMalformedHeader: a refused mail whose header has a line net/mail
// refuses (no colon; a continuation before the first field) is still
// listed with its From and Subject. Before, such an entry read only
// "(unreadable header)", and the owner could not tell which mail it was.
func TestPassMalformedHeader(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-30*time.Minute))
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(w.mbox))
	w.addRefusal(mb, now.Add(-20*time.Minute), "alice@a.example",
		"Subject: Invoice March\r\nThis line has no colon\r\nFrom: Alice\r\n <alice@a.example>\r\n\r\n")
	w.addRefusal(mb, now.Add(-19*time.Minute), "bob@b.example",
		" stray continuation\r\nFrom: =?utf-8?q?B=C3=B6b?= <bob@b.example>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n =?utf-8?q?_aus_Bern?=\r\n\r\n")
	if n, err := w.digester(time.Hour).Pass(ctx, now); err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want 1 digest", n, err)
	}
	sent := w.sender.mails()
	if len(sent) != 1 {
		t.Fatalf("sent %d digests, want 1", len(sent))
	}
	text := digestText(t, sent[0].msg)
	for _, want := range []string{"Subject: Invoice March", "From:    Alice <alice@a.example>",
		"Subject: Grüße aus Bern", "From:    Böb <bob@b.example>"} {
		if !strings.Contains(text, want) {
			t.Errorf("digest lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "unreadable") {
		t.Errorf("digest lists an unreadable header:\n%s", text)
	}
}

func TestLooseFields(t *testing.T) {
	for _, tt := range []struct {
		hdr, from, subject string
		ok                 bool
	}{
		{"no colon\r\n\r\nSubject: in the body\r\n", "", "", false},
		{"", "", "", false},
		{"X: y\nbad\nsubject : first\nSubject: second\n", "", "first", true},
		{"From: a@b\r\n\tand more\r\nbad\r\n\tnot from\r\n", "a@b and more", "", true},
	} {
		from, subject, ok := looseFields([]byte(tt.hdr))
		if from != tt.from || subject != tt.subject || ok != tt.ok {
			t.Errorf("looseFields(%q) = %q, %q, %v; want %q, %q, %v", tt.hdr, from, subject, ok, tt.from, tt.subject, tt.ok)
		}
	}
}
