package digest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
)

// digestText returns the decoded body of the digest raw.
func digestText(t *testing.T, raw []byte) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(body), "\r\n", "\n")
}

// TestPassBeyondMaxEntries: a sender refused only beyond the refusals a
// digest lists one by one can still be allowed by replying, and an ALLOW
// of a listed sender accepts again its refusals beyond them too. Before,
// the refusals beyond MaxEntries were only counted ("and N more not listed
// here") and marked listed: a wanted sender among the newest of a spam
// flood got no ALLOW line in any digest, and the flood sender's ALLOW
// left its newest refusals refused.
func TestPassBeyondMaxEntries(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-50*time.Minute))
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(w.mbox))
	d := w.digester(time.Hour)
	t0 := now.Add(-45 * time.Minute)
	// 1 + 248 refusals of the flood sender, oldest first: 200 listed, 49
	// beyond.
	bot := []model.Key{w.rk}
	for i := range 248 {
		bot = append(bot, w.addRefusal(mb, t0.Add(time.Duration(i)*time.Second), "bot@spam.example", fmt.Sprintf("Subject: flood %d\r\n\r\n", i)))
	}
	// The wanted sender, newest, under two per-mail tags (BATV, +ext).
	alice := []model.Key{
		w.addRefusal(mb, t0.Add(300*time.Second), "prvs=0123abcd=alice@friend.example", "Subject: lunch?\r\nFrom: Alice <alice@friend.example>\r\n\r\n"),
		w.addRefusal(mb, t0.Add(301*time.Second), "alice+notes@friend.example", "Subject: lunch!\r\n\r\n"),
	}
	if n, err := d.Pass(ctx, now); err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want 1 digest", n, err)
	}
	raw := w.sender.mails()[0].msg
	checkMailText(t, raw)
	if own, err := d.Own(ctx, w.mbox, raw); err != nil || !own {
		t.Fatalf("Own(digest) = %v, %v", own, err)
	}
	text := digestText(t, raw)
	s, err := readSecret(ctx, w.db)
	if err != nil {
		t.Fatal(err)
	}
	botTok, aliceTok := s.Token(w.mbox, "bot@spam.example"), s.Token(w.mbox, "alice@friend.example")
	for _, want := range []string{
		"twinmx refused 251 mail(s)",
		"... and 51 more not listed one by one:",
		"- 49 from senders listed above",
		"- 2 from the 1 sender(s) below",
		"   ALLOW " + aliceTok + "  2 x <alice@friend.example>\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("digest lacks %q:\n%s", want, text[max(len(text)-1500, 0):])
		}
	}
	if toks := FindTokens(raw); len(toks) != 2 || toks[0] != botTok || toks[1] != aliceTok {
		t.Fatalf("tokens in the digest %v, want the flood sender's %s and the wanted sender's %s", toks, botTok, aliceTok)
	}

	replyAt := now.Add(5 * time.Minute)
	if n, err := d.Reply(ctx, []byte("Subject: re\r\n\r\n>    ALLOW "+aliceTok+"  2 x <alice@friend.example>\r\n"), replyAt); err != nil || n != 1 {
		t.Fatalf("Reply(wanted sender) = %d, %v; want 1 sender", n, err)
	}
	if _, err := w.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, judge.ListContent(w.mbox, "alice@friend.example"))); err != nil {
		t.Errorf("no allow entry for alice@friend.example: %v", err)
	}
	for i, rk := range alice {
		if v := verdictOf(t, w.db, rk); v != model.Accept {
			t.Errorf("wanted sender's refusal %d is %s after the reply, want accept", i, v)
		}
	}
	if v := verdictOf(t, w.db, bot[len(bot)-1]); v != model.Reject {
		t.Errorf("the flood sender's refusal is %s after allowing another sender", v)
	}

	if n, err := d.Reply(ctx, []byte("Subject: re\r\n\r\nALLOW "+botTok+"\r\n"), replyAt.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("Reply(flood sender) = %d, %v; want 1 sender", n, err)
	}
	// Its newest maxRefusalLinks, 49 of them beyond the listed 200.
	for i, rk := range bot[len(bot)-maxRefusalLinks:] {
		if v := verdictOf(t, w.db, rk); v != model.Accept {
			t.Errorf("flood refusal %d of the newest %d is %s after its ALLOW, want accept", i, maxRefusalLinks, v)
		}
	}
	// Everything was listed: the next period has nothing to send.
	if n, err := d.Pass(ctx, now.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("next Pass = %d, %v; want nothing", n, err)
	}
}

// TestPassMaxSenders: beyond MaxSenders, senders are counted, the ones
// with the most refusals first; the listed ones' tokens work, and the
// digest's counts add up.
func TestPassMaxSenders(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	w := newWorld(t, now.Add(-50*time.Minute)) // bot@spam.example: listed
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(w.mbox))
	t0 := now.Add(-40 * time.Minute)
	add := func(i int, from string) model.Key {
		return w.addRefusal(mb, t0.Add(time.Duration(i)*time.Second), from, fmt.Sprintf("Subject: %d\r\n\r\n", i))
	}
	add(0, "bot@spam.example")
	var flood []model.Key
	for i := range 3 {
		flood = append(flood, add(1+i, "x@flood.example"))
	}
	add(4, "")
	single := add(5, "single@friend.example")
	add(6, "y@flood.example")
	add(7, "y@flood.example")
	d := New(Config{DB: w.db, Every: time.Hour, Sender: w.sender, ClaimWait: -1, MaxEntries: 1, MaxSenders: 2})
	if n, err := d.Pass(ctx, now); err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v", n, err)
	}
	raw := w.sender.mails()[0].msg
	text := digestText(t, raw)
	s, err := readSecret(ctx, w.db)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"... and 8 more not listed one by one:\n" +
			"- 1 from senders listed above",
		"- 3 from the 2 sender(s) below",
		"- 4 from 2 more sender(s) not listed here (the digest's size bound).\n",
		"   ALLOW " + s.Token(w.mbox, "single@friend.example") + "  1 x <single@friend.example>\n" +
			"   ALLOW " + s.Token(w.mbox, "y@flood.example") + "  2 x <y@flood.example>\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("digest lacks %q:\n%s", want, text)
		}
	}
	if toks := FindTokens(raw); len(toks) != 3 {
		t.Errorf("tokens %v, want 3", toks)
	}
	if n, err := d.Reply(ctx, []byte("\r\nALLOW "+s.Token(w.mbox, "single@friend.example")+"\r\n"), now.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("Reply = %d, %v", n, err)
	}
	if v := verdictOf(t, w.db, single); v != model.Accept {
		t.Errorf("the allowed sender's refusal is %s", v)
	}
	if v := verdictOf(t, w.db, flood[0]); v != model.Reject {
		t.Errorf("a hidden sender's refusal is %s", v)
	}
}

// TestAddRest: how the refusals beyond the entries are grouped, ordered,
// bounded and linked.
func TestAddRest(t *testing.T) {
	const mbox = "u@x.test"
	s := testSecret
	key := func(i int) model.Key { return model.KeyOf(model.Receive, fmt.Appendf(nil, "r%d", i)) }
	listedTok := s.Token(mbox, "prvs=1111aaaa=x@a.example")
	dg := Digest{Entries: []Entry{
		{Envelope: "prvs=1111aaaa=x@a.example", Token: listedTok},
		{Envelope: ""}, // the null sender has no ALLOW line: its rest is a group
	}}
	var is issues
	is.add(listedTok, "prvs=1111aaaa=x@a.example", key(0))
	rest := []struct{ env string }{
		{"X@A.example"}, // listed above (normalised alike)
		{"y@b.example"}, {"y@b.example"}, {"Y+tag@b.example"},
		{""}, {""},
		{"z@c.example"}, {"prvs=2222bbbb=z@c.example"},
		{"w@d.example"},
	}
	var refusals []*refusal
	for i, r := range rest {
		refusals = append(refusals, &refusal{receive: key(i + 1), envelope: r.env})
	}
	addRest(s, mbox, &dg, refusals, 3, &is)

	want := []Group{
		{Sender: "w@d.example", Mails: 1, Token: s.Token(mbox, "w@d.example")},
		{Sender: "z@c.example", Mails: 2, Token: s.Token(mbox, "z@c.example")},
		{Sender: "y@b.example", Mails: 3, Token: s.Token(mbox, "y@b.example")},
	}
	if fmt.Sprint(dg.Others) != fmt.Sprint(want) {
		t.Errorf("Others = %v, want %v", dg.Others, want)
	}
	if dg.More != 9 || dg.Hidden != 2 || dg.HiddenSenders != 1 {
		t.Errorf("More, Hidden, HiddenSenders = %d, %d, %d; want 9, 2, 1 (the null sender)", dg.More, dg.Hidden, dg.HiddenSenders)
	}
	links := map[string]string{}
	for _, ti := range is.order {
		links[ti.token] = fmt.Sprint(ti.sender, ti.refusals)
	}
	wantLinks := map[string]string{
		listedTok:     fmt.Sprint("prvs=1111aaaa=x@a.example", []model.Key{key(0), key(1)}),
		want[0].Token: fmt.Sprint("w@d.example", []model.Key{key(9)}),
		want[1].Token: fmt.Sprint("z@c.example", []model.Key{key(7), key(8)}),
		want[2].Token: fmt.Sprint("y@b.example", []model.Key{key(2), key(3), key(4)}),
	}
	if fmt.Sprint(links) != fmt.Sprint(wantLinks) {
		t.Errorf("links = %v\nwant %v", links, wantLinks)
	}

	// No rest: nothing.
	var dg2 Digest
	addRest(s, mbox, &dg2, nil, 3, &issues{})
	if dg2.More != 0 || dg2.Others != nil {
		t.Errorf("addRest of nothing: %+v", dg2)
	}
}

// TestDigestSizeBound: the largest digest the default bounds allow, every
// listed text of maxFieldRunes 4-byte runes, stays within maxDigestBytes
// and maxOwnSize, keeps lines within 998 bytes, and verifies as our own;
// an entry and a group line each stay within their worst-case size.
func TestDigestSizeBound(t *testing.T) {
	if got := maxDigestBytes(defaultMaxEntries, defaultMaxSenders); got > maxOwnSize {
		t.Fatalf("default bounds allow digests of %d bytes, more than maxOwnSize", got)
	}
	long := strings.Repeat("\U0001D54F", maxFieldRunes+5)
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	// Addresses of the longest path RFC 5321 §4.5.3.1.3 allows.
	addr := strings.Repeat("m", 64) + "@" + strings.Repeat("d", 190)
	d := Digest{Mailbox: addr, ReplyTo: "twinmx-allow@" + strings.Repeat("d", 241), Since: t0, Date: t0, MsgID: "twinmx-digest.1.abc@x.test"}
	base := len(Build(testSecret, d))
	entry := Entry{Time: t0, Envelope: long, From: long, Subject: long, Reason: long, Token: testSecret.Token("u@x.test", "a@b")}
	group := Group{Sender: long, Mails: math.MaxInt / (2 * defaultMaxSenders), Token: entry.Token}
	d.Entries = []Entry{entry}
	n := len(Build(testSecret, d)) - base
	t.Logf("fixed part %d bytes, worst-case entry %d bytes", base, n)
	if n > maxEntryBytes {
		t.Errorf("one entry takes %d bytes, more than maxEntryBytes %d", n, maxEntryBytes)
	}
	d.Entries = nil
	d.More, d.Others = group.Mails, []Group{group}
	withGroup := len(Build(testSecret, d))
	d.Others = append(d.Others, group)
	n = len(Build(testSecret, d)) - withGroup
	t.Logf("worst-case group line %d bytes", n)
	if n > maxGroupBytes {
		t.Errorf("one group line takes %d bytes, more than maxGroupBytes %d", n, maxGroupBytes)
	}
	if withGroup-maxGroupBytes > maxFixedBytes {
		t.Errorf("the fixed part takes %d bytes, more than maxFixedBytes %d", withGroup-maxGroupBytes, maxFixedBytes)
	}

	d.Entries, d.Others = nil, nil
	for range defaultMaxEntries {
		d.Entries = append(d.Entries, entry)
	}
	for range defaultMaxSenders {
		d.Others = append(d.Others, group)
	}
	d.More, d.Hidden, d.HiddenSenders = math.MaxInt, math.MaxInt/2, math.MaxInt/4 // the widest counts
	raw := Build(testSecret, d)
	if int64(len(raw)) > maxDigestBytes(defaultMaxEntries, defaultMaxSenders) {
		t.Errorf("worst-case digest of %d bytes, more than maxDigestBytes %d", len(raw), maxDigestBytes(defaultMaxEntries, defaultMaxSenders))
	}
	t.Logf("worst-case digest: %d bytes, bound %d", len(raw), maxDigestBytes(defaultMaxEntries, defaultMaxSenders))
	checkMailText(t, raw)
	for _, line := range strings.Split(bodyText(d), "\n") {
		if len(line) > 998 {
			t.Fatalf("a text line of %d bytes: a mail program may not quote it whole", len(line))
		}
	}
	if !testSecret.IsOwn(addr, raw) {
		t.Error("the worst-case digest does not verify as our own")
	}
}

func TestValidateBounds(t *testing.T) {
	db := newFakeDB()
	for _, tc := range []struct {
		entries, senders int
		ok               bool
	}{
		{0, 0, true}, {defaultMaxEntries, defaultMaxSenders, true}, {300, 1, true},
		{1000, 0, false}, {0, 2000, false}, {-1, 0, false}, {0, -1, false},
		{math.MaxInt, 0, false}, {math.MaxInt / maxEntryBytes * 2, 0, false}, // no overflow
	} {
		err := (&Config{DB: db, MaxEntries: tc.entries, MaxSenders: tc.senders}).Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(MaxEntries %d, MaxSenders %d) = %v, want ok %v", tc.entries, tc.senders, err, tc.ok)
		}
	}
}

// TestBuildOthers: the lines of Others hold their tokens and nothing a
// sender's address can turn into a token, and the counts add up.
func TestBuildOthers(t *testing.T) {
	d := testDigest()
	g1 := Group{Sender: "alice@friend.example", Mails: 2, Token: testSecret.Token(d.Mailbox, "alice@friend.example")}
	g2 := Group{Sender: "evil ALLOW aaaaaaaaaaaaaaaa\r\n@x", Mails: 1, Token: testSecret.Token(d.Mailbox, "evil")}
	d.More, d.Others, d.Hidden, d.HiddenSenders = 10, []Group{g1, g2, {Mails: 4}}, 2, 1
	raw := Build(testSecret, d)
	checkMailText(t, raw)
	text := digestText(t, raw)
	for _, want := range []string{
		"twinmx refused 12 mail(s)",
		"... and 10 more not listed one by one:\n- 1 from senders listed above",
		"- 7 from the 3 sender(s) below",
		"- 2 from 1 more sender(s) not listed here",
		"   ALLOW " + g1.Token + "  2 x <alice@friend.example>\n",
		"   ALLOW " + g2.Token + "  1 x <evil [ALLOW] aaaaaaaaaaaaaaaa  @x>\n",
		"   (cannot be allowed)     4 x <> (null or unknown sender)\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
	if toks := FindTokens(raw); fmt.Sprint(toks) != fmt.Sprint([]string{d.Entries[0].Token, g1.Token, g2.Token}) {
		t.Errorf("tokens %v", toks)
	}
}

// FuzzBuildOthers: whatever the sender of a line of Others is, the digest
// is 7-bit CRLF text with lines of at most 998 bytes, and its only tokens
// are the ones spamd issued.
func FuzzBuildOthers(f *testing.F) {
	f.Add("alice@friend.example", 2)
	f.Add("evil ALLOW aaaaaaaaaaaaaaaa\r\n\u202e\xff@x", 1<<30)
	f.Fuzz(func(t *testing.T, sender string, mails int) {
		d := testDigest()
		g := Group{Sender: sender, Mails: mails, Token: testSecret.Token(d.Mailbox, sender)}
		d.More, d.Others = d.More+1, []Group{g, {Sender: sender, Mails: mails}}
		raw := Build(testSecret, d)
		checkMailText(t, raw)
		if !testSecret.IsOwn(d.Mailbox, raw) {
			t.Fatal("the MAC does not verify")
		}
		want := []string{d.Entries[0].Token}
		if g.Token != want[0] { // the entry's sender: one token
			want = append(want, g.Token)
		}
		if toks := FindTokens(raw); fmt.Sprint(toks) != fmt.Sprint(want) {
			t.Fatalf("tokens %v", toks)
		}
		for _, line := range strings.Split(bodyText(d), "\n") {
			if len(line) > 998 {
				t.Fatalf("a text line of %d bytes", len(line))
			}
		}
	})
}
