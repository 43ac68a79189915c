package config

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// TestPlanParts: a plan's batch goes to dbd in parts of at most maxOps
// requests (dbd caps a batch at wire.MaxBatchOps), in order, each part
// whole lines, the mail record in the last; applied part by part it sets
// what the one batch sets.
func TestPlanParts(t *testing.T) {
	const n = 40
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "mailbox create m%d@x.test\nmailbox add u%d m%d@x.test\n", i, i, i)
	}
	lines, err := ParseLarge(b.String())
	if err != nil {
		t.Fatal(err)
	}
	db := newFakeDB()
	src := Source{Who: "a@x.test", Via: "mail", Mail: model.Key{1}, HasMail: true, Now: t0}
	p, err := Translate(context.Background(), db, lines, src)
	if err != nil || !p.OK() {
		t.Fatalf("translate: %v, %+v", err, p.Results)
	}
	for _, maxOps := range []int{wire.MaxBatchOps, 25, 7, 1} {
		parts := p.Parts(maxOps)
		var all []wire.Request
		next := 0
		for i, part := range parts {
			if part.First != next || part.End <= part.First {
				t.Fatalf("maxOps %d: part %d holds lines [%d, %d), want from %d", maxOps, i, part.First, part.End, next)
			}
			next = part.End
			// Whole lines: the part starts where line First starts.
			if part.First > 0 && len(all) != p.ends[part.First-1] {
				t.Errorf("maxOps %d: part %d starts at request %d, line %d's start is %d", maxOps, i, len(all), part.First, p.ends[part.First-1])
			}
			if len(part.Requests) > maxOps && part.End-part.First > 1 {
				t.Errorf("maxOps %d: part %d has %d requests for %d lines", maxOps, i, len(part.Requests), part.End-part.First)
			}
			all = append(all, part.Requests...)
		}
		if next != len(p.Results) || !slices.EqualFunc(all, p.Requests, func(a, b wire.Request) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			t.Errorf("maxOps %d: the parts hold lines up to %d and %d requests, want %d and the batch's %d", maxOps, next, len(all), len(p.Results), len(p.Requests))
		}
		if maxOps == wire.MaxBatchOps && len(parts) != 1 {
			t.Errorf("a batch of %d requests in %d parts, want 1", len(p.Requests), len(parts))
		}
		if maxOps == 1 && len(parts) != len(p.Results) {
			t.Errorf("maxOps 1: %d parts, want one a line (%d)", len(parts), len(p.Results))
		}
		last := parts[len(parts)-1].Requests
		if mc := MailContent(src.Mail); string(last[len(last)-2].Content) != string(mc) {
			t.Errorf("maxOps %d: the last part does not end with the mail record", maxOps)
		}
	}

	for _, part := range p.Parts(25) {
		if _, err := db.Batch(context.Background(), part.Requests); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		acct := row(t, db, model.POP3, model.AccountContent(fmt.Sprintf("u%d", i)))
		mk := model.KeyOf(model.Mailbox, []byte(fmt.Sprintf("m%d@x.test", i)))
		if !model.IsMember(acct.Col(model.MailboxColumn(mk))) {
			t.Errorf("after the parts, u%d does not read m%d@x.test", i, i)
		}
	}

	// A file over MaxCommands is Parse's refusal (a mail), not ParseLarge's.
	if _, err := Parse(b.String() + strings.Repeat("mailbox create z@x.test\n", MaxCommands)); err == nil {
		t.Error("Parse took more than MaxCommands commands")
	}
	if (&Plan{}).Parts(10) != nil {
		t.Error("a failed plan has parts")
	}
}
