package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Importing into IMAP folders (docs/dbd.md "Import"). A mail for a folder
// other than INBOX is stored as imapd's APPEND stores it
// (store.Append): the mail rows, and a receive row whose "mailbox" is the
// folder's key, with its INTERNALDATE (imap.date), its Received fields'
// link (imap.rcvd.*) and its flags, \Deleted in that folder only. The
// folder is created as imapd's CREATE does if the account has none of
// that name. The receive row's key is the same at every import, so a
// second import finds it ("already there"); so is a mail imapd already
// shows in the folder (moved there, or exported from it with smtpd's
// Return-Path), and a mail the user moved out or expunged is not brought
// back. Mail for INBOX is stored as before, as smtpd delivers it to the
// mailbox.

// importJob is one source of mail and where it goes.
type importJob struct {
	folder string // "" for INBOX: the mailbox's mail, as smtpd delivers it
	path   string // for messages
	src    importSource
	err    error // a folder that cannot be imported (its name): reported, not read
}

// importJobs opens what an import reads: an mbox, or a Maildir with its
// Maildir++ folders (each ".NAME" directory that has cur/ or new/, in
// name order, after the INBOX). With folder, the whole mbox or the
// Maildir's own mail goes to that folder.
func importJobs(format, path, folder string, q mboxQuoting, maxSize int) ([]importJob, error) {
	if strings.EqualFold(folder, "INBOX") {
		folder = ""
	}
	switch format {
	case "mbox":
		f, err := os.Open(path)
		if err != nil {
			return nil, usageError("import: %v", err)
		}
		return []importJob{{folder: folder, path: path, src: &mboxSource{f: f, r: newMboxReader(f, q, maxSize)}}}, nil
	case "maildir":
	default:
		return nil, usageError("import: --format %q: want mbox or maildir", format)
	}
	if folder != "" {
		src, err := newMaildirSource(path, maxSize)
		if err != nil {
			return nil, usageError("import: %v", err)
		}
		return []importJob{{folder: folder, path: path, src: src}}, nil
	}
	var jobs []importJob
	if isMaildir(path) {
		src, err := newMaildirSource(path, maxSize)
		if err != nil {
			return nil, usageError("import: %v", err)
		}
		jobs = append(jobs, importJob{path: path, src: src})
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, usageError("import: %v", err)
	}
	var dirs []string
	for _, e := range ents {
		if n := e.Name(); e.IsDir() && strings.HasPrefix(n, ".") && n != "." && n != ".." && isMaildir(filepath.Join(path, n)) {
			dirs = append(dirs, n)
		}
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		sub := filepath.Join(path, d)
		name, err := parseMaildirFolderDir(d)
		if err != nil {
			jobs = append(jobs, importJob{path: sub, err: err})
			continue
		}
		if strings.EqualFold(name, "INBOX") {
			name = "" // Dovecot's INBOX-prefixed layouts
		}
		src, err := newMaildirSource(sub, maxSize)
		if err != nil {
			jobs = append(jobs, importJob{path: sub, err: err})
			continue
		}
		jobs = append(jobs, importJob{folder: name, path: sub, src: src})
	}
	if len(jobs) == 0 {
		return nil, usageError("import: %s is not a Maildir (no cur/ or new/, and no Maildir++ folder)", path)
	}
	return jobs, nil
}

// isMaildir reports whether dir has a cur/ or a new/ folder.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// importFolder is an IMAP folder mail is imported into.
type importFolder struct {
	login    string
	id       model.FolderID
	key      model.Key          // model.FolderKey: the parent of its APPENDed mail
	have     map[model.Key]bool // receive rows APPENDed there before, shown or not
	haveMail map[model.Key]bool // the mail rows imapd shows in it now
}

// importFolders finds (or creates) the folders the jobs import into, in
// the account --login names or else the one that reads mailbox mb. The
// result maps a folder name to its folder; nil when no job has one.
func importFolders(c *cli.Context, cl *client.Client, jobs []importJob, mb model.Key, now time.Time) (map[string]*importFolder, error) {
	var names []string
	for _, j := range jobs {
		if j.err != nil {
			fmt.Fprintf(c.App.ErrWriter, "dbctl: import: %s: %v\n", j.path, j.err)
		} else if j.folder != "" {
			names = append(names, j.folder)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	ctx := c.Context
	acct, err := importAccount(c, cl, mb)
	if err != nil {
		return nil, err
	}
	fl, err := readFolders(ctx, cl, acct.login)
	if err != nil {
		return nil, err
	}
	out := map[string]*importFolder{}
	for _, name := range names {
		if out[name] != nil {
			continue
		}
		f, ok := fl.byName(name)
		if !ok {
			if f, err = fl.create(ctx, cl, name, now); err != nil {
				return nil, fmt.Errorf("import: %w", err)
			}
			fmt.Fprintf(c.App.ErrWriter, "dbctl: import: folder %s of %s created\n", name, acct.login)
		}
		out[name] = &importFolder{login: fl.login, id: f.id, key: f.key, have: map[model.Key]bool{}, haveMail: map[model.Key]bool{}}
	}
	rows, err := accountMail(ctx, mailbox.New(cl), acct, fl)
	if err != nil {
		return nil, err
	}
	for _, f := range out {
		for _, r := range rows {
			if r.m.Mailbox == f.key {
				f.have[r.m.Receive] = true
			}
		}
		for _, r := range members(rows, f.id) {
			f.haveMail[r.m.Mail] = true
		}
	}
	return out, nil
}

// importAccount returns the account whose folders an import fills:
// --login, or the one account that reads mailbox mb.
func importAccount(c *cli.Context, cl *client.Client, mb model.Key) (account, error) {
	ctx := c.Context
	if login := c.String("login"); login != "" {
		row, err := cl.FindKey(ctx, model.POP3, model.KeyOf(model.POP3, model.AccountContent(login)))
		if errors.Is(err, client.ErrNotFound) {
			fmt.Fprintf(c.App.ErrWriter, "dbctl: import: no account %s\n", strings.ToLower(login))
			return account{}, cli.Exit("", ExitNotFound)
		}
		if err != nil {
			return account{}, fmt.Errorf("find account %s: %w", login, err)
		}
		return account{login: strings.ToLower(login), boxes: model.AccountMailboxes(row.State)}, nil
	}
	accts, err := readAccounts(ctx, cl)
	if err != nil {
		return account{}, err
	}
	rs := readers(accts, mb, false)
	switch len(rs) {
	case 1:
		return rs[0], nil
	case 0:
		fmt.Fprintf(c.App.ErrWriter, "dbctl: import: IMAP folders belong to an account, and no account reads this mailbox: "+
			"add one (dbctl user add LOGIN --mailbox ADDRESS) or pass --login\n")
		return account{}, cli.Exit("", ExitNotFound)
	}
	logins := make([]string, len(rs))
	for i, a := range rs {
		logins[i] = a.login
	}
	return account{}, usageError("import: accounts %s read this mailbox: pass --login", strings.Join(logins, ", "))
}

// appendRequests returns the batch that stores the mail of it (split into
// r) in folder f as imapd's APPEND does, and the key of its receive row.
func appendRequests(it importItem, r model.MailRows, f *importFolder, now time.Time) ([]wire.Request, model.Key) {
	reqs := make([]wire.Request, 0, 12)
	add := func(t model.Table, content []byte) {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: t, Content: content})
	}
	receive := model.ReceiveContent(r.MailKey, f.key)
	rk := model.KeyOf(model.Receive, receive)
	ref := wire.Ref{ByKey: true, Key: rk}
	set := func(col string, v uint64) {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: col, Value: v})
	}
	add(model.Header, r.Parts.Header)
	add(model.Body, r.Parts.Body)
	add(model.Mail, r.Mail)
	add(model.Receive, receive)
	if len(r.Received) > 0 {
		add(model.Received, r.Received)
		set(model.AppendedReceivedColumn(r.ReceivedKey), 1)
	}
	if r.MsgID != nil {
		add(model.MsgID, r.MsgID)
	}
	at := it.at
	if at.IsZero() {
		at = now
	}
	set(model.ColAppendDate, uint64(max(at.UnixMilli(), 1)))
	for _, col := range flagColumns(it.flags, f.id) {
		set(col, model.MemberValue(now, true))
	}
	return reqs, rk
}
