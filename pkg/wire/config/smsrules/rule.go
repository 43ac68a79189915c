package smsrules

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every parse error of this package.
var ErrSyntax = errors.New("rules: syntax")

// Bounds on a rule, so a hostile or mistaken row cannot make smsd do
// unbounded work.
const (
	MaxLine     = 1000 // bytes of one line of a rule row or rules file
	MaxSenders  = 100
	MaxWindows  = 50
	MaxPhones   = 20
	MaxNameLen  = 64
	ruleHeader  = "twinmx-sms-rule/1"
	zoneHeader  = "twinmx-sms-zone/1"
	fwdHeader   = "twinmx-fwd/1"
	listHeader  = "twinmx-sms-list/1"
	defaultText = "{from}: {subject} / {line}"
	// maxRuleLines is the most lines a rule within the bounds has: the
	// header, mailbox, name, template and one line per sender, window and
	// phone. A longer row is refused before it is read line by line.
	maxRuleLines = 4 + MaxSenders + MaxWindows + MaxPhones
)

// Rule is one SMS rule of a mailbox: a mail from one of Senders (any
// sender if empty), arriving inside one of Windows (any time if empty),
// gives an SMS with Template to every number of Phones.
type Rule struct {
	Mailbox  string
	Name     string
	Senders  []Sender
	Windows  []Window
	Phones   []string
	Template Template
}

// SenderKind says how a Sender matches.
type SenderKind uint8

// Sender kinds.
const (
	SenderAny     SenderKind = iota + 1 // "*"
	SenderAddress                       // "a@b.example": exactly this address
	SenderDomain                        // "@b.example": any address at this domain
	SenderPattern                       // "*@*.b.example": a glob with * and ?
	SenderList                          // "list:NAME": an entry of the mailbox's list NAME
)

// Sender is one trigger of a rule. Value is lower case.
type Sender struct {
	Kind  SenderKind
	Value string
}

// String returns the sender in the form ParseSender reads.
func (s Sender) String() string {
	switch s.Kind {
	case SenderAny:
		return "*"
	case SenderList:
		return "list:" + s.Value
	}
	return s.Value
}

// ParseSender reads one sender trigger: "*", "list:NAME", "@domain", an
// address, or a pattern with * and ? (matched against the whole address,
// without regard to case).
func ParseSender(s string) (Sender, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "":
		return Sender{}, fmt.Errorf("%w: empty sender", ErrSyntax)
	case s == "*":
		return Sender{Kind: SenderAny}, nil
	case strings.HasPrefix(s, "list:"):
		name := s[len("list:"):]
		if err := checkName(name); err != nil {
			return Sender{}, err
		}
		return Sender{Kind: SenderList, Value: name}, nil
	case strings.ContainsAny(s, " \t<>\"\\"):
		return Sender{}, fmt.Errorf("%w: sender %q has a space, quote, bracket or backslash", ErrSyntax, s)
	case strings.ContainsAny(s, "*?["):
		if strings.Contains(s, "[") {
			return Sender{}, fmt.Errorf("%w: sender pattern %q: only * and ? are special", ErrSyntax, s)
		}
		return Sender{Kind: SenderPattern, Value: s}, nil
	case strings.HasPrefix(s, "@"):
		if len(s) == 1 || strings.Contains(s[1:], "@") {
			return Sender{}, fmt.Errorf("%w: domain %q", ErrSyntax, s)
		}
		return Sender{Kind: SenderDomain, Value: s}, nil
	case strings.Count(s, "@") != 1 || strings.HasSuffix(s, "@"):
		return Sender{}, fmt.Errorf("%w: sender %q is not an address, @domain, pattern or list:NAME", ErrSyntax, s)
	}
	return Sender{Kind: SenderAddress, Value: s}, nil
}

// checkName checks a rule or list name: 1 to MaxNameLen of a-z 0-9 . _ -.
func checkName(n string) error {
	if n == "" || len(n) > MaxNameLen {
		return fmt.Errorf("%w: name %q must be 1 to %d characters", ErrSyntax, n, MaxNameLen)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: name %q: use a-z 0-9 . _ - only", ErrSyntax, n)
		}
	}
	return nil
}

// CheckName reports whether n can name a rule or a list.
func CheckName(n string) error { return checkName(n) }

// CheckPhone reports whether p is a phone number smsd accepts: "+" and 6
// to 20 digits (E.164 with room for local gateways' prefixes).
func CheckPhone(p string) error {
	d, ok := strings.CutPrefix(p, "+")
	if !ok || len(d) < 6 || len(d) > 20 || strings.Trim(d, "0123456789") != "" {
		return fmt.Errorf("%w: phone %q: want + and 6 to 20 digits", ErrSyntax, p)
	}
	return nil
}

// CheckAddress reports whether a is usable as a forward-copy address.
func CheckAddress(a string) error {
	if strings.Count(a, "@") != 1 || strings.HasPrefix(a, "@") || strings.HasSuffix(a, "@") ||
		strings.ContainsAny(a, " <>\"\\,;:") || strings.ContainsFunc(a, unicode.IsControl) || len(a) > 254 {
		return fmt.Errorf("%w: address %q", ErrSyntax, a)
	}
	return nil
}

// Content returns the rule's text row content, canonical: the same rule
// always gives the same bytes, so re-applying a rule finds the same row.
func (r Rule) Content() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nmailbox: %s\nname: %s\n", ruleHeader, r.Mailbox, r.Name)
	for _, s := range r.Senders {
		fmt.Fprintf(&b, "from: %s\n", s)
	}
	for _, w := range r.Windows {
		fmt.Fprintf(&b, "window: %s\n", w)
	}
	for _, p := range r.Phones {
		fmt.Fprintf(&b, "phone: %s\n", p)
	}
	fmt.Fprintf(&b, "template: %s\n", r.Template)
	return b.Bytes()
}

// ParseRule reads a rule row's content (see docs/smsd.md):
//
//	twinmx-sms-rule/1
//	mailbox: hotline@example.com
//	name: office
//	from: list:hotline            (any number; none: every sender)
//	window: mon-fri 08:00-18:00   (any number; none: always)
//	phone: +491701234567          (at least one)
//	template: {from}: {subject}   (optional)
func ParseRule(b []byte) (Rule, error) {
	// A row is any size; the bounds must hold before the work (the
	// de-duplication of senders and phones is quadratic).
	if len(b) > maxRuleLines*(MaxLine+1) || bytes.Count(b, []byte("\n")) > maxRuleLines {
		return Rule{}, fmt.Errorf("%w: rule row longer than %d lines of %d bytes", ErrSyntax, maxRuleLines, MaxLine)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != ruleHeader {
		return Rule{}, fmt.Errorf("%w: not a rule row (first line %q)", ErrSyntax, cut(lines[0]))
	}
	var r Rule
	var haveTemplate bool
	for i, line := range lines[1:] {
		k, v, err := field(line)
		if err != nil {
			return Rule{}, fmt.Errorf("line %d: %w", i+2, err)
		}
		if err := r.set(k, v, &haveTemplate); err != nil {
			return Rule{}, fmt.Errorf("line %d: %w", i+2, err)
		}
	}
	if !haveTemplate {
		r.Template = MustTemplate(defaultText)
	}
	return r, r.Check()
}

// set applies one "key: value" line to r.
func (r *Rule) set(k, v string, haveTemplate *bool) error {
	switch k {
	case "mailbox":
		if r.Mailbox != "" {
			return fmt.Errorf("%w: a second mailbox", ErrSyntax)
		}
		r.Mailbox = v
	case "name":
		if r.Name != "" {
			return fmt.Errorf("%w: a second name", ErrSyntax)
		}
		r.Name = v
	case "from":
		s, err := ParseSender(v)
		if err != nil {
			return err
		}
		if !slices.Contains(r.Senders, s) {
			r.Senders = append(r.Senders, s)
		}
	case "window":
		w, err := ParseWindow(v)
		if err != nil {
			return err
		}
		r.Windows = append(r.Windows, w)
	case "phone":
		if err := CheckPhone(v); err != nil {
			return err
		}
		if !slices.Contains(r.Phones, v) {
			r.Phones = append(r.Phones, v)
		}
	case "template":
		if *haveTemplate {
			return fmt.Errorf("%w: a second template", ErrSyntax)
		}
		t, err := ParseTemplate(v)
		if err != nil {
			return err
		}
		r.Template, *haveTemplate = t, true
	default:
		return fmt.Errorf("%w: unknown field %q", ErrSyntax, cut(k))
	}
	return nil
}

// Check reports whether r is complete and within bounds.
func (r Rule) Check() error {
	var errs []error
	if r.Mailbox == "" || CheckAddress(r.Mailbox) != nil {
		errs = append(errs, fmt.Errorf("%w: mailbox %q", ErrSyntax, cut(r.Mailbox)))
	}
	if err := checkName(r.Name); err != nil {
		errs = append(errs, err)
	}
	if len(r.Phones) == 0 {
		errs = append(errs, fmt.Errorf("%w: no phone", ErrSyntax))
	}
	if len(r.Phones) > MaxPhones || len(r.Senders) > MaxSenders || len(r.Windows) > MaxWindows {
		errs = append(errs, fmt.Errorf("%w: at most %d phones, %d senders and %d windows", ErrSyntax, MaxPhones, MaxSenders, MaxWindows))
	}
	return errors.Join(errs...)
}

// field splits "key: value".
func field(line string) (k, v string, err error) {
	if len(line) > MaxLine {
		return "", "", fmt.Errorf("%w: line longer than %d bytes", ErrSyntax, MaxLine)
	}
	k, v, ok := strings.Cut(line, ":")
	if !ok {
		return "", "", fmt.Errorf("%w: want \"name: value\", got %q", ErrSyntax, cut(line))
	}
	return strings.TrimSpace(k), strings.TrimSpace(v), nil
}

func cut(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// Mail is what rules look at in one accepted mail.
type Mail struct {
	From    string    // the From address, lower case ("" if none)
	Subject string    // decoded, one line
	Line    string    // the first non-empty line of the text body
	Time    time.Time // when the mail was acknowledged
	Mailbox string
}

// Lists answers whether sender (a lower-case address) is on the mailbox's
// list name, by its address or its @domain.
type Lists func(list, sender string) (bool, error)

// Matches reports whether the rule fires for m, with times in loc.
func (r Rule) Matches(m Mail, loc *time.Location, lists Lists) (bool, error) {
	if len(r.Windows) > 0 && !slices.ContainsFunc(r.Windows, func(w Window) bool { return w.Contains(m.Time, loc) }) {
		return false, nil
	}
	if len(r.Senders) == 0 {
		return true, nil
	}
	from := strings.ToLower(m.From)
	for _, s := range r.Senders {
		ok, err := s.matches(from, lists)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func (s Sender) matches(from string, lists Lists) (bool, error) {
	switch s.Kind {
	case SenderAny:
		return true, nil
	case SenderAddress:
		return from == s.Value, nil
	case SenderDomain:
		return from != "" && strings.HasSuffix(from, s.Value), nil
	case SenderPattern:
		return from != "" && glob(s.Value, from), nil
	case SenderList:
		if from == "" || lists == nil {
			return false, nil
		}
		return lists(s.Value, from)
	}
	return false, nil
}

// glob reports whether name matches pattern, where '*' stands for any run
// of bytes and '?' for one character, '/' included: path.Match stops '*'
// at '/', which an address's local part may hold. The last '*' is the only
// backtracking point, so the cost is O(len(pattern)*len(name)).
func glob(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == '?':
			_, size := utf8.DecodeRuneInString(name[n:])
			p, n = p+1, n+size
		case p < len(pattern) && pattern[p] == name[n]:
			p, n = p+1, n+1
		case star >= 0:
			// Let the last '*' take one more character and retry.
			_, size := utf8.DecodeRuneInString(name[mark:])
			mark += size
			p, n = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Domain returns "@domain" of a lower-case address ("" without one).
func Domain(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at:]
	}
	return ""
}
