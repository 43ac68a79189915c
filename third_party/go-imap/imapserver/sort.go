package imapserver

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// twinmx patch: SORT (RFC 5256). Upstream beta.8 has the client side
// only.

// SortKey is a SORT key (RFC 5256 §3).
type SortKey string

// Sort keys.
const (
	SortKeyArrival SortKey = "ARRIVAL"
	SortKeyCc      SortKey = "CC"
	SortKeyDate    SortKey = "DATE"
	SortKeyFrom    SortKey = "FROM"
	SortKeySize    SortKey = "SIZE"
	SortKeySubject SortKey = "SUBJECT"
	SortKeyTo      SortKey = "TO"
	// RFC 5957 (SORT=DISPLAY): the display name of the first address,
	// else its address.
	SortKeyDisplayFrom SortKey = "DISPLAYFROM"
	SortKeyDisplayTo   SortKey = "DISPLAYTO"
)

// SortCriterion is one sort key, optionally reversed.
type SortCriterion struct {
	Key     SortKey
	Reverse bool
}

// SessionSort is an IMAP session which supports SORT. The server
// advertises the SORT capability for it.
type SessionSort interface {
	Session

	// Sort returns the message numbers (sequence numbers or UIDs, as kind
	// says) of the messages matching search, in the order of criteria,
	// ties in mailbox order.
	Sort(kind NumKind, criteria []SortCriterion, search *imap.SearchCriteria) ([]uint32, error)
}

// handleSort reads `SORT [RETURN (options)] (criteria) charset
// search-key...`; with RETURN (ESORT, RFC 5267) it answers ESEARCH.
func (c *Conn) handleSort(tag string, dec *imapwire.Decoder, numKind NumKind) error {
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var ret *imap.SearchOptions
	var atom string
	if maybeReadSearchKeyAtom(dec, &atom) {
		if !strings.EqualFold(atom, "RETURN") {
			return newClientBugError("want RETURN or a sort criteria list")
		}
		ret = &imap.SearchOptions{}
		if err := readSearchReturnOpts(dec, ret); err != nil {
			return fmt.Errorf("in sort-return-opts: %w", err)
		}
		if ret.ReturnSave {
			return newClientBugError("SORT RETURN (SAVE) is not supported")
		}
		if !ret.ReturnMin && !ret.ReturnMax && !ret.ReturnAll && !ret.ReturnCount {
			ret.ReturnAll = true // RFC 4731 §3.1: "()" means ALL
		}
		if !dec.ExpectSP() {
			return dec.Err()
		}
	}
	var criteria []SortCriterion
	err := dec.ExpectList(func() error {
		var atom string
		if !dec.ExpectAtom(&atom) {
			return dec.Err()
		}
		var sc SortCriterion
		if strings.EqualFold(atom, "REVERSE") {
			sc.Reverse = true
			if !dec.ExpectSP() || !dec.ExpectAtom(&atom) {
				return dec.Err()
			}
		}
		sc.Key = SortKey(strings.ToUpper(atom))
		switch sc.Key {
		case SortKeyArrival, SortKeyCc, SortKeyDate, SortKeyFrom, SortKeySize, SortKeySubject, SortKeyTo,
			SortKeyDisplayFrom, SortKeyDisplayTo:
		default:
			return newClientBugError(fmt.Sprintf("unknown sort key %q", atom))
		}
		criteria = append(criteria, sc)
		return nil
	})
	if err != nil {
		return fmt.Errorf("in sort-criteria: %w", err)
	}
	if len(criteria) == 0 {
		return newClientBugError("SORT needs at least one sort key")
	}
	var charset string
	if !dec.ExpectSP() || !dec.ExpectAString(&charset) || !dec.ExpectSP() {
		return dec.Err()
	}
	toUTF8, badCharset := c.searchCharset(charset)
	var search imap.SearchCriteria
	for {
		if err := readSearchKey(&search, dec); err != nil {
			return fmt.Errorf("in search-key: %w", err)
		}
		if !dec.SP() {
			break
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := convertCriteria(&search, toUTF8, badCharset); err != nil {
		return err
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	session, ok := c.session.(SessionSort)
	if !ok {
		return newClientBugError("SORT is not supported")
	}
	nums, err := session.Sort(numKind, criteria, &search)
	if err != nil {
		return err
	}
	if ret != nil {
		return c.writeESort(tag, nums, ret, numKind)
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("SORT")
	for _, n := range nums {
		enc.SP().Number(n)
	}
	return enc.CRLF()
}

// writeESort answers a SORT RETURN (RFC 5267 §3.2): MIN and MAX are the
// first and the last message in sort order, ALL the numbers in sort
// order, with ranges only for runs that ascend by one.
func (c *Conn) writeESort(tag string, nums []uint32, ret *imap.SearchOptions, numKind NumKind) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("ESEARCH").SP().Special('(').Atom("TAG").SP().String(tag).Special(')')
	if numKind == NumKindUID {
		enc.SP().Atom("UID")
	}
	if len(nums) > 0 {
		if ret.ReturnMin {
			enc.SP().Atom("MIN").SP().Number(nums[0])
		}
		if ret.ReturnMax {
			enc.SP().Atom("MAX").SP().Number(nums[len(nums)-1])
		}
	}
	if ret.ReturnCount {
		enc.SP().Atom("COUNT").SP().Number(uint32(len(nums)))
	}
	if ret.ReturnAll && len(nums) > 0 {
		var b strings.Builder
		for i := 0; i < len(nums); {
			j := i
			for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
				j++
			}
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			if j > i {
				fmt.Fprintf(&b, "%d:%d", nums[i], nums[j])
			} else {
				fmt.Fprintf(&b, "%d", nums[i])
			}
			i = j + 1
		}
		enc.SP().Atom("ALL").SP().Atom(b.String())
	}
	return enc.CRLF()
}
