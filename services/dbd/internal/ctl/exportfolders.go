package ctl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Exporting a mailbox's IMAP folders besides its INBOX (docs/dbd.md
// "Export"). The INBOX is what it always was, the mailbox's mail as POP3
// shows it, but for mail moved out of INBOX into one of the exported
// folders (written there, not twice), and with the mail APPENDed or moved
// into INBOX through IMAP added after it. Every other folder of the
// accounts whose folders go with the mailbox (see export) is written
// with the mail imapd shows in it: system folders (Junk, Sent, Trash,
// Drafts) when they hold mail, user folders even when empty (the folder
// itself is kept).

// exportFolder is one folder's mail to write.
type exportFolder struct {
	name string
	id   model.FolderID // whose \Deleted the Maildir T flag is
	msgs []mailbox.Message
}

// exportPlan is what the export of one mailbox writes.
type exportPlan struct {
	inbox   []mailbox.Message
	folders []exportFolder // by name
}

// planExport reads the mail of mailbox box and the folders of the
// accounts owners.
func planExport(ctx context.Context, db folderDB, st *mailbox.Store, owners []account, box model.Key) (exportPlan, error) {
	msgs, err := st.Messages(ctx, box, 0)
	if err != nil {
		return exportPlan{}, err
	}
	var plan exportPlan
	inInbox := map[model.Key]bool{}
	for _, m := range msgs {
		inInbox[m.Receive] = true
	}
	var extra []mailbox.Message
	inFolder := map[model.Key]bool{}
	byName := map[string]int{}
	inPlan := map[string]map[model.Key]bool{}
	for _, a := range owners {
		fl, err := readFolders(ctx, db, a.login)
		if err != nil {
			return exportPlan{}, err
		}
		rows, err := accountMail(ctx, st, a, fl)
		if err != nil {
			return exportPlan{}, err
		}
		for _, f := range fl.live {
			mem := members(rows, f.id)
			if f.id == model.FolderInbox {
				// SMTP deliveries are the mailbox's (or another
				// mailbox's, exported with it); APPENDed mail is the
				// account's.
				for _, r := range mem {
					if r.m.Appended && !inInbox[r.m.Receive] {
						inInbox[r.m.Receive] = true
						extra = append(extra, r.m)
					}
				}
				continue
			}
			if f.id.System() && len(mem) == 0 {
				continue
			}
			i, ok := byName[f.name]
			if !ok {
				i = len(plan.folders)
				byName[f.name] = i
				plan.folders = append(plan.folders, exportFolder{name: f.name, id: f.id})
				inPlan[f.name] = map[model.Key]bool{}
			}
			for _, r := range mem {
				if !inPlan[f.name][r.m.Receive] {
					inPlan[f.name][r.m.Receive] = true
					inFolder[r.m.Receive] = true
					plan.folders[i].msgs = append(plan.folders[i].msgs, r.m)
				}
			}
		}
	}
	for _, m := range msgs {
		if _, in := model.Member(m.State, model.FolderInbox, model.FolderInbox); !in && inFolder[m.Receive] {
			continue // moved out of INBOX into an exported folder
		}
		plan.inbox = append(plan.inbox, m)
	}
	plan.inbox = append(plan.inbox, extra...)
	// Parents before their inferiors: an .eml folder's directory is made
	// before the directories of the folders under it.
	slices.SortFunc(plan.folders, func(a, b exportFolder) int { return strings.Compare(a.name, b.name) })
	return plan, nil
}

// exportPlanned writes a planned export of the mailbox address. single:
// the export of one mailbox (--out is its INBOX's place), else of every
// mailbox (--out holds each one's file or folder).
//
// Layout: Maildir and .eml keep the INBOX where it always was (--out or
// --out/ADDRESS) and add each folder inside it: a Maildir++ ".NAME/"
// Maildir, or an .eml folder NAME/ (fileFolderPath, nested by
// hierarchy). An mbox export of a mailbox without folders is the one
// file it always was; with folders it becomes a folder with INBOX.mbox
// and NAME.mbox per folder (Work/2026.mbox for "Work/2026"), at --out
// for one mailbox or at --out/ADDRESS/ for every mailbox.
func exportPlanned(c *cli.Context, st *mailbox.Store, plan exportPlan, address, format, out string, single bool) error {
	ctx := c.Context
	base := out
	if !single {
		base = filepath.Join(out, fileName(address))
	}
	place := placeOut
	if !single {
		place = placeInOut
	}
	inboxPath := base
	if format == "mbox" {
		switch {
		case len(plan.folders) == 0 && !single:
			inboxPath = base + ".mbox"
		case len(plan.folders) > 0:
			if err := makeExportDir(base, place); err != nil {
				return err
			}
			inboxPath = filepath.Join(base, "INBOX.mbox")
		case isDir(base):
			// --out is an empty folder (export checked it): the one
			// file goes in it, as with folders. Opening the folder
			// itself as the file failed with "file exists".
			inboxPath = filepath.Join(base, "INBOX.mbox")
		}
	}
	if err := exportMails(ctx, st, plan.inbox, format, inboxPath, place, model.FolderInbox); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: %d mails -> %s\n", address, len(plan.inbox), inboxPath)
	for _, f := range plan.folders {
		var path string
		switch format {
		case "maildir":
			path = filepath.Join(base, maildirFolderDir(f.name))
		case "mbox":
			path = filepath.Join(base, filepath.FromSlash(fileFolderPath(f.name))) + ".mbox"
		default:
			path = filepath.Join(base, filepath.FromSlash(fileFolderPath(f.name)))
		}
		// Every folder's file or directory must be new: two names that a
		// file system which ignores case takes for one would share it.
		if err := exportMails(ctx, st, f.msgs, format, path, placeInOut, f.id); err != nil {
			return fmt.Errorf("folder %q: %w", f.name, err)
		}
		if format == "maildir" {
			// Maildir++ marks a folder's Maildir with an empty file
			// "maildirfolder" (Courier, Dovecot).
			if err := writeNewFile(filepath.Join(path, "maildirfolder")); err != nil {
				return fmt.Errorf("folder %q: %w", f.name, err)
			}
		}
		fmt.Fprintf(c.App.Writer, "%s folder %s: %d mails -> %s\n", address, f.name, len(f.msgs), path)
	}
	return nil
}

// makeExportDir makes the folder an mbox export with folders writes to:
// --out of a single export (new, or empty: checked before), or a new
// ADDRESS folder in --out.
func makeExportDir(dir string, place exportPlace) error {
	if place == placeOut {
		return os.MkdirAll(dir, 0o700)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); os.IsExist(err) {
		return fmt.Errorf("%s exists (another mailbox's folder, on a file system that ignores case?)", dir)
	} else if err != nil {
		return err
	}
	return nil
}

// writeNewFile creates an empty file that must not exist.
func writeNewFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// isDir reports whether path is a folder.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
