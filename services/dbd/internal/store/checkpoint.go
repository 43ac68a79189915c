package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// CheckpointDir is the folder under the store's Dir that holds checkpoints.
// Pebble ignores files it cannot parse as its own, so the folder may live
// inside the data folder.
const CheckpointDir = "checkpoints"

// Checkpoint writes a consistent copy of the whole store (a Pebble
// checkpoint: its tables hard-linked where possible, WAL and MANIFEST
// copied) into Dir/checkpoints/name and returns that path. The copy holds
// every write acknowledged before the call (those are synced to the WAL,
// and the WAL is synced once more first); writes in flight may or may not
// be in it, each whole or not at all, as after a crash. Opening the folder
// with Open (or running dbd on it) gives a store that recovers like one
// after a crash.
//
// name must be a wire name (model.CheckName) other than "." and "..", so
// the copy never lands outside Dir/checkpoints; an existing name is
// refused. Both are ErrInvalid. A checkpoint that fails leaves no folder
// behind. Safe for concurrent use with writes.
func (s *Store) Checkpoint(name string) (string, error) {
	if err := model.CheckName(name); err != nil || strings.Trim(name, ".") == "" {
		return "", fmt.Errorf("%w: checkpoint name %q: want 1-64 bytes of a-z 0-9 . _ - (not only dots)", ErrInvalid, name)
	}
	if s.closed.Load() {
		return "", ErrClosed
	}
	if s.Err() != nil {
		return "", ErrFailed
	}
	dir := filepath.Join(s.opts.Dir, CheckpointDir, name)
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("%w: checkpoint %s exists", ErrInvalid, name)
		}
		return "", fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if err := writeCopyMark(s.opts.FS, dir); err != nil {
		// A copy without its mark would keep the original's incarnation
		// when restored, and hand out again, to other mails, the row
		// numbers (IMAP UIDs) the original gave after it: leave no such
		// copy behind. Removing it also frees the name for a retry.
		fs := s.opts.FS
		if fs == nil {
			fs = vfs.Default
		}
		if rerr := fs.RemoveAll(dir); rerr != nil {
			return "", fmt.Errorf("checkpoint %s: %w (and removing the unmarked copy %s: %w)", name, err, dir, rerr)
		}
		return "", fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if s.opts.FS == nil || s.opts.FS == vfs.Default {
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	}
	return dir, nil
}

// copyMark is a file that Checkpoint puts into every checkpoint. A store
// opened from a folder that holds it is a copy brought back (see Open):
// whatever the original numbered after the checkpoint is lost in the
// copy, and the copy would give those row numbers again, to other rows.
// Row numbers are IMAP UIDs, and a client that knew one must never get
// another mail under it with the same UIDVALIDITY; so the copy draws a
// new incarnation (imapd derives UIDVALIDITY from it) and removes the file.
const copyMark = "TWINMX-CHECKPOINT"

const copyMarkText = "This folder is a checkpoint of a twinmx dbd store. A dbd that opens it as its\n" +
	"data folder gives the store a new incarnation (IMAP clients resynchronise:\n" +
	"UIDVALIDITY changes) and removes this file. Keep it with the copy.\n"

func writeCopyMark(fs vfs.FS, dir string) error {
	if fs == nil {
		fs = vfs.Default
	}
	f, err := fs.Create(fs.PathJoin(dir, copyMark), vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("write %s: %w", copyMark, err)
	}
	_, err = f.Write([]byte(copyMarkText))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", copyMark, err)
	}
	// The folder's entry for the file must reach the disk too: a copy
	// taken without it would keep the original's incarnation.
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
