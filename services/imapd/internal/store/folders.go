package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Folder is one user folder of an account as dbd holds it now (the layout
// is in pkg/model/imap.go and docs/imapd.md §4).
type Folder struct {
	ID      model.FolderID
	Name    string // "" while the name row has not replicated here
	Exists  bool   // false once deleted
	Created uint64 // the folder set column value (MemberValue)
	// State is the folder row's state (name links, subscription).
	State model.State
}

// Subscribed reports whether the folder is subscribed (the default).
func Subscribed(st model.State) bool {
	v := st.Col(model.ColSubscribed)
	return v == 0 || v&1 == 1
}

// UserFolders returns every user folder login ever had (deleted ones
// too: mail at home in them may have moved elsewhere), with the current
// names. Folder rows are read concurrently.
func (s *Store) UserFolders(ctx context.Context, login string) ([]Folder, error) {
	set, err := s.db.FindKey(ctx, model.Text, model.KeyOf(model.Text, model.FolderSetContent(login)))
	if errors.Is(err, client.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find folder set: %w", err)
	}
	var out []Folder
	for name, v := range set.State.Cols {
		if id, ok := model.ParseFolderColumn(name); ok && !id.System() {
			out = append(out, Folder{ID: id, Exists: v&1 == 1, Created: v})
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(out))
	sem := make(chan struct{}, 8)
	for i := range out {
		if !out[i].Exists {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = s.loadFolder(ctx, login, &out[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// SystemFolderState returns the state of a system folder's row (its
// subscription); an empty state when it was never written.
func (s *Store) SystemFolderState(ctx context.Context, login string, id model.FolderID) (model.State, error) {
	row, err := s.db.FindKey(ctx, model.Text, model.FolderKey(login, id))
	if errors.Is(err, client.ErrNotFound) {
		return model.State{}, nil
	}
	if err != nil {
		return model.State{}, fmt.Errorf("find folder %s: %w", id, err)
	}
	return row.State, nil
}

func (s *Store) loadFolder(ctx context.Context, login string, f *Folder) error {
	row, err := s.db.FindKey(ctx, model.Text, model.FolderKey(login, f.ID))
	if errors.Is(err, client.ErrNotFound) {
		return nil // not replicated here yet: shown without a name (skipped)
	}
	if err != nil {
		return fmt.Errorf("find folder %s: %w", f.ID, err)
	}
	f.State = row.State
	nk, ok := model.CurrentFolderName(row.State)
	if !ok {
		return nil
	}
	s.mu.Lock()
	name, cached := s.names[nk]
	s.mu.Unlock()
	if !cached {
		nrow, err := s.db.FindKey(ctx, model.Text, nk)
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find folder name %s: %w", nk, err)
		}
		id, n, err := model.ParseFolderNameContent(nrow.Content)
		if err != nil || id != f.ID {
			return nil // a link to something else: ignore it
		}
		name = n
		s.mu.Lock()
		if len(s.names) < 100000 {
			s.names[nk] = name
		}
		s.mu.Unlock()
	}
	f.Name = name
	return nil
}

// CreateFolder stores a new user folder named name, in one batch.
func (s *Store) CreateFolder(ctx context.Context, login string, id model.FolderID, name string, now time.Time) error {
	if _, err := s.db.Batch(ctx, mailbox.CreateFolderRequests(login, id, name, now)); err != nil {
		return fmt.Errorf("create folder: %w", err)
	}
	return nil
}

// Rename is one folder's new name for RenameFolders.
type Rename struct {
	Folder Folder
	Name   string
}

// RenameFolders gives folders new names, in one batch.
func (s *Store) RenameFolders(ctx context.Context, login string, renames []Rename, now time.Time) error {
	var reqs []wire.Request
	for _, r := range renames {
		nc := model.FolderNameContent(r.Folder.ID, r.Name)
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: nc},
			wire.Request{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{ByKey: true, Key: model.FolderKey(login, r.Folder.ID)},
				Name: model.FolderNameColumn(model.KeyOf(model.Text, nc)), Value: model.NameValue(r.Folder.State, now)})
	}
	if _, err := s.db.Batch(ctx, reqs); err != nil {
		return fmt.Errorf("rename %d folders: %w", len(renames), err)
	}
	return nil
}

// DeleteFolder marks a user folder deleted (above its creation value, so
// the deletion wins on both sites).
func (s *Store) DeleteFolder(ctx context.Context, login string, f Folder, now time.Time) error {
	v := max(model.MemberValue(now, false), (f.Created>>1+1)<<1)
	_, err := s.db.Batch(ctx, []wire.Request{{Op: wire.OpSet, Table: model.Text,
		Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Text, model.FolderSetContent(login))}, Name: model.FolderColumn(f.ID), Value: v}})
	if err != nil {
		return fmt.Errorf("delete folder: %w", err)
	}
	return nil
}

// KeepFolder raises a user folder's "exists" value to now before mail is
// put into it (APPEND, COPY, MOVE). A DELETE at the other site during a
// partition, earlier than the mail, then loses to it on both sites (latest
// wins, as for RENAME), and the mail stays visible; a DELETE later than
// the mail wins, as it would at one site (TEST-CATALOG 86).
func (s *Store) KeepFolder(ctx context.Context, login string, id model.FolderID, now time.Time) error {
	_, err := s.db.Batch(ctx, []wire.Request{{Op: wire.OpSet, Table: model.Text,
		Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Text, model.FolderSetContent(login))}, Name: model.FolderColumn(id),
		Value: model.MemberValue(now, true)}})
	if err != nil {
		return fmt.Errorf("keep folder: %w", err)
	}
	return nil
}

// Subscribe records SUBSCRIBE (on) or UNSUBSCRIBE of a folder.
func (s *Store) Subscribe(ctx context.Context, login string, id model.FolderID, st model.State, on bool, now time.Time) error {
	fc := model.FolderContent(login, id)
	v := model.MemberValue(now, on)
	if cur := st.Col(model.ColSubscribed); v <= cur {
		v = (cur>>1 + 1) << 1
		if on {
			v |= 1
		}
	}
	_, err := s.db.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: fc},
		{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: fc}, Name: model.ColSubscribed, Value: v},
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

// Rows lists every receive row under parent above after, visible or not
// (mailbox.Store.Rows).
func (s *Store) Rows(ctx context.Context, parent model.Key, after uint64, appended bool) ([]mailbox.Message, uint64, error) {
	return s.mb.Rows(ctx, parent, after, appended)
}

// PlacedRow is one placement row of this site's listing of one folder:
// RowNo is the UID, and Receive and Gen are the placement's mail and
// membership value (the folder and incarnation are the listing's).
type PlacedRow struct {
	RowNo   uint64
	Receive model.Key
	Gen     uint64
}

// Placements lists this store's placements of folder (incarnation inc)
// with a row number above after, in row number order. last is the highest
// row number listed (after if none).
func (s *Store) Placements(ctx context.Context, folder model.Key, inc uint64, after uint64) (out []PlacedRow, last uint64, err error) {
	parent := model.PlacementParent(folder, inc)
	for {
		rows, err := s.db.List(ctx, model.Text, parent, after, 5000)
		if err != nil {
			return nil, 0, err
		}
		if out == nil {
			out = make([]PlacedRow, 0, len(rows))
		}
		for _, r := range rows {
			after = r.RowNo
			p, err := model.ParsePlacementContent(r.Content)
			// A replicated placement of another site has another parent;
			// checking the incarnation again costs nothing. The folder's
			// validity marker (zero receive key, see Validity) names no
			// mail: a session that kept the placements it listed would
			// take it for another session's placement of mail it cannot
			// see, and list everything again.
			if err != nil || p.Incarnation != inc || p.Folder != folder || p.Receive == (model.Key{}) {
				continue
			}
			out = append(out, PlacedRow{RowNo: r.RowNo, Receive: p.Receive, Gen: p.Gen})
		}
		if len(rows) < 5000 {
			return out, after, nil
		}
	}
}

// Place inserts placement rows (find-or-insert: two sessions placing the
// same mail get the same row) and returns their row numbers, in order.
func (s *Store) Place(ctx context.Context, ps []model.Placement) ([]uint64, error) {
	out := make([]uint64, 0, len(ps))
	for len(ps) > 0 {
		n := min(len(ps), wire.MaxBatchOps)
		reqs := make([]wire.Request, n)
		for i, p := range ps[:n] {
			reqs[i] = wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: model.PlacementContent(p)}
		}
		res, err := s.db.Batch(ctx, reqs)
		if err != nil {
			return nil, fmt.Errorf("place %d mails: %w", n, err)
		}
		if len(res) != n {
			return nil, fmt.Errorf("place %d mails: %d results", n, len(res))
		}
		for _, r := range res {
			out = append(out, r.RowNo)
		}
		ps = ps[n:]
	}
	return out, nil
}

// Validity returns the row number, at this site, of folder's validity
// marker: the placement {inc, folder, zero receive key, gen 0}, inserted
// (find-or-insert) the first time imapd needs the folder's UIDVALIDITY
// here. dbd numbers rows in commit order, so a folder created after
// another gets a higher number at this site, and the number of one folder
// never changes within an incarnation (it survives imapd restarts). No
// receive row has the zero key, so the marker is never taken for a mail.
func (s *Store) Validity(ctx context.Context, folder model.Key, inc uint64) (uint64, error) {
	ck := validityKey{folder: folder, inc: inc}
	s.mu.Lock()
	n, ok := s.validity[ck]
	s.mu.Unlock()
	if ok {
		return n, nil
	}
	nos, err := s.Place(ctx, []model.Placement{{Incarnation: inc, Folder: folder}})
	if err != nil {
		return 0, fmt.Errorf("validity marker: %w", err)
	}
	s.mu.Lock()
	if len(s.validity) < 100000 {
		s.validity[ck] = nos[0]
	}
	s.mu.Unlock()
	return nos[0], nil
}

// validityKey names a folder's validity marker in one store.
type validityKey struct {
	folder model.Key
	inc    uint64
}

// Appendage is a mail for Append.
type Appendage struct {
	Raw    []byte
	Folder model.Key // model.FolderKey of the target
	// Cols are the receive columns to raise (flags, the date, membership
	// when the same mail was APPENDed there before).
	Cols map[string]uint64
}

// AppendRows returns the receive row content and key of an APPEND of raw
// into folder, and the parsed mail rows.
func AppendRows(raw []byte, folder model.Key) (model.MailRows, []byte, model.Key) {
	rows := model.NewMailRows(raw)
	rc := model.ReceiveContent(rows.MailKey, folder)
	return rows, rc, model.KeyOf(model.Receive, rc)
}

// FindReceive returns a receive row (nil when it does not exist here).
func (s *Store) FindReceive(ctx context.Context, k model.Key) (*wire.Row, error) {
	row, err := s.db.FindMeta(ctx, model.Receive, k)
	if errors.Is(err, client.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find receive %s: %w", k, err)
	}
	return row, nil
}

// Append stores a mail APPENDed into a folder like smtpd stores a
// delivery (header, body, received, mail, msgid rows) plus a receive row
// whose "mailbox" is the folder key, in one atomic batch. It returns the
// receive row's key.
func (s *Store) Append(ctx context.Context, a Appendage) (model.Key, error) {
	rows, rc, rk := AppendRows(a.Raw, a.Folder)
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
	}
	if len(rows.Received) > 0 {
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: rk},
				Name: model.AppendedReceivedColumn(rows.ReceivedKey), Value: 1})
	}
	if rows.MsgID != nil {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.MsgID, Content: rows.MsgID})
	}
	for c, v := range a.Cols {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: rk}, Name: c, Value: v})
	}
	if _, err := s.db.Batch(ctx, reqs); err != nil {
		return model.Key{}, fmt.Errorf("append: %w", err)
	}
	return rk, nil
}
