package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	rules "github.com/twinmx/twinmx/pkg/wire/config/smsrules"
)

// fakeRows answers FindKey from rows, or with fail[k] for the keys named
// there, as a dbd that times out on one read would.
type fakeRows struct {
	rows map[model.Key]*wire.Row
	fail map[model.Key]error
}

func (f *fakeRows) FindKey(_ context.Context, _ model.Table, k model.Key) (*wire.Row, error) {
	if err := f.fail[k]; err != nil {
		return nil, err
	}
	if r, ok := f.rows[k]; ok {
		return r, nil
	}
	return nil, client.ErrNotFound
}

// mailboxWithRules returns rows of mailbox mb linking the given rules, on.
func mailboxWithRules(t *testing.T, mb string, rs ...rules.Rule) (*fakeRows, []model.Key) {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &fakeRows{rows: map[model.Key]*wire.Row{}, fail: map[model.Key]error{}}
	cols := map[string]uint64{}
	var keys []model.Key
	for _, r := range rs {
		if err := r.Check(); err != nil {
			t.Fatal(err)
		}
		k := model.KeyOf(model.Text, r.Content())
		f.rows[k] = &wire.Row{Table: model.Text, Key: k, HasContent: true, Content: r.Content()}
		cols[model.LinkColumn(rules.RulePrefix, k)] = model.MemberValue(now, true)
		keys = append(keys, k)
	}
	mk := model.KeyOf(model.Mailbox, []byte(mb))
	f.rows[mk] = &wire.Row{Table: model.Mailbox, Key: mk, State: model.State{Cols: cols}}
	return f, keys
}

// TestActiveRulesReadErrors: `rule set` switches off the rules of the
// same name that activeRules returns, and `rule remove` those it finds.
// activeRules used to skip a rule row on any read error, so a dbd
// timeout on the old rule's row made `rule set` leave it on beside the
// new one (and `rule remove` say there is no such rule). A rule row not
// here yet is still skipped.
func TestActiveRulesReadErrors(t *testing.T) {
	mb := "a@b.example"
	office := rules.Rule{Mailbox: mb, Name: "office", Phones: []string{"+491701234567"}}
	night := rules.Rule{Mailbox: mb, Name: "night", Phones: []string{"+491707654321"}}
	ctx := context.Background()

	f, keys := mailboxWithRules(t, mb, office, night)
	f.fail[keys[0]] = client.ErrConnLost
	if _, cur, err := activeRules(ctx, f, mb); !errors.Is(err, client.ErrConnLost) {
		t.Errorf("activeRules with a lost read of rule office = %d rules, %v; want %v", len(cur), err, client.ErrConnLost)
	}

	f, keys = mailboxWithRules(t, mb, office, night)
	delete(f.rows, keys[0]) // linked, but its row has not replicated yet
	_, cur, err := activeRules(ctx, f, mb)
	if err != nil {
		t.Fatalf("activeRules with a rule row not here: %v", err)
	}
	if _, ok := cur[keys[1]]; len(cur) != 1 || !ok {
		t.Errorf("activeRules with a rule row not here = %v, want only rule night", cur)
	}
}

// TestShowRulesReadErrors: rule show printed "zone UTC" when dbd did not
// answer for the zone row, and left a forward out when it did not answer
// for its row, telling the operator settings the mailbox does not have.
// A row not here yet is still left out.
func TestShowRulesReadErrors(t *testing.T) {
	mb := "a@b.example"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	zone := rules.ZoneContent(mb, "Europe/Berlin")
	fwd := rules.ForwardContent(mb, "copy@phone.example")
	zk, fk := model.KeyOf(model.Text, zone), model.KeyOf(model.Text, fwd)
	setup := func() *fakeRows {
		f, _ := mailboxWithRules(t, mb)
		mk := model.KeyOf(model.Mailbox, []byte(mb))
		f.rows[mk].State.Cols[model.LinkColumn(rules.ZonePrefix, zk)] = model.MemberValue(now, true)
		f.rows[mk].State.Cols[model.LinkColumn(rules.ForwardPrefix, fk)] = model.MemberValue(now, true)
		f.rows[zk] = &wire.Row{Table: model.Text, Key: zk, HasContent: true, Content: zone}
		f.rows[fk] = &wire.Row{Table: model.Text, Key: fk, HasContent: true, Content: fwd}
		return f
	}
	ctx := context.Background()
	for _, k := range []model.Key{zk, fk} {
		f := setup()
		f.fail[k] = client.ErrConnLost
		var out strings.Builder
		if err := showRules(ctx, f, &out, mb); !errors.Is(err, client.ErrConnLost) {
			t.Errorf("showRules with a lost read of %q = %v, printed %q; want %v", f.rows[k].Content, err, out.String(), client.ErrConnLost)
		}
	}
	f := setup()
	delete(f.rows, zk) // linked, not replicated yet
	var out strings.Builder
	if err := showRules(ctx, f, &out, mb); err != nil {
		t.Fatalf("showRules with the zone row not here: %v", err)
	}
	if want := "mailbox a@b.example\nzone UTC\nforward copy@phone.example\n"; out.String() != want {
		t.Errorf("showRules with the zone row not here printed %q, want %q", out.String(), want)
	}
}

// TestShowRulesSorted: rule show prints a mailbox's rules by name, the
// same way every time. It printed them in map order, so two runs over the
// same rules differed and an operator's diff of them showed changes that
// were not there.
func TestShowRulesSorted(t *testing.T) {
	mb := "a@b.example"
	var rs []rules.Rule
	for _, n := range []string{"delta", "alpha", "echo", "charlie", "bravo", "foxtrot"} {
		rs = append(rs, rules.Rule{Mailbox: mb, Name: n, Phones: []string{"+491701234567"}})
	}
	f, _ := mailboxWithRules(t, mb, rs...)
	var first string
	for i := range 20 {
		var b strings.Builder
		if err := showRules(context.Background(), f, &b, mb); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if i == 0 {
			first = out
			last := -1
			for _, n := range []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"} {
				at := strings.Index(out, "name "+n)
				if at < 0 {
					at = strings.Index(out, n)
				}
				if at <= last {
					t.Fatalf("rule %s out of order:\n%s", n, out)
				}
				last = at
			}
		} else if out != first {
			t.Fatalf("rule show printed the same rules two ways:\n%s\n---\n%s", first, out)
		}
	}
}
