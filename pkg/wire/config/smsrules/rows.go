package smsrules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// Column prefixes on the mailbox row (LinkColumn prefixes) and the list
// entry column.
const (
	RulePrefix    = "sms.r."
	ZonePrefix    = "sms.z."
	ForwardPrefix = "fwd."
	ColList       = "sms.list"
)

// ZoneContent is the content of the text row naming a mailbox's time zone.
func ZoneContent(mailbox, zone string) []byte {
	return fmt.Appendf(nil, "%s\nmailbox: %s\nzone: %s\n", zoneHeader, mailbox, zone)
}

// ForwardContent is the content of the text row of one forward-copy
// address of a mailbox.
func ForwardContent(mailbox, to string) []byte {
	return fmt.Appendf(nil, "%s\nmailbox: %s\nto: %s\n", fwdHeader, mailbox, to)
}

// ListEntryContent is the content of the text row of one entry of a
// mailbox's list: an address or "@domain", lower case.
func ListEntryContent(mailbox, list, entry string) []byte {
	return fmt.Appendf(nil, "%s\nmailbox: %s\nlist: %s\nentry: %s\n", listHeader, mailbox, list, strings.ToLower(entry))
}

// ParseZone returns the zone of a zone row's content.
func ParseZone(b []byte) (string, error) { return simple(b, zoneHeader, "zone") }

// ParseForward returns the address of a forward row's content.
func ParseForward(b []byte) (string, error) { return simple(b, fwdHeader, "to") }

func simple(b []byte, header, key string) (string, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || lines[0] != header || !strings.HasPrefix(lines[1], "mailbox: ") {
		return "", fmt.Errorf("%w: not a %s row", ErrSyntax, header)
	}
	v, ok := strings.CutPrefix(lines[2], key+": ")
	if !ok || v == "" {
		return "", fmt.Errorf("%w: %s row without %s", ErrSyntax, header, key)
	}
	return v, nil
}

// Links are the settings a mailbox row links to, read from its state.
type Links struct {
	Rules    []model.Key // rules switched on
	Forwards []model.Key // forward rows switched on
	Zone     model.Key   // the newest zone row, if HasZone
	HasZone  bool
}

// MailboxLinks reads the links of a mailbox row's state. The newest zone
// link wins; a zone switched off means UTC.
func MailboxLinks(st model.State) Links {
	var l Links
	var zoneVal uint64
	names := make([]string, 0, len(st.Cols))
	for n := range st.Cols {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := st.Cols[n]
		if k, ok := model.ParseLinkColumn(RulePrefix, n); ok && model.IsMember(v) {
			l.Rules = append(l.Rules, k)
		} else if k, ok := model.ParseLinkColumn(ForwardPrefix, n); ok && model.IsMember(v) {
			l.Forwards = append(l.Forwards, k)
		} else if k, ok := model.ParseLinkColumn(ZonePrefix, n); ok && v > zoneVal {
			zoneVal, l.Zone, l.HasZone = v, k, model.IsMember(v)
		}
	}
	return l
}

// Writes. Each returns the batch that makes the change as of now; the
// caller sends it with a key that may set mailbox columns (admin).

func mailboxRef(mailbox string) wire.Ref {
	return wire.Ref{ByKey: true, Key: model.KeyOf(model.Mailbox, model.MailboxContent(mailbox))}
}

func link(mailbox, prefix string, content []byte, on bool, now time.Time) []wire.Request {
	var reqs []wire.Request
	if on {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: content})
	}
	return append(reqs, wire.Request{Op: wire.OpSet, Table: model.Mailbox, Ref: mailboxRef(mailbox),
		Name: model.LinkColumn(prefix, model.KeyOf(model.Text, content)), Value: model.MemberValue(now, on)})
}

// SetRule switches rule r on and every rule in replace (the mailbox's
// rules of the same name, usually) off.
func SetRule(r Rule, replace []model.Key, now time.Time) ([]wire.Request, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	reqs := link(r.Mailbox, RulePrefix, r.Content(), true, now)
	k := model.KeyOf(model.Text, r.Content())
	for _, old := range replace {
		if old != k {
			reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Mailbox, Ref: mailboxRef(r.Mailbox),
				Name: model.LinkColumn(RulePrefix, old), Value: model.MemberValue(now, false)})
		}
	}
	return reqs, nil
}

// RemoveRules switches the rules with the given keys off.
func RemoveRules(mailbox string, keys []model.Key, now time.Time) []wire.Request {
	var reqs []wire.Request
	for _, k := range keys {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Mailbox, Ref: mailboxRef(mailbox),
			Name: model.LinkColumn(RulePrefix, k), Value: model.MemberValue(now, false)})
	}
	return reqs
}

// SetZone makes zone (an IANA name) the mailbox's time zone.
func SetZone(mailbox, zone string, now time.Time) ([]wire.Request, error) {
	if _, err := time.LoadLocation(zone); err != nil || zone == "" || zone == "Local" {
		return nil, fmt.Errorf("%w: time zone %q: want an IANA name such as Europe/Berlin", ErrSyntax, zone)
	}
	return link(mailbox, ZonePrefix, ZoneContent(mailbox, zone), true, now), nil
}

// SetForward switches a forward copy of the mailbox's accepted mail to
// address to on or off.
func SetForward(mailbox, to string, on bool, now time.Time) ([]wire.Request, error) {
	if err := CheckAddress(to); err != nil {
		return nil, err
	}
	return link(mailbox, ForwardPrefix, ForwardContent(mailbox, to), on, now), nil
}

// SetListEntry adds entry (an address or "@domain") to the mailbox's list,
// or removes it.
func SetListEntry(mailbox, list, entry string, member bool, now time.Time) ([]wire.Request, error) {
	if err := checkName(list); err != nil {
		return nil, err
	}
	s, err := ParseSender(entry)
	if err != nil || (s.Kind != SenderAddress && s.Kind != SenderDomain) {
		return nil, fmt.Errorf("%w: list entry %q: want an address or @domain", ErrSyntax, entry)
	}
	c := ListEntryContent(mailbox, list, s.Value)
	return []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: c},
		{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Text, c)},
			Name: ColList, Value: model.MemberValue(now, member)},
	}, nil
}

// ListEntryKeys returns the keys of the list rows that would hold sender:
// its address, then its @domain.
func ListEntryKeys(mailbox, list, sender string) []model.Key {
	sender = strings.ToLower(sender)
	keys := []model.Key{model.KeyOf(model.Text, ListEntryContent(mailbox, list, sender))}
	if d := Domain(sender); d != "" {
		keys = append(keys, model.KeyOf(model.Text, ListEntryContent(mailbox, list, d)))
	}
	return keys
}
