package smsrules

import (
	"errors"
	"path"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twinmx/twinmx/pkg/model"
)

func mustWindow(t *testing.T, s string) Window {
	t.Helper()
	w, err := ParseWindow(s)
	if err != nil {
		t.Fatalf("ParseWindow(%q): %v", s, err)
	}
	return w
}

func TestWindow(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		win, at string
		want    bool
	}{
		{"mon-fri 08:00-18:00", "2026-03-02 08:00", true}, // Monday
		{"mon-fri 08:00-18:00", "2026-03-02 18:00", false},
		{"mon-fri 08:00-18:00", "2026-03-02 07:59", false},
		{"mon-fri 08:00-18:00", "2026-03-07 12:00", false}, // Saturday
		// Across midnight: Friday evening into Saturday morning.
		{"fri 22:00-02:00", "2026-03-06 23:30", true},
		{"fri 22:00-02:00", "2026-03-07 01:59", true},
		{"fri 22:00-02:00", "2026-03-07 02:00", false},
		{"fri 22:00-02:00", "2026-03-06 01:00", false}, // Friday morning belongs to Thursday
		{"fri 22:00-02:00", "2026-03-07 23:00", false},
		// A range that wraps the week.
		{"sat-mon 10:00-11:00", "2026-03-08 10:30", true},  // Sunday
		{"sat-mon 10:00-11:00", "2026-03-03 10:30", false}, // Tuesday
		{"* 00:00-24:00", "2026-03-03 23:59", true},
		{"sun,wed 12:00-13:00", "2026-03-04 12:00", true},
	}
	for _, tc := range tests {
		if got := mustWindow(t, tc.win).Contains(at(tc.at), berlin); got != tc.want {
			t.Errorf("%q.Contains(%s) = %v, want %v", tc.win, tc.at, got, tc.want)
		}
	}
}

// TestWindowDST: the window keeps its local hours when the clocks change
// (Europe/Berlin goes to summer time on 2026-03-29).
func TestWindowDST(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	w := mustWindow(t, "* 08:00-09:00")
	winter := time.Date(2026, 3, 28, 7, 30, 0, 0, time.UTC) // 08:30 CET
	summer := time.Date(2026, 3, 30, 7, 30, 0, 0, time.UTC) // 09:30 CEST
	if !w.Contains(winter, berlin) {
		t.Error("07:30 UTC in winter (08:30 local) is outside 08:00-09:00")
	}
	if w.Contains(summer, berlin) {
		t.Error("07:30 UTC in summer (09:30 local) is inside 08:00-09:00")
	}
	if !w.Contains(summer.Add(-time.Hour), berlin) {
		t.Error("06:30 UTC in summer (08:30 local) is outside 08:00-09:00")
	}
	// The night of the change: 02:00-03:00 local does not exist.
	night := mustWindow(t, "sun 01:00-04:00")
	if !night.Contains(time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC), berlin) { // 03:30 CEST
		t.Error("03:30 CEST on the night of the change is outside 01:00-04:00")
	}
}

func TestParseWindowErrors(t *testing.T) {
	for _, s := range []string{"", "mon", "mon 8:00-9:00", "xyz 08:00-09:00", "mon 08:00-08:00", "mon 24:00-01:00",
		"mon 08:60-09:00", "mon 08:00_09:00", "mon-fri 25:00-26:00"} {
		if _, err := ParseWindow(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseWindow(%q) = %v, want a syntax error", s, err)
		}
	}
	w := mustWindow(t, "mon-wed,fri 07:05-24:00")
	if got := w.String(); got != "mon,tue,wed,fri 07:05-24:00" {
		t.Errorf("String = %q", got)
	}
}

func TestSenders(t *testing.T) {
	lists := func(list, sender string) (bool, error) {
		return list == "hotline" && (sender == "vip@customer.example" || strings.HasSuffix(sender, "@partner.example")), nil
	}
	tests := []struct {
		sender, from string
		want         bool
	}{
		{"*", "a@b.example", true},
		{"a@b.example", "A@B.example", true},
		{"a@b.example", "x@b.example", false},
		{"@b.example", "x@b.example", true},
		{"@b.example", "x@sub.b.example", false},
		{"@b.example", "x@notb.example", false},
		{"*@*.b.example", "x@sub.b.example", true},
		{"alert-?@mon.example", "alert-1@mon.example", true},
		{"alert-?@mon.example", "alert-12@mon.example", false},
		{"list:hotline", "vip@customer.example", true},
		{"list:hotline", "anyone@partner.example", true},
		{"list:hotline", "other@customer.example", false},
		{"list:other", "vip@customer.example", false},
		{"*@*", "", false},
	}
	for _, tc := range tests {
		s, err := ParseSender(tc.sender)
		if err != nil {
			t.Fatalf("ParseSender(%q): %v", tc.sender, err)
		}
		r := Rule{Senders: []Sender{s}}
		got, err := r.Matches(Mail{From: tc.from}, time.UTC, lists)
		if err != nil || got != tc.want {
			t.Errorf("sender %q, from %q: %v, %v; want %v", tc.sender, tc.from, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "list:", "list:Bad Name", "a@b@c", "noat", "a@", "[a]@b", "a b@c"} {
		if _, err := ParseSender(bad); err == nil {
			t.Errorf("ParseSender(%q) accepted", bad)
		}
	}
}

func TestRuleRoundTrip(t *testing.T) {
	src := "twinmx-sms-rule/1\nmailbox: hotline@example.com\nname: office\nfrom: list:hotline\nfrom: @big.example\n" +
		"window: mon-fri 08:00-18:00\nphone: +491701234567\nphone: +491709999999\ntemplate: {from}: {subject}\n"
	r, err := ParseRule([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Content()) != strings.Replace(src, "mon-fri", "mon,tue,wed,thu,fri", 1) {
		t.Errorf("Content() = %q", r.Content())
	}
	r2, err := ParseRule(r.Content())
	if err != nil || string(r2.Content()) != string(r.Content()) {
		t.Errorf("ParseRule(Content()) = %v, %v", r2, err)
	}
	for _, bad := range []string{
		"twinmx-sms-rule/2\nmailbox: a@b\nname: x\nphone: +4917012345\n",
		"twinmx-sms-rule/1\nmailbox: a@b\nname: x\n",                   // no phone
		"twinmx-sms-rule/1\nmailbox: a@b\nname: x\nphone: 017012345\n", // no +
		"twinmx-sms-rule/1\nname: x\nphone: +4917012345\n",             // no mailbox
		"twinmx-sms-rule/1\nmailbox: a@b\nname: x\nphone: +4917012345\nfoo: 1\n",
		"twinmx-sms-rule/1\nmailbox: a@b\nname: x\nphone: +4917012345\ntemplate: {nope}\n",
	} {
		if _, err := ParseRule([]byte(bad)); err == nil {
			t.Errorf("ParseRule(%q) accepted", bad)
		}
	}
}

func TestTemplate(t *testing.T) {
	m := Mail{From: "vip@customer.example", Subject: "Server\r\n  down", Line: "Help!", Mailbox: "hotline@example.com",
		Time: time.Date(2026, 7, 1, 10, 5, 0, 0, time.UTC)}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tests := []struct{ tmpl, want string }{
		{"", "vip@customer.example: Server down / Help!"},
		{"{rule} {time} {mailbox}", "office 12:05 hotline@example.com"},
		{"{{literal} {subject}", "{literal} Server down"},
	}
	for _, tc := range tests {
		tm, err := ParseTemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", tc.tmpl, err)
		}
		if got := tm.Text(m, "office", berlin); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
	long := Mail{Subject: strings.Repeat("ü", 1000)}
	if got := MustTemplate("{subject}").Text(long, "", time.UTC); len([]rune(got)) != MaxText || !strings.HasSuffix(got, "...") {
		t.Errorf("long text: %d characters", len([]rune(got)))
	}
	for _, bad := range []string{"{from", "{x}", "a\nb"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
	if !MustTemplate("").UsesLine() || MustTemplate("{from}").UsesLine() {
		t.Error("UsesLine is wrong")
	}
}

func TestMailboxLinks(t *testing.T) {
	t0 := time.UnixMilli(1_780_000_000_000)
	r1 := model.KeyOf(model.Text, []byte("r1"))
	r2 := model.KeyOf(model.Text, []byte("r2"))
	z1 := model.KeyOf(model.Text, []byte("z1"))
	z2 := model.KeyOf(model.Text, []byte("z2"))
	f := model.KeyOf(model.Text, []byte("f"))
	st := model.State{Cols: map[string]uint64{
		model.LinkColumn(RulePrefix, r1):   model.MemberValue(t0, true),
		model.LinkColumn(RulePrefix, r2):   model.MemberValue(t0, false),
		model.LinkColumn(ZonePrefix, z1):   model.MemberValue(t0, true),
		model.LinkColumn(ZonePrefix, z2):   model.MemberValue(t0.Add(time.Second), true),
		model.LinkColumn(ForwardPrefix, f): model.MemberValue(t0, true),
		model.ReceivedColumn(r1):           5,
		"drop.x-junk":                      model.MemberValue(t0, true),
	}}
	l := MailboxLinks(st)
	if len(l.Rules) != 1 || l.Rules[0] != r1 || !l.HasZone || l.Zone != z2 || len(l.Forwards) != 1 || l.Forwards[0] != f {
		t.Errorf("MailboxLinks = %+v", l)
	}
	// Merge with a later removal from the other site: the removal wins.
	other := model.State{Cols: map[string]uint64{model.LinkColumn(RulePrefix, r1): model.MemberValue(t0.Add(time.Minute), false)}}
	if l := MailboxLinks(model.Merge(st, other)); len(l.Rules) != 0 {
		t.Errorf("after a later removal: rules %v", l.Rules)
	}
}

func TestRowFormats(t *testing.T) {
	if z, err := ParseZone(ZoneContent("a@b", "Europe/Berlin")); err != nil || z != "Europe/Berlin" {
		t.Errorf("ParseZone = %q, %v", z, err)
	}
	if a, err := ParseForward(ForwardContent("a@b", "c@d")); err != nil || a != "c@d" {
		t.Errorf("ParseForward = %q, %v", a, err)
	}
	if _, err := SetZone("a@b", "Mars/Olympus", time.Now()); err == nil {
		t.Error("SetZone accepted an unknown zone")
	}
	if _, err := SetListEntry("a@b", "hotline", "list:x", true, time.Now()); err == nil {
		t.Error("SetListEntry accepted a list as an entry")
	}
	keys := ListEntryKeys("a@b", "hotline", "VIP@Customer.example")
	if len(keys) != 2 || keys[1] != model.KeyOf(model.Text, ListEntryContent("a@b", "hotline", "@customer.example")) {
		t.Errorf("ListEntryKeys = %v", keys)
	}
}

func FuzzParseRule(f *testing.F) {
	f.Add([]byte("twinmx-sms-rule/1\nmailbox: a@b.example\nname: x\nfrom: list:h\nwindow: fri 22:00-02:00\nphone: +4917012345\ntemplate: {from} {{\n"))
	f.Add([]byte("twinmx-sms-rule/1\nmailbox: a@b\nname: x\nphone: +4917012345\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRule(b)
		if err != nil {
			return
		}
		// What parses must survive its canonical form unchanged.
		r2, err := ParseRule(r.Content())
		if err != nil {
			t.Fatalf("ParseRule(Content()) of %q: %v", b, err)
		}
		if string(r2.Content()) != string(r.Content()) {
			t.Fatalf("canonical form changed: %q -> %q", r.Content(), r2.Content())
		}
		_ = r.Template.Text(Mail{From: "a@b", Subject: "s"}, r.Name, time.UTC)
	})
}

// TestTemplateStripsControls: an SMS text carries no control character,
// no line break and no bidirectional override from the mail or the
// mailbox address (the lead: {from} and {mailbox} were put in as they
// were, so a NUL or an ESC sequence reached the gateway).
func TestTemplateStripsControls(t *testing.T) {
	tests := []struct {
		name string
		tmpl string
		m    Mail
		want string
	}{
		{"NUL and ESC in from", "{from}", Mail{From: "a\x00b\x1b[2J@x.example"}, "a b [2J@x.example"},
		{"line break in mailbox", "{mailbox}!", Mail{Mailbox: "in\r\nfo@x.example"}, "in fo@x.example!"},
		{"C1 control in subject", "{subject}", Mail{Subject: "a\u009bb"}, "a b"},
		{"bidi override in from", "{from}", Mail{From: "\u202egro.live@x.example"}, "gro.live@x.example"},
		{"invalid UTF-8", "{line}", Mail{Line: "a\xffb"}, "a?b"},
		{"control in the template", "a\x1bb\tc", Mail{}, "a b c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := ParseTemplate(tc.tmpl)
			if err != nil {
				t.Fatalf("ParseTemplate(%q): %v", tc.tmpl, err)
			}
			if got := tm.Text(tc.m, "r", time.UTC); got != tc.want {
				t.Errorf("Text(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
		})
	}
}

// TestParseWindowStrictClock: the hours and minutes of a window are two
// digits each. fmt.Sscanf read "-1" and "+8" as numbers, so a window
// could end at minute -60 (and then meant "until midnight").
func TestParseWindowStrictClock(t *testing.T) {
	for _, s := range []string{"mon 08:00--1:00", "mon +8:00-09:00", "mon 08:00-09:+5", "mon  8:00-09:00", "mon 08:00- 9:00", "mon 0x:00-09:00"} {
		if w, err := ParseWindow(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseWindow(%q) = %v (%v), want a syntax error", s, w, err)
		}
	}
}

// TestParseRuleBounded: a rule row longer than any rule within the
// bounds is refused before it is read line by line, so a huge row (here
// the same sender over and over, which the de-duplication used to fold
// into one at quadratic cost) cannot make smsd do unbounded work.
func TestParseRuleBounded(t *testing.T) {
	head := "twinmx-sms-rule/1\nmailbox: a@b.example\nname: x\nphone: +4917012345\n"
	if _, err := ParseRule([]byte(head + strings.Repeat("from: *\n", MaxSenders))); err != nil {
		t.Fatalf("a rule with %d sender lines: %v", MaxSenders, err)
	}
	for _, body := range []string{
		strings.Repeat("from: *\n", 5000),
		strings.Repeat("phone: +4917012345\n", 5000),
		strings.Repeat("window: * 00:00-24:00\n", 5000),
	} {
		if _, err := ParseRule([]byte(head + body)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseRule of %d bytes = %v, want a syntax error", len(head)+len(body), err)
		}
	}
}

// TestSenderPatternSlash: '*' and '?' match any character of an
// address, '/' too (path.Match stopped at '/', which RFC 5322 allows in a
// local part).
func TestSenderPatternSlash(t *testing.T) {
	tests := []struct {
		pattern, from string
		want          bool
	}{
		{"*@b.example", "dept/sales@b.example", true},
		{"?/?@b.example", "a/b@b.example", true},
		{"*@*.b.example", "x@sub.b.example", true},
		{"*@*.b.example", "x@b.example", false},
		{"a*b*c@x", "abxbc@x", true},
		{"a*b*c@x", "abxbd@x", false},
		{"?*", "", false},
		{"*x*x*x*x*x*x*x*x*y", strings.Repeat("x", 900), false},
	}
	for _, tc := range tests {
		s, err := ParseSender(tc.pattern)
		if err != nil {
			t.Fatalf("ParseSender(%q): %v", tc.pattern, err)
		}
		got, err := Rule{Senders: []Sender{s}}.Matches(Mail{From: tc.from}, time.UTC, nil)
		if err != nil || got != tc.want {
			t.Errorf("pattern %q, from %q: %v, %v; want %v", tc.pattern, tc.from, got, err, tc.want)
		}
	}
}

// TestCheckAddressControls: a forward-copy address goes into an SMTP
// RCPT TO; no control character may get there.
func TestCheckAddressControls(t *testing.T) {
	for _, a := range []string{"a\x00b@x.example", "a@x.example\x1b", "a\x7f@x.example", "a@x\u0085.example"} {
		if err := CheckAddress(a); !errors.Is(err, ErrSyntax) {
			t.Errorf("CheckAddress(%q) = %v, want a syntax error", a, err)
		}
	}
	if err := CheckAddress("dept/sales+sms@x.example"); err != nil {
		t.Errorf("CheckAddress of a plain address: %v", err)
	}
}

// FuzzParseWindow: ParseWindow never panics, a window it reads is
// within a day, and its String reads back as the same window.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"mon-fri 08:00-18:00", "fri 22:00-02:00", "* 00:00-24:00", "sat-mon,wed 10:00-11:00",
		"MON 07:05-24:00", "mon 08:00--1:00", "mon +8:00-09:00", "sun 24:00-01:00", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		if w.Start < 0 || w.Start >= 24*60 || w.End <= 0 || w.End > 24*60 || w.Start == w.End {
			t.Fatalf("ParseWindow(%q) = %+v: outside a day", s, w)
		}
		w2, err := ParseWindow(w.String())
		if err != nil || w2 != w {
			t.Fatalf("ParseWindow(%q) = %+v prints as %q, which reads as %+v, %v", s, w, w.String(), w2, err)
		}
	})
}

// FuzzParseSender: ParseSender never panics, a sender prints as itself,
// and matching it is total.
func FuzzParseSender(f *testing.F) {
	for _, s := range []string{"*", "list:hotline", "@b.example", "A@B.example", "*@*.b.example", "alert-?@mon.example",
		"a/b*@x", "[a]@b", "a b@c", "list:", ""} {
		f.Add(s, "dept/sales@b.example")
	}
	f.Fuzz(func(t *testing.T, s, from string) {
		snd, err := ParseSender(s)
		if err != nil {
			return
		}
		again, err := ParseSender(snd.String())
		if err != nil || again != snd {
			t.Fatalf("ParseSender(%q) = %+v prints as %q, which reads as %+v, %v", s, snd, snd.String(), again, err)
		}
		lists := func(string, string) (bool, error) { return true, nil }
		got, err := (Rule{Senders: []Sender{snd}}).Matches(Mail{From: from}, time.UTC, lists)
		if err != nil {
			t.Fatalf("Matches: %v", err)
		}
		// Without a '/', a pattern matches as path.Match would.
		if low := strings.ToLower(from); snd.Kind == SenderPattern && low != "" && !strings.Contains(low, "/") && !strings.Contains(snd.Value, "/") {
			if want, _ := path.Match(snd.Value, low); got != want {
				t.Fatalf("pattern %q, from %q: %v, path.Match says %v", snd.Value, low, got, want)
			}
		}
	})
}

// FuzzTemplateText: whatever the template and the mail, the SMS text is
// one line of valid UTF-8 of at most MaxText characters, without control
// or bidirectional formatting characters.
func FuzzTemplateText(f *testing.F) {
	f.Add("{from}: {subject} / {line}", "a\x00b@x.example", "Server\r\ndown", "\u202eHelp\x1b[2J", "in\nfo@x.example")
	f.Add("{{literal} {mailbox} {rule} {time}", "", "", "", "")
	f.Add("{nope}", "a@b", "s", "l", "m")
	f.Add("a\tb\x1b", "\xff", "\u0085", "\u2028", "\u2066")
	f.Fuzz(func(t *testing.T, tmpl, from, subject, line, mailbox string) {
		tm, err := ParseTemplate(tmpl)
		if err != nil {
			return
		}
		got := tm.Text(Mail{From: from, Subject: subject, Line: line, Mailbox: mailbox, Time: time.Unix(0, 0)}, "r", time.UTC)
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > MaxText {
			t.Fatalf("Text = %q: not valid UTF-8 or too long", got)
		}
		if i := strings.IndexFunc(got, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }); i >= 0 {
			t.Fatalf("Text = %q has a control character at %d", got, i)
		}
	})
}

// FuzzParseZoneForward: the one-value rows never panic, and a value read
// is written back as the same row.
func FuzzParseZoneForward(f *testing.F) {
	f.Add(ZoneContent("a@b", "Europe/Berlin"))
	f.Add(ForwardContent("a@b", "c@d"))
	f.Add([]byte("twinmx-sms-zone/1\nmailbox: a@b\nzone: \n"))
	f.Add([]byte("twinmx-fwd/1\nmailbox: a@b\nto: c@d\nextra: 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if z, err := ParseZone(b); err == nil {
			if z2, err := ParseZone(ZoneContent("a@b", z)); err != nil || z2 != z {
				t.Fatalf("ParseZone(%q) = %q; its row reads as %q, %v", b, z, z2, err)
			}
		}
		if to, err := ParseForward(b); err == nil {
			if to2, err := ParseForward(ForwardContent("a@b", to)); err != nil || to2 != to {
				t.Fatalf("ParseForward(%q) = %q; its row reads as %q, %v", b, to, to2, err)
			}
		}
	})
}
