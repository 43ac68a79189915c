package model

import (
	"bytes"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Status column names (SPEC §3). Each column is independent and obeys
// "higher dominates", so the codes below are chosen so that the maximum of
// two values is also the right business answer.
const (
	// ColVerdict holds the spam decision for a receive row, encoded by
	// EncodeVerdict.
	ColVerdict = "verdict"
	// ColAcknowledged is FlagSet once some smtpd has durably decided to
	// answer 250 for the receive row (SPEC §5): the mail is then in the
	// mailbox. It is never cleared.
	ColAcknowledged = "ack"
	// ColBackedUp is FlagSet once backupd has seen the row durable on both
	// sites (SPEC §6).
	ColBackedUp = "backedup"
	// ColDeleted is FlagSet once a user deleted the receive row (POP3 DELE,
	// IMAP expunge). Deleted outranks present, so a deletion on one site is
	// never undone by replication from the other.
	ColDeleted = "deleted"
)

// FlagSet is the value of a set flag column (ack, backedup, deleted). An
// unset flag is 0 (absent); no other value is valid.
const FlagSet uint64 = 1

// Verdict is the decision about a mail. Its numeric value is the order
// between two verdicts of the same source and epoch, and is part of the
// stored column value: never renumber.
type Verdict uint8

// Verdicts, weakest first. At equal source and epoch the larger one wins:
//
//   - Retry is the weakest: it is a temporary answer ("ask again later",
//     greylisting or an undecided check), and any definite verdict replaces it.
//   - Reject outranks Retry.
//   - Accept outranks Reject: two deciders of equal standing that disagree at
//     the same epoch mean the mail is not surely spam, and SPEC §7 says never
//     reject a wanted mail; when unsure, accept.
const (
	Retry  Verdict = 1
	Reject Verdict = 2
	Accept Verdict = 3
)

var verdictNames = [...]string{Retry: "retry", Reject: "reject", Accept: "accept"}

// Valid reports whether v is one of Retry, Reject, Accept.
func (v Verdict) Valid() bool { return v >= Retry && v <= Accept }

// String returns "retry", "reject" or "accept".
func (v Verdict) String() string {
	if !v.Valid() {
		return fmt.Sprintf("verdict(%d)", uint8(v))
	}
	return verdictNames[v]
}

// ErrBadVerdict is returned by ParseVerdict and ParseSource for an unknown
// name.
var ErrBadVerdict = errors.New("model: unknown verdict")

// ParseVerdict returns the verdict named "accept", "reject" or "retry".
func ParseVerdict(s string) (Verdict, error) {
	for v := Retry; v <= Accept; v++ {
		if verdictNames[v] == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w %q (want accept, reject or retry)", ErrBadVerdict, s)
}

// Source says who decided a verdict. It sits above the epoch in the encoded
// value, so a higher source outranks a lower one whatever their epochs. The
// values leave gaps so that a source of intermediate standing (for example a
// mailbox owner's "allow this sender" from the rejection digest) can be added
// later without renumbering stored values.
type Source uint8

// Sources, lowest standing first.
const (
	SourceFilter   Source = 0x10 // spamd's automatic decision
	SourceOperator Source = 0x40 // a person with dbctl or spamd's command line
)

// Valid reports whether s is a known source.
func (s Source) Valid() bool { return s == SourceFilter || s == SourceOperator }

// String returns "filter" or "operator".
func (s Source) String() string {
	switch s {
	case SourceFilter:
		return "filter"
	case SourceOperator:
		return "operator"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// ParseSource returns the source named "filter" or "operator".
func ParseSource(name string) (Source, error) {
	switch name {
	case "filter":
		return SourceFilter, nil
	case "operator":
		return SourceOperator, nil
	}
	return 0, fmt.Errorf("%w source %q (want filter or operator)", ErrBadVerdict, name)
}

// Layout of an encoded verdict, most significant first:
//
//	bits 63..48  zero (reserved)
//	bits 47..40  source
//	bits 39..8   epoch
//	bits  7..0   verdict
//
// Comparing two values as uint64 therefore compares source, then epoch, then
// verdict: exactly the order "higher dominates" needs. 0 means "no verdict".
const (
	verdictShift = 0
	epochShift   = 8
	sourceShift  = 40
	reservedMask = uint64(0xffff) << 48
)

// EncodeVerdict returns the ColVerdict value for verdict v decided by src at
// epoch. The epoch orders verdicts of one source: a later decision must use a
// larger epoch to replace an earlier one (Epoch gives one from a clock).
// Invalid arguments still encode (the fields are masked to their widths), but
// DecodeVerdict reports them as not ok; validate with Source.Valid and
// Verdict.Valid first.
func EncodeVerdict(src Source, epoch uint32, v Verdict) uint64 {
	return uint64(src)<<sourceShift | uint64(epoch)<<epochShift | uint64(v)<<verdictShift
}

// DecodeVerdict splits a ColVerdict value. ok is false for 0 (no verdict
// yet) and for any value EncodeVerdict does not make from a valid source and
// verdict.
func DecodeVerdict(x uint64) (src Source, epoch uint32, v Verdict, ok bool) {
	src = Source(x >> sourceShift)
	epoch = uint32(x >> epochShift)
	v = Verdict(x >> verdictShift)
	ok = x&reservedMask == 0 && src.Valid() && v.Valid()
	return src, epoch, v, ok
}

// Epoch returns a verdict epoch for time t: whole seconds since 1970,
// clamped to the uint32 range (which lasts until 2106). Deciders on two sites
// whose clocks differ by a few seconds can still disagree within that skew;
// the fixed order of Verdict settles equal epochs.
func Epoch(t time.Time) uint32 {
	s := t.Unix()
	switch {
	case s < 0:
		return 0
	case s > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(s)
}

// CheckColumn reports whether v is a valid value for the status column name:
// a decodable verdict for ColVerdict, 0 or FlagSet for a flag. Other columns
// accept any value. dbd calls it before a set so a bad value can never
// dominate a good one (a stray high value in a max-merged column is
// permanent).
func CheckColumn(name string, v uint64) error {
	switch name {
	case ColVerdict:
		if _, _, _, ok := DecodeVerdict(v); !ok && v != 0 {
			return fmt.Errorf("%w: %#x for column %s", ErrBadValue, v, name)
		}
	case ColAcknowledged, ColBackedUp, ColDeleted:
		if v > FlagSet {
			return fmt.Errorf("%w: %d for flag column %s (want 0 or 1)", ErrBadValue, v, name)
		}
	}
	return nil
}

// ErrBadValue is returned by CheckColumn for a value that a column may not
// hold.
var ErrBadValue = errors.New("model: bad column value")

// receivedColPrefix starts the name of a receive row's link to the received
// row of the delivery that was acknowledged. A row key is 256 bits and a
// column holds 64, so the link is the column's name, not its value: the
// prefix and the received row's key in lower-case base32 (52 characters, so
// the name stays within the 64 allowed). The value is the acknowledgement
// time in Unix milliseconds. Like every column it only rises and replicates;
// when two sites acknowledged the same mail (the sender retried after losing
// a 250), readers take the link with the smallest value.
const receivedColPrefix = "rcvd."

var keyBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ReceivedColumn returns the name of the column that links a receive row to
// the received row with key k.
func ReceivedColumn(k Key) string { return LinkColumn(receivedColPrefix, k) }

// ParseReceivedColumn returns the received row key named by a column made by
// ReceivedColumn; ok is false for any other column name.
func ParseReceivedColumn(name string) (k Key, ok bool) {
	return ParseLinkColumn(receivedColPrefix, name)
}

// POP3SizePrefix starts the receive row column that holds a mail's size
// as POP3 counts it (every line end CRLF, a final CRLF added; RFC 1939
// §5) when read with the received row k of its acknowledged delivery and
// no header filter: POP3SizeColumn(k). smtpd sets it when it acknowledges
// (its mail is CRLF-only and ends in CRLF, so the size is the stored
// length); pop3d measures and sets it for other mail. A size depends only
// on the column's name, so both sites agree and the max-merge keeps it.
const POP3SizePrefix = "pop3.size."

// POP3SizeColumn is the POP3 size column for received row k.
func POP3SizeColumn(k Key) string { return LinkColumn(POP3SizePrefix, k) }

// LinkColumn returns the name of a column that links a row to the row with
// key k: prefix, then k in lower-case base32 (52 characters). A column value
// holds 64 bits and a key 256, so a link is a column's name, not its value;
// prefix must be at most 12 bytes so the name stays within the 64 allowed.
func LinkColumn(prefix string, k Key) string { return prefix + keyBase32.EncodeToString(k[:]) }

// ParseLinkColumn returns the key named by a column made by
// LinkColumn(prefix, k); ok is false for any other column name.
func ParseLinkColumn(prefix, name string) (k Key, ok bool) {
	s, found := strings.CutPrefix(name, prefix)
	if !found || len(s) != linkLen {
		return k, false
	}
	var b [linkLen]byte // decoded without allocating
	copy(b[:], s)
	return decodeLink(b[:])
}

// linkLen is the length of a key in a link column's name:
// keyBase32.EncodedLen(KeySize), unpadded base32.
const linkLen = (KeySize*8 + 4) / 5

// parseLinkColumn is ParseLinkColumn of a name in bytes.
func parseLinkColumn(prefix string, name []byte) (k Key, ok bool) {
	s, found := bytes.CutPrefix(name, []byte(prefix))
	if !found || len(s) != linkLen {
		return k, false
	}
	return decodeLink(s)
}

// decodeLink decodes the key part of a link column's name (linkLen
// characters) as keyBase32 does, without its copy of the input: dbd reads
// a link for every mail it sends. keyBase32.Decode into k would not copy
// either, but still allocates once a call (TestMailReceivedEncodedNoAlloc
// fails with it). The last character's low 4 bits are not
// part of the key and, as keyBase32 has them, not checked.
func decodeLink(s []byte) (k Key, ok bool) {
	if len(s) != linkLen {
		return Key{}, false
	}
	var acc uint
	var bits, n int
	for _, c := range s {
		v := linkDigits[c]
		if v == 0xff {
			return Key{}, false
		}
		acc = acc<<5 | uint(v)
		if bits += 5; bits >= 8 {
			bits -= 8
			k[n] = byte(acc >> bits)
			n++
		}
	}
	return k, true
}

// linkDigits maps keyBase32's digits to their values, anything else to 0xff.
var linkDigits = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "abcdefghijklmnopqrstuvwxyz234567" {
		t[c] = byte(i)
	}
	return t
}()

// AcknowledgedReceived returns the key of the received row that the receive
// row with state st links to: the one acknowledged first (smallest value,
// then smallest name). ok is false when the row has no link.
func AcknowledgedReceived(st State) (k Key, ok bool) {
	var best uint64
	var bestName string
	for name, v := range st.Cols {
		rk, isLink := ParseReceivedColumn(name)
		if !isLink {
			continue
		}
		if !ok || v < best || (v == best && name < bestName) {
			k, ok, best, bestName = rk, true, v, name
		}
	}
	return k, ok
}
