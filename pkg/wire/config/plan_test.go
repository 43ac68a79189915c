package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/config/smsrules"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

// apply parses, translates and applies text as dbctl would.
func apply(t *testing.T, db *fakeDB, text string, src Source) *Plan {
	t.Helper()
	lines, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Translate(context.Background(), db, lines, src)
	if err != nil {
		t.Fatal(err)
	}
	if p.OK() {
		if _, err := db.Batch(context.Background(), p.Requests); err != nil {
			t.Fatalf("batch of %q: %v", text, err)
		}
	}
	return p
}

func mustApply(t *testing.T, db *fakeDB, text string, now time.Time) *Plan {
	t.Helper()
	p := apply(t, db, text, Source{Who: "dbctl", Via: "dbctl", Now: now})
	if !p.OK() {
		for _, r := range p.Results {
			if r.Err != nil {
				t.Errorf("line %d %q: %v", r.Line.N, r.Line.Text, r.Err)
			}
		}
		t.FailNow()
	}
	return p
}

func row(t *testing.T, db *fakeDB, tb model.Table, content []byte) model.State {
	t.Helper()
	r, err := db.FindKey(context.Background(), tb, model.KeyOf(tb, content))
	if err != nil {
		return model.State{}
	}
	return r.State
}

// TestTranslateEachCommand applies every command and checks the row it
// changes, as the services read it.
func TestTranslateEachCommand(t *testing.T) {
	db := newFakeDB()
	ctx := context.Background()
	hash, err := passwd.Hash("s3cret-for-tests", passwd.Params{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, db, `mailbox create u@X.test
mailbox add alice u@x.test
alias add alice info@x.test
block u@x.test @spam.example
allow u@x.test friend@y.example
filter add u@x.test X-Spam-Report
rule set u@x.test office from list:hotline phone +491701234567
zone u@x.test Europe/Berlin
forward add u@x.test copy@phone.example
list add u@x.test hotline @big.example
policy u@x.test accept
admin add boss@x.test
admin secret boss@x.test `+hash, t0)

	acct := row(t, db, model.POP3, model.AccountContent("alice"))
	if got := len(model.AccountMailboxes(acct)); got != 2 {
		t.Errorf("alice has %d mailboxes, want 2", got)
	}
	if v := row(t, db, model.Text, SpamListContent("u@x.test", "@spam.example")).Col(ColSpamList); v&3 != ListBlock {
		t.Errorf("block list value %d", v)
	}
	if v := row(t, db, model.Text, SpamListContent("u@x.test", "friend@y.example")).Col(ColSpamList); v&3 != ListAllow {
		t.Errorf("allow list value %d", v)
	}
	box := row(t, db, model.Mailbox, []byte("u@x.test"))
	if got := model.HeaderFilters(box); !reflect.DeepEqual(got, []string{"x-spam-report"}) {
		t.Errorf("header filters %v", got)
	}
	links := smsrules.MailboxLinks(box)
	if len(links.Rules) != 1 || len(links.Forwards) != 1 || !links.HasZone {
		t.Errorf("links %+v", links)
	}
	if p, _ := model.PolicyOf(box.Col(model.ColPolicy)); p != model.PolicyAccept {
		t.Errorf("policy %v, want accept", p)
	}
	if v := row(t, db, model.Text, smsrules.ListEntryContent("u@x.test", "hotline", "@big.example")).Col(smsrules.ColList); !model.IsMember(v) {
		t.Errorf("hotline entry %d", v)
	}
	if ok, err := IsAdmin(ctx, db, "Boss@x.test"); !ok || err != nil {
		t.Errorf("IsAdmin = %v, %v", ok, err)
	}
	if h, ok, err := AdminSecretHash(ctx, db, "boss@x.test"); h != hash || !ok || err != nil {
		t.Errorf("AdminSecretHash = %q, %v, %v", h, ok, err)
	}

	// The second round turns everything off again, and says what was there.
	p := mustApply(t, db, `mailbox remove alice info@x.test
unlist u@x.test @spam.example
filter remove u@x.test x-spam-report
rule remove u@x.test office
forward remove u@x.test copy@phone.example
list remove u@x.test hotline @big.example
policy u@x.test filter
admin secret boss@x.test none
admin remove boss@x.test`, t0.Add(time.Hour))
	var prev []string
	for _, r := range p.Results {
		prev = append(prev, r.Previous)
	}
	want := []string{"member", "block", "dropped", "rule set u@x.test office from list:hotline phone +491701234567 template \"{from}: {subject} / {line}\"",
		"on", "listed", "accept", "a secret", "admin"}
	if !reflect.DeepEqual(prev, want) {
		t.Errorf("previous values\n%q\nwant\n%q", prev, want)
	}
	acct = row(t, db, model.POP3, model.AccountContent("alice"))
	box = row(t, db, model.Mailbox, []byte("u@x.test"))
	if p, _ := model.PolicyOf(box.Col(model.ColPolicy)); p != model.PolicyFilter {
		t.Errorf("policy %v after the second round, want filter", p)
	}
	links = smsrules.MailboxLinks(box)
	if len(model.AccountMailboxes(acct)) != 1 || len(model.HeaderFilters(box)) != 0 || len(links.Rules) != 0 || len(links.Forwards) != 0 {
		t.Errorf("after removal: mailboxes %v, filters %v, links %+v", model.AccountMailboxes(acct), model.HeaderFilters(box), links)
	}
	if v := row(t, db, model.Text, SpamListContent("u@x.test", "@spam.example")).Col(ColSpamList); v&3 != ListRemoved {
		t.Errorf("unlisted value %d", v)
	}
	if ok, _ := IsAdmin(ctx, db, "boss@x.test"); ok {
		t.Error("boss is still an admin")
	}
	if _, ok, _ := AdminSecretHash(ctx, db, "boss@x.test"); ok {
		t.Error("boss still has a secret")
	}
	hist, err := History(ctx, db)
	if err != nil || len(hist) != 22 {
		t.Fatalf("History: %d changes, %v; want 22", len(hist), err)
	}
	if h := hist[0]; h.Line != "admin remove boss@x.test" || h.Previous != "admin" || h.Who != "dbctl" || !h.When.Equal(t0.Add(time.Hour+8*time.Millisecond)) {
		t.Errorf("newest change %+v", h)
	}
	if h := hist[len(hist)-1]; h.Line != "mailbox create u@X.test" || !h.When.Equal(t0) {
		t.Errorf("oldest change %+v", h)
	}
}

// TestAllOrNothing: one bad line, of syntax or of meaning, and the plan
// has no batch; every line has its result.
func TestAllOrNothing(t *testing.T) {
	for _, bad := range []string{"block u@x.test not-an-address", "zone u@x.test Mars/Olympus_Mons", "block nobody@x.test @a.example", "rule remove u@x.test nosuchrule"} {
		t.Run(bad, func(t *testing.T) {
			db := newFakeDB()
			mustApply(t, db, "mailbox create u@x.test", t0)
			before := db.snapshot()
			p := apply(t, db, "block u@x.test @spam.example\n"+bad+"\nallow u@x.test a@b.example\n", Source{Who: "a@x.test", Via: "mail", Now: t0.Add(time.Hour)})
			if p.OK() || p.Requests != nil {
				t.Fatalf("plan with a bad line is OK")
			}
			if len(p.Results) != 3 || p.Results[0].Err != nil || p.Results[1].Err == nil || p.Results[2].Err != nil {
				t.Fatalf("results %+v", p.Results)
			}
			if p.Results[1].Line.N != 2 || p.Results[1].Line.Text != bad {
				t.Errorf("bad line reported as %d %q", p.Results[1].Line.N, p.Results[1].Line.Text)
			}
			if !reflect.DeepEqual(db.snapshot(), before) {
				t.Error("a failed plan changed rows")
			}
		})
	}
}

// TestLaterLineWins: two lines about one setting in one file: the later
// one holds, whatever order the column merge sees them in.
func TestLaterLineWins(t *testing.T) {
	db := newFakeDB()
	mustApply(t, db, "mailbox create u@x.test\nblock u@x.test a@b.example\nallow u@x.test a@b.example\nfilter add u@x.test x-a\nfilter remove u@x.test x-a", t0)
	if v := row(t, db, model.Text, SpamListContent("u@x.test", "a@b.example")).Col(ColSpamList); v&3 != ListAllow {
		t.Errorf("block then allow: kind %d, want allow", v&3)
	}
	if got := model.HeaderFilters(row(t, db, model.Mailbox, []byte("u@x.test"))); len(got) != 0 {
		t.Errorf("filter add then remove: %v", got)
	}
	// A rule set twice by name in one file: only the second is on.
	mustApply(t, db, "rule set u@x.test r phone +4917011111\nrule set u@x.test r phone +4917022222", t0.Add(time.Minute))
	if l := smsrules.MailboxLinks(row(t, db, model.Mailbox, []byte("u@x.test"))); len(l.Rules) != 1 {
		t.Errorf("%d rules on, want 1", len(l.Rules))
	}
}

// TestMailRecord: a mail's plan records its key, which Applied then finds.
func TestMailRecord(t *testing.T) {
	db := newFakeDB()
	ctx := context.Background()
	mk := model.KeyOf(model.Mail, []byte("some mail"))
	if ok, err := Applied(ctx, db, mk); ok || err != nil {
		t.Fatalf("Applied before = %v, %v", ok, err)
	}
	// A failed plan records nothing.
	apply(t, db, "nonsense", Source{Who: "a@x.test", Via: "mail " + mk.String(), Mail: mk, HasMail: true, Now: t0})
	if ok, _ := Applied(ctx, db, mk); ok {
		t.Fatal("a failed mail is recorded as applied")
	}
	apply(t, db, "admin add a@x.test", Source{Who: "a@x.test", Via: "mail " + mk.String(), Mail: mk, HasMail: true, Now: t0})
	if ok, err := Applied(ctx, db, mk); !ok || err != nil {
		t.Fatalf("Applied after = %v, %v", ok, err)
	}
	hist, _ := History(ctx, db)
	if len(hist) != 1 || hist[0].Via != "mail "+mk.String() || hist[0].Who != "a@x.test" {
		t.Errorf("history %+v", hist)
	}
}

// readFail makes every read fail: Translate fails as a whole, it does not
// blame a line.
type readFail struct{ *fakeDB }

func (readFail) FindKey(context.Context, model.Table, model.Key) (*wire.Row, error) {
	return nil, errors.New("dbd is down")
}

func TestTranslateReadError(t *testing.T) {
	lines, _ := Parse("block u@x.test a@b.example")
	if _, err := Translate(context.Background(), readFail{newFakeDB()}, lines, Source{Now: t0}); err == nil || !strings.Contains(err.Error(), "dbd is down") {
		t.Errorf("Translate with failing reads: %v", err)
	}
}

// TestShowApplyRoundTrip: show's output applied to a dbd that has only
// the mailbox rows gives the same configuration, and applied again to the
// same dbd changes no setting.
func TestShowApplyRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := newFakeDB()
	hash, _ := passwd.Hash("another-secret", passwd.Params{Time: 1, MemoryKiB: 64, Threads: 1})
	mustApply(t, db, `mailbox create u@x.test
mailbox create config@x.test
mailbox add alice u@x.test
alias add alice info@x.test
block u@x.test @spam.example
allow u@x.test "friend@y.example"
block u@x.test gone@y.example
unlist u@x.test gone@y.example
filter add u@x.test X-Spam-Report
rule set u@x.test office from list:hotline window "mon-fri 08:00-18:00" phone +491701234567 template "{subject}: \"{line}\" # not a comment"
rule set u@x.test night window "fri 22:00-02:00" phone +491709999999
zone u@x.test Europe/Berlin
forward add u@x.test copy@phone.example
list add u@x.test hotline @big.example
list add u@x.test hotline old@big.example
list remove u@x.test hotline old@big.example
policy u@x.test nogreylist
admin add boss@x.test
admin secret boss@x.test `+hash+`
admin add former@x.test
admin remove former@x.test`, t0)
	shown, err := Show(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"admin add boss@x.test\n", "admin secret boss@x.test " + hash + "\n", "mailbox add alice info@x.test\n",
		"block u@x.test @spam.example\n", "allow u@x.test friend@y.example\n", "filter add u@x.test x-spam-report\n",
		"zone u@x.test Europe/Berlin\n", "policy u@x.test nogreylist\n", "forward add u@x.test copy@phone.example\n", "list add u@x.test hotline @big.example\n",
		`template "{subject}: \"{line}\" # not a comment"`} {
		if !strings.Contains(shown, want) {
			t.Errorf("show lacks %q:\n%s", want, shown)
		}
	}
	for _, not := range []string{"former", "gone@", "old@"} {
		if strings.Contains(shown, not) {
			t.Errorf("show has %q, which is off:\n%s", not, shown)
		}
	}

	// Apply to a fresh dbd: the same configuration shows.
	fresh := newFakeDB()
	mustApply(t, fresh, shown, t0.Add(time.Hour))
	again, err := Show(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if again != shown {
		t.Errorf("show after apply of show differs:\n%s\nwant\n%s", again, shown)
	}
	// Apply to the same dbd: no setting changes (only history is added).
	mustApply(t, db, shown, t0.Add(2*time.Hour))
	if again, _ := Show(ctx, db); again != shown {
		t.Errorf("show after re-apply differs:\n%s\nwant\n%s", again, shown)
	}
}

// failText fails reads of the text table with an error other than "not
// found", as a dbd that goes away half-way does.
type failText struct{ *fakeDB }

func (f failText) FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	if t == model.Text {
		return nil, errors.New("dbd is down")
	}
	return f.fakeDB.FindKey(ctx, t, k)
}

// TestTranslateRuleReadError: "rule set" must switch off the rule of the
// same name that is on; when that rule cannot be read, Translate fails as
// a whole. It used to skip the unreadable rule as if it were another's,
// and the plan left both rules on (two SMS per mail).
func TestTranslateRuleReadError(t *testing.T) {
	db := newFakeDB()
	mustApply(t, db, "mailbox create u@x.test\nrule set u@x.test office phone +491701234567\nzone u@x.test Europe/Berlin", t0)
	for _, line := range []string{"rule set u@x.test office phone +491709999999", "rule remove u@x.test office", "zone u@x.test UTC"} {
		lines, err := Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Translate(context.Background(), failText{db}, lines, Source{Who: "dbctl", Via: "dbctl", Now: t0.Add(time.Hour)})
		if err == nil || !strings.Contains(err.Error(), "dbd is down") {
			t.Errorf("Translate(%q) with failing text reads: plan %v, error %v; want the read error", line, p != nil && p.OK(), err)
		}
	}
}

// TestTranslateColumnLimit: a change that would give a row more than
// model.MaxColumns columns is the line's error, not a batch dbd refuses.
// Every rule edit links a new rule row, so a mailbox edited often enough
// reaches the limit.
func TestTranslateColumnLimit(t *testing.T) {
	db := newFakeDB()
	mustApply(t, db, "mailbox create u@x.test", t0)
	var b strings.Builder
	for i := range model.MaxColumns - 1 {
		fmt.Fprintf(&b, "rule set u@x.test r%d phone +49170%07d\n", i, i)
	}
	mustApply(t, db, b.String(), t0.Add(time.Second))
	// The last free column, and changes that add none: switching a rule
	// off, setting a rule as it is.
	mustApply(t, db, "policy u@x.test accept\nrule remove u@x.test r0\nrule set u@x.test r1 phone +491700000001", t0.Add(time.Minute))
	if n := len(row(t, db, model.Mailbox, []byte("u@x.test")).Cols); n != model.MaxColumns {
		t.Fatalf("mailbox row has %d columns, want %d", n, model.MaxColumns)
	}
	for _, line := range []string{"rule set u@x.test r1 phone +491709999999", "filter add u@x.test x-new", "zone u@x.test Europe/Berlin", "forward add u@x.test c@y.example"} {
		p := apply(t, db, "block u@x.test a@b.example\n"+line, Source{Who: "dbctl", Via: "dbctl", Now: t0.Add(time.Hour)})
		if p.OK() || len(p.Results) != 2 || p.Results[0].Err != nil || !errors.Is(p.Results[1].Err, ErrInvalid) ||
			!strings.Contains(p.Results[1].Err.Error(), "column") {
			t.Errorf("%q on a full mailbox row: OK %v, results %+v; want the line's column error", line, p.OK(), p.Results)
		}
	}
}

// FuzzParseChange: ParseChange never panics, and the content of a change
// it reads is a fixed point (ChangeContent turns line breaks into spaces
// and invalid UTF-8 into U+FFFD, so compare contents, not fields).
func FuzzParseChange(f *testing.F) {
	f.Add(ChangeContent(Change{When: t0, Who: "boss@x.test", Via: "mail abc", Line: "block u@x.test a@b.example", Previous: "none"}))
	f.Add(ChangeContent(Change{When: t0, Who: "dbctl", Via: "dbctl", Line: "zone u@x.test UTC", Previous: "a\nb\rc"}))
	f.Add([]byte("twinmx-config-change/1\nwhen: 2026-03-04T10:00:00+01:00\nline: x\nwho\n"))
	f.Add([]byte("twinmx-config-change/1\nwhen: yesterday\nline: x\n"))
	f.Add([]byte("twinmx-config-change/1\nwhen: 0000-01-01T0:00:00Z\nline: 0\x80"))
	f.Add([]byte("twinmx-config-admin/1\naddress: a@b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseChange(b)
		if y := c.When.UTC().Year(); err != nil || y < 1 || y > 9999 {
			return // RFC 3339 has no other years; no change is that old
		}
		content := ChangeContent(c)
		c2, err := ParseChange(content)
		if err != nil || !c2.When.Equal(c.When) || !bytes.Equal(ChangeContent(c2), content) {
			t.Fatalf("ParseChange(%q) = %+v, whose content %q reads as %+v, %v", b, c, content, c2, err)
		}
	})
}
