package ctl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// An account's IMAP folders, read and written with the rows imapd uses
// (pkg/model/imap.go, docs/imapd.md §4), so that export writes what
// imapd shows and import makes folders and mail imapd shows as if the
// user had created and APPENDed them. Folders belong to an account
// (login), not to an SMTP mailbox: an account's INBOX shows the mail of
// all its mailboxes, and its other folders hold mail APPENDed there and
// mail moved or copied there.

// folderDB is what reading and creating folders needs of dbd.
type folderDB interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

var _ folderDB = (*client.Client)(nil)

// imapFolder is one folder of an account.
type imapFolder struct {
	id   model.FolderID
	name string    // as imapd lists it
	key  model.Key // model.FolderKey
}

// systemFolders are imapd's fixed folders, in its LIST order.
var systemFolders = []struct {
	id   model.FolderID
	name string
}{
	{model.FolderInbox, "INBOX"},
	{model.FolderJunk, "Junk"},
	{model.FolderSent, "Sent"},
	{model.FolderTrash, "Trash"},
	{model.FolderDrafts, "Drafts"},
}

// maxUserFolders is imapd's bound on the folders an account creates over
// its life (one column each on the folder set row).
const maxUserFolders = 250

// folderList is an account's folders as read at one moment.
type folderList struct {
	login string
	live  []imapFolder     // system folders, then user folders by name (imapd's LIST)
	known []model.FolderID // every folder ever created: the homes of APPENDed mail
	used  int              // user folders ever created (maxUserFolders)
	ids   map[model.FolderID]bool
}

// userFolder is a user folder's row as read.
type userFolder struct {
	id     model.FolderID
	exists bool
	name   string
}

// readFolders reads login's folders as imapd does (store.UserFolders and
// session.buildFolderSet): deleted folders are known (mail at home there
// may have moved elsewhere) but not live; two folders of one name (made
// at both sites before replication) are both live, the one with the
// higher id named "NAME~" and the last four digits of its id.
func readFolders(ctx context.Context, db folderDB, login string) (*folderList, error) {
	fl := &folderList{login: strings.ToLower(login), ids: map[model.FolderID]bool{}}
	set, err := db.FindKey(ctx, model.Text, model.KeyOf(model.Text, model.FolderSetContent(login)))
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		return nil, fmt.Errorf("find folder set of %s: %w", login, err)
	}
	var users []userFolder
	if set != nil {
		for col, v := range set.State.Cols {
			if id, ok := model.ParseFolderColumn(col); ok && !id.System() {
				users = append(users, userFolder{id: id, exists: model.IsMember(v)})
			}
		}
	}
	fl.used = len(users)
	for i := range users {
		if !users[i].exists {
			continue
		}
		if users[i].name, err = folderName(ctx, db, login, users[i].id); err != nil {
			return nil, err
		}
	}
	taken := map[string]bool{}
	for _, sf := range systemFolders {
		fl.live = append(fl.live, imapFolder{id: sf.id, name: sf.name, key: model.FolderKey(login, sf.id)})
		fl.known = append(fl.known, sf.id)
		taken[strings.ToLower(sf.name)] = true
	}
	slices.SortFunc(users, func(a, b userFolder) int { return cmp.Compare(a.id, b.id) })
	var live []imapFolder
	for _, u := range users {
		fl.known = append(fl.known, u.id)
		if !u.exists || u.name == "" {
			continue
		}
		name := model.FolderListName(u.name, u.id, taken)
		live = append(live, imapFolder{id: u.id, name: name, key: model.FolderKey(login, u.id)})
	}
	slices.SortFunc(live, func(a, b imapFolder) int { return strings.Compare(a.name, b.name) })
	fl.live = append(fl.live, live...)
	for _, id := range fl.known {
		fl.ids[id] = true
	}
	return fl, nil
}

// folderName returns the current name of login's user folder id; "" when
// its rows have not replicated here (imapd does not show it then).
func folderName(ctx context.Context, db folderDB, login string, id model.FolderID) (string, error) {
	row, err := db.FindKey(ctx, model.Text, model.FolderKey(login, id))
	if errors.Is(err, client.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("find folder %s: %w", id, err)
	}
	nk, ok := model.CurrentFolderName(row.State)
	if !ok {
		return "", nil
	}
	nrow, err := db.FindKey(ctx, model.Text, nk)
	if errors.Is(err, client.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("find folder name %s: %w", nk, err)
	}
	got, name, err := model.ParseFolderNameContent(nrow.Content)
	if err != nil || got != id {
		return "", nil // a link to something else: imapd ignores it too
	}
	return name, nil
}

// byName finds a live folder. INBOX and the other system folders match in
// any case (imapd refuses user folders with their names in any case),
// user folders exactly.
func (fl *folderList) byName(name string) (imapFolder, bool) {
	for _, sf := range systemFolders {
		if strings.EqualFold(name, sf.name) {
			return fl.live[slices.IndexFunc(fl.live, func(f imapFolder) bool { return f.id == sf.id })], true
		}
	}
	for _, f := range fl.live {
		if f.name == name {
			return f, true
		}
	}
	return imapFolder{}, false
}

// create makes a user folder named name with the rows imapd's CREATE
// writes (mailbox.CreateFolderRequests), in one batch.
func (fl *folderList) create(ctx context.Context, db folderDB, name string, now time.Time) (imapFolder, error) {
	if err := model.CheckFolderName(name); err != nil {
		return imapFolder{}, err
	}
	if fl.used >= maxUserFolders {
		return imapFolder{}, fmt.Errorf("account %s has created %d folders, imapd's limit", fl.login, maxUserFolders)
	}
	id := model.UserFolderID(rand.Uint64())
	for fl.ids[id] {
		id = model.UserFolderID(rand.Uint64())
	}
	_, err := db.Batch(ctx, mailbox.CreateFolderRequests(fl.login, id, name, now))
	if err != nil {
		return imapFolder{}, fmt.Errorf("create folder %q: %w", name, err)
	}
	f := imapFolder{id: id, name: name, key: model.FolderKey(fl.login, id)}
	fl.live = append(fl.live, f)
	fl.known = append(fl.known, id)
	fl.ids[id] = true
	fl.used++
	return f, nil
}

// keepFolderRequest raises a user folder's "exists" to now, as imapd does
// before it puts mail in (store.KeepFolder): a DELETE at the other site
// during a partition, earlier than the mail, then loses to it.
func keepFolderRequest(login string, id model.FolderID, now time.Time) wire.Request {
	return wire.Request{Op: wire.OpSet, Table: model.Text,
		Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Text, model.FolderSetContent(login))}, Name: model.FolderColumn(id),
		Value: model.MemberValue(now, true)}
}

// account is a pop3 row: a login and the SMTP mailboxes it reads, the
// first being its primary one (as mailbox.Store.Login orders them).
type account struct {
	login string
	boxes []model.Key
}

// readAccounts reads every account.
func readAccounts(ctx context.Context, cl *client.Client) ([]account, error) {
	rows, err := tableLister{Client: cl}.Rows(ctx, model.POP3)
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	var out []account
	for _, r := range rows {
		login, err := model.ParseAccountContent(r.Content)
		if err != nil {
			continue
		}
		out = append(out, account{login: login, boxes: model.AccountMailboxes(r.State)})
	}
	slices.SortFunc(out, func(a, b account) int { return strings.Compare(a.login, b.login) })
	return out, nil
}

// readers returns the accounts that read mailbox mb; with primaryOnly,
// only those whose primary mailbox it is.
func readers(accts []account, mb model.Key, primaryOnly bool) []account {
	var out []account
	for _, a := range accts {
		if primaryOnly && len(a.boxes) > 0 && a.boxes[0] == mb || !primaryOnly && slices.Contains(a.boxes, mb) {
			out = append(out, a)
		}
	}
	return out
}

// accountRow is a receive row of an account's mail and the folder it is
// at home in (INBOX for an SMTP delivery, the folder for APPENDed mail).
type accountRow struct {
	m    mailbox.Message
	home model.FolderID
}

// accountMail lists every receive row of an account, visible or not, as
// imapd does for a SELECT (session.accountRows): under each of its SMTP
// mailboxes, then under each folder's APPEND home, each in row order.
func accountMail(ctx context.Context, st *mailbox.Store, a account, fl *folderList) ([]accountRow, error) {
	var out []accountRow
	seen := map[model.Key]bool{}
	list := func(parent model.Key, home model.FolderID, appended bool) error {
		if seen[parent] {
			return nil
		}
		seen[parent] = true
		ms, _, err := st.Rows(ctx, parent, 0, appended)
		if err != nil {
			return fmt.Errorf("list mail of %s: %w", a.login, err)
		}
		for _, m := range ms {
			out = append(out, accountRow{m: m, home: home})
		}
		return nil
	}
	for _, b := range a.boxes {
		if err := list(b, model.FolderInbox, false); err != nil {
			return nil, err
		}
	}
	for _, id := range fl.known {
		if err := list(model.FolderKey(fl.login, id), id, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// members returns the rows imapd shows in folder id: visible, and members
// of it (model.Member), in accountMail's order.
func members(rows []accountRow, id model.FolderID) []accountRow {
	isMember := model.MemberTest(id)
	var out []accountRow
	for _, r := range rows {
		if _, in := isMember(r.m.State, r.home); in && r.m.Visible() {
			out = append(out, r)
		}
	}
	return out
}
