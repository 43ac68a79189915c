package ctl

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// export: the mail of one mailbox, or of all, as .eml files, an mbox or a
// Maildir (SPEC §10: an operator can always take the mail out). A mailbox's
// mail is what POP3 and IMAP show (pkg/wire/mailbox): acknowledged, not
// deleted receive rows, in arrival order, each read back byte for byte —
// without the mailbox's header filters, which are a view, not the mail.

func exportCmd() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write the mail of a mailbox (or of every mailbox) as .eml files, an mbox or a Maildir",
		Description: "With --mailbox, --out is the mbox file (INBOX.mbox inside it if it is an empty folder), or the\n" +
			"folder of .eml files or the Maildir. Without it, --out is a folder holding one ADDRESS.mbox file, or\n" +
			"one ADDRESS folder, per mailbox.\n" +
			"The mail is written exactly as received. .eml and Maildir files are named by the receive row's key,\n" +
			"so a second export into a new folder names every mail the same way.\n" +
			"IMAP folders are written too: Maildir++ .NAME/ folders, .eml subfolders, or (mbox) a folder of\n" +
			"INBOX.mbox and NAME.mbox files instead of the single file (docs/dbd.md \"Export\").",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mailbox", Usage: "the mailbox ADDRESS (default: every mailbox)"},
			&cli.StringFlag{Name: "format", Required: true, Usage: "eml, mbox or maildir"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "where to write (must not exist, or be an empty folder)"},
		},
		Action: export,
	}
}

// exportSink receives the mails of one mailbox; close finishes it.
type exportSink interface {
	add(m mailbox.Message, raw []byte, at time.Time) error
	close() error
}

func export(c *cli.Context) error {
	format := c.String("format")
	switch format {
	case "eml", "mbox", "maildir":
	default:
		return usageError("export: --format %q: want eml, mbox or maildir", format)
	}
	if c.NArg() != 0 {
		return usageError("export: unexpected argument %q", c.Args().First())
	}
	out := c.String("out")
	if err := checkFresh(out); err != nil {
		return usageError("export: --out %v", err)
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	// An export may be long: it is bounded by --timeout per request (the
	// client's), not overall.
	ctx := c.Context
	var boxes []mailbox.Box
	if addr := c.String("mailbox"); addr != "" {
		k := model.KeyOf(model.Mailbox, model.MailboxContent(addr))
		if _, err := cl.FindMeta(ctx, model.Mailbox, k); errors.Is(err, client.ErrNotFound) {
			fmt.Fprintf(c.App.ErrWriter, "dbctl: no mailbox %s\n", model.MailboxContent(addr))
			return cli.Exit("", ExitNotFound)
		} else if err != nil {
			return fmt.Errorf("find mailbox: %w", err)
		}
		boxes = []mailbox.Box{{Key: k, Address: string(model.MailboxContent(addr))}}
	} else if boxes, err = allMailboxes(ctx, cl); err != nil {
		return err
	}
	accts, err := readAccounts(ctx, cl)
	if err != nil {
		return err
	}
	st := mailbox.New(cl)
	single := c.String("mailbox") != ""
	for _, b := range boxes {
		// The account folders go with the mailbox of which it is the
		// primary one (each account's once in an export of every
		// mailbox); asked for one mailbox, with those of every account
		// reading it if it is no account's primary.
		owners := readers(accts, b.Key, true)
		if single && len(owners) == 0 {
			owners = readers(accts, b.Key, false)
		}
		plan, err := planExport(ctx, cl, st, owners, b.Key)
		if err != nil {
			return fmt.Errorf("export %s: %w", b.Address, err)
		}
		if err := exportPlanned(c, st, plan, b.Address, format, out, single); err != nil {
			return fmt.Errorf("export %s: %w", b.Address, err)
		}
	}
	return nil
}

// checkFresh refuses to write over anything: path must not exist, or be an
// empty folder.
func checkFresh(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if ents, err := os.ReadDir(path); err == nil && len(ents) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%s exists", path)
}

// allMailboxes lists the mailbox rows, sorted by address (see
// mailboxRows).
func allMailboxes(ctx context.Context, cl *client.Client) ([]mailbox.Box, error) {
	rows, err := mailboxRows(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := make([]mailbox.Box, len(rows))
	for i, row := range rows {
		out[i] = mailbox.Box{Key: row.Key, Address: string(row.Content)}
	}
	return out, nil
}

// mailboxRows reads every mailbox row, with content and state, sorted by
// address. It pages through the table (tableLister): a single scan gave
// the newest 10000 rows, so an export or mailbox list of a larger site
// left out its oldest mailboxes without a word. A table of more than
// maxTableRows, or of more than 10000 at a dbd too old to page a scan, is
// an error, not cut.
func mailboxRows(ctx context.Context, cl *client.Client) ([]*wire.Row, error) {
	keys, err := tableLister{Client: cl}.keys(ctx, model.Mailbox)
	if err != nil {
		return nil, fmt.Errorf("scan mailboxes: %w", err)
	}
	var out []*wire.Row
	for _, k := range keys {
		row, err := cl.FindKey(ctx, model.Mailbox, k)
		if errors.Is(err, client.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read mailbox %s: %w", k, err)
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Content) < string(out[j].Content) })
	return out, nil
}

// maxFileName bounds the names fileName makes: file systems take 255
// bytes, and ".mbox" is added.
const maxFileName = 200

// fileName makes a mailbox address one safe file name: '/' and other
// special bytes escaped, never "." or "..", at most maxFileName bytes. A
// longer name (an address of many non-ASCII characters, each byte
// escaped as three) is cut and ends in a hash of the address instead, so
// that it can be created and two addresses still never share a name.
func fileName(address string) string {
	n := url.PathEscape(address)
	if strings.HasPrefix(n, ".") {
		n = "%2E" + n[1:]
	}
	if len(n) <= maxFileName {
		return n
	}
	sum := sha256.Sum256([]byte(address))
	tail := "-" + hex.EncodeToString(sum[:16])
	cut := maxFileName - len(tail)
	// Not inside an escape: the name stays readable as escaped text.
	if i := strings.LastIndexByte(n[:cut], '%'); i >= cut-2 {
		cut = i
	}
	return n[:cut] + tail
}

// fetchAhead is how many mails are read from dbd in parallel (each is
// several round trips).
const fetchAhead = 16

// exportPlace says where an export writes a mailbox.
type exportPlace int

const (
	placeOut   exportPlace = iota // --out itself, which may be an empty folder
	placeInOut                    // one of several mailboxes' files or folders in --out: must be new
)

// exportMails writes msgs, the mail of one folder (INBOX's or another's:
// its \Deleted flag), to path.
func exportMails(ctx context.Context, st *mailbox.Store, msgs []mailbox.Message, format, path string, place exportPlace, folder model.FolderID) error {
	var sink exportSink
	var err error
	switch format {
	case "mbox":
		sink, err = newMboxSink(path)
	case "maildir":
		var ds *dirSink
		ds, err = newDirSink(path, true, place)
		if ds != nil {
			ds.folder = folder
			sink = ds
		}
	default:
		sink, err = newDirSink(path, false, place)
	}
	if err != nil {
		return err
	}
	// Read ahead in parallel, write in order.
	type fetched struct {
		raw []byte
		err error
	}
	for start := 0; start < len(msgs); start += fetchAhead {
		part := msgs[start:min(start+fetchAhead, len(msgs))]
		res := make([]fetched, len(part))
		done := make(chan struct{}, len(part))
		for i := range part {
			go func() {
				res[i].raw, res[i].err = st.Fetch(ctx, part[i], nil)
				done <- struct{}{}
			}()
		}
		for range part {
			<-done
		}
		for i, m := range part {
			if res[i].err != nil {
				sink.close()
				return res[i].err
			}
			if err := sink.add(m, res[i].raw, mailDate(m.State)); err != nil {
				sink.close()
				return err
			}
		}
	}
	return sink.close()
}

// mailDate is the mail's IMAP INTERNALDATE as imapd gives it: the date an
// APPEND gave (imap.date), else its arrival (receivedAt).
func mailDate(st model.State) time.Time {
	if v := st.Col(model.ColAppendDate); v != 0 {
		return time.UnixMilli(int64(min(v, 1<<62)))
	}
	return receivedAt(st)
}

// receivedAt is when the mail arrived: the value of its acknowledged
// received link (Unix milliseconds; the earliest, as
// model.AcknowledgedReceived picks). Zero if it has none.
func receivedAt(st model.State) time.Time {
	var best uint64
	for name, v := range st.Cols {
		if _, ok := model.ParseReceivedColumn(name); ok && (best == 0 || v < best) {
			best = v
		}
	}
	if best == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(min(best, 1<<62)))
}

// envelopeSender returns the address of the mail's Return-Path field (what
// the delivering server recorded as the envelope sender), or "" if it has
// none or it is the null sender.
func envelopeSender(raw []byte) string {
	for len(raw) > 0 {
		end := bytes.IndexByte(raw, '\n') + 1
		if end == 0 {
			end = len(raw)
		}
		line := raw[:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return "" // end of the header
		}
		if name, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(bytes.TrimSpace(name)), "return-path") {
			v = bytes.TrimSpace(v)
			v = bytes.TrimSuffix(bytes.TrimPrefix(v, []byte("<")), []byte(">"))
			return string(bytes.TrimSpace(v))
		}
		raw = raw[end:]
	}
	return ""
}

type mboxSink struct {
	f *os.File
	w *bufio.Writer
}

func newMboxSink(path string) (*mboxSink, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &mboxSink{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (s *mboxSink) add(_ mailbox.Message, raw []byte, at time.Time) error {
	writeMbox(s.w, envelopeSender(raw), at, raw)
	return nil
}

func (s *mboxSink) close() error {
	err := s.w.Flush()
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dirSink writes one file per mail: NAME.eml in a folder, or a Maildir
// (cur/ new/ tmp/; each mail written to tmp/ and renamed into cur/, with
// the flags its IMAP columns hold). A file's modification time is the
// mail's arrival (what Dovecot reads as the received date).
type dirSink struct {
	dir     string
	maildir bool
	folder  model.FolderID // the folder whose \Deleted flag the Maildir T flag is
}

// newDirSink makes the folder dir. An existing one is refused unless it is
// an empty --out (placeOut): the names in it must be the export's alone. (Two
// mailboxes whose addresses differ only in the case of the local part,
// exported to a file system that ignores case — macOS, Windows, a FAT or
// exFAT disk — get the same folder; without this check the second's mail
// went silently into the first's folder.)
func newDirSink(dir string, maildir bool, place exportPlace) (*dirSink, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); errors.Is(err, os.ErrExist) {
		if place == placeInOut {
			return nil, fmt.Errorf("%s exists (another mailbox's folder, on a file system that ignores case?)", dir)
		}
		if err := checkFresh(dir); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if maildir {
		for _, s := range []string{"cur", "new", "tmp"} {
			if err := os.Mkdir(filepath.Join(dir, s), 0o700); err != nil {
				return nil, err
			}
		}
	}
	return &dirSink{dir: dir, maildir: maildir, folder: model.FolderInbox}, nil
}

func (s *dirSink) add(m mailbox.Message, raw []byte, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	if !s.maildir {
		return writeFileAt(filepath.Join(s.dir, m.Receive.String()+".eml"), raw, at)
	}
	// Maildir names: TIME.UNIQUE.HOST:2,FLAGS; the receive key is unique.
	name := fmt.Sprintf("%d.%s.twinmx%s2,%s", at.Unix(), m.Receive, maildirInfoDelimiter(runtime.GOOS), maildirFlags(m.State, s.folder))
	tmp := filepath.Join(s.dir, "tmp", name)
	if err := writeFileAt(tmp, raw, at); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, "cur", name))
}

// maildirInfoDelimiter is what separates a Maildir file's unique name from
// its flags on goos: ':' as the Maildir convention has it, but ';' on
// Windows, where a ':' in a file name names an NTFS alternate data stream
// (mbsync's default there too). Import reads all of them (maildirInfo).
func maildirInfoDelimiter(goos string) string {
	if goos == "windows" {
		return ";"
	}
	return ":"
}

func (s *dirSink) close() error { return syncDir(s.dir) }

func writeFileAt(path string, raw []byte, at time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// Not fsynced one by one: thousands of fsyncs would dominate an
	// export; an export is repeatable, and the operator syncs the copy.
	_, err = f.Write(raw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Chtimes(path, at, at)
}

// syncDir syncs a Maildir's folder and its cur folder, if there is one.
func syncDir(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "cur")} {
		if err := syncFolder(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Maildir flags (in ASCII order, as the Maildir spec wants them) and the
// IMAP flag columns imapd keeps on a receive row (value: model.MemberValue).
var maildirFlagCols = []struct {
	letter byte
	col    string
}{
	{'D', "imap.flag.draft"},
	{'F', "imap.flag.flagged"},
	{'R', "imap.flag.answered"},
	{'S', "imap.flag.seen"},
	{'T', "imap.flag.deleted"},
}

// deletedColumn is \Deleted's column in folder id; maildirFlagCols' T
// column is the one shared by every folder, of rows written before
// \Deleted became per folder (docs/imapd.md §3).
func deletedColumn(id model.FolderID) string { return "imap.flag.deleted." + id.String() }

// maildirFlags returns the Maildir flags of a mail shown in folder: its
// \Deleted there is the later of the folder's column and the shared one,
// as imapd decides it.
func maildirFlags(st model.State, folder model.FolderID) string {
	var b []byte
	for _, f := range maildirFlagCols {
		v := st.Col(f.col)
		if f.letter == 'T' {
			v = max(v, st.Col(deletedColumn(folder)))
		}
		if model.IsMember(v) {
			b = append(b, f.letter)
		}
	}
	return string(b)
}
