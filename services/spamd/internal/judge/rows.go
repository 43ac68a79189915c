package judge

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/config"
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
	colScore    = "spam.score"
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
