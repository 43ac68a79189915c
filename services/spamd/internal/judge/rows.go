package judge

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/config"
	"github.com/twinmx/twinmx/services/spamd/internal/sender"
)

// Network returns the client's network for greylisting: the /24 of an IPv4
// address, the /64 of an IPv6 one (senders retry from another address of
// the same pool), or the address as given if it does not parse.
func Network(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	bits := 64
	if a.Is4() || a.Is4In6() {
		a, bits = a.Unmap(), 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ip
	}
	return p.String()
}

// senderKeys returns the forms of the envelope sender that greylisting
// and known-correspondent rows are read under: the normalised sender
// (package sender), which they are written under, then, when it differs,
// the lower-cased raw sender that versions before 2026-12-03 wrote. The
// second read keeps a triplet passed and a correspondent known across the
// upgrade: a known hit accepts the mail, which writes the normalised row;
// a passed hit is copied with the verdict (judgeRecipient). The null
// sender has one form, "".
func senderKeys(from string) []string {
	n := sender.Normalize(from)
	if raw := strings.ToLower(from); raw != n {
		return []string{n, raw}
	}
	return []string{n}
}

// listCandidates returns the list entries that can match the sender, in
// the order judge.list weighs them: the envelope address; then its
// normalised form (a BATV tag removed, the original sender of an SRS
// address), the address's @domain and the normalised form's @domain, each
// once. The null sender matches nothing.
func listCandidates(from string) []string {
	if from == "" {
		return nil
	}
	raw := strings.ToLower(from)
	cands := []string{raw}
	add := func(c string) {
		if c != "" && !slices.Contains(cands, c) {
			cands = append(cands, c)
		}
	}
	n := sender.Normalize(from)
	add(n)
	for _, a := range []string{raw, n} {
		if at := strings.LastIndexByte(a, '@'); at >= 0 {
			add(a[at:])
		}
	}
	return cands
}

// Row contents judge reads and writes. Addresses are lower-cased: list and
// correspondent matching is not case-sensitive.
func greyContent(network, from, rcpt string) []byte {
	return fmt.Appendf(nil, "twinmx-grey/1\nnet: %s\nfrom: %s\nrcpt: %s", network, strings.ToLower(from), strings.ToLower(rcpt))
}

func knownContent(mailbox, sender string) []byte {
	return fmt.Appendf(nil, "twinmx-known/1\nmailbox: %s\nsender: %s", strings.ToLower(mailbox), strings.ToLower(sender))
}

// ListContent is the content of the text row of one list entry: mailbox,
// then a sender address or "@domain". The format is package config's
// (pkg/wire/config), which configuration by e-mail and dbctl write with.
func ListContent(mailbox, sender string) []byte { return config.SpamListContent(mailbox, sender) }

// Column names and values.
const (
	colList   = config.ColSpamList
	colKnown  = "known"
	colPassed = "passed"
	// colFirstInv is MaxUint32 minus the first contact's Unix second.
	colFirstInv = "first.inv"
	// colFirstAsked is MaxUint32 minus the Unix second of the first
	// attempt of a receive row asked to retry (its mail's first contact).
	// dbd lets spamd write only "spam." columns of a receive row.
	colFirstAsked = "spam.grey.first.inv"
	colScore      = "spam.score"
)

// List entry kinds, in the low two bits of the `list` column; the high
// bits are the change time in Unix ms, so a later change wins on every
// site.
const (
	ListRemoved = config.ListRemoved
	ListAllow   = config.ListAllow
	ListBlock   = config.ListBlock
)

// ListValue is the `list` column value for kind set at t.
func ListValue(t time.Time, kind uint64) uint64 { return config.SpamListValue(t, kind) }
