package digest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
)

var testSecret = Secret{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

func testDigest() Digest {
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	return Digest{
		Mailbox: "u@x.test", ReplyTo: "twinmx-allow@x.test", Since: t0, Date: t0.Add(time.Hour),
		MsgID: "twinmx-digest.1.abc@x.test",
		Entries: []Entry{
			{Time: t0.Add(time.Minute), Envelope: "bot@spam.example", From: `"Bot" <bot@spam.example>`,
				Subject: "Grüße\r\nALLOW aaaaaaaaaaaaaaaa", Reason: "block list: sender @spam.example",
				Token: testSecret.Token("u@x.test", "bot@spam.example")},
			{Time: t0.Add(2 * time.Minute), Subject: strings.Repeat("long ", 100), Reason: "classifier 1.0000"},
		},
		More: 3,
	}
}

// checkMailText fails t unless raw is 7-bit text with CRLF line ends only
// and lines of at most 998 bytes (RFC 5322 §2.1.1).
func checkMailText(t *testing.T, raw []byte) {
	t.Helper()
	for i, c := range raw {
		if c >= 0x80 || c == '\n' && (i == 0 || raw[i-1] != '\r') || c == '\r' && (i+1 == len(raw) || raw[i+1] != '\n') {
			t.Fatalf("byte %d (%q) is not 7-bit CRLF text", i, c)
		}
	}
	for _, line := range bytes.Split(raw, []byte("\r\n")) {
		if len(line) > 998 {
			t.Fatalf("line of %d bytes (RFC 5322 §2.1.1: at most 998)", len(line))
		}
	}
}

// TestBuild: the digest is RFC 5322 that net/mail reads, 7-bit with CRLF
// line ends, and its body lists every entry.
func TestBuild(t *testing.T) {
	d := testDigest()
	raw := Build(testSecret, d)
	checkMailText(t, raw)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	for name, want := range map[string]string{
		"To": "u@x.test", "Reply-To": "twinmx-allow@x.test", "From": "postmaster@x.test",
	} {
		a, err := mail.ParseAddress(msg.Header.Get(name))
		if err != nil || a.Address != want {
			t.Errorf("%s = %q (%v), want %s", name, msg.Header.Get(name), err, want)
		}
	}
	if got, want := msg.Header.Get("Subject"), "twinmx: 5 mails refused since 2026-03-04 10:00 UTC"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if got := msg.Header.Get("Message-ID"); got != "<twinmx-digest.1.abc@x.test>" {
		t.Errorf("Message-ID = %q", got)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{"<bot@spam.example>", "Grüße  [ALLOW] aaaaaaaaaaaaaaaa", "block list: sender @spam.example",
		"ALLOW " + d.Entries[0].Token + "\r\n", "classifier 1.0000", "and 3 more", "2026-03-04 10:02:00 UTC"} {
		if !strings.Contains(text, want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
	// A sender's "ALLOW <token>" is defused: the only token is the real one.
	if toks := FindTokens(body); len(toks) != 1 || toks[0] != d.Entries[0].Token {
		t.Errorf("tokens in the body = %v, want only %s", toks, d.Entries[0].Token)
	}
}

// TestIsOwn: the MAC verifies for the digest as sent and as stored with LF
// line ends, and for nothing changed.
func TestIsOwn(t *testing.T) {
	d := testDigest()
	raw := Build(testSecret, d)
	if !testSecret.IsOwn("u@x.test", raw) {
		t.Fatal("own digest does not verify")
	}
	if !testSecret.IsOwn("u@x.test", bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))) {
		t.Error("own digest with LF line ends does not verify")
	}
	if !testSecret.IsOwn("u@x.test", append([]byte("Received: from mx\r\n\tby mx;\r\n"), raw...)) {
		t.Error("own digest with a Received field does not verify")
	}
	other := testSecret
	other[0] ^= 1
	tampered := []struct {
		name    string
		secret  Secret
		mailbox string
		raw     []byte
	}{
		{"other mailbox", testSecret, "v@x.test", raw},
		{"other secret", other, "u@x.test", raw},
		{"body changed", testSecret, "u@x.test", bytes.Replace(raw, []byte("block list"), []byte("black list"), 1)},
		{"subject changed", testSecret, "u@x.test", bytes.Replace(raw, []byte("Subject: twinmx: 5"), []byte("Subject: twinmx: 6"), 1)},
		{"message-id changed", testSecret, "u@x.test", bytes.Replace(raw, []byte("digest.1.abc"), []byte("digest.1.abd"), 1)},
		{"no header", testSecret, "u@x.test", bytes.Replace(raw, []byte(HeaderName+":"), []byte("X-Other:"), 1)},
		{"other version", testSecret, "u@x.test", bytes.Replace(raw, []byte(HeaderName+": v1 "), []byte(HeaderName+": v2 "), 1)},
	}
	for _, tc := range tampered {
		if tc.secret.IsOwn(tc.mailbox, tc.raw) {
			t.Errorf("%s: verifies", tc.name)
		}
	}
	// Every single byte flipped in the MAC fails.
	i := bytes.Index(raw, []byte(HeaderName+": v1 ")) + len(HeaderName) + 5
	for j := i; raw[j] != '\r'; j++ {
		b := bytes.Clone(raw)
		b[j] ^= 0x01
		if testSecret.IsOwn("u@x.test", b) {
			t.Fatalf("MAC with byte %d flipped verifies", j-i)
		}
	}
}

func TestToken(t *testing.T) {
	tok := testSecret.Token("u@x.test", "bot@spam.example")
	if len(tok) != TokenLen || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("token %q: want %d lower-case base32 characters", tok, TokenLen)
	}
	if got := testSecret.Token("U@X.test", "Bot@Spam.Example"); got != tok {
		t.Errorf("token is case-sensitive: %s vs %s", got, tok)
	}
	other := testSecret
	other[31] = 1
	for name, got := range map[string]string{
		"other mailbox": testSecret.Token("v@x.test", "bot@spam.example"),
		"other sender":  testSecret.Token("u@x.test", "bot2@spam.example"),
		"other secret":  other.Token("u@x.test", "bot@spam.example"),
		// The pair is length-prefixed: moving the separator changes the token.
		"shifted": testSecret.Token("u@x.testb", "ot@spam.example"),
	} {
		if got == tok {
			t.Errorf("%s: same token", name)
		}
	}
	if !testSecret.validToken(tok, "u@x.test", "bot@spam.example") || testSecret.validToken(tok, "v@x.test", "bot@spam.example") {
		t.Error("validToken disagrees with Token")
	}
}

func TestFindTokens(t *testing.T) {
	const a, b = "abcdefghijklmnop", "qrstuvwxyz234567"
	qp := func(s string) string {
		var buf bytes.Buffer
		w := quotedprintable.NewWriter(&buf)
		io.WriteString(w, s)
		w.Close()
		return buf.String()
	}
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"plain", "Subject: re\r\n\r\nALLOW " + a + "\r\n", []string{a}},
		{"quoted twice, upper case", "Subject: re\r\n\r\n> > allow " + strings.ToUpper(b) + "\r\n", []string{b}},
		{"two and a duplicate", "\r\nALLOW " + a + "\r\n>ALLOW " + b + "\r\nALLOW " + a + "\r\n", []string{a, b}},
		{"too long: no token", "\r\nALLOW " + a + "x\r\n", nil},
		{"letters outside base32", "\r\nALLOW abcdefghijklmno1\r\n", nil},
		{"no ALLOW word", "\r\nDISALLOW " + a + "\r\n", nil},
		{"base64 part", "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString([]byte("Grüße\n> ALLOW "+a+"\n")) + "\r\n", []string{a}},
		{"quoted-printable in multipart", "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\n" +
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			qp(strings.Repeat("ü", 30)+"ALLOW "+b) + "\r\n--XX--\r\n", []string{b}},
	}
	for _, tc := range tests {
		got := FindTokens([]byte(tc.in))
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: FindTokens(%q) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

func FuzzFindTokens(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nALLOW abcdefghijklmnop\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Transfer-Encoding: base64\r\n\r\nQUxMT1c=\r\n--a--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		toks := FindTokens(raw)
		if len(toks) > maxTokens {
			t.Fatalf("%d tokens", len(toks))
		}
		for _, tok := range toks {
			if len(tok) != TokenLen {
				t.Fatalf("token %q", tok)
			}
		}
	})
}

func TestClaims(t *testing.T) {
	const p = 1000
	var st model.State
	if !mayClaim(st, p) {
		t.Fatal("a fresh mailbox cannot be claimed")
	}
	// Two instances claim at once, each on its own site; after the claims
	// replicate (merge) both agree on one winner.
	a, b := claimValue(p, 7), claimValue(p, 9)
	var sa, sb model.State
	sa.Set(colClaim, a)
	sb.Set(colClaim, b)
	if !won(sa, a) || !won(sb, b) {
		t.Fatal("before replication each site's claimant leads (the duplicate window)")
	}
	m := model.Merge(sa, sb)
	if won(m, a) == won(m, b) {
		t.Fatalf("after the merge: a wins %v, b wins %v; want exactly one", won(m, a), won(m, b))
	}
	if mayClaim(m, p) {
		t.Error("a claimed period can be claimed again")
	}
	// Sent: nobody wins that period any more, the next may be claimed
	// and outranks any claim of the previous one.
	m.Set(colDone, p)
	if won(m, b) {
		t.Error("a claim wins after its period was sent")
	}
	if !mayClaim(m, p+1) {
		t.Fatal("the next period cannot be claimed")
	}
	next := claimValue(p+1, 1)
	m.Set(colClaim, next)
	if !won(m, next) || next < claimValue(p, 1<<32-1) {
		t.Error("a later period's claim does not outrank the earlier period's")
	}
}

// world is a fake dbd with one mailbox and a refused mail.
type world struct {
	db     *fakeDB
	rk     model.Key
	mbox   string
	sender *fakeSender
}

func newWorld(t *testing.T, refusedAt time.Time) *world {
	t.Helper()
	w := &world{db: newFakeDB(), mbox: "u@x.test", sender: &fakeSender{}}
	mb := w.db.Insert(model.Mailbox, model.MailboxContent(w.mbox))
	w.addRefusal(mb, refusedAt, "bot@spam.example", "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: Bot <bot@spam.example>\r\n\r\n")
	return w
}

func (w *world) addRefusal(mb model.Key, at time.Time, from, header string) model.Key {
	hk := w.db.Insert(model.Header, []byte(header))
	bk := w.db.Insert(model.Body, []byte("cheap stuff\r\n"))
	mk := w.db.Insert(model.Mail, model.MailContent(hk, bk))
	rk := w.db.Insert(model.Receive, model.ReceiveContent(mk, mb))
	w.db.Set(model.Receive, rk, model.ColVerdict, model.EncodeVerdict(model.SourceFilter, model.Epoch(at), model.Reject))
	reason := model.ReasonContent(rk, model.Reject, 1, "block list: sender @spam.example")
	w.db.Set(model.Receive, rk, model.ReasonColumn(w.db.Insert(model.Text, reason)), uint64(at.UnixMilli()))
	w.db.Insert(model.ThrowIn, []byte("twinmx-throw-in/1\ntime: "+at.Format(time.RFC3339Nano)+"\nclient: 192.0.2.1:2525\nfrom: <"+from+">\nrcpt: "+w.mbox+"\nmail: "+mk.String()))
	w.rk = rk
	return rk
}

func (w *world) digester(every time.Duration) *Digester {
	return New(Config{DB: w.db, Every: every, Sender: w.sender, ClaimWait: -1})
}

// TestPass: a refusal is listed once, in one digest with a working allow
// token; a reply with it allows the sender, a forged one nothing.
func TestPass(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-10*time.Minute))
	d := w.digester(time.Hour)
	if n, err := d.Pass(ctx, now); err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want 1 digest", n, err)
	}
	sent := w.sender.mails()
	if len(sent) != 1 || sent[0].to != "u@x.test" || sent[0].from != "" {
		t.Fatalf("sent %d mails (%+v), want one from <> to u@x.test", len(sent), sent)
	}
	if own, err := d.Own(ctx, "u@x.test", sent[0].msg); err != nil || !own {
		t.Fatalf("Own(digest) = %v, %v", own, err)
	}
	if own, _ := d.Own(ctx, "v@x.test", sent[0].msg); own {
		t.Error("the digest verifies for another mailbox")
	}
	msg, _ := mail.ReadMessage(bytes.NewReader(sent[0].msg))
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if !strings.Contains(string(body), "Subject: Grüße") || !strings.Contains(string(body), "<bot@spam.example>") {
		t.Errorf("body:\n%s", body)
	}
	toks := FindTokens(sent[0].msg)
	if len(toks) != 1 {
		t.Fatalf("tokens in the digest: %v", toks)
	}
	if _, err := w.db.FindKey(ctx, model.Mailbox, model.KeyOf(model.Mailbox, []byte("twinmx-allow@x.test"))); err != nil {
		t.Errorf("allow address mailbox: %v", err)
	}
	// Same period again, the next period: nothing new to send.
	for _, at := range []time.Time{now.Add(time.Minute), now.Add(time.Hour)} {
		if n, err := d.Pass(ctx, at); err != nil || n != 0 {
			t.Errorf("Pass at %s = %d, %v; want nothing (already listed)", at, n, err)
		}
	}

	replyAt := now.Add(5 * time.Minute)
	forged := "ALLOW " + strings.Repeat("a", TokenLen)
	if n, err := d.Reply(ctx, []byte("Subject: re\r\n\r\n"+forged+"\r\n"), replyAt); err != nil || n != 0 {
		t.Fatalf("Reply(forged) = %d, %v; want 0", n, err)
	}
	if v := verdictOf(t, w.db, w.rk); v != model.Reject {
		t.Errorf("after a forged reply the refusal is %s", v)
	}
	if _, err := w.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, judge.ListContent("u@x.test", "bot@spam.example"))); !errors.Is(err, client.ErrNotFound) {
		t.Fatal("a forged token made a list entry")
	}
	reply := "Subject: Re: twinmx\r\n\r\nthanks\r\n\r\n> 1. ...\r\n>    ALLOW " + toks[0] + "\r\n"
	if n, err := d.Reply(ctx, []byte(reply), replyAt); err != nil || n != 1 {
		t.Fatalf("Reply = %d, %v; want 1 sender", n, err)
	}
	row, err := w.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, judge.ListContent("u@x.test", "bot@spam.example")))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := row.State.Col(colList), judge.ListValue(replyAt, judge.ListAllow); got != want {
		t.Errorf("list = %#x, want %#x (allow at the reply's time)", got, want)
	}
	if v := verdictOf(t, w.db, w.rk); v != model.Accept {
		t.Errorf("the listed refusal is %s after the reply, want accept (the sender's retry gets 250)", v)
	}
	// Too late: the token has expired.
	if n, _ := d.Reply(ctx, []byte(reply), now.Add(31*24*time.Hour)); n != 0 {
		t.Errorf("Reply after 31 days allowed %d senders", n)
	}
}

func verdictOf(t *testing.T, db *fakeDB, rk model.Key) model.Verdict {
	t.Helper()
	row, err := db.FindKey(context.Background(), model.Receive, rk)
	if err != nil {
		t.Fatal(err)
	}
	_, _, v, _ := model.DecodeVerdict(row.State.Col(model.ColVerdict))
	return v
}

// TestReplyPlantedToken: a token row linking to a pair whose HMAC the
// token is not (another mailbox's pair, or made up) allows nothing.
func TestReplyPlantedToken(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now)
	d := w.digester(time.Hour)
	s, err := ensureSecret(ctx, w.db)
	if err != nil {
		t.Fatal(err)
	}
	// A real token of v@, and a planted row that makes it point at u@.
	tok := s.Token("v@x.test", "bot@spam.example")
	if _, err := w.db.Batch(ctx, issueRequests(tok, "u@x.test", "bot@spam.example", []model.Key{w.rk}, 0, now)); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Reply(ctx, []byte("\r\nALLOW "+tok+"\r\n"), now); err != nil || n != 0 {
		t.Fatalf("Reply(planted) = %d, %v; want 0", n, err)
	}
	// Issued for its own pair it works, for v@ only.
	if _, err := w.db.Batch(ctx, issueRequests(tok, "v@x.test", "bot@spam.example", []model.Key{w.rk}, 0, now)); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Reply(ctx, []byte("\r\nALLOW "+tok+"\r\n"), now); err != nil || n != 1 {
		t.Fatalf("Reply = %d, %v; want 1", n, err)
	}
	if _, err := w.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, judge.ListContent("u@x.test", "bot@spam.example"))); err == nil {
		t.Error("u@x.test's list changed")
	}
	if v := verdictOf(t, w.db, w.rk); v != model.Reject {
		t.Errorf("u@x.test's refusal is now %s; a token of v@x.test must not change it", v)
	}
}

// TestPassClaimed: a second instance in the same period sends nothing,
// and a failed send leaves the refusal for the next period.
func TestPassClaimed(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-time.Minute))
	a, b := w.digester(time.Hour), w.digester(time.Hour)
	w.sender.err = errors.New("451 try later")
	if n, err := a.Pass(ctx, now); err != nil || n != 0 {
		t.Fatalf("Pass with smtpd refusing = %d, %v", n, err)
	}
	if n, err := b.Pass(ctx, now.Add(time.Second)); err != nil || n != 0 {
		t.Fatalf("second instance, same period, after a claim = %d, %v; want 0", n, err)
	}
	w.sender.err = nil
	if n, err := b.Pass(ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("next period = %d, %v; want the digest", n, err)
	}
	if n, err := a.Pass(ctx, now.Add(time.Hour+time.Second)); err != nil || n != 0 {
		t.Fatalf("other instance, same period, after the send = %d, %v; want 0", n, err)
	}
	if got := len(w.sender.mails()); got != 1 {
		t.Errorf("%d digests sent, want 1", got)
	}
}

// TestPassSkips: old refusals, accepted mail and the allow address's own
// refusals are not listed.
func TestPassSkips(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-72*time.Hour))
	allow := w.db.Insert(model.Mailbox, model.MailboxContent("twinmx-allow@x.test"))
	w.addRefusal(allow, now.Add(-time.Minute), "someone@x.example", "Subject: forged\r\n\r\n")
	if n, err := w.digester(time.Hour).Pass(ctx, now); err != nil || n != 0 {
		t.Fatalf("Pass = %d, %v; want nothing to send", n, err)
	}
}

// TestOneLine: a sender's text is listed on one line, bounded, without
// characters that change how the line displays, and with no ALLOW token
// of its own, however it is disguised.
func TestOneLine(t *testing.T) {
	const tok = "abcdefghijklmnop"
	tests := []struct {
		name, in string
	}{
		{"space", "ALLOW " + tok},
		// Control characters became spaces after the defusing, so these
		// were listed as working "ALLOW <token>" lines.
		{"vertical tab", "ALLOW\v" + tok},
		{"line break from an encoded-word", "ALLOW\r\n" + tok},
		{"NUL", "ALLOW\x00" + tok},
		{"NEL", "ALLOW\u0085" + tok},
		// The cut at maxFieldRunes left 16 letters after ALLOW.
		{"cut after 16 letters", strings.Repeat("x", maxFieldRunes-len(" ALLOW ")-TokenLen) + " ALLOW " + tok + "q"},
		{"line separator", "ALLOW\u2028" + tok},
		{"right-to-left override", "\u202emoc.knab@ecivres ALLOW\u2066" + tok},
		{"invalid UTF-8", "ALLOW\xff" + tok + "\xfe"},
	}
	for _, tc := range tests {
		got := oneLine(tc.in)
		if toks := FindTokens([]byte("\r\n> " + got + "\r\n")); len(toks) != 0 {
			t.Errorf("%s: oneLine(%q) = %q holds the token %v", tc.name, tc.in, got, toks)
		}
		for _, r := range got {
			if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
				t.Errorf("%s: oneLine(%q) = %q holds %U", tc.name, tc.in, got, r)
			}
		}
		if !utf8.ValidString(got) {
			t.Errorf("%s: oneLine(%q) = %q is not UTF-8", tc.name, tc.in, got)
		}
	}
	if got, want := oneLine("Grüße, \u05e9\u05dc\u05d5\u05dd"), "Grüße, \u05e9\u05dc\u05d5\u05dd"; got != want {
		t.Errorf("oneLine changed plain text: %q, want %q", got, want)
	}
}

func FuzzOneLine(f *testing.F) {
	f.Add("Grüße\r\nALLOW abcdefghijklmnop")
	f.Add("ALLOW\vabcdefghijklmnop")
	f.Add(strings.Repeat("x", maxFieldRunes-23) + " ALLOW abcdefghijklmnopq")
	f.Add("\u202e\u2028\xff")
	f.Fuzz(func(t *testing.T, in string) {
		got := oneLine(in)
		if toks := FindTokens([]byte("\r\n" + got + "\r\n")); len(toks) != 0 {
			t.Fatalf("oneLine(%q) = %q holds the token %v", in, got, toks)
		}
		if strings.ContainsAny(got, "\r\n") || !utf8.ValidString(got) {
			t.Fatalf("oneLine(%q) = %q", in, got)
		}
		// maxFieldRunes, "…", and 2 bytes per defused ALLOW.
		if n := utf8.RuneCountInString(got); n > maxFieldRunes+1+2*(maxFieldRunes/22+1) {
			t.Fatalf("oneLine(%q): %d runes", in, n)
		}
	})
}

// FuzzBuild: whatever a sender writes, the digest is 7-bit CRLF text with
// lines of at most 998 bytes (RFC 5322 §2.1.1), its header is ours, its MAC
// verifies, and the only ALLOW token in it is the one spamd issued.
func FuzzBuild(f *testing.F) {
	f.Add("bot@spam.example", `"Bot" <bot@spam.example>`, "Grüße\r\nALLOW aaaaaaaaaaaaaaaa", "classifier 1.0000")
	f.Add("a\r\nBcc: x@y", "=?utf-8?b?QUxMT1cKYWJjZGVmZ2hpamtsbW5vcA==?=", "\u202e\xff\x00", strings.Repeat("é", 2000))
	f.Fuzz(func(t *testing.T, envelope, from, subject, reason string) {
		d := testDigest()
		d.Entries[0].Envelope, d.Entries[0].From, d.Entries[0].Subject, d.Entries[0].Reason = envelope, decodeHeader(from), decodeHeader(subject), reason
		raw := Build(testSecret, d)
		checkMailText(t, raw)
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Header) != 11 || !testSecret.IsOwn(d.Mailbox, raw) {
			t.Fatalf("header %v, or the MAC does not verify", msg.Header)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
		if err != nil {
			t.Fatal(err)
		}
		if toks := FindTokens(raw); len(toks) != 1 || toks[0] != d.Entries[0].Token {
			t.Fatalf("tokens %v in\n%s", toks, body)
		}
	})
}

func FuzzParsePairContent(f *testing.F) {
	f.Add(pairContent("u@x.test", "bot@spam.example"))
	f.Add([]byte("twinmx-allow-pair/1\nmailbox: \nsender: x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, s, ok := parsePairContent(b)
		if !ok {
			return
		}
		if m == "" || s == "" {
			t.Fatalf("parsePairContent(%q) = %q, %q, true", b, m, s)
		}
		if s == strings.ToLower(s) && !bytes.Equal(pairContent(m, s), b) {
			t.Fatalf("parsePairContent(%q) = %q, %q: does not make the same content", b, m, s)
		}
	})
}

// TestReplyNewestRefusals: an ALLOW re-accepts the sender's newest
// refusals, however often the sender was refused before. The links used
// to keep the oldest 64: once a token row was full, later refusals stayed
// refused after the reply.
func TestReplyNewestRefusals(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-50*time.Minute))
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(w.mbox))
	d := w.digester(time.Hour)
	// One digest listing more refusals of the sender than a link row takes.
	var first []model.Key
	for i := range maxRefusalLinks + 6 {
		first = append(first, w.addRefusal(mb, now.Add(-40*time.Minute+time.Duration(i)*time.Second), "bot@spam.example", fmt.Sprintf("Subject: a%d\r\n\r\n", i)))
	}
	if n, err := d.Pass(ctx, now); err != nil || n != 1 {
		t.Fatalf("first Pass = %d, %v", n, err)
	}
	toks := FindTokens(w.sender.mails()[0].msg)
	if len(toks) != 1 {
		t.Fatalf("tokens in the first digest: %v", toks)
	}
	// Later digests with one new refusal each: the link row is full.
	var later []model.Key
	for i := range 3 {
		at := now.Add(time.Duration(i+1) * time.Hour)
		later = append(later, w.addRefusal(mb, at.Add(-time.Minute), "bot@spam.example", fmt.Sprintf("Subject: b%d\r\n\r\n", i)))
		if n, err := d.Pass(ctx, at); err != nil || n != 1 {
			t.Fatalf("Pass %d = %d, %v", i, n, err)
		}
	}
	if toks2 := FindTokens(w.sender.mails()[3].msg); len(toks2) != 1 || toks2[0] != toks[0] {
		t.Fatalf("token of the last digest %v, want the same %s", toks2, toks[0])
	}
	replyAt := now.Add(4 * time.Hour)
	if n, err := d.Reply(ctx, []byte("Subject: re\r\n\r\nALLOW "+toks[0]+"\r\n"), replyAt); err != nil || n != 1 {
		t.Fatalf("Reply = %d, %v; want 1 sender", n, err)
	}
	newest := append(first[len(first)-maxRefusalLinks+len(later):], later...)
	for i, rk := range newest {
		if v := verdictOf(t, w.db, rk); v != model.Accept {
			t.Errorf("refusal %d of the newest %d is %s after the reply, want accept", i, len(newest), v)
		}
	}
	// The token row itself stays far below model.MaxColumns.
	row, err := w.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, tokenContent(toks[0])))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(row.State.Cols); n > maxRefusalLinks+2 {
		t.Errorf("token row has %d columns", n)
	}
}

// TestPassMissingMailbox: a refusal whose mailbox row has not replicated
// yet does not stop the pass: the other mailboxes get their digests, the
// refusal is logged and listed once its mailbox row is there.
func TestPassMissingMailbox(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-10*time.Minute))
	// A receive row of v@x.test, newer than u@x.test's, without its
	// mailbox row.
	gone := model.KeyOf(model.Mailbox, model.MailboxContent("v@x.test"))
	w.addRefusal(gone, now.Add(-5*time.Minute), "bot@spam.example", "Subject: v\r\n\r\n")
	var logs bytes.Buffer
	d := New(Config{DB: w.db, Every: time.Hour, Sender: w.sender, ClaimWait: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if n, err := d.Pass(ctx, now); err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want u@x.test's digest", n, err)
	}
	if sent := w.sender.mails(); len(sent) != 1 || sent[0].to != "u@x.test" {
		t.Fatalf("sent %+v, want one digest to u@x.test", sent)
	}
	if !strings.Contains(logs.String(), "mailbox row is not here yet") || !strings.Contains(logs.String(), gone.String()) {
		t.Errorf("the skipped refusal is not logged:\n%s", logs.String())
	}
	// Its mailbox row arrives: the next pass lists it.
	w.db.Insert(model.Mailbox, model.MailboxContent("v@x.test"))
	if n, err := d.Pass(ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("next Pass = %d, %v; want v@x.test's digest", n, err)
	}
	if sent := w.sender.mails(); len(sent) != 2 || sent[1].to != "v@x.test" {
		t.Fatalf("sent %+v, want a digest to v@x.test", sent)
	}
}

// TestReplyAllowsNormalisedSender: an ALLOW for a sender refused under a
// tagged address (here BATV) puts the address without its tag on the
// allow list, so the sender's next mail, with a new tag, matches it.
func TestReplyAllowsNormalisedSender(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now)
	d := w.digester(time.Hour)
	s, err := ensureSecret(ctx, w.db)
	if err != nil {
		t.Fatal(err)
	}
	const tagged = "prvs=0123abcd=news@shop.example"
	tok := s.Token("u@x.test", tagged)
	if _, err := w.db.Batch(ctx, issueRequests(tok, "u@x.test", tagged, []model.Key{w.rk}, 0, now)); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Reply(ctx, []byte("\r\nALLOW "+tok+"\r\n"), now); err != nil || n != 1 {
		t.Fatalf("Reply = %d, %v; want 1", n, err)
	}
	if _, err := w.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, judge.ListContent("u@x.test", "news@shop.example"))); err != nil {
		t.Errorf("no allow entry for news@shop.example: %v", err)
	}
	if _, err := w.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, judge.ListContent("u@x.test", tagged))); err == nil {
		t.Errorf("an allow entry for the tagged address %s, which no later mail carries", tagged)
	}
}
