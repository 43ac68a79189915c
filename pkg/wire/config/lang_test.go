package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommands(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Command
		// canon is the line Command.String gives ("" = in).
		canon string
	}{
		{"mailbox create", "mailbox create Info@X.Test", Command{Kind: MailboxCreate, Mailbox: "Info@x.test"}, "mailbox create Info@x.test"},
		{"mailbox add", "mailbox add Alice alice@x.test", Command{Kind: MailboxAdd, Login: "alice", Mailbox: "alice@x.test"}, "mailbox add alice alice@x.test"},
		{"alias add", "alias add alice info@x.test", Command{Kind: MailboxAdd, Login: "alice", Mailbox: "info@x.test"}, "mailbox add alice info@x.test"},
		{"mailbox remove", "mailbox remove alice info@x.test", Command{Kind: MailboxRemove, Login: "alice", Mailbox: "info@x.test"}, ""},
		{"alias remove", "ALIAS REMOVE alice info@x.test", Command{Kind: MailboxRemove, Login: "alice", Mailbox: "info@x.test"}, "mailbox remove alice info@x.test"},
		{"allow", "allow u@x.test Friend@Y.example", Command{Kind: Allow, Mailbox: "u@x.test", Value: "friend@y.example"}, "allow u@x.test friend@y.example"},
		{"block domain", "block u@x.test @spam.example", Command{Kind: Block, Mailbox: "u@x.test", Value: "@spam.example"}, ""},
		{"unlist", "unlist u@x.test @spam.example", Command{Kind: Unlist, Mailbox: "u@x.test", Value: "@spam.example"}, ""},
		{"filter add", "filter add u@x.test X-Spam-Report", Command{Kind: FilterAdd, Mailbox: "u@x.test", Value: "x-spam-report"}, "filter add u@x.test x-spam-report"},
		{"filter remove", "filter remove u@x.test x-spam-report", Command{Kind: FilterRemove, Mailbox: "u@x.test", Value: "x-spam-report"}, ""},
		{"rule remove", "rule remove u@x.test office", Command{Kind: RuleRemove, Mailbox: "u@x.test", Name: "office"}, ""},
		{"zone", "zone u@x.test Europe/Berlin", Command{Kind: Zone, Mailbox: "u@x.test", Value: "Europe/Berlin"}, ""},
		{"policy", "Policy u@X.test ACCEPT", Command{Kind: Policy, Mailbox: "u@x.test", Value: "accept"}, "policy u@x.test accept"},
		{"forward add", "forward add u@x.test copy@phone.example", Command{Kind: ForwardAdd, Mailbox: "u@x.test", Value: "copy@phone.example"}, ""},
		{"forward remove", "forward remove u@x.test copy@phone.example", Command{Kind: ForwardRemove, Mailbox: "u@x.test", Value: "copy@phone.example"}, ""},
		{"list add", "list add u@x.test hotline @Big.example", Command{Kind: ListAdd, Mailbox: "u@x.test", List: "hotline", Value: "@big.example"}, "list add u@x.test hotline @big.example"},
		{"list remove", "list remove u@x.test hotline a@b.example", Command{Kind: ListRemove, Mailbox: "u@x.test", List: "hotline", Value: "a@b.example"}, ""},
		{"admin add", "admin add Boss@X.test", Command{Kind: AdminAdd, Mailbox: "boss@x.test", Value: "boss@x.test"}, "admin add boss@x.test"},
		{"admin remove", "admin remove boss@x.test", Command{Kind: AdminRemove, Mailbox: "boss@x.test", Value: "boss@x.test"}, ""},
		{"admin secret none", "admin secret boss@x.test none", Command{Kind: AdminSecret, Mailbox: "boss@x.test", Value: "boss@x.test", Hash: "none"}, ""},
		{"comment after", "block u@x.test @spam.example   # they never stop", Command{Kind: Block, Mailbox: "u@x.test", Value: "@spam.example"}, "block u@x.test @spam.example"},
		{"quoted words", `zone "u@x.test" "UTC"`, Command{Kind: Zone, Mailbox: "u@x.test", Value: "UTC"}, "zone u@x.test UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := Parse(tt.in)
			if err != nil || len(lines) != 1 || lines[0].Err != nil {
				t.Fatalf("Parse(%q) = %+v, %v; want one command", tt.in, lines, err)
			}
			if !reflect.DeepEqual(lines[0].Cmd, tt.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, lines[0].Cmd, tt.want)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if got := lines[0].Cmd.String(); got != canon {
				t.Errorf("String() = %q, want %q", got, canon)
			}
		})
	}
}

func TestParseRule(t *testing.T) {
	in := `rule set u@x.test office from list:hotline from @Big.example window "mon-fri 08:00-18:00" phone +491701234567 phone +491709999999 template "{subject} from {from}: \"{line}\""`
	lines, err := Parse(in)
	if err != nil || len(lines) != 1 || lines[0].Err != nil {
		t.Fatalf("Parse = %+v, %v", lines, err)
	}
	r := lines[0].Cmd.Rule
	if r.Mailbox != "u@x.test" || r.Name != "office" || len(r.Senders) != 2 || len(r.Windows) != 1 || len(r.Phones) != 2 {
		t.Fatalf("rule = %+v", r)
	}
	if got := r.Template.String(); got != `{subject} from {from}: "{line}"` {
		t.Errorf("template = %q", got)
	}
	want := `rule set u@x.test office from list:hotline from @big.example window "mon,tue,wed,thu,fri 08:00-18:00" phone +491701234567 phone +491709999999 template "{subject} from {from}: \"{line}\""`
	if got := lines[0].Cmd.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	// Without a template the smsd default is used, and printed.
	lines, _ = Parse("rule set u@x.test night phone +491701234567")
	if lines[0].Err != nil || !strings.HasSuffix(lines[0].Cmd.String(), `template "{from}: {subject} / {line}"`) {
		t.Errorf("default template: %q, %v", lines[0].Cmd.String(), lines[0].Err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown verb", "delete everything", "unknown command"},
		{"missing argument", "allow u@x.test", "want allow MAILBOX SENDER"},
		{"extra argument", "allow u@x.test a@b.example c@d.example", "want allow"},
		{"bad sub-command", "filter drop u@x.test X-Foo", "want filter add|remove"},
		{"mailbox not an address", "block nobody @spam.example", "mailbox \"nobody\" is not an address"},
		{"sender pattern in a spam list", "block u@x.test *@spam.example", "want an address or @domain"},
		{"header with a colon", "filter add u@x.test X-Foo:", "header field name"},
		{"rule without phone", "rule set u@x.test office from @a.example", "no phone"},
		{"rule with a bad window", `rule set u@x.test office window "someday 08:00-18:00" phone +4917012345`, "rule set"},
		{"rule odd words", "rule set u@x.test office phone", "come in pairs"},
		{"rule unknown field", "rule set u@x.test office color red phone +4917012345", "unknown field"},
		{"bad phone", "rule set u@x.test office phone 0170", "phone"},
		{"rule bad name", "rule remove u@x.test Office!", "rule"},
		{"zone path", "zone u@x.test ../../etc/passwd", "IANA name"},
		{"unknown policy", "policy u@x.test lenient", "unknown spam policy"},
		{"policy without a mailbox", "policy accept", "want policy MAILBOX"},
		{"forward not an address", "forward add u@x.test phone", "forward"},
		{"list bad name", "list add u@x.test Hot!Line a@b.example", "list"},
		{"admin secret not a hash", "admin secret boss@x.test hunter2", "argon2id hash"},
		{"open quote", `zone u@x.test "Europe/Berlin`, "no closing"},
		{"quote in a word", `zone u@x.test Euro"pe`, "quote inside a word"},
		{"bad escape", `zone u@x.test "a\nb"`, "must be followed by"},
		{"control character", "zone u@x.test Europe/Berlin\x00", "control character"},
		{"login with a quote", `mailbox add "al\"ice" a@x.test`, "login"},
		{"long line", "zone u@x.test " + strings.Repeat("a", MaxLine), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := Parse(tt.in)
			if err != nil || len(lines) != 1 {
				t.Fatalf("Parse(%q) = %+v, %v; want one line", tt.in, lines, err)
			}
			if lines[0].Err == nil || !strings.Contains(lines[0].Err.Error(), tt.want) || !errors.Is(lines[0].Err, ErrSyntax) {
				t.Errorf("Parse(%q) error = %v, want ErrSyntax mentioning %q", tt.in, lines[0].Err, tt.want)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	in := "# config for x.test\r\n\n  \t\nblock u@x.test @spam.example\r\nnonsense here\n# done\nallow u@x.test a@b.example\n"
	lines, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	var ns []int
	for _, l := range lines {
		ns = append(ns, l.N)
	}
	if !reflect.DeepEqual(ns, []int{4, 5, 7}) {
		t.Fatalf("line numbers %v, want [4 5 7]", ns)
	}
	if lines[0].Err != nil || lines[1].Err == nil || lines[2].Err != nil || !Failed(lines) {
		t.Errorf("errors: %v %v %v", lines[0].Err, lines[1].Err, lines[2].Err)
	}
	if lines[1].Text != "nonsense here" {
		t.Errorf("Text = %q", lines[1].Text)
	}
	if _, err := Parse(strings.Repeat("block u@x.test @a.example\n", MaxCommands+1)); err == nil {
		t.Error("Parse accepted more than MaxCommands commands")
	}
	if _, err := Parse(strings.Repeat("#", MaxText+1)); err == nil {
		t.Error("Parse accepted more than MaxText bytes")
	}
}

func TestQuote(t *testing.T) {
	for _, w := range []string{"plain", "", "two words", `a"b`, `back\slash`, "#hash", "tab\there", "{from}: {subject}"} {
		toks, err := tokens("x " + Quote(w) + " y")
		if err != nil || len(toks) != 3 || toks[1] != w {
			t.Errorf("tokens(Quote(%q)) = %q, %v", w, toks, err)
		}
	}
}

// FuzzParse: Parse never panics, and every command it reads prints as a
// line that reads back as the same command.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"mailbox add alice alice@x.test\nalias remove alice info@x.test",
		"block u@x.test @spam.example # comment",
		`rule set u@x.test office from list:hotline window "fri 22:00-02:00" phone +491701234567 template "{from}: {{x}"`,
		"list add u@x.test hotline a@b.example\nzone u@x.test Europe/Berlin",
		"policy u@x.test accept\npolicy u@x.test NoGreyList\npolicy u@x.test lenient",
		"admin secret boss@x.test $argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		`filter add u@x.test X-Spam "unterminated`,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lines, err := Parse(s)
		if err != nil {
			return
		}
		for _, l := range lines {
			if l.Err != nil {
				continue
			}
			again, err := Parse(l.Cmd.String())
			if err != nil || len(again) != 1 || again[0].Err != nil {
				t.Fatalf("line %q prints as %q, which does not parse: %v %+v", l.Text, l.Cmd.String(), err, again)
			}
			// A rule's empty template is the default: compare rules by
			// their printed form, every other command as it is.
			if again[0].Cmd.String() != l.Cmd.String() || (l.Cmd.Kind != RuleSet && !reflect.DeepEqual(again[0].Cmd, l.Cmd)) {
				t.Fatalf("line %q prints as %q, which reads as %+v, not %+v", l.Text, l.Cmd.String(), again[0].Cmd, l.Cmd)
			}
		}
	})
}

// FuzzQuote: every word without control characters survives Quote and
// tokens unchanged.
func FuzzQuote(f *testing.F) {
	for _, w := range []string{"plain", "", "two words", `a"b`, `back\slash`, "#hash", "a#b", "tab\there", "{from}: {subject}", "ü\u202e"} {
		f.Add(w)
	}
	f.Fuzz(func(t *testing.T, w string) {
		if strings.ContainsFunc(w, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return
		}
		toks, err := tokens("x " + Quote(w) + " y")
		if err != nil || len(toks) != 3 || toks[1] != w {
			t.Fatalf("tokens(Quote(%q)) = %q, %v", w, toks, err)
		}
	})
}
