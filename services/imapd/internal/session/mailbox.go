package session

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// inbox is the name of the INBOX folder.
const inbox = "INBOX"

// selected is the state of the selected folder.
type selected struct {
	folder      folder
	fs          *folderSet // the account's folders when selected
	readOnly    bool
	incarnation uint64
	uidValidity uint32
	uidNext     imap.UID
	msgs        []*message
	watch       *watcher
	cache       *rowCache // nil: list everything at the next sync
}

func (sel *selected) stop() {
	if sel.watch != nil {
		sel.watch.stop()
	}
}

// UIDValidity derives a folder's UIDVALIDITY at one site from the store
// incarnation and the row number of the folder's validity marker there
// (store.Validity): a per-site offset in [1, 2^30] drawn from the
// incarnation, plus the row number. Within a store, a folder made later
// (CREATE after DELETE, or after a RENAME freed the name) has its marker
// made later, so a higher row number and a strictly greater UIDVALIDITY
// (RFC 9051 §2.3.1.1 "MUST be greater"); a hash of the folder id, as
// before, was random, and smaller half the time. Different stores (the
// other site, a rebuilt store) add different offsets, so clients never
// trust a UID across them (equal only if two offsets differ by exactly
// the difference of the row numbers). Never 0. A marker past 3·2^30 rows
// would overflow: the value then stays at 2^32-1 (docs/imapd.md §2).
func UIDValidity(incarnation uint64, marker uint64) uint32 {
	h := fnv.New32a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], incarnation)
	h.Write([]byte("uidvalidity/2"))
	h.Write(b[:])
	v := 1 + uint64(h.Sum32()&(1<<30-1)) + marker
	if marker > math.MaxUint32 || v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

// uidValidity returns folder f's UIDVALIDITY in store incarnation inc.
func (s *Session) uidValidity(ctx context.Context, inc uint64, f *folder) (uint32, error) {
	n, err := s.b.cfg.Store.Validity(ctx, f.key, inc)
	if err != nil {
		return 0, err
	}
	return UIDValidity(inc, n), nil
}

// acctMsg is one receive row of the account with its home folder.
type acctMsg struct {
	m    mailbox.Message
	home model.FolderID
}

// member is a receive row in a folder, with the membership value that put
// it there.
type member struct {
	acctMsg
	gen uint64
}

// reconcile matches a folder's members with this site's placements of it
// (row number order): a placement counts when its mail is still a member
// with the same gen (a mail moved out and back has a new gen, so its old
// placement, and UID, are dead). It returns the placed members in UID
// order and the members that need a new placement, in arrival order. It
// is pure.
func reconcile(members []member, placed []store.PlacedRow) (view []placedMsg, missing []member) {
	byKey := make(map[model.Key]int, len(members))
	for i, m := range members {
		byKey[m.m.Receive] = i
	}
	done := make([]bool, len(members))
	view = make([]placedMsg, 0, min(len(placed), len(members)))
	for _, p := range placed {
		i, ok := byKey[p.Receive]
		if !ok || done[i] || members[i].gen != p.Gen {
			continue
		}
		done[i] = true
		view = append(view, placedMsg{uid: p.RowNo, member: members[i]})
	}
	for i, m := range members {
		if !done[i] {
			missing = append(missing, m)
		}
	}
	slices.SortStableFunc(missing, func(a, b member) int { return cmp.Compare(a.m.RowNo, b.m.RowNo) })
	return view, missing
}

// placedMsg is a member with its UID here.
type placedMsg struct {
	uid uint64
	member
}

// view returns folder f's mail at this site in UID order, creating the
// placements (UIDs) of mail that became visible in it since anyone here
// last looked, and the rows it read for a later sync. Placements are
// listed before the mail, so every placement seen names mail that was
// visible before the listing: a mail can never show up later under a UID
// below one already shown.
func (s *Session) view(ctx context.Context, f *folder, fs *folderSet, inc uint64) ([]*message, *rowCache, error) {
	for try := 1; ; try++ {
		c, err := s.loadCache(ctx, f, fs, inc)
		if err != nil {
			return nil, nil, err
		}
		msgs, err := s.build(ctx, f, c, inc)
		switch {
		case errors.Is(err, errPlacementRace) && try < 3:
			continue
		case err != nil:
			return nil, nil, err
		}
		return msgs, c, nil
	}
}

// errPlacementRace: while build placed mail, another session here placed
// mail that build's rows did not show (yet), under a lower UID, or under a
// higher one that a later placement of ours could pass before the rows
// show it. Either way that mail could later come below UIDNEXT, which IMAP
// forbids; a new listing shows it now.
var errPlacementRace = errors.New("another session placed mail meanwhile")

// build makes folder f's view from the cache, placing what has no
// placement yet.
func (s *Session) build(ctx context.Context, f *folder, c *rowCache, inc uint64) ([]*message, error) {
	view, missing := reconcile(c.members(f.id), c.placed)
	if len(missing) > 0 {
		ps := make([]model.Placement, len(missing))
		for i, m := range missing {
			ps[i] = model.Placement{Incarnation: inc, Folder: f.key, Receive: m.m.Receive, Gen: m.gen}
		}
		nos, err := s.b.cfg.Store.Place(ctx, ps)
		if err != nil {
			return nil, err
		}
		placed := make([]store.PlacedRow, len(missing))
		for i, m := range missing {
			view = append(view, placedMsg{uid: nos[i], member: m})
			placed[i] = store.PlacedRow{RowNo: nos[i], Receive: ps[i].Receive, Gen: ps[i].Gen}
		}
		c.addPlaced(placed)
		// Placements are numbered in commit order: one made by another
		// session before ours is listed now.
		others, last, err := s.b.cfg.Store.Placements(ctx, f.key, inc, c.placedAfter)
		if err != nil {
			return nil, err
		}
		top := slices.Max(nos)
		for _, p := range others {
			if !c.known(p.RowNo) && (p.RowNo < top || !c.shows(p, f.id)) {
				return nil, errPlacementRace
			}
		}
		c.addPlaced(others)
		c.placedAfter = max(c.placedAfter, last)
		slices.SortFunc(view, func(a, b placedMsg) int { return cmp.Compare(a.uid, b.uid) })
	}
	out := make([]*message, 0, len(view))
	for _, v := range view {
		// A UID is 32 bits: a store with more than 2^32-1 text rows
		// would need a new UIDVALIDITY scheme (docs/imapd.md).
		if v.uid > math.MaxUint32 {
			break
		}
		out = append(out, &message{uid: imap.UID(v.uid), m: v.m, home: v.home, flags: s.flagsOf(ctx, v.m.State, f.id)})
	}
	return out, nil
}

// drop returns the header filter of the mailbox a message belongs to.
func (s *Session) drop(m mailbox.Message) []string {
	for _, b := range s.acct.Mailboxes {
		if b.Key == m.Mailbox {
			return b.Drop
		}
	}
	return nil
}

// flagsOf returns the flags of a message shown in folder, resolving
// hashed keywords.
func (s *Session) flagsOf(ctx context.Context, st model.State, folder model.FolderID) []imap.Flag {
	return flags.Of(st.Cols, folder, func(k model.Key) (string, bool) {
		kw, ok, err := s.b.cfg.Store.Keyword(ctx, k)
		if err != nil {
			s.log.Warn("keyword lookup failed", "err", err)
		}
		return kw, ok
	})
}

// watchKeys are the parents whose receive rows make up the account's
// folders: its SMTP mailboxes and every folder's APPEND home.
func (s *Session) watchKeys(fs *folderSet) []model.Key {
	keys := make([]model.Key, 0, len(s.acct.Mailboxes)+len(fs.known))
	for _, b := range s.acct.Mailboxes {
		keys = append(keys, b.Key)
	}
	for _, id := range fs.known {
		keys = append(keys, model.FolderKey(s.acct.Login, id))
	}
	return keys
}

// Select is SELECT and EXAMINE.
func (s *Session) Select(name string, options *imap.SelectOptions) (data *imap.SelectData, err error) {
	defer s.track("select", &err)()
	if s.sel != nil {
		s.sel.stop()
		s.sel = nil
	}
	fs, err := s.folders()
	if err != nil {
		return nil, err
	}
	f, ok := fs.byName(name)
	if !ok {
		return nil, errNoMailbox
	}
	sel := &selected{folder: *f, fs: fs, readOnly: options != nil && options.ReadOnly}
	// Watch first, then list: a change between the two marks the view
	// dirty, so the next poll catches it.
	sel.watch, err = startWatch(s.ctx, s.b.watches, model.KeyOf(model.Text, model.FolderSetContent(s.acct.Login)), s.watchKeys(fs))
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	if sel.incarnation, err = s.b.cfg.Store.Incarnation(ctx); err != nil {
		sel.stop()
		return nil, err
	}
	if sel.msgs, sel.cache, err = s.view(ctx, &sel.folder, fs, sel.incarnation); err != nil {
		sel.stop()
		return nil, err
	}
	if sel.uidValidity, err = s.uidValidity(ctx, sel.incarnation, f); err != nil {
		sel.stop()
		return nil, err
	}
	sel.uidNext = sel.cache.uidNext(f.id, sel.msgs)
	data = &imap.SelectData{
		Flags:          flags.Permanent,
		PermanentFlags: append(slices.Clone(flags.Permanent), imap.FlagWildcard),
		UIDValidity:    sel.uidValidity,
	}
	for i, msg := range sel.msgs {
		if data.FirstUnseenSeqNum == 0 && !slices.Contains(msg.flags, imap.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
		}
	}
	if sel.readOnly {
		data.PermanentFlags = nil
	}
	data.NumMessages = uint32(len(sel.msgs))
	data.UIDNext = sel.uidNext
	if s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		// RFC 9051 §6.3.2: LIST is a required untagged response of
		// SELECT and EXAMINE in IMAP4rev2, with the mailbox's
		// attributes as LIST gives them (RFC 3501 has no such response).
		data.List = &imap.ListData{Mailbox: f.name, Delim: delim, Attrs: fs.attrs(f)}
	}
	s.sel = sel
	s.log.Debug("selected", "folder", f.name, "read_only", sel.readOnly, "messages", len(sel.msgs))
	return data, nil
}

// Unselect is UNSELECT, and CLOSE after its expunge.
func (s *Session) Unselect() (err error) {
	defer s.track("unselect", &err)()
	if s.sel != nil {
		s.sel.stop()
		s.sel = nil
	}
	return nil
}

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is read-only (EXAMINE)"}

// isCloseExpunge reports whether go-imap called Expunge for CLOSE (its
// ExpungeWriter then has no connection) rather than for EXPUNGE:
// go-imap v2.0.0-beta.8 gives no other way to tell, and CLOSE on a
// read-only mailbox must succeed without expunging while EXPUNGE must be
// refused.
func isCloseExpunge(w *imapserver.ExpungeWriter) bool {
	if w == nil {
		return true
	}
	f := reflect.ValueOf(w).Elem().FieldByName("conn")
	return f.IsValid() && f.Kind() == reflect.Pointer && f.IsNil()
}

// Expunge is EXPUNGE, UID EXPUNGE and CLOSE's expunge: mail marked
// \Deleted (and, for UID EXPUNGE, in uids) leaves the folder.
func (s *Session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) (err error) {
	defer s.track("expunge", &err)()
	sel := s.sel
	if sel.readOnly {
		if isCloseExpunge(w) {
			return nil
		}
		return errReadOnly
	}
	var gone []int
	for i, m := range sel.msgs {
		if slices.Contains(m.flags, imap.FlagDeleted) && (uids == nil || uids.Contains(m.uid)) {
			gone = append(gone, i)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	// removeFrom decides whether a delivery is in another folder: by the
	// folders now, not at SELECT (a copy in a folder made since counts),
	// and by the row's latest state (the view's may lack a COPY this
	// session just made), read from dbd: an SMTP delivery's deleted
	// column is never undone, and a COPY another session made a moment
	// ago may not have reached this one by its watch yet.
	fs, err := s.folders()
	if err != nil {
		return err
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	msgs := make([]*message, 0, len(gone))
	kept := gone[:0]
	for _, i := range gone {
		latest := *sel.msgs[i]
		if latest.m.State, err = s.latest(ctx, latest.m); err != nil {
			return err
		}
		row, err := s.b.cfg.Store.FindReceive(ctx, latest.m.Receive)
		if err != nil {
			return err
		}
		if row != nil {
			latest.m.State = model.Merge(latest.m.State, row.State)
		}
		// RFC 9051 §6.4.3: EXPUNGE removes the mail that has \Deleted
		// now. The view may still show it on a mail another session (or
		// the other site) has since undeleted: removing that mail
		// would lose one its user just kept. Its flags reach the
		// client at the next sync.
		if !flags.Has(latest.m.State.Cols, imap.FlagDeleted, sel.folder.id) {
			continue
		}
		msgs = append(msgs, &latest)
		kept = append(kept, i)
	}
	gone = kept
	if len(gone) == 0 {
		return nil
	}
	if err := s.removeFrom(ctx, &sel.folder, fs, msgs); err != nil {
		return err
	}
	for k := len(gone) - 1; k >= 0; k-- {
		i := gone[k]
		sel.msgs = slices.Delete(sel.msgs, i, i+1)
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return errClientGone
		}
	}
	return nil
}

// latest returns the newest state the session has of m's row without
// waiting for watch events: the view's merged with the selected folder's
// copy, which takes the session's own writes at once (rowCache.raise);
// with no copy of the row, dbd's.
func (s *Session) latest(ctx context.Context, m mailbox.Message) (model.State, error) {
	if s.sel != nil && s.sel.cache != nil {
		if st, ok := s.sel.cache.state(m.Receive); ok {
			return model.Merge(m.State, st), nil
		}
	}
	row, err := s.b.cfg.Store.FindReceive(ctx, m.Receive)
	if err != nil || row == nil {
		return m.State, err
	}
	return model.Merge(m.State, row.State), nil
}

// removeFrom takes mail out of folder f: its membership column records
// the removal, and an SMTP delivery that is then in no live folder gets
// the deleted column too, so POP3 (which lists deliveries) drops it as
// well (SPEC §8: one mailbox seen alike by both protocols).
func (s *Session) removeFrom(ctx context.Context, f *folder, fs *folderSet, msgs []*message) error {
	now := s.b.cfg.Now()
	live := make([]model.FolderID, 0, len(fs.live))
	for _, lf := range fs.live {
		if lf.id != f.id {
			live = append(live, lf.id)
		}
	}
	var sets []store.ColumnSet
	for _, m := range msgs {
		sets = append(sets, store.ColumnSet{Receive: m.m.Receive, Column: model.MemberColumn(f.id), Value: model.MoveValue(m.m.State, f.id, now, false)})
		if !m.m.Appended && len(model.Folders(m.m.State, m.home, live)) == 0 {
			sets = append(sets, store.ColumnSet{Receive: m.m.Receive, Column: model.ColDeleted, Value: model.FlagSet})
		}
	}
	if len(sets) == 0 {
		return nil
	}
	return s.setColumns(ctx, nil, sets)
}

// setColumns writes texts and column sets (store.SetColumns) and applies
// the sets to the selected folder's cache (rowCache.raise).
func (s *Session) setColumns(ctx context.Context, texts [][]byte, sets []store.ColumnSet) error {
	if err := s.b.cfg.Store.SetColumns(ctx, texts, sets); err != nil {
		return err
	}
	if s.sel != nil && s.sel.cache != nil {
		s.sel.cache.raise(sets)
	}
	return nil
}

// Poll reports changes since the last look (after each command).
func (s *Session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	err := s.poll(w, allowExpunge)
	if errors.Is(err, errTemporary) {
		// dbd failed (logged and counted by track); the view stays
		// dirty and a later poll reports the changes. go-imap takes
		// Poll's error for the command's: a COPY or APPEND that was
		// done would be answered NO, and after any other command the
		// connection was closed without an answer.
		return nil
	}
	return err
}

func (s *Session) poll(w *imapserver.UpdateWriter, allowExpunge bool) (err error) {
	defer s.track("poll", &err)()
	return s.sync(w, allowExpunge)
}

// Idle is IDLE: it reports changes as the mailbox watch announces them
// (push from dbd, no polling) until stop is closed.
func (s *Session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) (err error) {
	s.idleMu.Lock() // see Session.idleMu
	defer s.idleMu.Unlock()
	defer s.track("idle", &err)()
	if s.sel == nil {
		select {
		case <-stop:
		case <-s.ctx.Done():
		}
		return nil
	}
	keepalive := time.NewTicker(s.b.cfg.IdleKeepalive)
	defer keepalive.Stop()
	wait := s.b.cfg.WatchRetry
	for {
		var retry <-chan time.Time
		switch err := s.sync(w, true); {
		case errors.Is(err, errClientGone):
			return err
		case err != nil:
			// dbd failed for a moment (the view stays dirty). Returning
			// would end the updates while the client still waits in
			// IDLE, until it sends DONE itself (up to 29 minutes, RFC
			// 2177): try again, less often while dbd keeps failing.
			s.log.Warn("idle: sync failed; trying again", "err", err, "in", wait)
			s.b.cfg.Metrics.Errors.WithLabelValues("dbd").Inc()
			retry = time.After(wait)
			wait = min(2*wait, time.Minute)
		default:
			wait = s.b.cfg.WatchRetry
		}
		select {
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		case <-retry:
		case <-s.sel.watch.notify:
		case <-keepalive.C:
			// An unchanged EXISTS is a valid untagged response any
			// time (RFC 9051 §7.4.1); go-imap offers no bare OK. A
			// failed write is the client gone, not a dbd failure.
			if err := w.WriteNumMessages(uint32(len(s.sel.msgs))); err != nil {
				return errClientGone
			}
		}
	}
}

// catchUp brings the selected folder's copy up to date with the changes
// its watch kept (rowCache.update) and reports whether the copy can be
// used. If it cannot (there is none, changes were lost, a placement names
// mail it does not show, an error) the copy is dropped, and the caller
// lists everything. took reports whether anything was taken from the
// watch.
func (s *Session) catchUp(ctx context.Context, sel *selected) (ok, took bool, err error) {
	changes, complete := sel.watch.take()
	took = len(changes) > 0 || !complete
	if sel.cache != nil && complete {
		ok, err = sel.cache.update(ctx, s.b.cfg.Store, &sel.folder, sel.incarnation, changes)
	}
	if !ok {
		sel.cache = nil
	}
	return ok, took, err
}

// refresh returns the selected folder's view after the changes the watch
// saw: from the cache brought up to date, or from a new listing when the
// cache cannot be trusted (none, the watch lost events, see
// rowCache.update). On an error the cache is dropped: the changes taken
// from the watch are not in it.
func (s *Session) refresh(ctx context.Context, sel *selected) ([]*message, error) {
	ok, _, err := s.catchUp(ctx, sel)
	if err != nil {
		return nil, err
	}
	if ok {
		msgs, err := s.build(ctx, &sel.folder, sel.cache, sel.incarnation)
		if err == nil {
			return msgs, nil
		}
		if !errors.Is(err, errPlacementRace) {
			sel.cache = nil
			return nil, err
		}
	}
	msgs, c, err := s.view(ctx, &sel.folder, sel.fs, sel.incarnation)
	sel.cache = c
	return msgs, err
}

// followFolders reads the account's folders after their set changed. A
// folder made since SELECT is the home of mail that can come into the
// selected one (APPENDed there, then moved or copied): its rows are
// watched from now on, and everything is listed again (the copy lacks
// them).
func (s *Session) followFolders(ctx context.Context, sel *selected) error {
	fs, err := s.folders()
	if err != nil {
		return err
	}
	if slices.Equal(fs.known, sel.fs.known) {
		return nil
	}
	if err := sel.watch.joinParents(ctx, s.watchKeys(fs)); err != nil {
		return err
	}
	sel.fs, sel.cache = fs, nil
	return nil
}

// sync lists the mailbox again if the watch saw a change, and reports the
// difference. While expunges may not be reported (during FETCH, STORE,
// SEARCH: RFC 9051 §7.5.1), it waits for a later poll.
func (s *Session) sync(w *imapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.sel
	if !allowExpunge || !sel.watch.dirty.Swap(false) {
		return nil
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	inc, err := s.b.cfg.Store.Incarnation(ctx)
	if err != nil {
		sel.watch.dirty.Store(true)
		return err
	}
	if inc != sel.incarnation {
		// The store behind our UIDs was replaced: no UID of this view
		// means anything any more. RFC 9051 §2.3.1.1 lets us end the
		// session; the client reconnects and sees the new UIDVALIDITY.
		s.log.Warn("store incarnation changed under a selected mailbox; closing", "old", sel.incarnation, "new", inc)
		s.conn.Bye("Mailbox store changed, please reconnect")
		return errClientGone
	}
	if sel.watch.foldersChanged() {
		if err := s.followFolders(ctx, sel); err != nil {
			sel.watch.refolder()
			return err
		}
	}
	fresh, err := s.refresh(ctx, sel)
	if err != nil {
		sel.watch.dirty.Store(true)
		return err
	}
	d := diff(sel.msgs, fresh, sel.uidNext)
	for _, i := range d.expunged {
		sel.msgs = slices.Delete(sel.msgs, i, i+1)
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return errClientGone
		}
	}
	for _, c := range d.changed {
		msg := sel.msgs[c.i]
		old := msg.flags
		msg.m, msg.flags = c.fresh.m, c.fresh.flags
		if !slices.Equal(old, msg.flags) {
			if err := w.WriteMessageFlags(uint32(c.i+1), msg.uid, msg.flags); err != nil {
				return errClientGone
			}
		}
	}
	if len(d.added) > 0 {
		for _, msg := range d.added {
			sel.msgs = append(sel.msgs, msg)
			sel.uidNext = msg.uid + 1
		}
		if err := w.WriteNumMessages(uint32(len(sel.msgs))); err != nil {
			return errClientGone
		}
	}
	if d.late > 0 {
		// Cannot happen with placements (a new one is numbered above
		// every UID shown); kept as a tripwire.
		s.log.Warn("placement below UIDNEXT; shown at the next SELECT", "count", d.late)
	}
	return nil
}
