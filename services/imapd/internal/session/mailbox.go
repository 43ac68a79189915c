package session

import (
	"cmp"
	"context"
	"encoding/binary"
	"hash/fnv"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
)

// inbox is the one folder today (docs/imapd.md "Folders").
const inbox = "INBOX"

// selected is the state of the selected mailbox.
type selected struct {
	name        string
	readOnly    bool
	incarnation uint64
	uidValidity uint32
	uidNext     imap.UID
	msgs        []*message
	watch       *watcher
}

func (sel *selected) stop() {
	if sel.watch != nil {
		sel.watch.stop()
	}
}

// UIDValidity derives a folder's UIDVALIDITY from the store incarnation:
// different stores (the other site, a rebuilt store) give different
// values, so clients never trust a UID across them. Never 0 (RFC 9051
// §2.3.1.1 requires a non-zero value).
func UIDValidity(incarnation uint64, folder string) uint32 {
	h := fnv.New32a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], incarnation)
	h.Write(b[:])
	h.Write([]byte(folder))
	return max(h.Sum32(), 1)
}

// canonical returns the folder name for a client's mailbox name; ok is
// false for a folder that does not exist.
func canonical(name string) (string, bool) {
	if strings.EqualFold(name, inbox) {
		return inbox, true
	}
	return "", false
}

var errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}

// list returns the account's mail (all its mailboxes) in UID order.
func (s *Session) list(ctx context.Context) ([]mailbox.Message, error) {
	var all []mailbox.Message
	for _, b := range s.acct.Mailboxes {
		ms, err := s.b.cfg.Store.Messages(ctx, b.Key, 0)
		if err != nil {
			return nil, err
		}
		all = append(all, ms...)
	}
	if len(s.acct.Mailboxes) > 1 {
		slices.SortFunc(all, func(a, b mailbox.Message) int { return cmp.Compare(a.RowNo, b.RowNo) })
	}
	// A UID is 32 bits: a store with more than 2^32-1 receive rows would
	// need a new UIDVALIDITY scheme (docs/imapd.md).
	for len(all) > 0 && all[len(all)-1].RowNo > math.MaxUint32 {
		all = all[:len(all)-1]
	}
	return all, nil
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

// flagsOf returns a message's flags, resolving hashed keywords.
func (s *Session) flagsOf(ctx context.Context, st model.State) []imap.Flag {
	return flags.Of(st.Cols, func(k model.Key) (string, bool) {
		kw, ok, err := s.b.cfg.Store.Keyword(ctx, k)
		if err != nil {
			s.log.Warn("keyword lookup failed", "err", err)
		}
		return kw, ok
	})
}

func (s *Session) newMessage(ctx context.Context, m mailbox.Message) *message {
	return &message{uid: imap.UID(m.RowNo), m: m, flags: s.flagsOf(ctx, m.State)}
}

// Select is SELECT and EXAMINE.
func (s *Session) Select(name string, options *imap.SelectOptions) (data *imap.SelectData, err error) {
	defer s.track("select", &err)()
	if s.sel != nil {
		s.sel.stop()
		s.sel = nil
	}
	folder, ok := canonical(name)
	if !ok {
		return nil, errNoMailbox
	}
	sel := &selected{name: folder, readOnly: options != nil && options.ReadOnly}
	boxes := make([]model.Key, 0, len(s.acct.Mailboxes))
	for _, b := range s.acct.Mailboxes {
		boxes = append(boxes, b.Key)
	}
	// Watch first, then list: a change between the two marks the view
	// dirty, so the next poll catches it.
	sel.watch, err = startWatch(s.ctx, s.b.cfg.Store, boxes, s.b.cfg.WatchRetry, s.log,
		func() { s.b.cfg.Metrics.Errors.WithLabelValues("watch").Inc() })
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	if sel.incarnation, err = s.b.cfg.Store.Incarnation(ctx); err != nil {
		sel.stop()
		return nil, err
	}
	all, err := s.list(ctx)
	if err != nil {
		sel.stop()
		return nil, err
	}
	sel.uidValidity = UIDValidity(sel.incarnation, folder)
	sel.uidNext = 1
	data = &imap.SelectData{
		Flags:          flags.Permanent,
		PermanentFlags: append(slices.Clone(flags.Permanent), imap.FlagWildcard),
		UIDValidity:    sel.uidValidity,
	}
	for _, m := range all {
		msg := s.newMessage(ctx, m)
		sel.msgs = append(sel.msgs, msg)
		sel.uidNext = msg.uid + 1
		if data.FirstUnseenSeqNum == 0 && !slices.Contains(msg.flags, imap.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(len(sel.msgs))
		}
	}
	if sel.readOnly {
		data.PermanentFlags = nil
	}
	data.NumMessages = uint32(len(sel.msgs))
	data.UIDNext = sel.uidNext
	s.sel = sel
	s.log.Debug("selected", "folder", folder, "read_only", sel.readOnly, "messages", len(sel.msgs))
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

// List is LIST and LSUB.
func (s *Session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	defer s.track("list", &err)()
	for _, p := range patterns {
		if p == "" {
			// RFC 9051 §6.3.9: the hierarchy delimiter and root.
			if err := w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/'}); err != nil {
				return errClientGone
			}
			continue
		}
		for _, name := range []string{inbox} {
			if !imapserver.MatchList(name, '/', ref, p) {
				continue
			}
			data := &imap.ListData{Mailbox: name, Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}}
			if options != nil && options.ReturnStatus != nil {
				if data.Status, err = s.Status(name, options.ReturnStatus); err != nil {
					return err
				}
			}
			if err := w.WriteList(data); err != nil {
				return errClientGone
			}
		}
	}
	return nil
}

// Status is STATUS.
func (s *Session) Status(name string, options *imap.StatusOptions) (data *imap.StatusData, err error) {
	defer s.track("status", &err)()
	folder, ok := canonical(name)
	if !ok {
		return nil, errNoMailbox
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	inc, err := s.b.cfg.Store.Incarnation(ctx)
	if err != nil {
		return nil, err
	}
	all, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	data = &imap.StatusData{Mailbox: folder, UIDValidity: UIDValidity(inc, folder), UIDNext: 1}
	if len(all) > 0 {
		data.UIDNext = imap.UID(all[len(all)-1].RowNo + 1)
	}
	n := uint32(len(all))
	data.NumMessages = &n
	var unseen, deleted uint32
	var size int64
	for _, m := range all {
		if !flags.Has(m.State.Cols, imap.FlagSeen) {
			unseen++
		}
		if flags.Has(m.State.Cols, imap.FlagDeleted) {
			deleted++
		}
		if options != nil && options.Size {
			sz, err := s.b.cfg.Store.Size(ctx, m, s.drop(m))
			if err != nil {
				return nil, err
			}
			size += sz
		}
	}
	data.NumUnseen, data.NumDeleted = &unseen, &deleted
	if options != nil && options.Size {
		data.Size = &size
	}
	if options != nil && options.NumRecent {
		var zero uint32
		data.NumRecent = &zero
	}
	return data, nil
}

var errCannot = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "Folders other than INBOX are not available yet"}

// Create is CREATE: not available yet (docs/imapd.md "What is missing").
func (s *Session) Create(mailbox string, options *imap.CreateOptions) (err error) {
	defer s.track("create", &err)()
	if _, ok := canonical(mailbox); ok {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox exists"}
	}
	return errCannot
}

// Delete is DELETE.
func (s *Session) Delete(mailbox string) (err error) {
	defer s.track("delete", &err)()
	return errCannot
}

// Rename is RENAME.
func (s *Session) Rename(mailbox, newName string, options *imap.RenameOptions) (err error) {
	defer s.track("rename", &err)()
	return errCannot
}

// Subscribe is SUBSCRIBE: every existing folder is subscribed.
func (s *Session) Subscribe(mailbox string) (err error) {
	defer s.track("subscribe", &err)()
	if _, ok := canonical(mailbox); !ok {
		return errNoMailbox
	}
	return nil
}

// Unsubscribe is UNSUBSCRIBE: a no-op (every folder stays subscribed).
func (s *Session) Unsubscribe(mailbox string) (err error) {
	defer s.track("unsubscribe", &err)()
	return nil
}

// Append is APPEND: not available yet.
func (s *Session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (data *imap.AppendData, err error) {
	defer s.track("append", &err)()
	if _, ok := canonical(mailbox); !ok {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "APPEND is not available yet"}
}

// Copy is COPY: not available yet (INBOX is the only folder).
func (s *Session) Copy(numSet imap.NumSet, dest string) (data *imap.CopyData, err error) {
	defer s.track("copy", &err)()
	if _, ok := canonical(dest); !ok {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return nil, errCannot
}

// Move is MOVE: not available yet.
func (s *Session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	defer s.track("move", &err)()
	if s.sel != nil && s.sel.readOnly {
		return errReadOnly
	}
	if _, ok := canonical(dest); !ok {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return errCannot
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
// \Deleted (and, for UID EXPUNGE, in uids) gets the deleted column.
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
	var keys []model.Key
	for i, m := range sel.msgs {
		if slices.Contains(m.flags, imap.FlagDeleted) && (uids == nil || uids.Contains(m.uid)) {
			gone = append(gone, i)
			keys = append(keys, m.m.Receive)
		}
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	if err := s.b.cfg.Store.Delete(ctx, keys); err != nil {
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

// Poll reports changes since the last look (after each command).
func (s *Session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) (err error) {
	if s.sel == nil {
		return nil
	}
	defer s.track("poll", &err)()
	return s.sync(w, allowExpunge)
}

// Idle is IDLE: it reports changes as the mailbox watch announces them
// (push from dbd, no polling) until stop is closed.
func (s *Session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) (err error) {
	defer s.track("idle", &err)()
	if s.sel == nil {
		<-stop
		return nil
	}
	for {
		if err := s.sync(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		case <-s.sel.watch.notify:
		}
	}
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
	fresh, err := s.list(ctx)
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
	if len(d.changed) > 0 {
		byRow := make(map[uint64]mailbox.Message, len(d.changed))
		for _, m := range fresh {
			byRow[m.RowNo] = m
		}
		for _, i := range d.changed {
			msg := sel.msgs[i]
			msg.m = byRow[uint64(msg.uid)]
			old := msg.flags
			msg.flags = s.flagsOf(ctx, msg.m.State)
			if !slices.Equal(old, msg.flags) {
				if err := w.WriteMessageFlags(uint32(i+1), msg.uid, msg.flags); err != nil {
					return errClientGone
				}
			}
		}
	}
	if len(d.added) > 0 {
		for _, m := range d.added {
			msg := s.newMessage(ctx, m)
			sel.msgs = append(sel.msgs, msg)
			sel.uidNext = msg.uid + 1
		}
		if err := w.WriteNumMessages(uint32(len(sel.msgs))); err != nil {
			return errClientGone
		}
	}
	if d.late > 0 {
		s.log.Info("mail acknowledged below UIDNEXT; shown at the next SELECT", "count", d.late)
	}
	return nil
}
