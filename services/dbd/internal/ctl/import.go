package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// import: migration from another server's mbox or Maildir. Each mail is
// stored as smtpd stores a received one (header, body, received, mail,
// msgid and receive rows) and put in the mailbox as smtpd's acknowledgement
// does (ack and the received link, whose value — the arrival time — comes
// from the mbox separator or the Maildir file's modification time), with
// an operator verdict accept, all in one atomic batch per group of mails.
// backupd then replicates the rows and marks them backed up like any
// received mail.
//
// Re-importing adds nothing: the rows are keyed by content, so a mail maps
// to the same receive row again; a receive row already acknowledged in the
// mailbox is left alone (not even its columns are raised) and counted as
// already there. A mail the mailbox's user deleted stays deleted.

func importCmd() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "store the mail of an mbox file or a Maildir (with its Maildir++ folders) in mailbox ADDRESS (migration); prints N new, M already there",
		ArgsUsage: "PATH",
		Description: "Every message is checked on its own: a bad one is reported (with its mbox line or file name) and\n" +
			"skipped, the rest are imported, and the exit status is 1 if any failed. Importing again adds nothing.\n" +
			"A Maildir's Maildir++ folders (.NAME/) go into the IMAP folders of those names of the account reading\n" +
			"ADDRESS (--login if several do); --folder NAME puts an mbox or a Maildir into one IMAP folder.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mailbox", Required: true, Usage: "the mailbox ADDRESS (created if missing)"},
			&cli.StringFlag{Name: "format", Required: true, Usage: "mbox or maildir"},
			&cli.StringFlag{Name: "mbox-quoting", Value: "mboxrd", Usage: `how ">From " lines are unquoted: mboxrd or mboxo`},
			&cli.IntFlag{Name: "max-size", Value: 64 << 20, Usage: "largest mail in bytes"},
			&cli.IntFlag{Name: "batch", Value: 256, Usage: "mails per atomic batch"},
			&cli.StringFlag{Name: "folder", Usage: "store the mail in this IMAP folder (created if missing) instead of INBOX; for a Maildir, only its own cur/ and new/"},
			&cli.StringFlag{Name: "login", Usage: "the account whose IMAP folders get the folder mail (default: the one account reading --mailbox)"},
		},
		Action: importMail,
	}
}

// importItem is one message of the source.
type importItem struct {
	where string    // for messages: "line N" or a file name
	raw   []byte    // the mail
	at    time.Time // arrival; zero = now
	flags string    // Maildir flags (DFRST)
	err   error     // a problem with this message
}

// importSource yields the messages of an mbox or a Maildir; next returns
// io.EOF after the last. Other errors abort the import.
type importSource interface {
	next() (importItem, error)
	close() error
}

func importMail(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("import: want --mailbox ADDRESS --format mbox|maildir PATH")
	}
	path := c.Args().First()
	addr := model.MailboxContent(c.String("mailbox"))
	if !strings.Contains(string(addr), "@") {
		return usageError("import: --mailbox %q is not an address (LOCAL@DOMAIN)", c.String("mailbox"))
	}
	maxSize, batchMails := c.Int("max-size"), c.Int("batch")
	if maxSize <= 0 || batchMails <= 0 {
		return usageError("import: --max-size and --batch must be positive")
	}
	q, err := parseMboxQuoting(c.String("mbox-quoting"))
	if err != nil {
		return usageError("import: %v", err)
	}
	folderName := c.String("folder")
	if folderName != "" {
		if err := model.CheckFolderName(folderName); err != nil {
			return usageError("import: --folder %q: %v", folderName, err)
		}
	}
	jobs, err := importJobs(c.String("format"), path, folderName, q, maxSize)
	if err != nil {
		return err
	}
	defer func() {
		for _, j := range jobs {
			if j.src != nil {
				j.src.close()
			}
		}
	}()

	cl, err := dial(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := c.Context
	mbKey := model.KeyOf(model.Mailbox, addr)
	_, isNew, err := cl.FindOrInsert(ctx, model.Mailbox, addr)
	if err != nil {
		return fmt.Errorf("add mailbox %s: %w", addr, err)
	}
	if isNew {
		fmt.Fprintf(c.App.ErrWriter, "dbctl: import: mailbox %s added\n", addr)
	}
	now := time.Now()
	folders, err := importFolders(c, cl, jobs, mbKey, now)
	if err != nil {
		return err
	}
	var total importer
	start := time.Now()
	summary := func() { fmt.Fprintln(c.App.Writer, total.summary(time.Since(start))) }
	for _, j := range jobs {
		where := j.path
		im := &importer{db: cl, mailbox: mbKey, now: now, batchMails: batchMails,
			report: func(at string, err error) {
				fmt.Fprintf(c.App.ErrWriter, "dbctl: import: %s: %s: %v\n", where, at, err)
			}}
		switch {
		case j.err != nil:
			total.failed++ // reported by importFolders
			continue
		case j.folder == "":
			if im.have, err = acknowledgedIn(ctx, cl, mbKey); err != nil {
				return err
			}
		default:
			f := folders[j.folder]
			im.folder, im.have, im.haveMail = f, f.have, f.haveMail
		}
		err := im.run(ctx, j.src)
		total.added, total.already, total.failed = total.added+im.added, total.already+im.already, total.failed+im.failed
		if j.folder != "" || len(jobs) > 1 {
			name := j.folder
			if name == "" {
				name = "INBOX"
			}
			fmt.Fprintf(c.App.Writer, "folder %s: %s\n", name, im.counts())
		}
		if err != nil {
			summary()
			return err
		}
	}
	summary()
	if total.failed > 0 {
		return cli.Exit("", 1)
	}
	return nil
}

// run imports every message of src; only a failure of dbd itself (or of
// reading src as a whole) is returned.
func (im *importer) run(ctx context.Context, src importSource) error {
	for {
		it, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			im.flush(ctx)
			return fmt.Errorf("import: %w", err)
		}
		if err := im.add(ctx, it); err != nil {
			return err
		}
	}
	return im.flush(ctx)
}

// acknowledgedIn returns the receive rows in mailbox mb that are
// acknowledged (deleted ones included: a deleted mail is not brought back).
func acknowledgedIn(ctx context.Context, db importDB, mb model.Key) (map[model.Key]bool, error) {
	have := map[model.Key]bool{}
	const page = 10000
	for after := uint64(0); ; {
		rows, err := db.List(ctx, model.Receive, mb, after, page)
		if err != nil {
			return nil, fmt.Errorf("list mailbox: %w", err)
		}
		for _, r := range rows {
			after = r.RowNo
			if r.State.Col(model.ColAcknowledged) == model.FlagSet {
				have[r.Key] = true
			}
		}
		if len(rows) < page {
			return have, nil
		}
	}
}

// importDB is what the importer needs of a dbd client.
type importDB interface {
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
	List(ctx context.Context, t model.Table, parent model.Key, after uint64, limit int) ([]wire.Row, error)
}

// Bounds of one batch, below dbd's (4096 sub-requests, 80 MiB).
const (
	importBatchOps   = 4000
	importBatchBytes = 32 << 20
)

// importer groups mails into atomic batches.
type importer struct {
	db         importDB
	mailbox    model.Key
	folder     *importFolder      // nil: the mail goes to mailbox, as smtpd delivers it
	have       map[model.Key]bool // receive rows already in the mailbox or folder (or queued)
	haveMail   map[model.Key]bool // for a folder: the mail rows imapd shows in it (nil: none)
	now        time.Time
	batchMails int
	report     func(where string, err error)

	pending []pendingMail
	ops     int
	bytes   int

	added, already, failed int
}

type pendingMail struct {
	where string
	reqs  []wire.Request
}

// add queues one message, flushing first when the batch is full. Only a
// failure of dbd itself (not of a message) is returned.
func (im *importer) add(ctx context.Context, it importItem) error {
	if it.err != nil {
		im.fail(it.where, it.err)
		return nil
	}
	r := model.NewMailRows(it.raw)
	var reqs []wire.Request
	var rk model.Key
	already := false
	if im.folder == nil {
		reqs, rk = mailRequests(it, r, im.mailbox, im.now)
		already = im.have[rk] || im.have[exportedKey(it.raw, r.BodyKey, im.mailbox)]
	} else {
		reqs, rk = appendRequests(it, r, im.folder, im.now)
		mk, exported := exportedMailKey(it.raw, r.BodyKey)
		already = im.have[rk] || im.haveMail[r.MailKey] || exported && im.haveMail[mk]
	}
	if already {
		im.already++
		return nil
	}
	im.have[rk] = true
	if len(im.pending) >= im.batchMails || im.ops+len(reqs) > importBatchOps || im.bytes+len(it.raw) > importBatchBytes {
		if err := im.flush(ctx); err != nil {
			return err
		}
	}
	im.pending = append(im.pending, pendingMail{where: it.where, reqs: reqs})
	im.ops += len(reqs)
	im.bytes += len(it.raw)
	return nil
}

func (im *importer) fail(where string, err error) {
	im.failed++
	im.report(where, err)
}

// flush writes the queued mails in one batch. A batch that dbd refuses as
// a whole (bad-request, too-large) is retried mail by mail, so the one bad
// mail is named and the others still get in.
func (im *importer) flush(ctx context.Context) error {
	if len(im.pending) == 0 {
		return nil
	}
	batch := im.pending
	im.pending, im.ops, im.bytes = nil, 0, 0
	var reqs []wire.Request
	if f := im.folder; f != nil && !f.id.System() {
		reqs = append(reqs, keepFolderRequest(f.login, f.id, im.now))
	}
	for _, p := range batch {
		reqs = append(reqs, p.reqs...)
	}
	_, err := im.db.Batch(ctx, reqs)
	var we *wire.Error
	switch {
	case err == nil:
		im.added += len(batch)
		return nil
	case !errors.As(err, &we) || (we.Code != wire.CodeBadRequest && we.Code != wire.CodeTooLarge):
		return fmt.Errorf("store %d mails: %w", len(batch), err)
	case len(batch) == 1:
		im.fail(batch[0].where, err)
		return nil
	}
	for _, p := range batch {
		im.pending = []pendingMail{p}
		if err := im.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (im *importer) summary(d time.Duration) string {
	rate := float64(im.added) / max(d.Seconds(), 1e-3)
	return fmt.Sprintf("%s (%.0f new mails/s)", im.counts(), rate)
}

func (im *importer) counts() string {
	return fmt.Sprintf("%d new, %d already there, %d failed", im.added, im.already, im.failed)
}

// exportedKey is the receive row's key in mailbox mb that raw had if it is
// a mail twinmx exported: smtpd's Return-Path (RFC 5321 §4.4) is then its
// first field, and the mail was stored without it (it is part of that
// delivery, in its received row). body is raw's body key, which the field
// does not change. The zero key if raw has no leading Return-Path. A mail
// that has one but was not exported by twinmx is stored with it in its
// header, as before 2026-12-03, so importing the mail of another server
// again still finds what the first run stored.
func exportedKey(raw []byte, body, mb model.Key) model.Key {
	mail, ok := exportedMailKey(raw, body)
	if !ok {
		return model.Key{}
	}
	return model.KeyOf(model.Receive, model.ReceiveContent(mail, mb))
}

// exportedMailKey is the mail row's key raw had if it is a mail twinmx
// exported with smtpd's Return-Path added (see exportedKey); ok is false
// if raw has no leading Return-Path.
func exportedMailKey(raw []byte, body model.Key) (model.Key, bool) {
	rest, ok := model.CutReturnPath(raw)
	if !ok {
		return model.Key{}, false
	}
	return model.KeyOf(model.Mail, model.MailContent(model.KeyOf(model.Header, model.Split(rest).Header), body)), true
}

// mailRequests returns the batch that stores the mail of it (split into r)
// in mailbox mb and acknowledges it, and the key of its receive row: the
// rows smtpd's deliver.Store writes (no throw-in: there was no SMTP
// transaction), then what deliver.Acknowledge sets, an operator verdict
// accept and the IMAP flags of a Maildir file.
func mailRequests(it importItem, r model.MailRows, mb model.Key, now time.Time) ([]wire.Request, model.Key) {
	reqs := make([]wire.Request, 0, 12)
	add := func(t model.Table, content []byte) {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: t, Content: content})
	}
	add(model.Header, r.Parts.Header)
	add(model.Body, r.Parts.Body)
	add(model.Mail, r.Mail)
	if len(r.Parts.Received) > 0 {
		add(model.Received, r.Parts.Received)
	}
	if r.MsgID != nil {
		add(model.MsgID, r.MsgID)
	}
	receive := model.ReceiveContent(r.MailKey, mb)
	rk := model.KeyOf(model.Receive, receive)
	add(model.Receive, receive)
	at := it.at
	if at.IsZero() {
		at = now
	}
	ref := wire.Ref{ByKey: true, Key: rk}
	set := func(col string, v uint64) {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: col, Value: v})
	}
	set(model.ColVerdict, model.EncodeVerdict(model.SourceOperator, model.Epoch(now), model.Accept))
	set(model.ColAcknowledged, model.FlagSet)
	set(model.ReceivedColumn(r.ReceivedKey), uint64(max(at.UnixMilli(), 1)))
	for _, col := range flagColumns(it.flags, model.FolderInbox) {
		set(col, model.MemberValue(now, true))
	}
	return reqs, rk
}

// flagColumns returns the IMAP flag columns of Maildir flags for a mail
// in folder: T is \Deleted in that folder alone, as imapd keeps it since
// 2026-11-30 (the shared column of older rows counts in every folder).
func flagColumns(flags string, folder model.FolderID) []string {
	var out []string
	for _, f := range maildirFlagCols {
		if strings.IndexByte(flags, f.letter) < 0 {
			continue
		}
		if f.letter == 'T' {
			out = append(out, deletedColumn(folder))
		} else {
			out = append(out, f.col)
		}
	}
	return out
}

type mboxSource struct {
	f *os.File
	r *mboxReader
}

func (s *mboxSource) next() (importItem, error) {
	m, err := s.r.Next()
	if err != nil {
		return importItem{}, err
	}
	return importItem{where: fmt.Sprintf("line %d", m.Line), raw: m.Raw, at: m.Date, err: m.Err}, nil
}

func (s *mboxSource) close() error { return s.f.Close() }

// maildirSource reads every file of a Maildir's cur/ and new/ (tmp/ holds
// mail still being written), in name order within each.
//
// The Maildir may be in use while it is imported (the migration imports
// once, then again after the MX moved): a mail client that reads a mail
// moves it from new/ to cur/, and one that changes a flag renames it in
// cur/. A file gone since the listing is looked for under its new name
// (same unique part, the name before ':'), so a mail being read is
// imported, not reported failed.
type maildirSource struct {
	dir     string
	files   []string        // relative to dir, still to read
	read    map[string]bool // files read (relative to dir): a renamed file is not read twice
	maxSize int

	index map[string]string // unique part → file, as listed after the last read; nil: list again
}

func newMaildirSource(dir string, maxSize int) (*maildirSource, error) {
	s := &maildirSource{dir: dir, maxSize: maxSize, read: map[string]bool{}}
	// new/ is listed before cur/: a mail moved from one to the other
	// between the two listings is then in both lists (read once, see
	// next), not in neither.
	lists := map[string][]string{}
	found := false
	for _, sub := range []string{"new", "cur"} {
		names, err := s.list(sub)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found = true
		lists[sub] = names
	}
	if !found {
		return nil, fmt.Errorf("%s is not a Maildir (no cur/ or new/)", dir)
	}
	s.files = append(lists["cur"], lists["new"]...)
	return s, nil
}

// list returns the mail files of sub (cur or new), relative to s.dir, in
// name order.
func (s *maildirSource) list(sub string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, sub))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, filepath.Join(sub, e.Name()))
		}
	}
	sort.Strings(names)
	return names, nil
}

// maildirInfo splits a Maildir file name into its unique part, which
// stays when the file moves from new/ to cur/ or its flags change, and
// its flags. The flags follow "2," after the info delimiter: ':' by the
// Maildir convention, ';' or '!' where ':' cannot be in a file name
// (Windows; mbsync's and other tools' choices, and twinmx's own export
// there).
func maildirInfo(name string) (unique, flags string) {
	base := filepath.Base(name)
	for _, d := range []string{":2,", ";2,", "!2,"} {
		if i := strings.LastIndex(base, d); i >= 0 {
			return base[:i], base[i+len(d):]
		}
	}
	u, _, _ := strings.Cut(base, ":")
	return u, ""
}

// maildirUnique is the unique part of a Maildir file name (maildirInfo).
func maildirUnique(name string) string {
	u, _ := maildirInfo(name)
	return u
}

// renamed returns where the file name (relative to s.dir) is now: the file
// in cur/ or new/ with the same unique part, or "" if there is none. The
// folders are listed again only if some file was read since they were
// last: many files deleted in a row (a folder expunged while it is
// imported) cost one listing, not one each.
func (s *maildirSource) renamed(name string) (string, error) {
	if s.index == nil {
		s.index = map[string]string{}
		for _, sub := range []string{"cur", "new"} {
			names, err := s.list(sub)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				s.index = nil
				return "", err
			}
			for _, n := range names {
				if u := maildirUnique(n); s.index[u] == "" {
					s.index[u] = n
				}
			}
		}
	}
	return s.index[maildirUnique(name)], nil
}

func (s *maildirSource) next() (importItem, error) {
	for len(s.files) > 0 {
		name := s.files[0]
		s.files = s.files[1:]
		if s.read[name] {
			continue // read already, under the name it was renamed from
		}
		it, err := s.readFile(name)
		if !errors.Is(err, os.ErrNotExist) {
			it.err = err
			return it, nil
		}
		now, lerr := s.renamed(name)
		switch {
		case lerr != nil:
			it.err = fmt.Errorf("%w; looking for it under a new name: %w", err, lerr)
			return it, nil
		case now == "":
			it.err = errors.New("vanished during the import (deleted, or moved to another folder)")
			return it, nil
		case now == name:
			it.err = err // still listed but not there: a dangling symlink
			return it, nil
		case s.read[now]:
			continue // moved after it was read under its new name
		}
		it, err = s.readFile(now)
		it.where = name + " (now " + now + ")"
		it.err = err
		return it, nil
	}
	return importItem{}, io.EOF
}

// readFile reads the mail in file name (relative to s.dir). The error is
// the message's problem (it.err is nil); os.ErrNotExist if it is gone.
func (s *maildirSource) readFile(name string) (importItem, error) {
	it := importItem{where: name}
	_, it.flags = maildirInfo(name)
	p := filepath.Join(s.dir, name)
	// Stat before opening: opening a FIFO would block until some writer
	// comes.
	if fi, err := os.Stat(p); err != nil {
		return it, err
	} else if !fi.Mode().IsRegular() {
		return it, errors.New("not a regular file")
	}
	f, err := os.Open(p)
	if err != nil {
		return it, err
	}
	defer f.Close()
	s.read[name] = true
	s.index = nil // files may move while this one is read: a later lookup lists again
	fi, err := f.Stat()
	switch {
	case err != nil:
		return it, err
	case !fi.Mode().IsRegular():
		return it, errors.New("not a regular file")
	case fi.Size() > int64(s.maxSize):
		return it, fmt.Errorf("%w (%d bytes, over %d)", errMboxTooLarge, fi.Size(), s.maxSize)
	}
	it.at = fi.ModTime()
	// The size is checked on what is read, not only on what stat said: a
	// file can grow after the stat, and some (in /proc) claim 0 bytes.
	var b bytes.Buffer
	b.Grow(int(fi.Size()) + 1)
	if _, err := b.ReadFrom(io.LimitReader(f, int64(s.maxSize)+1)); err != nil {
		return it, err
	}
	switch {
	case b.Len() > s.maxSize:
		return it, fmt.Errorf("%w (over %d bytes)", errMboxTooLarge, s.maxSize)
	case b.Len() == 0:
		return it, errors.New("empty message")
	}
	it.raw = b.Bytes()
	return it, checkMail(it.raw)
}

func (s *maildirSource) close() error { return nil }
