package session

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// rowCache is what a selected session last read of its account: every
// receive row under the parents it watches (visible or not, so that a row
// acknowledged later can be followed by its key), and this site's
// placements of the selected folder. A sync after a watch event merges the
// rows the event carried, and lists only rows and placements numbered
// above what it has: listing everything again on each event cost a session
// with 10,000 mails in its folders about 160 ms of CPU (dbd's and imapd's)
// for each new mail.
type rowCache struct {
	parents  []*cachedParent // watchKeys order, which is the listing order
	byParent map[model.Key]*cachedParent
	at       map[model.Key]rowAt // receive key -> its row

	placed      []store.PlacedRow // row number order
	placedAfter uint64            // placements above it are not listed yet
}

// cachedParent is the receive rows of one mailbox or folder (APPEND home).
type cachedParent struct {
	key      model.Key
	home     model.FolderID
	appended bool
	after    uint64 // rows above it are not listed yet
	msgs     []mailbox.Message
}

type rowAt struct {
	p *cachedParent
	i int
}

// rowChange is a receive row as a watch event carried it: no content.
type rowChange struct {
	parent model.Key
	key    model.Key
	rowNo  uint64
	state  model.State
}

// loadCache lists everything: placements first, then the rows (see view
// for why that order).
func (s *Session) loadCache(ctx context.Context, f *folder, fs *folderSet, inc uint64) (*rowCache, error) {
	placed, last, err := s.b.cfg.Store.Placements(ctx, f.key, inc, 0)
	if err != nil {
		return nil, err
	}
	c, err := s.accountRows(ctx, fs)
	if err != nil {
		return nil, err
	}
	c.addPlaced(placed)
	c.placedAfter = last
	return c, nil
}

// accountRows lists the account's receive rows: under each of its SMTP
// mailboxes and each folder's APPEND home (watchKeys).
func (s *Session) accountRows(ctx context.Context, fs *folderSet) (*rowCache, error) {
	// at is made by the first listNewer, sized by what it lists.
	c := &rowCache{byParent: map[model.Key]*cachedParent{}}
	for _, b := range s.acct.Mailboxes {
		c.addParent(b.Key, model.FolderInbox, false)
	}
	for _, id := range fs.known {
		c.addParent(model.FolderKey(s.acct.Login, id), id, true)
	}
	for _, p := range c.parents {
		if err := c.listNewer(ctx, s.b.cfg.Store, p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *rowCache) addParent(k model.Key, home model.FolderID, appended bool) {
	if c.byParent[k] != nil {
		return
	}
	p := &cachedParent{key: k, home: home, appended: appended}
	c.parents = append(c.parents, p)
	c.byParent[k] = p
}

// listNewer lists p's rows above p.after into the cache.
func (c *rowCache) listNewer(ctx context.Context, st Store, p *cachedParent) error {
	ms, last, err := st.Rows(ctx, p.key, p.after, p.appended)
	if err != nil {
		return err
	}
	if c.at == nil {
		c.at = make(map[model.Key]rowAt, len(ms))
		if len(p.msgs) == 0 {
			// The cache's first listing (a SELECT's): the rows of one
			// parent are distinct, so they are taken as they are instead
			// of being copied one by one into a slice that grows as it
			// goes (a third of a SELECT's CPU in imapd went to growing
			// the slice and the map).
			p.msgs = ms
			for i := range ms {
				c.at[ms[i].Receive] = rowAt{p: p, i: i}
			}
			p.after = max(p.after, last)
			return nil
		}
	}
	for _, m := range ms {
		c.put(p, m)
	}
	p.after = max(p.after, last)
	return nil
}

// put adds m, or merges its state into the row the cache has.
func (c *rowCache) put(p *cachedParent, m mailbox.Message) {
	if at, ok := c.at[m.Receive]; ok {
		old := &at.p.msgs[at.i]
		old.State = model.Merge(old.State, m.State)
		return
	}
	c.at[m.Receive] = rowAt{p: p, i: len(p.msgs)}
	p.msgs = append(p.msgs, m)
}

// addPlaced adds placements the cache does not have, keeping row order.
func (c *rowCache) addPlaced(ps []store.PlacedRow) {
	if len(c.placed) == 0 && slices.IsSortedFunc(ps, func(a, b store.PlacedRow) int { return cmp.Compare(a.RowNo, b.RowNo) }) {
		c.placed = slices.CompactFunc(ps, func(a, b store.PlacedRow) bool { return a.RowNo == b.RowNo })
		return
	}
	for _, p := range ps {
		i, found := slices.BinarySearchFunc(c.placed, p.RowNo, placedAt)
		if !found {
			c.placed = slices.Insert(c.placed, i, p)
		}
	}
}

// state returns the cache's state of receive row k.
func (c *rowCache) state(k model.Key) (model.State, bool) {
	at, ok := c.at[k]
	if !ok {
		return model.State{}, false
	}
	return at.p.msgs[at.i].State, true
}

// known reports whether the cache has the placement numbered rowNo.
func (c *rowCache) known(rowNo uint64) bool {
	_, found := slices.BinarySearchFunc(c.placed, rowNo, placedAt)
	return found
}

func placedAt(p store.PlacedRow, rowNo uint64) int { return cmp.Compare(p.RowNo, rowNo) }

// update brings the cache up to date after the watch events changes: new
// placements first, then the changed rows' states and the rows numbered
// above what the cache has. It returns false when the cache cannot be
// trusted to be what a fresh listing would give, and the caller must load
// it again: a new placement (another session's, at this site) names mail
// the cache does not show in the folder, because the event that made the
// mail visible has not arrived here yet, and showing the placement later
// could put it below UIDs shown meanwhile.
func (c *rowCache) update(ctx context.Context, st Store, f *folder, inc uint64, changes []rowChange) (bool, error) {
	placed, last, err := st.Placements(ctx, f.key, inc, c.placedAfter)
	if err != nil {
		return false, err
	}
	c.placedAfter = max(c.placedAfter, last)
	var relist []*cachedParent
	for _, ch := range changes {
		if at, ok := c.at[ch.key]; ok {
			m := &at.p.msgs[at.i]
			m.State = model.Merge(m.State, ch.state)
			continue
		}
		// A row the cache has not listed; one listed before and not kept
		// (unreadable content, another mailbox's) is never shown anyway.
		if p := c.byParent[ch.parent]; p != nil && ch.rowNo > p.after && !slices.Contains(relist, p) {
			relist = append(relist, p)
		}
	}
	for _, p := range relist {
		if err := c.listNewer(ctx, st, p); err != nil {
			return false, err
		}
	}
	for _, p := range placed {
		if !c.known(p.RowNo) && !c.shows(p, f.id) {
			return false, nil
		}
	}
	c.addPlaced(placed)
	return true, nil
}

// shows reports whether the cache has p's mail visible in folder id with
// p's membership value.
func (c *rowCache) shows(p store.PlacedRow, id model.FolderID) bool {
	at, ok := c.at[p.Receive]
	if !ok {
		return false
	}
	m := &at.p.msgs[at.i]
	gen, in := model.Member(m.State, at.p.home, id)
	return m.Visible() && in && gen == p.Gen
}

// uidNext returns folder id's UIDNEXT for msgs, its view from this cache:
// above every UID shown and above every placement the cache proves can
// never show its mail again, because the row's membership value for the
// folder has risen past the placement's (moved or expunged) or the row is
// deleted; both only rise. So UIDNEXT does not go down when the newest
// mail leaves the folder (RFC 9051 §2.3.1.1: it changes only when mail is
// added). A placement whose mail the cache does not show for another
// reason (its row's newer state not in yet) may still show under its
// number, so it does not count.
func (c *rowCache) uidNext(id model.FolderID, msgs []*message) imap.UID {
	next := uint64(1)
	if len(msgs) > 0 {
		next = uint64(msgs[len(msgs)-1].uid) + 1
	}
	isMember := model.MemberTest(id)
	for _, p := range c.placed {
		if p.RowNo < next || p.RowNo >= math.MaxUint32 {
			continue
		}
		at, ok := c.at[p.Receive]
		if !ok {
			continue
		}
		st := at.p.msgs[at.i].State
		if gen, _ := isMember(st, at.p.home); gen > p.Gen || st.Col(model.ColDeleted) != 0 {
			next = p.RowNo + 1
		}
	}
	return imap.UID(next)
}

// members returns the visible rows of the cache in folder id, in listing
// order.
func (c *rowCache) members(id model.FolderID) []member {
	// Most of a folder's members are at home in it (INBOX: every SMTP
	// delivery); moved mail makes the slice grow.
	n := 0
	for _, p := range c.parents {
		if p.home == id {
			n += len(p.msgs)
		}
	}
	out := make([]member, 0, n)
	isMember := model.MemberTest(id)
	for _, p := range c.parents {
		for i := range p.msgs {
			m := &p.msgs[i]
			if !m.Visible() {
				continue
			}
			if gen, in := isMember(m.State, p.home); in {
				out = append(out, member{acctMsg: acctMsg{m: *m, home: p.home}, gen: gen})
			}
		}
	}
	return out
}

// raise applies the session's own column sets to the cache, as dbd has
// them now: the watch events of those writes come later, and a sync in
// between must not show the session's client the rows as they were
// before its own command (its flags would flicker back and forth).
func (c *rowCache) raise(sets []store.ColumnSet) {
	for _, cs := range sets {
		if cs.Table != 0 && cs.Table != model.Receive {
			continue
		}
		at, ok := c.at[cs.Receive]
		if !ok {
			continue
		}
		m := &at.p.msgs[at.i]
		st := m.State.Clone()
		if changed, err := st.Set(cs.Column, cs.Value); err == nil && changed {
			m.State = st
		}
	}
}

// statusView is view for STATUS (and LIST-STATUS). With a folder
// selected, the account's rows come from the selected folder's copy,
// brought up to date, and only f's placements are listed: a mail client
// that asks for the STATUS of every folder does not make imapd list the
// whole account each time (with 10,000 mails in INBOX, a listing costs
// about 120 ms of CPU). The changes taken from the watch for that stay
// owed to the selected view: its next sync still reports them. Without a
// selected folder, shared (one LIST-STATUS's folders) lists the rows once;
// nil lists everything for f alone.
func (s *Session) statusView(ctx context.Context, f *folder, fs *folderSet, inc uint64, shared **rowCache) ([]*message, *rowCache, error) {
	sel := s.sel
	if sel == nil || sel.cache == nil || sel.incarnation != inc || !slices.Equal(sel.fs.known, fs.known) {
		if shared == nil {
			return s.view(ctx, f, fs, inc)
		}
		if *shared == nil {
			c, err := s.accountRows(ctx, fs)
			if err != nil {
				return nil, nil, err
			}
			*shared = c
		}
		return s.statusFrom(ctx, f, fs, *shared, inc)
	}
	ok, took, err := s.catchUp(ctx, sel)
	if took {
		sel.watch.mark()
	}
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return s.view(ctx, f, fs, inc)
	}
	return s.statusFrom(ctx, f, fs, sel.cache, inc)
}

// statusFrom builds folder f's view from rows' receive rows and f's
// placements, listed now. The rows were listed before the placements, so
// a placement made meanwhile may name mail they do not show: STATUS then
// counts without it, which the next STATUS corrects; no UID is shown.
func (s *Session) statusFrom(ctx context.Context, f *folder, fs *folderSet, rows *rowCache, inc uint64) ([]*message, *rowCache, error) {
	// The rows are shared and build only reads them; the placements are
	// f's own.
	c := &rowCache{parents: rows.parents, byParent: rows.byParent, at: rows.at}
	placed, last, err := s.b.cfg.Store.Placements(ctx, f.key, inc, 0)
	if err != nil {
		return nil, nil, err
	}
	c.addPlaced(placed)
	c.placedAfter = last
	msgs, err := s.build(ctx, f, c, inc)
	if errors.Is(err, errPlacementRace) {
		return s.view(ctx, f, fs, inc)
	}
	return msgs, c, err
}
