package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/config/smsrules"
)

// ErrSyntax is wrapped by every error Parse reports for a line.
var ErrSyntax = errors.New("config: syntax")

// Bounds on one command file: a mail or file beyond them is refused as a
// whole, so a hostile mail cannot make the translation do unbounded work.
const (
	MaxLine     = smsrules.MaxLine // bytes of one line
	MaxCommands = 500              // command lines of one file
	MaxText     = 256 << 10        // bytes of one file
)

// Bounds on a file ParseLarge reads: an operator's (dbctl config apply),
// where `dbctl config show` of a site of thousands of mailboxes and
// accounts exceeds MaxCommands. Plan.Parts splits its batch under dbd's
// bound.
const (
	MaxLargeCommands = 200_000  // command lines of one file
	MaxLargeText     = 64 << 20 // bytes of one file
)

// Kind names what a command does.
type Kind uint8

// Command kinds. The comment is the syntax (see docs/spamd.md).
const (
	MailboxCreate Kind = iota + 1 // mailbox create ADDRESS
	MailboxAdd                    // mailbox add LOGIN ADDRESS (also: alias add)
	MailboxRemove                 // mailbox remove LOGIN ADDRESS (also: alias remove)
	Allow                         // allow MAILBOX SENDER
	Block                         // block MAILBOX SENDER
	Unlist                        // unlist MAILBOX SENDER
	FilterAdd                     // filter add MAILBOX HEADER
	FilterRemove                  // filter remove MAILBOX HEADER
	RuleSet                       // rule set MAILBOX NAME [from X] [window "W"] phone P [template "T"] ...
	RuleRemove                    // rule remove MAILBOX NAME
	Zone                          // zone MAILBOX IANA-NAME
	ForwardAdd                    // forward add MAILBOX ADDRESS
	ForwardRemove                 // forward remove MAILBOX ADDRESS
	ListAdd                       // list add MAILBOX LIST ENTRY
	ListRemove                    // list remove MAILBOX LIST ENTRY
	AdminAdd                      // admin add ADDRESS
	AdminRemove                   // admin remove ADDRESS
	AdminSecret                   // admin secret ADDRESS HASH|none
	Policy                        // policy MAILBOX filter|nogreylist|accept
)

// Command is one parsed command line. Fields a kind does not use are
// empty. Addresses are as ParseFile normalised them: a mailbox is its
// model.MailboxContent (domain lower-cased), senders, list entries and
// admins lower case.
type Command struct {
	Kind    Kind
	Mailbox string // the mailbox the command is about
	Login   string // MailboxAdd/Remove
	Value   string // sender, header field, zone, forward address, list entry, admin, hash
	List    string // ListAdd/Remove
	Name    string // RuleSet/RuleRemove
	Hash    string // AdminSecret: an argon2id PHC string, or "none"
	Rule    smsrules.Rule
}

// Line is one line of a command file that is not blank or a comment.
type Line struct {
	N    int    // 1-based line number in the file
	Text string // the line, trimmed
	Cmd  Command
	Err  error // the line is not a valid command (then Cmd is zero)
}

// Parse reads a command file: one command a line, blank lines and lines
// (or the rest of a line) from a '#' outside quotes ignored. It returns
// every command line, each with its command or its error, and an error
// for the file as a whole (too long, too many commands); then no line is
// to be applied. Parse is pure.
func Parse(text string) ([]Line, error) { return parse(text, MaxText, MaxCommands) }

// ParseLarge is Parse within MaxLargeText and MaxLargeCommands, for a file
// from the operator rather than from a mail.
func ParseLarge(text string) ([]Line, error) { return parse(text, MaxLargeText, MaxLargeCommands) }

func parse(text string, maxText, maxCommands int) ([]Line, error) {
	if len(text) > maxText {
		return nil, fmt.Errorf("%w: the commands are longer than %d bytes", ErrSyntax, maxText)
	}
	var out []Line
	for i, raw := range strings.Split(text, "\n") {
		l := Line{N: i + 1, Text: strings.TrimSpace(raw)}
		if len(raw) > MaxLine {
			l.Text = cut(l.Text)
			l.Err = fmt.Errorf("%w: line longer than %d bytes", ErrSyntax, MaxLine)
			out = append(out, l)
			continue
		}
		toks, err := tokens(raw)
		if err == nil && len(toks) == 0 {
			continue
		}
		if err == nil {
			l.Cmd, err = command(toks)
		}
		l.Err = err
		out = append(out, l)
		if len(out) > maxCommands {
			return nil, fmt.Errorf("%w: more than %d commands", ErrSyntax, maxCommands)
		}
	}
	return out, nil
}

// Failed reports whether any line has an error.
func Failed(lines []Line) bool {
	for _, l := range lines {
		if l.Err != nil {
			return true
		}
	}
	return false
}

// tokens splits a line into words: runs of characters other than space
// and tab, or double-quoted strings with \" and \\ as escapes. A '#' that
// starts a word starts a comment.
func tokens(line string) ([]string, error) {
	line = strings.TrimSuffix(line, "\r")
	var toks []string
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) || line[i] == '#' {
			return toks, nil
		}
		var b strings.Builder
		if line[i] == '"' {
			i++
			for {
				if i == len(line) {
					return nil, fmt.Errorf("%w: a quoted word has no closing \"", ErrSyntax)
				}
				c := line[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					if i+1 == len(line) || (line[i+1] != '"' && line[i+1] != '\\') {
						return nil, fmt.Errorf("%w: in quotes, \\ must be followed by \" or \\", ErrSyntax)
					}
					i++
					c = line[i]
				}
				if c < ' ' && c != '\t' || c == 0x7f {
					return nil, fmt.Errorf("%w: a control character", ErrSyntax)
				}
				b.WriteByte(c)
				i++
			}
			if i < len(line) && line[i] != ' ' && line[i] != '\t' {
				return nil, fmt.Errorf("%w: a quoted word must be followed by a space", ErrSyntax)
			}
		} else {
			for i < len(line) && line[i] != ' ' && line[i] != '\t' {
				c := line[i]
				if c < ' ' || c == 0x7f {
					return nil, fmt.Errorf("%w: a control character", ErrSyntax)
				}
				if c == '"' {
					return nil, fmt.Errorf("%w: a quote inside a word (quote the whole word)", ErrSyntax)
				}
				b.WriteByte(c)
				i++
			}
		}
		toks = append(toks, b.String())
	}
}

// Quote returns w as one word of a command line: as it is if tokens reads
// it back so, quoted otherwise.
func Quote(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\"\\") && w[0] != '#' {
		return w
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(w) + `"`
}

// usage is the syntax of each verb, for error messages.
var usage = map[string]string{
	"mailbox": "mailbox create ADDRESS | mailbox add|remove LOGIN ADDRESS",
	"alias":   "alias add|remove LOGIN ADDRESS",
	"allow":   "allow MAILBOX SENDER",
	"block":   "block MAILBOX SENDER",
	"unlist":  "unlist MAILBOX SENDER",
	"filter":  "filter add|remove MAILBOX HEADER-FIELD",
	"rule":    "rule set MAILBOX NAME [from SENDER]... [window \"DAYS HH:MM-HH:MM\"]... phone +NUMBER... [template \"TEXT\"] | rule remove MAILBOX NAME",
	"zone":    "zone MAILBOX ZONE (an IANA name such as Europe/Berlin)",
	"forward": "forward add|remove MAILBOX ADDRESS",
	"list":    "list add|remove MAILBOX LIST ENTRY",
	"admin":   "admin add|remove ADDRESS | admin secret ADDRESS HASH|none",
	"policy":  "policy MAILBOX filter|nogreylist|accept",
}

func command(t []string) (Command, error) {
	verb := strings.ToLower(t[0])
	u, ok := usage[verb]
	if !ok {
		return Command{}, fmt.Errorf("%w: unknown command %q (want one of mailbox, alias, allow, block, unlist, filter, rule, zone, forward, list, admin, policy)", ErrSyntax, cut(t[0]))
	}
	c, err := command1(verb, t[1:])
	if err != nil {
		if errors.Is(err, errUsage) {
			return Command{}, fmt.Errorf("%w: want %s", ErrSyntax, u)
		}
		return Command{}, err
	}
	return c, nil
}

var errUsage = errors.New("usage")

// sub returns the lower-cased sub-command and checks the number of the
// remaining words.
func sub(args []string, n int) (string, []string, error) {
	if len(args) != n+1 {
		return "", nil, errUsage
	}
	return strings.ToLower(args[0]), args[1:], nil
}

func command1(verb string, args []string) (Command, error) {
	var c Command
	var err error
	switch verb {
	case "mailbox", "alias":
		if len(args) == 2 && strings.EqualFold(args[0], "create") && verb == "mailbox" {
			c.Kind = MailboxCreate
			c.Mailbox, err = mailboxArg(args[1])
			return c, err
		}
		s, a, err := sub(args, 2)
		if err != nil {
			return c, err
		}
		switch s {
		case "add":
			c.Kind = MailboxAdd
		case "remove":
			c.Kind = MailboxRemove
		default:
			return c, errUsage
		}
		if err := model.CheckLogin(a[0]); err != nil {
			return c, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		c.Login = strings.ToLower(a[0])
		c.Mailbox, err = mailboxArg(a[1])
		return c, err
	case "allow", "block", "unlist":
		if len(args) != 2 {
			return c, errUsage
		}
		c.Kind = map[string]Kind{"allow": Allow, "block": Block, "unlist": Unlist}[verb]
		if c.Mailbox, err = mailboxArg(args[0]); err != nil {
			return c, err
		}
		c.Value, err = senderArg(args[1])
		return c, err
	case "filter":
		s, a, err := sub(args, 2)
		if err != nil {
			return c, err
		}
		switch s {
		case "add":
			c.Kind = FilterAdd
		case "remove":
			c.Kind = FilterRemove
		default:
			return c, errUsage
		}
		if c.Mailbox, err = mailboxArg(a[0]); err != nil {
			return c, err
		}
		if _, err := model.HeaderFilterColumn(a[1]); err != nil {
			return c, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		c.Value = strings.ToLower(a[1])
		return c, nil
	case "rule":
		return ruleCommand(args)
	case "zone":
		if len(args) != 2 {
			return c, errUsage
		}
		c.Kind = Zone
		if c.Mailbox, err = mailboxArg(args[0]); err != nil {
			return c, err
		}
		if args[1] == "" || args[1] == "Local" || strings.ContainsAny(args[1], " \t") || strings.HasPrefix(args[1], "/") || strings.Contains(args[1], "..") {
			return c, fmt.Errorf("%w: time zone %q: want an IANA name such as Europe/Berlin", ErrSyntax, cut(args[1]))
		}
		c.Value = args[1]
		return c, nil
	case "policy":
		if len(args) != 2 {
			return c, errUsage
		}
		c.Kind = Policy
		if c.Mailbox, err = mailboxArg(args[0]); err != nil {
			return c, err
		}
		p, err := model.ParsePolicy(args[1])
		if err != nil {
			return c, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		c.Value = p.String()
		return c, nil
	case "forward":
		s, a, err := sub(args, 2)
		if err != nil {
			return c, err
		}
		switch s {
		case "add":
			c.Kind = ForwardAdd
		case "remove":
			c.Kind = ForwardRemove
		default:
			return c, errUsage
		}
		if c.Mailbox, err = mailboxArg(a[0]); err != nil {
			return c, err
		}
		if err := smsrules.CheckAddress(a[1]); err != nil {
			return c, fmt.Errorf("%w: forward %v", ErrSyntax, err)
		}
		c.Value = a[1]
		return c, nil
	case "list":
		s, a, err := sub(args, 3)
		if err != nil {
			return c, err
		}
		switch s {
		case "add":
			c.Kind = ListAdd
		case "remove":
			c.Kind = ListRemove
		default:
			return c, errUsage
		}
		if c.Mailbox, err = mailboxArg(a[0]); err != nil {
			return c, err
		}
		if err := smsrules.CheckName(a[1]); err != nil {
			return c, fmt.Errorf("%w: list %v", ErrSyntax, err)
		}
		c.List = a[1]
		c.Value, err = senderArg(a[2])
		return c, err
	case "admin":
		if len(args) == 3 && strings.EqualFold(args[0], "secret") {
			c.Kind = AdminSecret
			if c.Value, err = adminArg(args[1]); err != nil {
				return c, err
			}
			c.Mailbox = c.Value
			h := args[2]
			if h != "none" && (!strings.HasPrefix(h, "$argon2id$") || strings.Count(h, "$") != 5) {
				return c, fmt.Errorf("%w: secret: want an argon2id hash ($argon2id$v=19$...; make one with `dbctl config hash`) or none", ErrSyntax)
			}
			c.Hash = h
			return c, nil
		}
		s, a, err := sub(args, 1)
		if err != nil {
			return c, err
		}
		switch s {
		case "add":
			c.Kind = AdminAdd
		case "remove":
			c.Kind = AdminRemove
		default:
			return c, errUsage
		}
		c.Value, err = adminArg(a[0])
		c.Mailbox = c.Value
		return c, err
	}
	return c, errUsage
}

// ruleCommand reads "rule set MAILBOX NAME (KEY VALUE)..." and "rule
// remove MAILBOX NAME". The rule is checked by smsrules.ParseRule, the
// parser smsd itself uses for the row.
func ruleCommand(args []string) (Command, error) {
	var c Command
	if len(args) < 3 {
		return c, errUsage
	}
	mb, err := mailboxArg(args[1])
	if err != nil {
		return c, err
	}
	if err := smsrules.CheckName(args[2]); err != nil {
		return c, fmt.Errorf("%w: rule %v", ErrSyntax, err)
	}
	c.Mailbox, c.Name = mb, args[2]
	switch strings.ToLower(args[0]) {
	case "remove":
		if len(args) != 3 {
			return c, errUsage
		}
		c.Kind = RuleRemove
		return c, nil
	case "set":
	default:
		return c, errUsage
	}
	c.Kind = RuleSet
	kv := args[3:]
	if len(kv)%2 != 0 {
		return c, fmt.Errorf("%w: rule set: the words after the name come in pairs: from, window, phone or template and its value", ErrSyntax)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "twinmx-sms-rule/1\nmailbox: %s\nname: %s\n", mb, c.Name)
	for i := 0; i < len(kv); i += 2 {
		k := strings.ToLower(kv[i])
		switch k {
		case "from", "window", "phone", "template":
		default:
			return c, fmt.Errorf("%w: rule set: unknown field %q (want from, window, phone or template)", ErrSyntax, cut(kv[i]))
		}
		fmt.Fprintf(&b, "%s: %s\n", k, kv[i+1])
	}
	r, err := smsrules.ParseRule([]byte(b.String()))
	if err != nil {
		return c, fmt.Errorf("%w: rule set: %v", ErrSyntax, err)
	}
	c.Rule = r
	return c, nil
}

// mailboxArg checks a mailbox address and returns its mailbox row
// content.
func mailboxArg(a string) (string, error) {
	if err := smsrules.CheckAddress(a); err != nil {
		return "", fmt.Errorf("%w: mailbox %q is not an address", ErrSyntax, cut(a))
	}
	return string(model.MailboxContent(a)), nil
}

// senderArg checks a list entry: an address or @domain, lower case.
func senderArg(a string) (string, error) {
	s, err := smsrules.ParseSender(a)
	if err != nil || (s.Kind != smsrules.SenderAddress && s.Kind != smsrules.SenderDomain) {
		return "", fmt.Errorf("%w: sender %q: want an address or @domain", ErrSyntax, cut(a))
	}
	return s.Value, nil
}

func adminArg(a string) (string, error) {
	if err := smsrules.CheckAddress(a); err != nil {
		return "", fmt.Errorf("%w: admin %q is not an address", ErrSyntax, cut(a))
	}
	return strings.ToLower(a), nil
}

func cut(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// String returns the command in the form Parse reads: the canonical line
// dbctl config show prints.
func (c Command) String() string {
	w := func(ws ...string) string {
		for i, s := range ws {
			ws[i] = Quote(s)
		}
		return strings.Join(ws, " ")
	}
	switch c.Kind {
	case MailboxCreate:
		return "mailbox create " + w(c.Mailbox)
	case MailboxAdd:
		return "mailbox add " + w(c.Login, c.Mailbox)
	case MailboxRemove:
		return "mailbox remove " + w(c.Login, c.Mailbox)
	case Allow:
		return "allow " + w(c.Mailbox, c.Value)
	case Block:
		return "block " + w(c.Mailbox, c.Value)
	case Unlist:
		return "unlist " + w(c.Mailbox, c.Value)
	case FilterAdd:
		return "filter add " + w(c.Mailbox, c.Value)
	case FilterRemove:
		return "filter remove " + w(c.Mailbox, c.Value)
	case RuleSet:
		return RuleLine(c.Rule)
	case RuleRemove:
		return "rule remove " + w(c.Mailbox, c.Name)
	case Zone:
		return "zone " + w(c.Mailbox, c.Value)
	case Policy:
		return "policy " + w(c.Mailbox, c.Value)
	case ForwardAdd:
		return "forward add " + w(c.Mailbox, c.Value)
	case ForwardRemove:
		return "forward remove " + w(c.Mailbox, c.Value)
	case ListAdd:
		return "list add " + w(c.Mailbox, c.List, c.Value)
	case ListRemove:
		return "list remove " + w(c.Mailbox, c.List, c.Value)
	case AdminAdd:
		return "admin add " + w(c.Value)
	case AdminRemove:
		return "admin remove " + w(c.Value)
	case AdminSecret:
		return "admin secret " + w(c.Value, c.Hash)
	}
	return ""
}

// RuleLine returns the "rule set" line of r.
func RuleLine(r smsrules.Rule) string {
	ws := []string{"rule", "set", Quote(r.Mailbox), Quote(r.Name)}
	for _, s := range r.Senders {
		ws = append(ws, "from", Quote(s.String()))
	}
	for _, win := range r.Windows {
		ws = append(ws, "window", Quote(win.String()))
	}
	for _, p := range r.Phones {
		ws = append(ws, "phone", Quote(p))
	}
	return strings.Join(append(ws, "template", Quote(r.Template.String())), " ")
}
