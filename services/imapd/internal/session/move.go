package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// appendLimit bounds an APPENDed mail (advertised as APPENDLIMIT).
const appendLimit = 64 << 20

// DefaultAppendMemory is Config.AppendMemory's default: four mails of the
// APPENDLIMIT at once. Without a bound, every connection (a thousand, 50
// from one address) could hold one.
const DefaultAppendMemory = 4 * appendLimit

// DefaultAppendMemoryPerAccount is Config.AppendMemoryPerAccount's
// default: one mail of the APPENDLIMIT at its peak (MinAppendMemory,
// 81 MiB), the least that lets an account APPEND any mail it may. A
// quarter of the default pool (64 MiB) would refuse the largest mails.
// With the default pool, an account holds at most a third of it: three
// accounts at their largest leave 13 MiB, and one account's parallel
// uploads are read one after another instead of all at once.
const DefaultAppendMemoryPerAccount = MinAppendMemory

// AppendMemoryBounds applies Config's defaults and bounds to the APPEND
// memory of all sessions (total) and of one account (perAccount): 0 is
// the default; total is raised to MinAppendMemory; a perAccount below 0
// is total, and it is kept within MinAppendMemory and total. The daemon
// refuses a perAccount out of those bounds at start; NewBackend, called
// with any value, corrects it.
func AppendMemoryBounds(total, perAccount int64) (int64, int64) {
	if total <= 0 {
		total = DefaultAppendMemory
	}
	total = max(total, MinAppendMemory)
	switch {
	case perAccount == 0:
		perAccount = DefaultAppendMemoryPerAccount
	case perAccount < 0:
		perAccount = total
	}
	return total, min(max(perAccount, MinAppendMemory), total)
}

// errAppendBusy answers an APPEND that found no room in AppendMemory
// (RFC 5530 LIMIT); the client may try again later.
var errAppendBusy = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
	Text: "Too many large APPENDs at once, try again later"}

// errAppendAccountBusy answers an APPEND that found no room in its
// account's share of AppendMemory: the same LIMIT as errAppendBusy (a
// client retries either the same way; OVERQUOTA would say the mailbox
// is full, which it is not), with a text that tells the user it is
// their own uploads.
var errAppendAccountBusy = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
	Text: "Too many large APPENDs at once from this account, try again later"}

// errAppendEmpty refuses a zero-byte APPEND: it is no message (RFC 5322
// wants at least a header field), and Dovecot refuses it too.
var errAppendEmpty = &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Can't store an empty message"}

// AppendLimit is imapserver.SessionAppendLimit.
func (s *Session) AppendLimit() uint32 { return appendLimit }

var _ imapserver.SessionAppendLimit = (*Session)(nil)

// feedbackOf returns the spam feedback a move or copy from src into dst
// records: into Junk is spam, out of Junk into any folder but Trash is
// ham (deleting spam is not "this is ham"). ok is false for no feedback.
func feedbackOf(src, dst model.FolderID) (spam, ok bool) {
	switch {
	case dst == model.FolderJunk && src != model.FolderJunk:
		return true, true
	case src == model.FolderJunk && dst != model.FolderJunk && dst != model.FolderTrash:
		return false, true
	}
	return false, false
}

// feedback adds the text rows and columns recording login's verdict on
// receive rows (docs/imapd.md §4; spamd's feedback package reads them).
func feedback(login string, keys []model.Key, spam bool, now time.Time) (texts [][]byte, sets []store.ColumnSet) {
	for _, k := range keys {
		c := model.FeedbackContent(k, login)
		texts = append(texts, c)
		sets = append(sets, store.ColumnSet{Table: model.Text, Receive: model.KeyOf(model.Text, c), Column: model.ColFeedback,
			Value: model.FeedbackValue(now, spam)})
	}
	return texts, sets
}

// copyTo puts the messages at idx of the selected folder into dst (and,
// with move, out of the selected folder), records spam feedback, and
// places them in dst. It returns the COPYUID data.
func (s *Session) copyTo(ctx context.Context, idx []int, dst *folder, move bool) (*imap.CopyData, error) {
	sel := s.sel
	// Checked for every mail before anything is written: a COPY or MOVE
	// of many mails is refused whole, not half done.
	for _, i := range idx {
		if m := sel.msgs[i]; flags.TooManyFolders(m.m.State.Cols, m.home, dst.id) {
			return nil, errTooManyFolders
		}
	}
	now := s.b.cfg.Now()
	if err := s.keep(ctx, dst, now); err != nil {
		return nil, err
	}
	var sets []store.ColumnSet
	var keys []model.Key
	ps := make([]model.Placement, 0, len(idx))
	var src imap.UIDSet
	for _, i := range idx {
		m := sel.msgs[i]
		gen, in := model.Member(m.m.State, m.home, dst.id)
		if !in {
			gen = model.MoveValue(m.m.State, dst.id, now, true)
			sets = append(sets, store.ColumnSet{Receive: m.m.Receive, Column: model.MemberColumn(dst.id), Value: gen})
		}
		if move && dst.id != sel.folder.id {
			sets = append(sets, store.ColumnSet{Receive: m.m.Receive, Column: model.MemberColumn(sel.folder.id),
				Value: model.MoveValue(m.m.State, sel.folder.id, now, false)})
		}
		// \Deleted is per folder (package flags); the copy takes the
		// original's, as RFC 9051 §6.4.7 asks flags to be kept.
		if dst.id != sel.folder.id {
			cols := m.m.State.Cols
			from, to := flags.Current(cols, flags.DeletedColumn(sel.folder.id)), flags.DeletedColumn(dst.id)
			if cur := flags.Current(cols, to); flags.Set(from) != flags.Set(cur) {
				sets = append(sets, store.ColumnSet{Receive: m.m.Receive, Column: to,
					Value: flags.Value(max(now.UnixMilli(), int64(cur>>1)+1), flags.Set(from))})
			}
		}
		keys = append(keys, m.m.Receive)
		ps = append(ps, model.Placement{Incarnation: sel.incarnation, Folder: dst.key, Receive: m.m.Receive, Gen: gen})
		src.AddNum(m.uid)
	}
	var texts [][]byte
	if spam, ok := feedbackOf(sel.folder.id, dst.id); ok {
		t, fs := feedback(s.acct.Login, keys, spam, now)
		texts, sets = t, append(sets, fs...)
	}
	// The membership and the feedback first, in one batch per 4096 sets:
	// a placement must never name a mail that is not (yet) a member, or
	// the destination would list it under a dead UID.
	if err := s.setColumns(ctx, texts, sets); err != nil {
		return nil, err
	}
	nos, err := s.b.cfg.Store.Place(ctx, ps)
	if err != nil {
		return nil, err
	}
	s.wroteTo(dst)
	var dstUIDs imap.UIDSet
	for _, n := range nos {
		dstUIDs.AddNum(imap.UID(n))
	}
	uv, err := s.uidValidity(ctx, sel.incarnation, dst)
	if err != nil {
		return nil, err
	}
	return &imap.CopyData{UIDValidity: uv, SourceUIDs: src, DestUIDs: dstUIDs}, nil
}

// errTooManyFolders refuses a COPY or MOVE that would put a mail into
// more than flags.MaxFolders folders over its life (RFC 5530 LIMIT).
var errTooManyFolders = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
	Text: fmt.Sprintf("A mail can go into at most %d different folders", flags.MaxFolders)}

// keep raises a user folder's "exists" value before mail goes into it, so
// a concurrent DELETE at the other site, earlier than the mail, cannot
// hide the mail once both sites have merged (store.KeepFolder).
func (s *Session) keep(ctx context.Context, dst *folder, now time.Time) error {
	if dst.user == nil {
		return nil
	}
	return s.b.cfg.Store.KeepFolder(ctx, s.acct.Login, dst.id, now)
}

// destination resolves the target folder of COPY, MOVE and APPEND.
func (s *Session) destination(name string) (*folder, error) {
	fs, err := s.folders()
	if err != nil {
		return nil, err
	}
	f, ok := fs.byName(name)
	if !ok {
		return nil, errTryCreate
	}
	return f, nil
}

// Copy is COPY and UID COPY (UIDPLUS COPYUID). The copy shares its flags
// with the original (one receive row in two folders; docs/imapd.md §4).
func (s *Session) Copy(numSet imap.NumSet, dest string) (data *imap.CopyData, err error) {
	defer s.track("copy", &err)()
	dst, err := s.destination(dest)
	if err != nil {
		return nil, err
	}
	idx, err := indices(numSet, s.sel.msgs)
	if err != nil {
		return nil, err
	}
	if len(idx) == 0 {
		return nil, nil // COPYUID has no empty form (RFC 4315 §3)
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	return s.copyTo(ctx, idx, dst, false)
}

// Move is MOVE and UID MOVE (RFC 6851): COPYUID, then an EXPUNGE per
// message moved.
func (s *Session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	defer s.track("move", &err)()
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	dst, err := s.destination(dest)
	if err != nil {
		return err
	}
	idx, err := indices(numSet, sel.msgs)
	if err != nil {
		return err
	}
	if len(idx) == 0 {
		return nil
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	data, err := s.copyTo(ctx, idx, dst, true)
	if err != nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return errClientGone
	}
	if dst.id == sel.folder.id {
		return nil // a move into the same folder changes nothing
	}
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		sel.msgs = slices.Delete(sel.msgs, i, i+1)
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return errClientGone
		}
	}
	return nil
}

// Append is APPEND (UIDPLUS APPENDUID): the mail is stored like a
// delivery, in a receive row whose "mailbox" is the folder's key
// (docs/imapd.md §4: it can never be an SMTP delivery's row, so APPEND
// needs no ack and cannot make a refused delivery visible).
func (s *Session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (data *imap.AppendData, err error) {
	defer s.track("append", &err)()
	if r.Size() > appendLimit {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Mail too big"}
	}
	if r.Size() == 0 {
		return nil, errAppendEmpty
	}
	// The memory comes from the sessions' shared budget, and from the
	// account's share of it, as the bytes arrive (readAppend), so an
	// announced literal holds none of it. The share is the account's,
	// not the session's: one login opening many connections is what it
	// bounds. Not reading the literal on refusal is safe: go-imap
	// discards the rest of it. A literal cut short by the client leaving
	// ends early: nothing is stored (TEST-CATALOG 45, TestLiteralLimits).
	h := s.b.appends.hold(s.acct.Key)
	defer h.release() // on every return, a panic and a client gone mid-literal too
	raw, err := readAppend(r, r.Size(), func(n int64) error {
		wait, cancel := context.WithTimeout(s.ctx, s.b.cfg.AppendWait)
		defer cancel()
		return h.grow(wait, n)
	}, h.shrink)
	switch {
	case errors.Is(err, errAccountNoRoom):
		s.b.cfg.Metrics.Errors.WithLabelValues("append_account_memory").Inc()
		s.log.Info("append refused: the account's share of the APPEND memory is taken", "size", r.Size())
		return nil, errAppendAccountBusy
	case errors.Is(err, errNoRoom):
		s.b.cfg.Metrics.Errors.WithLabelValues("append_memory").Inc()
		return nil, errAppendBusy
	case err != nil:
		return nil, errClientGone
	}
	// A mail's lines end in CRLF (RFC 5322 §2.1), but clients APPEND
	// mails saved with LF ends as they are: store the CRLF form, which
	// every reader of the mail expects and which Dovecot serves for such
	// a mail (a CR alone stays, as there). The copy, when one is needed,
	// replaces the literal's buffer.
	raw = model.CRLF(raw)
	dst, err := s.destination(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	inc, err := s.b.cfg.Store.Incarnation(ctx)
	if err != nil {
		return nil, err
	}
	now := s.b.cfg.Now()
	if err := s.keep(ctx, dst, now); err != nil {
		return nil, err
	}
	_, _, rk := store.AppendRows(raw, dst.key)
	// The same mail APPENDed into the same folder before is the same
	// receive row: it becomes a member again (a new UID) and takes the
	// new flags; APPENDed rows are never deleted, only moved out.
	old, err := s.b.cfg.Store.FindReceive(ctx, rk)
	if err != nil {
		return nil, err
	}
	var st model.State
	if old != nil {
		st = old.State
	}
	cols := map[string]uint64{}
	// The row's home is dst (its key names dst), so this membership
	// column is never a folder beyond flags.MaxFolders: unlike COPY and
	// MOVE, APPEND needs no check.
	gen, in := model.Member(st, dst.id, dst.id)
	if !in {
		gen = model.MoveValue(st, dst.id, now, true)
		cols[model.MemberColumn(dst.id)] = gen
	}
	date := now
	if options != nil && !options.Time.IsZero() {
		date = options.Time
	}
	if st.Col(model.ColAppendDate) == 0 {
		cols[model.ColAppendDate] = uint64(max(date.UnixMilli(), 1))
	}
	var texts [][]byte
	want := map[string]bool{}
	if options != nil {
		for _, f := range options.Flags {
			col, text, ok := flags.Column(f, dst.id)
			if !ok {
				continue
			}
			want[col] = true
			if text != nil && !slices.ContainsFunc(texts, func(t []byte) bool { return bytes.Equal(t, text) }) {
				texts = append(texts, text)
			}
		}
	}
	if flags.TooManyKeywords(st.Cols, maps.Keys(want)) {
		return nil, errTooManyKeywords
	}
	for _, c := range flags.SetIn(st.Cols, dst.id) {
		if !want[c] {
			cols[c] = flags.Value(max(now.UnixMilli(), int64(flags.Current(st.Cols, c)>>1)+1), false)
		}
	}
	for c := range want {
		if cur := flags.Current(st.Cols, c); !flags.Set(cur) {
			cols[c] = flags.Value(max(now.UnixMilli(), int64(cur>>1)+1), true)
		}
	}
	if len(texts) > 0 {
		if err := s.setColumns(ctx, texts, nil); err != nil {
			return nil, err
		}
	}
	if _, err := s.b.cfg.Store.Append(ctx, store.Appendage{Raw: raw, Folder: dst.key, Cols: cols}); err != nil {
		return nil, err
	}
	nos, err := s.b.cfg.Store.Place(ctx, []model.Placement{{Incarnation: inc, Folder: dst.key, Receive: rk, Gen: gen}})
	if err != nil {
		return nil, err
	}
	if nos[0] > 1<<32-1 {
		return nil, fmt.Errorf("append: UID %d beyond 32 bits", nos[0])
	}
	s.wroteTo(dst)
	uv, err := s.uidValidity(ctx, inc, dst)
	if err != nil {
		return nil, err
	}
	return &imap.AppendData{UID: imap.UID(nos[0]), UIDValidity: uv}, nil
}

// wroteTo marks the selected view dirty after this session put mail into
// dst, if dst is the selected folder: the poll after the command then
// lists it (RFC 9051 §6.3.12: the client should hear EXISTS at once),
// rather than whichever poll comes after dbd's watch event reaches us.
func (s *Session) wroteTo(dst *folder) {
	if s.sel != nil && dst.id == s.sel.folder.id {
		s.sel.watch.mark()
	}
}
