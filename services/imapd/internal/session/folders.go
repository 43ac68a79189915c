package session

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"reflect"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// delim is the hierarchy delimiter of folder names.
const delim = '/'

// Namespace answers NAMESPACE (RFC 2342): every folder is personal, at the
// root, with delim between levels; there are no other users' or shared
// folders. Clients ask it to learn where to create folders.
func (s *Session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// folder is one selectable folder of the logged-in account.
type folder struct {
	id    model.FolderID
	name  string
	key   model.Key // model.FolderKey
	attr  imap.MailboxAttr
	state model.State   // the folder row (user folders)
	user  *store.Folder // nil for system folders
}

// systemFolders are the folders every account has (docs/imapd.md §4).
var systemFolders = []struct {
	id   model.FolderID
	name string
	attr imap.MailboxAttr
}{
	{model.FolderInbox, inbox, ""},
	{model.FolderJunk, "Junk", imap.MailboxAttrJunk},
	{model.FolderSent, "Sent", imap.MailboxAttrSent},
	{model.FolderTrash, "Trash", imap.MailboxAttrTrash},
	{model.FolderDrafts, "Drafts", imap.MailboxAttrDrafts},
}

// folderSet is the account's folders as read at one moment.
type folderSet struct {
	live  []folder         // selectable: system folders, then user folders by name
	known []model.FolderID // every folder id ever created (homes of APPENDed mail)
	users []store.Folder   // every user folder, deleted ones too
	ids   map[model.FolderID]*folder
}

// byName finds a live folder; INBOX is case-insensitive (RFC 9051 §5.1).
func (fs *folderSet) byName(name string) (*folder, bool) {
	if strings.EqualFold(name, inbox) {
		name = inbox
	}
	for i := range fs.live {
		if fs.live[i].name == name {
			return &fs.live[i], true
		}
	}
	return nil, false
}

// isSystemName reports whether name is (a case variant of) a system
// folder's name: user folders may not take one.
func isSystemName(name string) bool {
	for _, sf := range systemFolders {
		if strings.EqualFold(sf.name, name) {
			return true
		}
	}
	return false
}

// buildFolderSet makes the folder set from the user folders dbd holds. Two
// folders created with the same name at both sites before replication
// keep both: the one with the smaller id shows the name, the other gets
// its id's last digits appended, so LIST never shows a name twice. It is
// pure.
func buildFolderSet(login string, users []store.Folder) *folderSet {
	fs := &folderSet{users: users, ids: map[model.FolderID]*folder{}}
	taken := map[string]bool{}
	for _, sf := range systemFolders {
		fs.live = append(fs.live, folder{id: sf.id, name: sf.name, key: model.FolderKey(login, sf.id), attr: sf.attr})
		fs.known = append(fs.known, sf.id)
		taken[strings.ToLower(sf.name)] = true
	}
	sorted := slices.Clone(users)
	slices.SortFunc(sorted, func(a, b store.Folder) int { return cmp.Compare(a.ID, b.ID) })
	var user []folder
	for i := range sorted {
		u := &sorted[i]
		fs.known = append(fs.known, u.ID)
		if !u.Exists || u.Name == "" {
			continue
		}
		name := model.FolderListName(u.Name, u.ID, taken)
		user = append(user, folder{id: u.ID, name: name, key: model.FolderKey(login, u.ID), state: u.State, user: u})
	}
	slices.SortFunc(user, func(a, b folder) int { return strings.Compare(a.name, b.name) })
	fs.live = append(fs.live, user...)
	for i := range fs.live {
		fs.ids[fs.live[i].id] = &fs.live[i]
	}
	return fs
}

// checkFolderName reports whether a client may give a user folder name:
// one model.CheckFolderName takes (the rule dbctl applies too, and the
// other site's rows are read by) that names no system folder.
func checkFolderName(name string) error {
	switch {
	case len(name) > model.MaxFolderNameLen:
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Folder names are 1 to 512 bytes"}
	case model.CheckFolderName(name) != nil:
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "Folder names may not be empty, hold *, % or control characters, start or end with / or hold //"}
	case isSystemName(name):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "That is a system folder"}
	}
	return nil
}

// folders reads the account's folders.
func (s *Session) folders() (*folderSet, error) {
	ctx, cancel := s.dbctx()
	defer cancel()
	users, err := s.b.cfg.Store.UserFolders(ctx, s.acct.Login)
	if err != nil {
		return nil, err
	}
	return buildFolderSet(s.acct.Login, users), nil
}

// hasChildren reports whether a folder name has live inferiors.
func (fs *folderSet) hasChildren(name string) bool {
	for _, f := range fs.live {
		if strings.HasPrefix(f.name, name+string(delim)) {
			return true
		}
	}
	return false
}

// attrs returns the attributes LIST shows for live folder f without
// selection options (see List): whether it has inferiors (CHILDREN, RFC
// 3348) and its special use (RFC 6154).
func (fs *folderSet) attrs(f *folder) []imap.MailboxAttr {
	attrs := []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}
	if fs.hasChildren(f.name) {
		attrs[0] = imap.MailboxAttrHasChildren
	}
	if f.attr != "" {
		attrs = append(attrs, f.attr)
	}
	return attrs
}

// implied returns, sorted, the names of the hierarchy levels above live
// folders that are no folder themselves.
func (fs *folderSet) implied() []string {
	var out []string
	for _, f := range fs.live {
		for i := strings.IndexRune(f.name, delim); i > 0; {
			up := f.name[:i]
			if _, ok := fs.byName(up); !ok && !slices.Contains(out, up) {
				out = append(out, up)
			}
			j := strings.IndexRune(f.name[i+1:], delim)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	slices.Sort(out)
	return out
}

// inboxCase spells a leading INBOX of a name, reference or pattern in
// capitals: INBOX alone, or followed by the delimiter or a wildcard.
func inboxCase(s string) string {
	n := len(inbox)
	if len(s) >= n && strings.EqualFold(s[:n], inbox) && (len(s) == n || strings.ContainsRune(string(delim)+"*%", rune(s[n]))) {
		return inbox + s[n:]
	}
	return s
}

// subscribed reports whether f is subscribed (reading a system folder's
// row when needed).
func (s *Session) subscribed(f *folder) (bool, error) {
	if f.user != nil {
		return store.Subscribed(f.state), nil
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	st, err := s.b.cfg.Store.SystemFolderState(ctx, s.acct.Login, f.id)
	if err != nil {
		return false, err
	}
	f.state = st
	return store.Subscribed(st), nil
}

// List is LIST and LSUB (with SUBSCRIBED selection and STATUS/SPECIAL-USE
// return options).
func (s *Session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	defer s.track("list", &err)()
	if options != nil && options.ReturnStatus != nil && options.ReturnStatus.DeletedStorage {
		return errStatusItem // before any LIST response: see errStatusItem
	}
	fs, err := s.folders()
	if err != nil {
		return err
	}
	var rows *rowCache // the account's rows, listed once for all STATUS answers
	if len(patterns) == 0 {
		// go-imap drops an empty pattern: `LIST ref ""` asks for the
		// hierarchy delimiter and root (RFC 9051 §6.3.9).
		patterns = []string{""}
	}
	implied := fs.implied()
	lsub := isLsub(w)
	for _, p := range patterns {
		if p == "" {
			// RFC 9051 §6.3.9: the hierarchy delimiter and root.
			if err := w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim}); err != nil {
				return errClientGone
			}
			continue
		}
		// INBOX is case-insensitive (RFC 9051 §5.1), in patterns too:
		// INBOX and its inferiors match either spelling.
		match := func(name string) bool {
			if imapserver.MatchList(name, delim, ref, p) {
				return true
			}
			isInbox := name == inbox || strings.HasPrefix(name, inbox+string(delim))
			return isInbox && imapserver.MatchList(name, delim, inboxCase(ref), inboxCase(p))
		}
		// A level of the hierarchy that is no folder (`a` and `a/b` of
		// a folder `a/b/c`) is listed \Noselect, as RFC 3501 §6.3.8 asks
		// for `%` and Dovecot does for any pattern: without it a client
		// that lists level by level never finds `a/b/c`.
		if options == nil || !options.SelectSubscribed && !options.SelectSpecialUse {
			for _, name := range implied {
				if !match(name) {
					continue
				}
				data := &imap.ListData{Mailbox: name, Delim: delim,
					Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}}
				if err := w.WriteList(data); err != nil {
					return errClientGone
				}
			}
		}
		written := map[string]bool{}
		for i := range fs.live {
			f := &fs.live[i]
			if !match(f.name) {
				continue
			}
			data := &imap.ListData{Mailbox: f.name, Delim: delim}
			if fs.hasChildren(f.name) {
				data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
			} else {
				data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
			}
			if f.attr != "" && (options == nil || !options.SelectSpecialUse || options.ReturnSpecialUse) {
				data.Attrs = append(data.Attrs, f.attr)
			}
			if options != nil && options.SelectSpecialUse && f.attr == "" {
				continue
			}
			if options != nil && (options.SelectSubscribed || options.ReturnSubscribed) {
				sub, err := s.subscribed(f)
				if err != nil {
					return err
				}
				if options.SelectSubscribed && !sub {
					continue
				}
				if sub {
					data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
				}
			}
			if options != nil && options.ReturnStatus != nil {
				if data.Status, err = s.status(f, fs, options.ReturnStatus, &rows); err != nil {
					return err
				}
			}
			written[f.name] = true
			if err := w.WriteList(data); err != nil {
				return errClientGone
			}
		}
		if lsub && strings.ContainsRune(p, '%') {
			if err := s.lsubLevels(w, fs, p, match, written); err != nil {
				return err
			}
		}
	}
	return nil
}

// lsubLevels writes LSUB's levels for pattern p: RFC 3501 §6.3.9 "if
// foo/bar is subscribed but foo is not, LSUB with % must return foo, not
// foo/bar, flagged \Noselect", so that a client reading LSUB level by
// level finds foo/bar. written are the names LSUB already gave.
func (s *Session) lsubLevels(w *imapserver.ListWriter, fs *folderSet, p string, match func(string) bool, written map[string]bool) error {
	for i := range fs.live {
		f := &fs.live[i]
		if !strings.ContainsRune(f.name, delim) || match(f.name) {
			continue
		}
		sub, err := s.subscribed(f)
		if err != nil {
			return err
		}
		if !sub {
			continue
		}
		for j := strings.IndexRune(f.name, delim); j > 0; {
			if up := f.name[:j]; !written[up] && match(up) {
				written[up] = true
				data := &imap.ListData{Mailbox: up, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}}
				if err := w.WriteList(data); err != nil {
					return errClientGone
				}
			}
			k := strings.IndexRune(f.name[j+1:], delim)
			if k < 0 {
				break
			}
			j += 1 + k
		}
	}
	return nil
}

// isLsub reports whether go-imap called List for LSUB (its writer then
// writes LSUB responses) rather than for LIST (SUBSCRIBED), whose
// options are the same: go-imap v2.0.0-beta.8 gives no other way to
// tell, and the two answer "%" differently (lsubLevels; RFC 5258 lists
// only subscribed names).
func isLsub(w *imapserver.ListWriter) bool {
	if w == nil {
		return false
	}
	f := reflect.ValueOf(w).Elem().FieldByName("lsub")
	return f.IsValid() && f.Kind() == reflect.Bool && f.Bool()
}

var errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}

var errTryCreate = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}

// Create is CREATE: a new user folder with a random id.
func (s *Session) Create(name string, options *imap.CreateOptions) (err error) {
	defer s.track("create", &err)()
	name = strings.TrimSuffix(name, string(delim)) // RFC 9051 §6.3.4
	fs, err := s.folders()
	if err != nil {
		return err
	}
	if _, ok := fs.byName(name); ok {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox exists"}
	}
	if err := checkFolderName(name); err != nil {
		return err
	}
	if len(fs.users) >= maxUserFolders {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Too many folders"}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id := model.UserFolderID(binary.BigEndian.Uint64(b[:]))
	ctx, cancel := s.dbctx()
	defer cancel()
	return s.b.cfg.Store.CreateFolder(ctx, s.acct.Login, id, name, s.b.cfg.Now())
}

// maxUserFolders bounds the folders an account can ever create: each is a
// column of its folder set row (model.MaxColumns).
const maxUserFolders = model.MaxColumns - 6

// Rename is RENAME: the folder and its inferiors get new name links (their
// ids, mail and UIDs stay).
func (s *Session) Rename(old, newName string, options *imap.RenameOptions) (err error) {
	defer s.track("rename", &err)()
	fs, err := s.folders()
	if err != nil {
		return err
	}
	old = strings.TrimSuffix(old, string(delim))
	f, ok := fs.byName(old)
	switch {
	case !ok && !fs.hasChildren(old):
		return errNoMailbox
	case ok && f.user == nil:
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "System folders cannot be renamed"}
	}
	newName = strings.TrimSuffix(newName, string(delim))
	if _, ok := fs.byName(newName); ok {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox exists"}
	}
	if err := checkFolderName(newName); err != nil {
		return err
	}
	// A level that is no folder (`a/b` of `a/b/c`) is renamed by
	// renaming its inferiors (RFC 9051 §6.3.6), as Dovecot does.
	var renames []store.Rename
	if ok {
		renames = append(renames, store.Rename{Folder: *f.user, Name: newName})
	}
	for _, c := range fs.live {
		if c.user != nil && strings.HasPrefix(c.name, old+string(delim)) {
			n := newName + c.name[len(old):]
			if checkFolderName(n) != nil {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "A subfolder's new name is not allowed"}
			}
			// A subfolder's new name may be taken even when newName is
			// free (c/x of RENAME a c with a/x): two folders of one name
			// would show as name and name~id, and the client's folder
			// could be the one whose name changes.
			if _, taken := fs.byName(n); taken {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "A subfolder's new name exists"}
			}
			renames = append(renames, store.Rename{Folder: *c.user, Name: n})
		}
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	return s.b.cfg.Store.RenameFolders(ctx, s.acct.Login, renames, s.b.cfg.Now())
}

// Delete is DELETE: the folder's mail is expunged from it, then the folder
// is marked deleted. Inferior folders stay (they are selectable).
func (s *Session) Delete(name string) (err error) {
	defer s.track("delete", &err)()
	fs, err := s.folders()
	if err != nil {
		return err
	}
	f, ok := fs.byName(name)
	if !ok {
		return errNoMailbox
	}
	if f.user == nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "System folders cannot be deleted"}
	}
	if s.sel != nil && s.sel.folder.id == f.id {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Unselect the folder first"}
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	inc, err := s.b.cfg.Store.Incarnation(ctx)
	if err != nil {
		return err
	}
	msgs, _, err := s.view(ctx, f, fs, inc)
	if err != nil {
		return err
	}
	if err := s.removeFrom(ctx, f, fs, msgs); err != nil {
		return err
	}
	return s.b.cfg.Store.DeleteFolder(ctx, s.acct.Login, *f.user, s.b.cfg.Now())
}

// Subscribe is SUBSCRIBE.
func (s *Session) Subscribe(name string) (err error) {
	defer s.track("subscribe", &err)()
	return s.subscribe(name, true)
}

// Unsubscribe is UNSUBSCRIBE.
func (s *Session) Unsubscribe(name string) (err error) {
	defer s.track("unsubscribe", &err)()
	return s.subscribe(name, false)
}

func (s *Session) subscribe(name string, on bool) error {
	fs, err := s.folders()
	if err != nil {
		return err
	}
	f, ok := fs.byName(name)
	if !ok {
		if on {
			return errNoMailbox
		}
		return nil // unsubscribing a gone folder is harmless
	}
	if _, err := s.subscribed(f); err != nil {
		return err
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	return s.b.cfg.Store.Subscribe(ctx, s.acct.Login, f.id, f.state, on, s.b.cfg.Now())
}

// errStatusItem refuses a STATUS item of an extension imapd does not
// offer; go-imap parses DELETED-STORAGE (QUOTA, RFC 9208 §4.2) whatever
// the capabilities, and its writer dereferences the value: left unset,
// the panic ended the connection without an answer.
var errStatusItem = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
	Text: "Unknown STATUS data item"}

// Status is STATUS.
func (s *Session) Status(name string, options *imap.StatusOptions) (data *imap.StatusData, err error) {
	defer s.track("status", &err)()
	if options != nil && options.DeletedStorage {
		return nil, errStatusItem
	}
	fs, err := s.folders()
	if err != nil {
		return nil, err
	}
	f, ok := fs.byName(name)
	if !ok {
		return nil, errNoMailbox
	}
	return s.status(f, fs, options, nil)
}

// status answers STATUS of f; shared, if not nil, keeps the account's rows
// for the next folder of the same command (see statusView).
func (s *Session) status(f *folder, fs *folderSet, options *imap.StatusOptions, shared **rowCache) (*imap.StatusData, error) {
	ctx, cancel := s.dbctx()
	defer cancel()
	inc, err := s.b.cfg.Store.Incarnation(ctx)
	if err != nil {
		return nil, err
	}
	msgs, c, err := s.statusView(ctx, f, fs, inc, shared)
	if err != nil {
		return nil, err
	}
	uv, err := s.uidValidity(ctx, inc, f)
	if err != nil {
		return nil, err
	}
	data := &imap.StatusData{Mailbox: f.name, UIDValidity: uv}
	// UIDNEXT: the next placement's row number is above every text row
	// so far, so the next UID used is at least this (higher when other
	// text rows took numbers in between, which RFC 9051 §2.3.1.1 allows:
	// UIDs need only ascend).
	data.UIDNext = c.uidNext(f.id, msgs)
	n := uint32(len(msgs))
	data.NumMessages = &n
	var unseen, deleted uint32
	var size int64
	for _, m := range msgs {
		if !slices.Contains(m.flags, imap.FlagSeen) {
			unseen++
		}
		if slices.Contains(m.flags, imap.FlagDeleted) {
			deleted++
		}
		if options != nil && options.Size {
			sz, err := s.b.cfg.Store.Size(ctx, m.m, s.drop(m.m))
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
	if options != nil && options.AppendLimit {
		// RFC 7889 §5: NIL, what go-imap writes for an unset value,
		// means the mailbox takes mail of any size.
		limit := uint32(appendLimit)
		data.AppendLimit = &limit
	}
	return data, nil
}
