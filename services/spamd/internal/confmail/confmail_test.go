package confmail

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/config"
	"github.com/twinmx/twinmx/services/spamd/internal/digest"
	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

func TestBodyText(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"plain", "Subject: x\n\nblock u@x.test @a.example\n", "block u@x.test @a.example\n"},
		{"crlf and signature", "Subject: x\r\n\r\nblock u@x.test @a.example\r\n-- \r\nBoss\r\nadmin add evil@x.test\r\n", "block u@x.test @a.example\n"},
		{"quoted-printable", "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nrule set u@x.test r phone +4917012345 template \"{from}=3A =\n{subject}\"\n",
			"rule set u@x.test r phone +4917012345 template \"{from}: {subject}\"\n"},
		{"base64", "Content-Transfer-Encoding: base64\n\nYmxvY2sgdUB4LnRlc3Qg\nQGEuZXhhbXBsZQo=\n", "block u@x.test @a.example\n"},
		// RFC 3676: Thunderbird and Apple Mail wrap a long line at 72
		// with a trailing space; it is one command.
		{"format=flowed", "Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nrule set u@x.test office window \"mon-fri 08:00-18:00\" \r\nphone +491701234567 template \"{subject} \r\nfrom {from}\"\r\n zone u@x.test UTC\r\n",
			"rule set u@x.test office window \"mon-fri 08:00-18:00\" phone +491701234567 template \"{subject} from {from}\"\nzone u@x.test UTC\n"},
		{"format=flowed delsp=yes", "Content-Type: text/plain; format=flowed; delsp=yes\n\nblock u@x.test @a.ex \nample\n",
			"block u@x.test @a.example\n"},
		{"format=flowed quoted lines and signature stay apart", "Content-Type: text/plain; format=flowed\n\nzone u@x.test UTC \n> line 1: ok \n> zone\nBoss \n-- \nadmin add evil@x.test\n",
			"zone u@x.test UTC \n> line 1: ok \n> zone\nBoss \n"},
		{"format=flowed never joins a secret line", "Content-Type: text/plain; format=flowed\n\nzone u@x.test UTC \nsecret: s\n",
			"zone u@x.test UTC \nsecret: s\n"},
		{"fixed lines ending in a space stay apart", "Content-Type: text/plain\n\nzone u@x.test UTC \nblock u@x.test @a.example\n",
			"zone u@x.test UTC \nblock u@x.test @a.example\n"},
		{"multipart: first text/plain part", "Content-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/html\n\n<p>no</p>\n--B\nContent-Type: text/plain\n\nzone u@x.test UTC\n--B--\n", "zone u@x.test UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := mail.ReadMessage(strings.NewReader(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			got, err := bodyText(msg)
			if err != nil || strings.TrimRight(got, "\n") != strings.TrimRight(tt.want, "\n") {
				t.Errorf("bodyText = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	msg, _ := mail.ReadMessage(strings.NewReader("Content-Type: text/html\n\n<p>block</p>\n"))
	if _, err := bodyText(msg); err == nil {
		t.Error("bodyText accepted a text/html mail")
	}
}

func TestCutSecret(t *testing.T) {
	text, secret := cutSecret("block u@x.test @a.example\n  Secret:  correct horse \nallow u@x.test b@c.example\n")
	if secret != "correct horse" {
		t.Errorf("secret = %q", secret)
	}
	// The line is blanked, so the others keep their numbers.
	if text != "block u@x.test @a.example\n\nallow u@x.test b@c.example\n" {
		t.Errorf("text = %q", text)
	}
	if _, s := cutSecret("block u@x.test @a.example\n"); s != "" {
		t.Errorf("secret without a secret line: %q", s)
	}
}

func TestIsConfigAddress(t *testing.T) {
	m := New(Config{})
	for in, want := range map[string]bool{"config@x.test": true, "Config@y.test": true, "configs@x.test": false, "u@config.test": false} {
		if got := m.IsConfigAddress(in); got != want {
			t.Errorf("IsConfigAddress(%q) = %v, want %v", in, got, want)
		}
	}
	m = New(Config{Address: "cfg@x.test"})
	if m.IsConfigAddress("config@x.test") || !m.IsConfigAddress("cfg@x.test") {
		t.Error("--config-address not honoured")
	}
}

// dkimAuth verifies DKIM for real, with keys from txt instead of DNS.
type dkimAuth struct{ txt map[string]string }

func (a dkimAuth) Check(_ context.Context, _ signal.Envelope, raw []byte) signal.Auth {
	verifs, _ := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if v, ok := a.txt[name]; ok {
				return []string{v}, nil
			}
			return nil, errors.New("no such record")
		},
	})
	var res signal.Auth
	for _, v := range verifs {
		if v.Err == nil {
			res.DKIM = signal.Pass
			res.DKIMDomains = append(res.DKIMDomains, v.Domain)
		}
	}
	return res
}

// configWorld is a dbd with the admin boss@x.test, the mailbox u@x.test,
// and a DKIM key for x.test.
type configWorld struct {
	db   *fakeDB
	m    *Mailer
	sign func(t *testing.T, id, body string) []byte
	// signFrom is sign with another From field value.
	signFrom func(t *testing.T, from, id, body string) []byte
	sent     *fakeSender
}

func newConfigWorld(t *testing.T) *configWorld {
	t.Helper()
	ctx := context.Background()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	db := newFakeDB()
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	ac := config.AdminContent("boss@x.test")
	if _, err := db.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: []byte("u@x.test")},
		{Op: wire.OpFindOrInsert, Table: model.Config, Content: ac},
		{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{Content: ac}, Name: config.ColAdmin, Value: model.MemberValue(t0, true)},
	}); err != nil {
		t.Fatal(err)
	}
	auth := dkimAuth{txt: map[string]string{"sel._domainkey.x.test": "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}}
	m := New(Config{DB: db, Apply: db, Auth: auth, Sender: &fakeSender{}, Hostname: "mx.x.test"})
	t.Cleanup(m.wg.Wait)
	signFrom := func(t *testing.T, from, id, body string) []byte {
		t.Helper()
		raw := strings.ReplaceAll("From: "+from+"\nTo: config@x.test\nSubject: config\nMessage-ID: <"+id+"@x.test>\nDate: Wed, 04 Mar 2026 10:00:00 +0000\n\n"+body, "\n", "\r\n")
		var out bytes.Buffer
		if err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{Domain: "x.test", Selector: "sel", Signer: priv,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
			HeaderKeys: []string{"From", "To", "Subject", "Message-ID", "Date"}}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	sign := func(t *testing.T, id, body string) []byte {
		t.Helper()
		return signFrom(t, "Boss <boss@x.test>", id, body)
	}
	return &configWorld{db: db, m: m, sign: sign, signFrom: signFrom, sent: m.cfg.Sender.(*fakeSender)}
}

// apply hands raw to Apply as judge does: its mail key is that of its
// rows (header without Received fields, body).
func (w *configWorld) apply(t *testing.T, raw []byte, at time.Time) (bool, string) {
	t.Helper()
	a := model.Attempt{Time: at, Client: "192.0.2.1:2525", From: "boss@x.test", Rcpts: []string{"config@x.test"},
		Mail: model.NewMailRows(raw).MailKey, HasMail: true}
	ok, reason, err := w.m.Apply(context.Background(), a, "config@x.test", raw)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	w.m.wg.Wait() // the confirmation
	return ok, reason
}

func (w *configWorld) listKind(t *testing.T) string {
	t.Helper()
	row, err := w.db.FindKey(context.Background(), model.Text, model.KeyOf(model.Text, config.SpamListContent("u@x.test", "@spam.example")))
	if err != nil {
		t.Fatal(err)
	}
	switch row.State.Col(config.ColSpamList) & 3 {
	case config.ListAllow:
		return "allow"
	case config.ListBlock:
		return "block"
	}
	return "removed"
}

// TestReplayAltered: a captured DKIM-signed config mail, sent again with
// changes its signature does not cover (a new mail key), is a replay: it
// does not undo a later change.
func TestReplayAltered(t *testing.T) {
	w := newConfigWorld(t)
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	block := w.sign(t, "c1", "block u@x.test @spam.example\n")
	if ok, reason := w.apply(t, block, t0); !ok || !strings.Contains(reason, "1 changes applied") {
		t.Fatalf("block mail: %v %q", ok, reason)
	}
	if ok, reason := w.apply(t, w.sign(t, "c2", "unlist u@x.test @spam.example\n"), t0.Add(time.Minute)); !ok || !strings.Contains(reason, "1 changes applied") {
		t.Fatalf("unlist mail: %v %q", ok, reason)
	}
	if got := w.listKind(t); got != "removed" {
		t.Fatalf("after unlist: %s", got)
	}
	replays := map[string][]byte{
		"as sent":                 block,
		"unsigned field added":    append([]byte("X-Replayed: yes\r\n"), block...),
		"relaxed header refolded": bytes.Replace(block, []byte("Subject: config"), []byte("Subject:   config"), 1),
		"body whitespace":         append(bytes.Clone(block), "\r\n\r\n"...),
		"signature refolded":      bytes.Replace(block, []byte("\r\n b="), []byte("\r\n  b="), 1),
		"signature re-padded":     repad(t, block),
	}
	for name, raw := range replays {
		if name != "as sent" && model.NewMailRows(raw).MailKey == model.NewMailRows(block).MailKey {
			t.Fatalf("%s: same mail key: the test does not test anything", name)
		}
		if res := w.m.cfg.Auth.Check(context.Background(), signal.Envelope{}, raw); res.DKIM != signal.Pass {
			t.Fatalf("%s: the signature does not verify (%v): the test does not test anything", name, res.DKIM)
		}
		before := w.db.Batches()
		ok, reason := w.apply(t, raw, t0.Add(time.Hour))
		if !ok || !strings.Contains(reason, "replay") {
			t.Errorf("%s: Apply = %v, %q; want a replay", name, ok, reason)
		}
		if got := w.listKind(t); got != "removed" || w.db.Batches() != before {
			t.Errorf("%s: the replay changed the configuration (list %s, %d batches)", name, got, w.db.Batches()-before)
		}
	}
	// The admin sending the same commands again is a new mail with its
	// own signature: applied.
	if ok, reason := w.apply(t, w.sign(t, "c3", "block u@x.test @spam.example\n"), t0.Add(2*time.Hour)); !ok || !strings.Contains(reason, "1 changes applied") {
		t.Fatalf("a new mail with the same commands: %v %q", ok, reason)
	}
	if got := w.listKind(t); got != "block" {
		t.Errorf("after a new block mail: %s", got)
	}
}

// repad changes the last character of the b= value of raw's signature to
// one that decodes to the same bytes: base64 does not check the unused
// low bits of the last character before "==".
func repad(t *testing.T, raw []byte) []byte {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := bytes.Index(raw, []byte("==\r\nFrom:")) - 1
	v := strings.IndexByte(alphabet, raw[i])
	if i < 0 || v < 0 || v&0xf != 0 {
		t.Fatalf("no b= value ending in x== in %q", raw)
	}
	out := bytes.Clone(raw)
	out[i] = alphabet[v|1]
	return out
}

// FuzzConfigMail: reading a config mail's text, its secret and its
// signatures' replay keys never panics and stays within the bounds.
func FuzzConfigMail(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nblock u@x.test @a.example\r\nsecret: s\r\n-- \r\nBoss\r\n"))
	f.Add([]byte("Content-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/html\n\n<p>no</p>\n--B\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nYmxvY2sgdUB4LnRlc3Qg\nQGEuZXhhbXBsZQo=\n--B--\n"))
	f.Add([]byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nzone u@x.test =\r\nUTC=3D\r\n"))
	f.Add([]byte("DKIM-Signature: v=1; d=X.test.; b=AAAA\r\n BBBB=; h=from\r\nDKIM-Signature: d=x.test; b=!!\r\n\r\n"))
	f.Add([]byte("Content-Type: text/plain; format=flowed; delsp=yes\r\n\r\n zone u@x.test \r\nUTC \r\n> q \r\nsecret : s \r\n-- \r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if keys := signatureKeys(raw, []string{"x.test"}); len(keys) > maxSignatures {
			t.Fatalf("%d signature keys", len(keys))
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			return
		}
		text, err := bodyText(msg)
		if err != nil {
			return
		}
		if len(text) > config.MaxText {
			t.Fatalf("bodyText: %d bytes", len(text))
		}
		cut, _ := cutSecret(text)
		if strings.Count(cut, "\n") != strings.Count(text, "\n") {
			t.Fatalf("cutSecret(%q) = %q: the lines moved", text, cut)
		}
		for l := range strings.SplitSeq(cut, "\n") {
			if k, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && strings.EqualFold(strings.TrimSpace(k), "secret") {
				t.Fatalf("cutSecret(%q) kept %q", text, l)
			}
		}
	})
}

// TestApplyRefusedBatch: a mail whose batch dbd refuses for what it is
// (bad or too large; here the answer dbd gives when a row would get more
// columns than it may hold) is answered at once, accepted with nothing
// applied and a confirmation that says so; it used to be an error, judged
// again and again, with 451s for the admin and no answer. The refusal is
// dbd's own answer, not a plan that overflows a row: config.Translate may
// catch such a plan itself.
func TestApplyRefusedBatch(t *testing.T) {
	w := newConfigWorld(t)
	w.m.cfg.Apply = failingApplier{&wire.Error{Code: wire.CodeBadRequest, Msg: "store: invalid request: set column: too many"}}
	a := model.Attempt{Time: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC), Client: "192.0.2.1:2525", From: "boss@x.test"}
	raw := w.sign(t, "big", "filter add u@x.test X-Header\n")
	a.Mail = model.NewMailRows(raw).MailKey
	ok, reason, err := w.m.Apply(context.Background(), a, "config@x.test", raw)
	w.m.wg.Wait()
	if err != nil || !ok || !strings.Contains(reason, "dbd refused the changes, nothing applied") {
		t.Fatalf("Apply = %v, %q, %v; want accepted, nothing applied", ok, reason, err)
	}
	row, err := w.db.FindKey(context.Background(), model.Mailbox, model.KeyOf(model.Mailbox, []byte("u@x.test")))
	if err != nil || len(row.State.Cols) != 0 {
		t.Fatalf("mailbox row: %v, %d columns; want it unchanged", err, len(row.State.Cols))
	}
	sent := w.sent.mails()
	if len(sent) != 1 {
		t.Fatalf("%d confirmations, want 1", len(sent))
	}
	msg, err := mail.ReadMessage(bytes.NewReader(sent[0]))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if !strings.Contains(msg.Header.Get("Subject"), "NOT applied") || !strings.Contains(string(text), "dbd refused the changes") {
		t.Errorf("confirmation %q:\n%s", msg.Header.Get("Subject"), text)
	}
	// A failure that may pass later is still an error: judged again.
	w.m.cfg.Apply = failingApplier{&wire.Error{Code: wire.CodeUnavailable, Msg: "dbd cannot serve now"}}
	raw = w.sign(t, "small", "filter add u@x.test X-Spam\n")
	a.Mail = model.NewMailRows(raw).MailKey
	if _, _, err := w.m.Apply(context.Background(), a, "config@x.test", raw); err == nil {
		t.Error("Apply with dbd unavailable: no error")
	}
}

type failingApplier struct{ err error }

func (f failingApplier) Batch(context.Context, []wire.Request) ([]wire.Result, error) {
	return nil, f.err
}

// TestMACKeyTwoInstances: two instances that create the confirmations'
// MAC secret at once use the same one, the one dbd holds, so each accepts
// the other's confirmations. Each used to set its own columns and keep
// what it read back: the one that wrote first kept its own secret while
// dbd (and the other) held the columns merged.
func TestMACKeyTwoInstances(t *testing.T) {
	ctx := context.Background()
	// Rounds: with the old code a round passed by chance when every
	// column of one secret was above the other's (1 in 16).
	for round := range 8 {
		db := newFakeDB()
		key := model.KeyOf(model.Config, macContent)
		var b *Mailer
		var bKey *[32]byte
		var bErr error
		// a reads "no secret"; b creates one before a goes on.
		h := &missHook{fakeDB: db, key: key, hook: func() { bKey, bErr = b.macKey(ctx, true) }}
		a := New(Config{DB: h, Hostname: "a.x.test"})
		b = New(Config{DB: db, Hostname: "b.x.test"})
		aKey, err := a.macKey(ctx, true)
		if err != nil || bErr != nil {
			t.Fatalf("round %d: macKey: %v, %v", round, err, bErr)
		}
		stored, ok, err := digest.SharedKey(ctx, db, macContent, false)
		if err != nil || !ok {
			t.Fatalf("round %d: stored secret: %v, %v", round, ok, err)
		}
		if *aKey != stored || *bKey != stored {
			t.Fatalf("round %d: not the secret dbd holds: a's %v, b's %v", round, *aKey == stored, *bKey == stored)
		}
		// What matters: each accepts the other's confirmation.
		for _, pair := range [][2]*Mailer{{a, b}, {b, a}} {
			raw, err := pair[0].confirmation(ctx, "config@x.test", "boss@x.test", "", true, "line 1: ok\n")
			if err != nil {
				t.Fatal(err)
			}
			if own, err := pair[1].Own(ctx, "boss@x.test", raw); err != nil || !own {
				t.Fatalf("round %d: the other instance's confirmation: Own = %v, %v", round, own, err)
			}
		}
	}
}

// TestCutSecretSpellings: every spelling of a secret line is cut and
// used, and no confirmation repeats a secret. "secret : s" used to stay,
// fail to parse and be echoed.
func TestCutSecretSpellings(t *testing.T) {
	for _, l := range []string{"secret: s3cr3t", "secret : s3cr3t", "SECRET:s3cr3t", " \tSecret\t:\t s3cr3t \t", "secret  :  s3cr3t"} {
		text, secret := cutSecret("block u@x.test @a.example\n" + l + "\n")
		if secret != "s3cr3t" || text != "block u@x.test @a.example\n\n" {
			t.Errorf("cutSecret(%q) = %q, %q", l, text, secret)
		}
	}
	// Not a secret line, but no command either: it fails without its rest.
	for _, l := range []string{"secret s3cr3t", "Secret=s3cr3t", "secret"} {
		text, secret := cutSecret(l + "\n")
		if secret != "" || text != "secret\n" {
			t.Errorf("cutSecret(%q) = %q, %q; want the bare word", l, text, secret)
		}
	}
	// Other words stay.
	for _, l := range []string{"secretary: x", "admin secret boss@x.test none", "# secret: x is a comment? no: a secret line"} {
		if text, secret := cutSecret(l); text != l || secret != "" {
			t.Errorf("cutSecret(%q) = %q, %q; want it unchanged", l, text, secret)
		}
	}

	w := newConfigWorld(t)
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	for i, tc := range []struct {
		body    string
		applied bool
	}{
		{"secret : hunter2\nblock u@x.test @spam.example\n", true},
		{"secret hunter2\nblock u@x.test @spam.example\n", false},
	} {
		ok, reason := w.apply(t, w.sign(t, fmt.Sprintf("s%d", i), tc.body), t0.Add(time.Duration(i)*time.Minute))
		if !ok || strings.Contains(reason, "changes applied") != tc.applied {
			t.Errorf("%q: Apply = %v, %q; want applied %v", tc.body, ok, reason, tc.applied)
		}
		sent := w.sent.mails()
		if len(sent) != i+1 {
			t.Fatalf("%d confirmations, want %d", len(sent), i+1)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(sent[i]))
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
		if strings.Contains(string(text), "hunter2") {
			t.Errorf("%q: the confirmation repeats the secret:\n%s", tc.body, text)
		}
	}
}

// TestConfirmationHeaders: every header line of a confirmation fits in
// 998 octets, however long the admin's Message-ID, and an admin address
// with a quoted local part is written correctly in To and in RCPT. A
// Message-ID near 998 bytes used to make a longer In-Reply-To line, and
// "a b"@x.test a To field <a b@x.test> nothing parses.
func TestConfirmationHeaders(t *testing.T) {
	ctx := context.Background()
	sender := &fakeSender{}
	m := New(Config{DB: newFakeDB(), Sender: sender, Hostname: "mx.x.test"})
	const admin = "a b@x.test" // "a b"@x.test as net/mail returns it
	longID := func(n int) string { return "<" + strings.Repeat("i", n-len("<@x.test>")) + "@x.test>" }
	for _, tc := range []struct {
		name, irt, want string
	}{
		{"short", "<c1@x.test>", "<c1@x.test>"},
		{"folded", longID(990), longID(990)},    // "In-Reply-To: " + 990 > 998
		{"too long: left out", longID(998), ""}, // no line holds it
		{"two ids, folded", longID(600) + " " + longID(600), longID(600) + " " + longID(600)},
	} {
		m.confirm("config@x.test", admin, tc.irt, true, "line 1: ok\n")
		m.wg.Wait()
		sent, rcpts := sender.mails(), sender.recipients()
		raw := sent[len(sent)-1]
		head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		for l := range bytes.SplitSeq(head, []byte("\r\n")) {
			if len(l) > maxLine {
				t.Errorf("%s: header line of %d octets: %.40q...", tc.name, len(l), l)
			}
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := msg.Header.Get("In-Reply-To"); got != tc.want {
			t.Errorf("%s: In-Reply-To = %.60q, want %.60q", tc.name, got, tc.want)
		}
		if to, err := mail.ParseAddress(msg.Header.Get("To")); err != nil || to.Address != admin {
			t.Errorf("%s: To %q = %v, %v; want %q", tc.name, msg.Header.Get("To"), to, err, admin)
		}
		if got := rcpts[len(rcpts)-1]; got != `"a b"@x.test` {
			t.Errorf("%s: RCPT address %q, want \"a b\"@x.test", tc.name, got)
		}
		// smtpd's mailbox for that RCPT is the unquoted address.
		if own, err := m.Own(ctx, admin, raw); err != nil || !own {
			t.Errorf("%s: Own = %v, %v", tc.name, own, err)
		}
	}
}

// TestApplyDisplayNameCharset: an admin whose mail client writes the
// display name in a charset net/mail does not decode (Outlook's
// windows-1252) is still the admin: the From address is what counts. The
// whole field used to fail to parse, and the mail was refused with 550.
func TestApplyDisplayNameCharset(t *testing.T) {
	for _, from := range []string{
		"=?windows-1252?Q?J=F6rg_Boss?= <boss@x.test>",
		"boss@x.test (=?iso-8859-15?q?J=F6rg?=)",
	} {
		t.Run(from, func(t *testing.T) {
			w := newConfigWorld(t)
			raw := w.signFrom(t, from, "cs", "block u@x.test @spam.example\n")
			ok, reason := w.apply(t, raw, time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC))
			if !ok || !strings.Contains(reason, "changes applied") {
				t.Fatalf("Apply = %v, %q; want the change applied", ok, reason)
			}
			if got := w.listKind(t); got != "block" {
				t.Errorf("list entry = %s, want block", got)
			}
			if rcpts := w.sent.recipients(); len(rcpts) != 1 || rcpts[0] != "boss@x.test" {
				t.Errorf("confirmation to %q, want boss@x.test", rcpts)
			}
		})
	}
}
