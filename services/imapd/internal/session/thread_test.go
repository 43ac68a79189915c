package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"
)

// render writes threads as THREAD answers them (RFC 5256 §5).
func render(ts []imapserver.Thread) string {
	var b strings.Builder
	var one func(t imapserver.Thread)
	one = func(t imapserver.Thread) {
		b.WriteByte('(')
		for {
			if t.Num != 0 {
				fmt.Fprint(&b, t.Num)
			}
			if len(t.Children) != 1 || t.Num == 0 {
				break
			}
			b.WriteByte(' ')
			t = t.Children[0]
		}
		if len(t.Children) > 0 && t.Num != 0 {
			b.WriteByte(' ')
		}
		for _, c := range t.Children {
			one(c)
		}
		b.WriteByte(')')
	}
	for _, t := range ts {
		one(t)
	}
	return b.String()
}

// tm is a test message: number = sequence number = date order unless
// date is set.
type tm struct {
	subject, id, refs string
	date              int64
}

func threadMsgs(ms []tm) []*threadMsg {
	out := make([]*threadMsg, len(ms))
	for i, m := range ms {
		t := &threadMsg{num: uint32(i + 1), seq: uint32(i + 1), date: int64(i + 1), id: m.id, refs: msgIDs(m.refs)}
		if m.date != 0 {
			t.date = m.date
		}
		t.base, t.reply = baseSubject(m.subject)
		t.base = casemap(t.base)
		out[i] = t
	}
	return out
}

func TestThreadReferences(t *testing.T) {
	for _, c := range []struct {
		name string
		msgs []tm
		want string
	}{
		{"chain", []tm{{"a", "<a>", "", 0}, {"Re: a", "<b>", "<a>", 0}, {"Re: a", "<c>", "<a> <b>", 0}}, "(1 2 3)"},
		{"two replies", []tm{{"a", "<a>", "", 0}, {"Re: a", "<b>", "<a>", 0}, {"Re: a", "<c>", "<a>", 0}}, "(1 (2)(3))"},
		{"missing parent, two children", []tm{{"x1", "<b>", "<x>", 0}, {"x2", "<c>", "<x>", 0}}, "((1)(2))"},
		{"missing parent, one child", []tm{{"x1", "<b>", "<x>", 0}, {"other", "<c>", "", 0}}, "(1)(2)"},
		{"reply by subject only", []tm{{"hello", "<a>", "", 0}, {"Re: hello", "<b>", "", 0}}, "(1 2)"},
		{"same subject, no reply marker", []tm{{"hello", "<a>", "", 0}, {"hello", "<b>", "", 0}}, "((1)(2))"},
		{"loop refused", []tm{{"a", "<a>", "<b>", 0}, {"b", "<b>", "<a>", 0}}, "(2 1)"},
		{"duplicate message id", []tm{{"a", "<a>", "", 0}, {"b", "<a>", "", 0}, {"c", "<c>", "<a>", 0}}, "(1 3)(2)"},
		{"no ids", []tm{{"a", "", "", 0}, {"b", "", "", 0}}, "(1)(2)"},
		{"threads by first date", []tm{{"late", "<a>", "", 10}, {"early", "<b>", "", 5}, {"Re: late", "<c>", "<a>", 11}}, "(2)(1 3)"},
		{"truncated references: the last one wins", []tm{{"a", "<a>", "", 0}, {"b", "<b>", "", 0}, {"c", "<c>", "<a>", 0}, {"d", "<d>", "<b> <c>", 0}}, "(1 3 4)(2)"},
		{"empty subjects are not merged", []tm{{"", "<a>", "", 0}, {"", "<b>", "", 0}}, "(1)(2)"},
	} {
		if got := render(references(threadMsgs(c.msgs))); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestThreadOrderedSubject(t *testing.T) {
	ms := threadMsgs([]tm{{"b", "", "", 0}, {"a", "", "", 0}, {"Re: b", "", "", 0}, {"[x] A", "", "", 0}, {"c", "", "", 0}, {"Re: b", "", "", 0}})
	if got, want := render(orderedSubject(ms)), "(1 (3)(6))(2 4)(5)"; got != want {
		t.Errorf("ORDEREDSUBJECT: %s, want %s", got, want)
	}
}

func TestMsgIDs(t *testing.T) {
	got := msgIDs(" <a@b>\r\n\t<c @ d> junk <> <\"from <g@h> <e@f")
	if strings.Join(got, ",") != "<a@b>,<c@d>,<g@h>" {
		t.Errorf("msgIDs = %q", got)
	}
}
