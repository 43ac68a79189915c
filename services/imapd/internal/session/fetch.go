package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
	"github.com/twinmx/twinmx/services/imapd/internal/mailcache"
	"github.com/twinmx/twinmx/services/imapd/internal/mimetree"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// needsContent reports whether a FETCH needs the mail's bytes.
func needsContent(o *imap.FetchOptions) bool {
	return len(o.BodySection) > 0 || o.Envelope || o.BodyStructure != nil ||
		len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// setsSeen reports whether a FETCH implicitly sets \Seen (RFC 9051 §6.4.5:
// BODY[...] without .PEEK, BINARY[...] without .PEEK).
func setsSeen(o *imap.FetchOptions) bool {
	for _, b := range o.BodySection {
		if !b.Peek {
			return true
		}
	}
	for _, b := range o.BinarySection {
		if !b.Peek {
			return true
		}
	}
	return false
}

// Fetch is FETCH and UID FETCH. Whole-mail sections (BODY[], BODY[HEADER],
// BODY[TEXT] and their partials) are cut from the stored bytes, so they
// are byte-exact; MIME part sections use go-imap's extractor. A mail whose
// answer the cache holds (mailcache: a folder listing's ENVELOPE,
// BODYSTRUCTURE, RFC822.SIZE and header fields) is not read; the bytes of
// the others are read from dbd while the current one is written (see
// readAhead). A FETCH that a header and a size answer (a listing: no
// BODYSTRUCTURE, no section but header ones) reads the mails' heads
// only, without their bodies, and answers from them as from the cache.
func (s *Session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	defer s.track("fetch", &err)()
	sel := s.sel
	idx, err := indices(numSet, sel.msgs)
	if err != nil {
		return err
	}
	seen := map[int]bool{}
	if !sel.readOnly && setsSeen(options) {
		ctx, cancel := s.dbctx()
		err := s.setFlags(ctx, idx, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}, seen)
		cancel()
		if err != nil {
			return err
		}
	}
	// What the cache has, looked up before the read-ahead starts so that
	// it reads only the mails missing.
	srcs := make([]source, len(idx))
	var read []int
	for k, i := range idx {
		srcs[k] = s.cached(sel.msgs[i].m, options)
		if !srcs[k].complete(options) && !srcs[k].cachedBody {
			read = append(read, i)
		}
	}
	var ra *mailbox.Ahead
	heads := answers(&mailcache.Parsed{}, options)
	if len(read) > 1 {
		ra = s.readAhead(read, heads)
		defer ra.Stop()
	}
	if len(idx) > 1 {
		// The responses go out in large writes, not one per mail; the
		// tagged reply after this returns flushes the rest.
		release := s.holdWrites()
		defer func() {
			if rerr := release(); err == nil && rerr != nil {
				err = fmt.Errorf("write to client: %w", rerr)
			}
		}()
	}
	// The mails copied out of the body cache share one buffer, for this
	// FETCH only: an idle session holds none.
	var bodyBuf []byte
	for k, i := range idx {
		src := srcs[k]
		srcs[k] = source{}
		switch {
		case src.cachedBody:
			// Copied out now, one mail at a time, into bodyBuf. One
			// dropped since the lookup (another session filled the
			// cache) is read from dbd by fetchOne.
			if raw, ok := s.b.cfg.Cache.AppendBody(bodyBuf[:0], src.bodyKey); ok {
				src.raw, src.fromCache = raw, true
			}
		case ra == nil || src.complete(options):
		case heads:
			h, from, err := ra.NextHead()
			if err != nil {
				return err
			}
			src = s.tookHead(sel.msgs[i].m, options, src, h, from)
			ra.Recycle(h.Header) // the entry has a copy
		default:
			raw, from, err := ra.NextOrigin()
			if err != nil {
				return err
			}
			src = s.took(sel.msgs[i].m, options, src, raw, from, true)
		}
		if err := s.fetchOne(w, i, options, seen[i], src); err != nil {
			return err
		}
		// fetchOne wrote what it took from raw to the client's buffer
		// and kept nothing of it (the cache keeps copies).
		switch {
		case src.recycle:
			ra.Recycle(src.raw)
		case src.fromCache:
			bodyBuf = src.raw[:0]
		}
	}
	return nil
}

// source is what a FETCH has of one mail: its bytes, its cache entry, or
// both.
type source struct {
	raw        []byte            // nil: not read (nor cached)
	p          *mailcache.Parsed // nil: not cached
	recycle    bool              // raw is the read-ahead's, to give back
	cachedBody bool              // the cache has the bytes under bodyKey: copy them out, do not read ahead
	bodyKey    mailcache.Key     // the view's key, looked up once
	fromCache  bool              // raw was copied from the cache
}

// complete reports whether src answers a FETCH of o without reading the
// mail.
func (src source) complete(o *imap.FetchOptions) bool {
	return !needsContent(o) || src.raw != nil || answers(src.p, o)
}

// cached returns what the cache holds of m for a FETCH of o.
func (s *Session) cached(m mailbox.Message, o *imap.FetchOptions) source {
	c := s.b.cfg.Cache
	var src source
	if c == nil || (!needsContent(o) && !o.RFC822Size) {
		return src
	}
	k := s.viewKey(m)
	if c.WantsParsed() && (usesParsed(o) || o.RFC822Size) {
		src.p = c.Parsed(k)
	}
	if !src.complete(o) && c.WantsBody() {
		src.cachedBody, src.bodyKey = c.HasBody(k), k
	}
	return src
}

// parseCached gives src, whose bytes came from the cache, the entry
// this FETCH uses, made and cached now if missing or lacking: a listing
// after a FETCH of whole mails would otherwise parse the cached bytes
// each time.
func (s *Session) parseCached(m mailbox.Message, o *imap.FetchOptions, src source) source {
	c := s.b.cfg.Cache
	if !src.fromCache || !c.WantsParsed() || !usesParsed(o) || !derives(o).lacks(src.p) {
		return src
	}
	// The key the bytes were cached under.
	src.p = c.AddParsed(s.viewKey(m), parse(src.raw, derives(o)))
	return src
}

// took adds to src m's bytes, read from dbd and joined from the rows
// from names, and caches what the cache keeps of them. ahead says raw is
// the read-ahead's, to give back after use.
func (s *Session) took(m mailbox.Message, o *imap.FetchOptions, src source, raw []byte, from mailbox.Origin, ahead bool) source {
	src.raw, src.recycle = raw, ahead
	c := s.b.cfg.Cache
	if c == nil || raw == nil {
		return src
	}
	k := mailcache.KeyOf(from, s.drop(m))
	if src.p != nil && k != s.viewKey(m) {
		src.p = nil // the entry is of other Received fields than raw
	}
	if c.WantsParsed() && usesParsed(o) && derives(o).lacks(src.p) {
		src.p = c.AddParsed(k, parse(raw, derives(o)))
	}
	c.KeepBody(k, raw)
	return src
}

// tookHead is took for m's head (header and size), read without the
// body for a FETCH of o that it answers: src had no entry (it would have
// answered), and gets one made now and cached under the key of the rows
// read.
func (s *Session) tookHead(m mailbox.Message, o *imap.FetchOptions, src source, h mailbox.Head, from mailbox.Origin) source {
	src.p = s.b.cfg.Cache.AddParsed(mailcache.KeyOf(from, s.drop(m)), parseHead(h, derives(o)))
	return src
}

// withEnvelope gives src's entry, found in the cache without the
// envelope a FETCH asks for, one derived from its header, and caches it.
func (s *Session) withEnvelope(m mailbox.Message, o *imap.FetchOptions, src source) source {
	if !o.Envelope || src.p == nil || src.p.Envelope != nil {
		return src
	}
	p := *src.p
	p.Envelope = mimetree.Envelope(mimetree.ParseHeader(p.Header))
	src.p = s.b.cfg.Cache.AddParsed(s.viewKey(m), &p)
	return src
}

// readAhead starts reading the bytes of the selected folder's mails at
// idx, in order (see mailbox.Ahead), or with heads only their heads
// (NextHead). The caller must Stop it.
func (s *Session) readAhead(idx []int, heads bool) *mailbox.Ahead {
	msgs := make([]mailbox.Message, len(idx))
	drops := make([][]string, len(idx))
	for k, i := range idx {
		msgs[k] = s.sel.msgs[i].m
		drops[k] = s.drop(msgs[k])
	}
	if heads {
		return s.b.cfg.Store.ReadAheadHeads(s.ctx, msgs, drops, fetchAheadBytes, s.b.cfg.DBTimeout)
	}
	return s.b.cfg.Store.ReadAhead(s.ctx, msgs, drops, fetchAheadBytes, s.b.cfg.DBTimeout)
}

// fetchAheadBytes bounds the mail bytes a FETCH or SEARCH reads from dbd
// ahead of the one it is on (plus one mail, however large): small mails
// come many to a dbd request, and 1,000 sessions reading at once hold a
// bounded 1 GiB, not eight mails of up to 64 MiB each.
const fetchAheadBytes = 1 << 20

func (s *Session) fetchOne(w *imapserver.FetchWriter, i int, o *imap.FetchOptions, flagsChanged bool, src source) error {
	// Each mail that needs dbd gets the whole timeout (a big FETCH is
	// not one call), in a context made only then: one a mail was a
	// timer made and stopped for every mail the read-ahead had read.
	var ctx context.Context
	cancel := func() {}
	defer func() { cancel() }()
	dbctx := func() context.Context {
		if ctx == nil {
			ctx, cancel = s.dbctx()
		}
		return ctx
	}
	msg := s.sel.msgs[i]
	if !src.complete(o) {
		raw, from, err := s.b.cfg.Store.FetchOrigin(dbctx(), msg.m, s.drop(msg.m))
		if err != nil {
			return err
		}
		src = s.took(msg.m, o, src, raw, from, false)
	}
	src = s.parseCached(msg.m, o, src)
	src = s.withEnvelope(msg.m, o, src)
	raw, p := src.raw, src.p
	var size int64 = -1
	if o.RFC822Size {
		switch {
		case p != nil:
			size = p.Size
		case raw != nil:
			size = int64(len(raw))
		default:
			var err error
			if size, err = s.b.cfg.Store.Size(dbctx(), msg.m, s.drop(msg.m)); err != nil {
				return err
			}
		}
	}
	var date time.Time
	if o.InternalDate {
		date = internalDate(msg.m.State, func() []byte {
			switch {
			case raw != nil:
				return raw
			case p != nil:
				return p.Header
			}
			raw, _ = s.b.cfg.Store.Fetch(dbctx(), msg.m, s.drop(msg.m))
			return raw
		})
	}
	rw := w.CreateMessage(uint32(i + 1))
	if o.UID {
		rw.WriteUID(msg.uid)
	}
	if o.Flags || flagsChanged {
		rw.WriteFlags(msg.flags)
	}
	if o.InternalDate {
		rw.WriteInternalDate(date)
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(size)
	}
	m := &parts{raw: raw}
	if o.Envelope {
		switch {
		case p != nil:
			rw.WriteEnvelope(p.Envelope)
		case o.BodyStructure != nil:
			// The tree is needed anyway; its root header is the mail's.
			rw.WriteEnvelope(mimetree.Envelope(m.tree().Root.Header))
		default:
			rw.WriteEnvelope(envelope(raw))
		}
	}
	if o.BodyStructure != nil {
		if p != nil {
			rw.WriteBodyStructure(p.Structure)
		} else {
			rw.WriteBodyStructure(m.tree().BodyStructure())
		}
	}
	for _, sec := range o.BodySection {
		var data []byte
		if raw == nil && p != nil && headerOnly(sec) {
			data = (&parts{raw: p.Header}).bodySection(sec)
		} else {
			data = m.bodySection(sec)
		}
		wc := rw.WriteBodySection(sec, int64(len(data)))
		if _, err := wc.Write(data); err != nil {
			return errClientGone
		}
		if err := wc.Close(); err != nil {
			return errClientGone
		}
		s.b.cfg.Metrics.FetchedMails.Inc()
	}
	// Every BINARY section is decoded before the first is written: a part
	// that does not decode ends the FETCH with NO after this message's
	// other items, as Dovecot does, instead of showing it empty.
	binary := make([][]byte, len(o.BinarySection))
	for i, sec := range o.BinarySection {
		data, err := m.binarySection(sec.Part)
		if err != nil {
			if cerr := rw.Close(); cerr != nil {
				return errClientGone
			}
			return err
		}
		binary[i] = data
	}
	sizes := make([]int, len(o.BinarySectionSize))
	for i, sec := range o.BinarySectionSize {
		data, err := m.binarySection(sec.Part)
		if err != nil {
			if cerr := rw.Close(); cerr != nil {
				return errClientGone
			}
			return err
		}
		sizes[i] = len(data)
	}
	for i, sec := range o.BinarySection {
		data := binary[i]
		if p := sec.Partial; p != nil {
			data = partial(data, p.Offset, p.Size)
		}
		wc := rw.WriteBinarySection(sec, int64(len(data)))
		if _, err := wc.Write(data); err != nil {
			return errClientGone
		}
		if err := wc.Close(); err != nil {
			return errClientGone
		}
	}
	for i, sec := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(sec, uint32(min(int64(sizes[i]), math.MaxUint32)))
	}
	if err := rw.Close(); err != nil {
		return errClientGone
	}
	return nil
}

// headerEnd returns the length of raw's header section, the blank line
// included (all of raw when there is no blank line).
func headerEnd(raw []byte) int { return mimetree.HeaderLen(raw) }

// parts is one mail's bytes and, once a command needs it, its MIME tree
// (bounded: see package mimetree).
type parts struct {
	raw []byte
	t   *mimetree.Tree
}

func (m *parts) tree() *mimetree.Tree {
	if m.t == nil {
		m.t = mimetree.Parse(m.raw, mimetree.Limits{})
	}
	return m.t
}

// BodySection returns the bytes of one BODY[...] section of raw. It is
// pure.
func BodySection(raw []byte, sec *imap.FetchItemBodySection) []byte {
	return (&parts{raw: raw}).bodySection(sec)
}

// bodySection returns one BODY[...] section. Whole-mail sections, part
// bodies and MIME headers are slices of the stored bytes (byte-exact);
// HEADER.FIELDS selections are the chosen fields' bytes (headerFields).
func (m *parts) bodySection(sec *imap.FetchItemBodySection) []byte {
	raw := m.raw
	if len(sec.Part) > 0 {
		p := m.tree().Find(sec.Part)
		if p == nil {
			return nil
		}
		switch sec.Specifier {
		case imap.PartSpecifierNone:
			return cut(raw[p.BodyStart:p.End], sec.Partial)
		case imap.PartSpecifierMIME:
			return cut(raw[p.Start:p.BodyStart], sec.Partial)
		}
		// HEADER, TEXT and HEADER.FIELDS of a part read the mail it
		// encloses, as of a whole mail.
		e := p.Enclosed()
		raw = raw[e.Start:e.End]
	}
	var data []byte
	fields := len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0
	switch {
	case !fields && sec.Specifier == imap.PartSpecifierNone:
		data = raw
	case !fields && sec.Specifier == imap.PartSpecifierHeader:
		data = raw[:headerEnd(raw)]
	case !fields && sec.Specifier == imap.PartSpecifierText:
		data = raw[headerEnd(raw):]
	default:
		data = headerFields(raw[:headerEnd(raw)], sec.HeaderFields, sec.HeaderFieldsNot)
	}
	return cut(data, sec.Partial)
}

// headerFields returns HEADER.FIELDS (only, if given) or HEADER.FIELDS.NOT
// (not) of a header section: the chosen fields' own bytes, in their order,
// then the blank line. The header is read leniently (mimetree.EachField):
// go-imap's strict reader gave nothing at all for a header with one line
// that is not a field (an mbox "From " line, a broken mailer's output), so
// such a mail showed no From, Subject or Message-ID in a client's list.
func headerFields(header []byte, only, not []string) []byte {
	names := only
	if len(only) == 0 {
		names = not
	}
	named := func(name []byte) bool {
		for _, n := range names {
			if mimetree.NameIs(name, n) {
				return true
			}
		}
		return false
	}
	out := make([]byte, 0, len(header)+2)
	mimetree.EachField(header, func(name, field []byte) {
		if named(name) == (len(only) > 0) {
			out = append(out, field...)
		}
	})
	return append(out, "\r\n"...)
}

// cut applies a <offset.size> partial (size < 0: to the end).
func cut(data []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return data
	}
	return partial(data, p.Offset, p.Size)
}

func partial(data []byte, off, size int64) []byte {
	if off >= int64(len(data)) || off < 0 {
		return nil
	}
	data = data[off:]
	if size >= 0 && size < int64(len(data)) {
		data = data[:size]
	}
	return data
}

// binarySection returns a BINARY[part] section (RFC 3516): the part's
// body with its Content-Transfer-Encoding undone; the whole mail for no
// part (header and decoded body, as go-imap gives it); nil for a part
// that does not exist. A part whose encoding is unknown is refused with
// UNKNOWN-CTE (RFC 3516 §4.2), one whose content does not decode (a
// mailing list's footer after base64 text) with PARSE, as Dovecot does:
// the decoded part is not there to give, and an empty one would say the
// part is empty.
func (m *parts) binarySection(part []int) ([]byte, error) {
	if len(part) == 0 {
		return imapserver.ExtractBinarySection(bytes.NewReader(m.raw), &imap.FetchItemBinarySection{}), nil
	}
	p := m.tree().Find(part)
	if p == nil {
		return nil, nil
	}
	e, err := gomessage.New(gomessage.Header{Header: p.Header}, bytes.NewReader(m.raw[p.BodyStart:p.End]))
	if gomessage.IsUnknownEncoding(err) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnknownCTE,
			Text: fmt.Sprintf("Unknown Content-Transfer-Encoding in part %s", partName(part))}
	}
	if e == nil {
		return nil, nil
	}
	// An unknown charset still decodes the transfer encoding.
	data, err := io.ReadAll(e.Body)
	if err != nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeParse,
			Text: fmt.Sprintf("Part %s does not decode: %v", partName(part), err)}
	}
	return data, nil
}

// partName writes a part path as IMAP does ("1.2").
func partName(part []int) string {
	s := make([]string, len(part))
	for i, n := range part {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}

// envelope parses raw's header into an ENVELOPE.
func envelope(raw []byte) *imap.Envelope {
	return mimetree.Envelope(mimetree.ParseHeader(raw[:headerEnd(raw)]))
}

// internalDate is the date an APPEND gave, else the time the mail was
// acknowledged (the value of the receive row's received link, Unix ms,
// docs/smtpd.md), else the Date header, else the Unix epoch.
func internalDate(st model.State, raw func() []byte) time.Time {
	var best uint64
	for name, v := range st.Cols {
		if _, ok := model.ParseReceivedColumn(name); ok && (best == 0 || v < best) {
			best = v
		}
	}
	if v := st.Col(model.ColAppendDate); v != 0 {
		return time.UnixMilli(int64(v)).UTC() // APPEND's date (or its time)
	}
	const plausible = 946684800000 // 2000-01-01 in Unix ms
	if best >= plausible {
		return time.UnixMilli(int64(best)).UTC()
	}
	if d, ok := sentDate(raw()); ok {
		return d
	}
	return time.Unix(0, 0).UTC()
}

// sentDate parses raw's Date header.
func sentDate(raw []byte) (time.Time, bool) {
	if raw == nil {
		return time.Time{}, false
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw[:headerEnd(raw)]))
	if err != nil {
		return time.Time{}, false
	}
	d, err := m.Header.Date()
	return d, err == nil
}

// setFlags changes flags of the messages at idx and records in changed
// which ones now differ. Each changed column gets a value above its
// current one even if this site's clock is behind the one that wrote it
// (higher dominates: an older timestamp would be ignored).
func (s *Session) setFlags(ctx context.Context, idx []int, op imap.StoreFlagsOp, fl []imap.Flag, changed map[int]bool) error {
	sel := s.sel
	now := s.b.cfg.Now().UnixMilli()
	var texts [][]byte
	var sets []store.ColumnSet
	want := map[string]bool{} // column -> set
	junk := map[string]bool{} // column of a junk keyword -> it says spam
	for _, f := range fl {
		col, text, ok := flags.Column(f, sel.folder.id)
		if !ok {
			continue
		}
		want[col] = true
		if spam, ok := flags.Junk(f); ok {
			junk[col] = spam
		}
		if text != nil && !slices.ContainsFunc(texts, func(t []byte) bool { return bytes.Equal(t, text) }) {
			texts = append(texts, text)
		}
	}
	type change struct {
		i   int
		col string
		v   uint64
	}
	var changes []change
	var spam, ham []model.Key // mails a junk keyword was set on
	if op != imap.StoreFlagsDel {
		// Checked for every mail before anything is written: a STORE
		// over many mails is refused whole, not half done.
		for _, i := range idx {
			if flags.TooManyKeywords(sel.msgs[i].m.State.Cols, maps.Keys(want)) {
				return errTooManyKeywords
			}
		}
	}
	// RFC 9051 §6.4.6: each flag is set or cleared as the mail has it
	// now, not only as this session last showed it (the view). A change
	// another session made since (its watch event arrived, but the view
	// is only brought up to date after a command that may report it)
	// made a -FLAGS find the flag "already clear" by the view, or a
	// +FLAGS "already set", and write nothing: the later change, this
	// one, was lost. A flag is left alone only when the view and the
	// latest state both have it as asked, so the answer, the view's
	// flags, shows it as asked too.
	latest, err := s.latestStates(ctx, idx)
	if err != nil {
		return err
	}
	for k, i := range idx {
		view, cols := sel.msgs[i].m.State.Cols, latest[k].Cols
		target := map[string]bool{}
		switch op {
		case imap.StoreFlagsAdd:
			for c := range want {
				target[c] = true
			}
		case imap.StoreFlagsDel:
			for c := range want {
				target[c] = false
			}
		case imap.StoreFlagsSet:
			for _, c := range append(flags.SetIn(view, sel.folder.id), flags.SetIn(cols, sel.folder.id)...) {
				if !want[c] {
					target[c] = false
				}
			}
			for c := range want {
				target[c] = true
			}
		}
		for c, on := range target {
			cur := flags.Current(cols, c) // at least the view's
			if flags.Set(cur) == on && flags.Set(flags.Current(view, c)) == on {
				continue // already so (a never-set flag is clear)
			}
			v := flags.Value(max(now, int64(cur>>1)+1), on)
			changes = append(changes, change{i, c, v})
			sets = append(sets, store.ColumnSet{Receive: sel.msgs[i].m.Receive, Column: c, Value: v})
		}
		// Setting $Junk or $NotJunk is the user's verdict, as a move
		// into or out of Junk is (clients that mark junk without moving
		// it, or before they move it). Both at once say nothing.
		var saysSpam, saysHam bool
		for c, isSpam := range junk {
			if target[c] {
				saysSpam, saysHam = saysSpam || isSpam, saysHam || !isSpam
			}
		}
		switch {
		case saysSpam && !saysHam:
			spam = append(spam, sel.msgs[i].m.Receive)
		case saysHam && !saysSpam:
			ham = append(ham, sel.msgs[i].m.Receive)
		}
	}
	if len(sets) == 0 {
		return nil
	}
	for _, v := range []struct {
		keys []model.Key
		spam bool
	}{{spam, true}, {ham, false}} {
		if len(v.keys) > 0 {
			t, fs := feedback(s.acct.Login, v.keys, v.spam, s.b.cfg.Now())
			texts, sets = append(texts, t...), append(sets, fs...)
		}
	}
	if err := s.setColumns(ctx, texts, sets); err != nil {
		return err
	}
	for _, c := range changes {
		msg := sel.msgs[c.i]
		st := msg.m.State.Clone()
		if _, err := st.Set(c.col, c.v); err != nil {
			return err
		}
		msg.m.State = st
		changed[c.i] = true
	}
	for i := range changed {
		sel.msgs[i].flags = s.flagsOf(ctx, sel.msgs[i].m.State, sel.folder.id)
	}
	return nil
}

// latestStates returns the states of the selected folder's messages at
// idx as the session knows them now: the view's merged with its copy of
// the rows, brought up to date with the watch events that arrived since
// the last sync. The view itself is not changed: the next sync reports
// the differences to the client.
func (s *Session) latestStates(ctx context.Context, idx []int) ([]model.State, error) {
	sel := s.sel
	if sel.cache != nil && sel.watch.dirty.Load() {
		_, took, err := s.catchUp(ctx, sel)
		if took {
			sel.watch.mark() // still owed to the view's next sync
		}
		if err != nil {
			return nil, err
		}
	}
	out := make([]model.State, len(idx))
	for k, i := range idx {
		m := sel.msgs[i].m
		out[k] = m.State
		if sel.cache != nil {
			if st, ok := sel.cache.state(m.Receive); ok && !st.Equal(m.State) {
				out[k] = model.Merge(m.State, st)
			}
		}
	}
	return out, nil
}

// errTooManyKeywords refuses a STORE or APPEND that would give a mail
// more than flags.MaxKeywords keywords (RFC 5530 LIMIT).
var errTooManyKeywords = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
	Text: fmt.Sprintf("A mail can hold at most %d keywords", flags.MaxKeywords)}

// Store is STORE and UID STORE.
func (s *Session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, sf *imap.StoreFlags, options *imap.StoreOptions) (err error) {
	defer s.track("store", &err)()
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	idx, err := indices(numSet, sel.msgs)
	if err != nil {
		return err
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	changed := map[int]bool{}
	if err := s.setFlags(ctx, idx, sf.Op, sf.Flags, changed); err != nil {
		return err
	}
	if sf.Silent {
		return nil
	}
	_, byUID := numSet.(imap.UIDSet)
	for _, i := range idx {
		rw := w.CreateMessage(uint32(i + 1))
		if byUID {
			rw.WriteUID(sel.msgs[i].uid)
		}
		rw.WriteFlags(sel.msgs[i].flags)
		if err := rw.Close(); err != nil {
			return errClientGone
		}
	}
	return nil
}
