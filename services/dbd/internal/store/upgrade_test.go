package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twinmx/twinmx/pkg/model"
)

// oldStoreDir holds a data folder written by dbd before value separation:
// Pebble format major version 13 (FormatFlushableIngest, Pebble's default
// then), row-oriented sstables, no blob files. Its first rows are in an
// sstable, the rest only in the WAL, as after a crash. oldStoreGolden is
// its dump (see dumpStore), taken when it was written.
//
// It was written by TestWriteOldStore at commit 53c6165 (before this
// test existed; the generator only uses the store's API):
//
//	TWINMX_WRITE_OLD_STORE=1 go test -run TestWriteOldStore ./internal/store
const (
	oldStoreDir    = "testdata/store-v13"
	oldStoreGolden = "testdata/store-v13.dump"
)

// oldStoreMutations returns the requests the fixture was written with, in
// two phases: the first is flushed to an sstable, the second stays in the
// WAL. Contents cover inline rows, a row at exactly inlineMax, chunked rows
// of one and two chunks, receive rows (child index), sets and adds.
func oldStoreMutations() (flushed, walOnly [][]Mutation) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	insert := func(t model.Table, c []byte) Mutation {
		return Mutation{Kind: Insert, Table: t, Content: c}
	}
	set := func(t model.Table, c []byte, name string, v uint64) Mutation {
		return Mutation{Kind: Set, Table: t, Key: model.KeyOf(t, c), Name: name, Value: v}
	}
	add := func(t model.Table, c []byte, name string, v uint64) Mutation {
		return Mutation{Kind: Add, Table: t, Key: model.KeyOf(t, c), Name: name, Value: v}
	}
	small := []byte("a small body")
	atMax := bytes.Repeat([]byte("i"), inlineMax)
	oneChunk := random(10 << 10)
	// Two chunks of the code that wrote the fixture (256 KiB chunks; now
	// 64 KiB): reading it back checks that chunk sizes may differ.
	twoChunks := bytes.Repeat([]byte("0123456789abcdef"), (256<<10+1000)/16)
	mailbox := model.MailboxContent("jo@example.org")
	r1 := model.ReceiveContent(model.KeyOf(model.Mail, []byte("m1")), model.KeyOf(model.Mailbox, mailbox))
	flushed = [][]Mutation{
		{insert(model.Mailbox, mailbox), insert(model.Body, small), insert(model.Body, atMax)},
		{insert(model.Body, oneChunk), set(model.Body, oneChunk, "backedup", 1)},
		{insert(model.Body, twoChunks), insert(model.Receive, r1), set(model.Receive, r1, "ack", 3)},
		{add(model.Mailbox, mailbox, "mails", 1)},
	}
	later := random(6 << 10)
	r2 := model.ReceiveContent(model.KeyOf(model.Mail, []byte("m2")), model.KeyOf(model.Mailbox, mailbox))
	walOnly = [][]Mutation{
		{insert(model.Body, later), insert(model.Receive, r2), add(model.Mailbox, mailbox, "mails", 1)},
		{set(model.Body, oneChunk, "backedup", 2), set(model.Receive, r1, "imap.flag.seen", 1)},
		{insert(model.Text, []byte("a text row"))},
	}
	return flushed, walOnly
}

// TestWriteOldStore writes the fixture of TestOpenOldStore. It runs only
// when asked to (see oldStoreDir): the fixture must stay what an older
// dbd wrote.
func TestWriteOldStore(t *testing.T) {
	if os.Getenv("TWINMX_WRITE_OLD_STORE") == "" {
		t.Skip("set TWINMX_WRITE_OLD_STORE=1 to rewrite the fixture")
	}
	ctx := context.Background()
	if err := os.RemoveAll(oldStoreDir); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: oldStoreDir, Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	flushed, walOnly := oldStoreMutations()
	for _, m := range flushed {
		if _, err := s.Apply(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Merge(ctx, nil, "from-b", 42); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, m := range walOnly {
		if _, err := s.Apply(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	dump := dumpStore(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(oldStoreDir, "LOCK")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldStoreGolden, []byte(dump), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOpenOldStore: a data folder written before value separation opens
// (Pebble's format is ratcheted at open), reads back exactly as it was
// written, its WAL-only writes included, takes new rows whose contents
// go to blob files, and reads all of it back after a reopen.
func TestOpenOldStore(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(oldStoreDir)); err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(oldStoreGolden)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *Store {
		t.Helper()
		s, err := Open(Options{Dir: dir, Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("open the old store: %v", err)
		}
		return s
	}
	s := open()
	if got := dumpStore(t, s); got != string(golden) {
		t.Fatalf("old store reads back as\n%s\nwant (%s)\n%s", got, oldStoreGolden, golden)
	}
	if v := s.db.FormatMajorVersion(); v < pebble.FormatValueSeparation {
		t.Fatalf("format major version %d after open, want at least %d", v, pebble.FormatValueSeparation)
	}
	// New rows in the upgraded store: a content that goes to a blob file
	// once flushed, and a set on an old chunked row.
	rng := rand.New(rand.NewPCG(3, 4))
	fresh := make([]byte, 20<<10)
	for i := range fresh {
		fresh[i] = byte(rng.Uint32())
	}
	flushed, _ := oldStoreMutations()
	oneChunk := flushed[1][0].Content
	if _, err := s.Apply(ctx, []Mutation{
		{Kind: Insert, Table: model.Body, Content: fresh},
		{Kind: Set, Table: model.Body, Key: model.KeyOf(model.Body, oneChunk), Name: "backedup", Value: 5},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := s.db.Metrics().BlobFiles.LiveCount; n == 0 {
		t.Error("no blob file after flushing a 20 KiB content: value separation is off")
	}
	want := dumpStore(t, s)
	if !strings.Contains(want, fmt.Sprintf("%x", sha256.Sum256(fresh))) {
		t.Fatal("the new row is missing from the dump")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	if got := dumpStore(t, s); got != want {
		t.Fatalf("after reopen the store reads\n%s\nwant\n%s", got, want)
	}
	// Nothing of the fixture was changed in place.
	if err := fs.WalkDir(os.DirFS(oldStoreDir), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "LOCK" {
			return fmt.Errorf("%s has a LOCK file: the fixture was opened in place", oldStoreDir)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// dumpStore lists everything a reader can see of s: the incarnation, each
// table's row count and next row number, every row with its state and the
// SHA-256 of its content, the change log and the cursor "from-b".
func dumpStore(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "incarnation %d last-stamp %d\n", s.Incarnation(), s.LastStamp())
	for _, tb := range model.Tables() {
		if n := s.Count(tb); n > 0 {
			fmt.Fprintf(&b, "count %s %d next %d\n", tb, n, s.nextRow[tb])
		}
	}
	v := mustView(t, s)
	defer v.Close()
	var rows []Row
	if err := v.Rows(func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatalf("Rows: %v", err)
	}
	for _, r := range rows {
		h := sha256.New()
		if err := v.Content(r.Table, r.Key, func(c []byte) error { h.Write(c); return nil }); err != nil {
			t.Fatalf("Content: %v", err)
		}
		var kids []uint64
		if err := v.Children(model.Receive, r.Key, 0, 100, func(c Row) error { kids = append(kids, c.RowNo); return nil }); err != nil {
			t.Fatalf("Children: %v", err)
		}
		fmt.Fprintf(&b, "row %s %s no %d size %d stamp %d state %x content %x children %v\n",
			r.Table, r.Key, r.RowNo, r.Size, r.Stamp, r.State.AppendBinary(nil), h.Sum(nil), kids)
	}
	if err := v.Changes(0, func(r Row) error {
		fmt.Fprintf(&b, "change %d %s %s origin %q\n", r.Stamp, r.Table, r.Key, r.Origin)
		return nil
	}); err != nil {
		t.Fatalf("Changes: %v", err)
	}
	c, err := v.Cursor("from-b")
	if err != nil {
		t.Fatalf("Cursor: %v", err)
	}
	fmt.Fprintf(&b, "cursor from-b %d\n", c)
	return b.String()
}
