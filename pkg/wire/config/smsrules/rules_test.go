package smsrules

import (
	"errors"
	"strings"
	"testing"
	"time"

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
