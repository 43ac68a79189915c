package mailcache

import "github.com/emersion/go-imap/v2"

// Estimated heap charges (64-bit): a string or slice header, a struct
// allocation's header and rounding, a map with its buckets.
const (
	strHdr    = 16
	sliceHdr  = 24
	allocCost = 16
	mapCost   = 48 + 8*strHdr // hmap plus one bucket's string slots
)

// ParsedSize estimates the heap p holds: its header bytes, the strings,
// slices, maps and structs of its envelope and body structure.
func ParsedSize(p *Parsed) int64 {
	n := int64(entryOverhead) + allocCost + 8 + sliceHdr + int64(cap(p.Header)) + 16
	n += envelopeSize(p.Envelope)
	n += structureSize(p.Structure)
	return n
}

func envelopeSize(e *imap.Envelope) int64 {
	if e == nil {
		return 0
	}
	n := int64(allocCost+24+strHdr*2+sliceHdr*7+8) + int64(len(e.Subject)+len(e.MessageID))
	for _, l := range [][]imap.Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		n += int64(cap(l)) * 3 * strHdr
		for _, a := range l {
			n += int64(len(a.Name) + len(a.Mailbox) + len(a.Host))
		}
	}
	for _, s := range e.InReplyTo {
		n += strHdr + int64(len(s))
	}
	if t := e.Text; t != nil {
		n += allocCost + 4*8
		for _, s := range []*string{t.Date, t.Subject, t.InReplyTo, t.MessageID} {
			if s != nil {
				n += allocCost + strHdr + int64(len(*s))
			}
		}
	}
	return n
}

func structureSize(bs imap.BodyStructure) int64 {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		n := int64(allocCost+5*strHdr+8+4+3*8) + int64(len(bs.Type)+len(bs.Subtype)+len(bs.ID)+len(bs.Description)+len(bs.Encoding))
		n += paramsSize(bs.Params)
		if m := bs.MessageRFC822; m != nil {
			n += allocCost + 8 + 16 + 8 + envelopeSize(m.Envelope) + structureSize(m.BodyStructure)
		}
		if bs.Text != nil {
			n += allocCost + 8
		}
		if x := bs.Extended; x != nil {
			n += allocCost + 8 + sliceHdr + strHdr + int64(len(x.Location)) + dispositionSize(x.Disposition) + stringsSize(x.Language)
		}
		return n
	case *imap.BodyStructureMultiPart:
		n := int64(allocCost+sliceHdr+strHdr+8) + int64(len(bs.Subtype)) + int64(cap(bs.Children))*16
		for _, c := range bs.Children {
			n += structureSize(c)
		}
		if x := bs.Extended; x != nil {
			n += allocCost + 8 + 8 + sliceHdr + strHdr + int64(len(x.Location)) + paramsSize(x.Params) +
				dispositionSize(x.Disposition) + stringsSize(x.Language)
		}
		return n
	}
	return 0
}

func paramsSize(m map[string]string) int64 {
	if m == nil {
		return 0
	}
	n := int64(mapCost)
	for k, v := range m {
		n += 2*strHdr + int64(len(k)+len(v))
	}
	return n
}

func dispositionSize(d *imap.BodyStructureDisposition) int64 {
	if d == nil {
		return 0
	}
	return allocCost + strHdr + 8 + int64(len(d.Value)) + paramsSize(d.Params)
}

func stringsSize(ss []string) int64 {
	n := int64(cap(ss)) * strHdr
	for _, s := range ss {
		n += int64(len(s))
	}
	return n
}
