package session

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
	"github.com/twinmx/twinmx/services/imapd/internal/mailcache"
	"github.com/twinmx/twinmx/services/imapd/internal/mimetree"
)

// candidate is one message under SEARCH, with its content read lazily.
type candidate struct {
	s    *Session
	ctx  context.Context
	seq  uint32
	n    uint32 // messages in the view ("*" as a sequence number)
	last imap.UID
	msg  *message
	raw  []byte
	p    *mailcache.Parsed // the cache's entry: header and size without raw
	env  *imap.Envelope    // the header's envelope, once a SORT key needs it
	// searchText of raw, once a BODY or TEXT key needs it
	headers, body []byte
	decoded       bool
	err           error
}

// text returns the mail as SEARCH's BODY and TEXT read it (searchText).
func (c *candidate) text() (headers, body []byte) {
	if !c.decoded {
		c.headers, c.body = searchText(mimetree.Parse(c.content(), mimetree.Limits{}))
		c.decoded = true
	}
	return c.headers, c.body
}

// headerHas reports whether the mail's header has a field named key whose
// decoded value contains value (any value for "").
func (c *candidate) headerHas(key, value string) bool {
	for _, v := range searchHeader(c.header(), key) {
		if value == "" || containsFold(v, value) {
			return true
		}
	}
	return false
}

// header returns the mail's header section, from the cache's entry if
// the candidate has one.
func (c *candidate) header() []byte {
	if c.p != nil {
		return c.p.Header
	}
	raw := c.content()
	return raw[:headerEnd(raw)]
}

// size returns the mail's RFC822.SIZE.
func (c *candidate) size() int64 {
	if c.p != nil {
		return c.p.Size
	}
	return int64(len(c.content()))
}

func (c *candidate) content() []byte {
	if c.raw == nil && c.err == nil {
		c.raw, c.err = c.s.b.cfg.Store.Fetch(c.ctx, c.msg.m, c.s.drop(c.msg.m))
	}
	return c.raw
}

// maxSearchKeys bounds the search keys of one SEARCH (see searchKeys).
// Matching costs keys × mails, and go-imap's 50 KiB command line holds
// 12,000 nested NOTs: over 10,000 mails that took 9-10 s of CPU, 4,500
// ORs 15 s (TEST-CATALOG 46, TestHostileSearchBigMailbox). Mail clients
// send a few dozen keys.
const maxSearchKeys = 1000

// errSearchTooBig answers a SEARCH over maxSearchKeys (RFC 5530 LIMIT).
var errSearchTooBig = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
	Text: "Too many search keys"}

// contentKeyWeight is what a key on the mail's bytes (HEADER, BODY,
// TEXT and their short forms) counts towards maxSearchKeys: each scans
// the mail again (300 SUBJECT keys over 10,000 mails took 7 s), so at
// most 100 of them.
const contentKeyWeight = 10

// searchKeys counts the keys of cr (each criteria node and each term in
// it, content keys contentKeyWeight times), stopping once the count
// passes limit.
func searchKeys(cr *imap.SearchCriteria, limit int) int {
	n := 1 + len(cr.SeqNum) + len(cr.UID) + len(cr.Flag) + len(cr.NotFlag) +
		contentKeyWeight*(len(cr.Header)+len(cr.Body)+len(cr.Text))
	for i := 0; i < len(cr.Not) && n <= limit; i++ {
		n += searchKeys(&cr.Not[i], limit-n)
	}
	for i := 0; i < len(cr.Or) && n <= limit; i++ {
		n += searchKeys(&cr.Or[i][0], limit-n)
		n += searchKeys(&cr.Or[i][1], limit-n)
	}
	return n
}

// Search is SEARCH and UID SEARCH.
func (s *Session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (data *imap.SearchData, err error) {
	defer s.track("search", &err)()
	if searchKeys(criteria, maxSearchKeys) > maxSearchKeys {
		return nil, errSearchTooBig
	}
	data = &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	err = s.scan(criteria, false, func(c *candidate) {
		num := c.seq
		if kind == imapserver.NumKindUID {
			num = uint32(c.msg.uid)
			uids.AddNum(c.msg.uid)
		} else {
			seqs.AddNum(c.seq)
		}
		if data.Count == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	})
	if err != nil {
		return nil, err
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return data, nil
}

// scan calls match for each message of the selected folder that meets
// criteria, in mailbox order, while its candidate may still read the
// mail. With header, the mails' headers and sizes are read ahead (or
// taken from the cache) even where the criteria do not need them.
func (s *Session) scan(criteria *imap.SearchCriteria, header bool, match func(c *candidate)) error {
	sel := s.sel
	var last imap.UID
	if len(sel.msgs) > 0 {
		last = sel.msgs[len(sel.msgs)-1].uid
	}
	// Criteria on the bytes read every mail: read them ahead, several a
	// dbd request, instead of one round trip per candidate. Criteria on
	// the header and size alone take them from the cache where it has
	// them (and fill it with the mails read).
	// Criteria on the header and size alone read the mails' heads only,
	// without their bodies.
	// Criteria on the body (BODY, TEXT) take the whole mails the body
	// cache has, copied out one at a time; a SEARCH does not fill it
	// (one over a large folder would drop what FETCHes kept).
	cache := s.b.cfg.Cache
	var parsed []*mailcache.Parsed
	var cachedBody []bool
	var read []int
	heads := !needsBody(criteria)
	if header || needsBytes(criteria) {
		if heads && cache.WantsParsed() {
			parsed = make([]*mailcache.Parsed, len(sel.msgs))
		}
		if !heads && cache.WantsBody() {
			cachedBody = make([]bool, len(sel.msgs))
		}
		for i, msg := range sel.msgs {
			switch {
			case parsed != nil:
				parsed[i] = cache.Parsed(s.viewKey(msg.m))
			case cachedBody != nil:
				cachedBody[i] = cache.HasBody(s.viewKey(msg.m))
			}
			if (parsed == nil || parsed[i] == nil) && (cachedBody == nil || !cachedBody[i]) {
				read = append(read, i)
			}
		}
	}
	var ra *mailbox.Ahead
	if len(read) > 1 {
		ra = s.readAhead(read, heads)
		defer ra.Stop()
	}
	var bodyBuf []byte // the mails copied out of the body cache, one at a time
	// Once for the command, not for each mail (numset.go).
	sets := newCritSets(criteria, uint32(len(sel.msgs)), last)
	for i, msg := range sel.msgs {
		ctx, cancel := s.dbctx()
		c := &candidate{s: s, ctx: ctx, seq: uint32(i + 1), n: uint32(len(sel.msgs)), last: last, msg: msg}
		fromCache := false
		switch {
		case parsed != nil && parsed[i] != nil:
			c.p = parsed[i]
		case cachedBody != nil && cachedBody[i]:
			// Dropped since the lookup: c.bytes reads it from dbd.
			if raw, ok := cache.AppendBody(bodyBuf[:0], s.viewKey(msg.m)); ok {
				c.raw, fromCache = raw, true
			}
		case ra != nil && heads:
			var h mailbox.Head
			var from mailbox.Origin
			if h, from, c.err = ra.NextHead(); c.err == nil {
				c.p = cache.AddParsed(mailcache.KeyOf(from, s.drop(msg.m)), parseHead(h, derive{}))
				ra.Recycle(h.Header) // the entry has a copy
			}
		case ra != nil:
			c.raw, c.err = ra.Next()
		}
		if c.match(criteria, &sets) {
			match(c)
		}
		if fromCache {
			// Neither match nor the callers keep c.raw: what they keep
			// of a mail they convert to strings.
			bodyBuf = c.raw[:0]
		}
		cancel()
		if c.err != nil {
			return c.err
		}
	}
	return nil
}

// needsBytes reports whether matching cr reads the mails' bytes (not
// counting the internal date: the bytes' Date field serves only for mails
// without an acknowledgement or APPEND time).
func needsBytes(cr *imap.SearchCriteria) bool {
	if len(cr.Header) > 0 || len(cr.Body) > 0 || len(cr.Text) > 0 || cr.Larger > 0 || cr.Smaller > 0 ||
		!cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		return true
	}
	for i := range cr.Not {
		if needsBytes(&cr.Not[i]) {
			return true
		}
	}
	for i := range cr.Or {
		if needsBytes(&cr.Or[i][0]) || needsBytes(&cr.Or[i][1]) {
			return true
		}
	}
	return false
}

// needsBody reports whether matching cr reads the mails' bodies (BODY,
// TEXT), not only their headers and sizes.
func needsBody(cr *imap.SearchCriteria) bool {
	if len(cr.Body) > 0 || len(cr.Text) > 0 {
		return true
	}
	for i := range cr.Not {
		if needsBody(&cr.Not[i]) {
			return true
		}
	}
	for i := range cr.Or {
		if needsBody(&cr.Or[i][0]) || needsBody(&cr.Or[i][1]) {
			return true
		}
	}
	return false
}

// match reports whether the candidate meets every criterion (RFC 9051
// §6.4.4). Date criteria compare dates only, in UTC. sets are cr's
// sequence and UID sets, normalised (newCritSets).
func (c *candidate) match(cr *imap.SearchCriteria, sets *critSets) bool {
	for _, set := range sets.seq {
		if !set.contains(c.seq) {
			return false
		}
	}
	for _, set := range sets.uid {
		if !set.contains(uint32(c.msg.uid)) {
			return false
		}
	}
	for _, f := range cr.Flag {
		if !hasFlag(c.msg, f) {
			return false
		}
	}
	for _, f := range cr.NotFlag {
		if hasFlag(c.msg, f) {
			return false
		}
	}
	if !cr.Since.IsZero() || !cr.Before.IsZero() {
		d := day(internalDate(c.msg.m.State, c.header))
		if !cr.Since.IsZero() && d.Before(day(cr.Since)) {
			return false
		}
		if !cr.Before.IsZero() && !d.Before(day(cr.Before)) {
			return false
		}
	}
	if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		d := sentDay(c.header())
		if !cr.SentSince.IsZero() && d.Before(day(cr.SentSince)) {
			return false
		}
		if !cr.SentBefore.IsZero() && !d.Before(day(cr.SentBefore)) {
			return false
		}
	}
	if cr.Larger > 0 || cr.Smaller > 0 {
		size := c.size()
		if cr.Larger > 0 && size <= cr.Larger {
			return false
		}
		if cr.Smaller > 0 && size >= cr.Smaller {
			return false
		}
	}
	for _, h := range cr.Header {
		if !c.headerHas(h.Key, h.Value) {
			return false
		}
	}
	for _, b := range cr.Body {
		if _, body := c.text(); !containsFold(body, b) {
			return false
		}
	}
	for _, t := range cr.Text {
		if headers, body := c.text(); !containsFold(headers, t) && !containsFold(body, t) {
			return false
		}
	}
	for i := range cr.Not {
		if c.match(&cr.Not[i], &sets.not[i]) {
			return false
		}
	}
	for i := range cr.Or {
		if !c.match(&cr.Or[i][0], &sets.or[i][0]) && !c.match(&cr.Or[i][1], &sets.or[i][1]) {
			return false
		}
	}
	return c.err == nil
}

func hasFlag(m *message, f imap.Flag) bool {
	for _, g := range m.flags {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	// m.flags holds every system flag of the mail as shown in its folder
	// (\Deleted is per folder); a keyword may be spelt otherwise there.
	if strings.HasPrefix(string(f), `\`) {
		return false
	}
	return flags.Has(m.m.State.Cols, f, 0)
}

func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// containsFold reports whether s contains sub, ignoring ASCII case.
func containsFold(s []byte, sub string) bool {
	return bytes.Contains(bytes.ToLower(s), bytes.ToLower([]byte(sub)))
}
