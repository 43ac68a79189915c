package ctl

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
)

// backup: a consistent Pebble checkpoint of one site (wire op checkpoint).
// dbd writes it under its own data folder, DATA/checkpoints/NAME, because
// only dbd holds the Pebble store; dbctl prints where it is and, with --out,
// copies it when it runs on dbd's host.

func backupCmd() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write a consistent checkpoint of this site's data on dbd's host (DATA/checkpoints/NAME); prints its path",
		Description: "The checkpoint holds every write dbd answered before it. Copy the folder off the host for an\n" +
			"offline copy, then remove it: it costs disk space as the live data compacts away from it.\n" +
			"Restore: stop dbd, put the folder in place of its --data folder, start dbd.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "checkpoint folder name (a-z 0-9 . _ -); default backup-YYYYMMDD-HHMMSS (UTC)"},
			&cli.StringFlag{Name: "out", Usage: "also copy the checkpoint to DIR (must not exist; dbctl must run on dbd's host)"},
		},
		Action: backup,
	}
}

func backup(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError("backup: unexpected argument %q", c.Args().First())
	}
	name := c.String("name")
	if name == "" {
		name = "backup-" + time.Now().UTC().Format("20060102-150405")
	}
	if err := model.CheckName(name); err != nil || strings.Trim(name, ".") == "" {
		return usageError("backup: --name %q: want 1-64 bytes of a-z 0-9 . _ - (not only dots)", name)
	}
	out := c.String("out")
	if out != "" {
		if _, err := os.Lstat(out); err == nil {
			return usageError("backup: --out %s exists", out)
		}
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	path, err := cl.Checkpoint(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "checkpoint: %s\n", path)
	if out == "" {
		return nil
	}
	n, err := copyTree(path, out)
	if err != nil {
		return fmt.Errorf("copy checkpoint to %s (dbctl must run on dbd's host; otherwise copy %s yourself): %w", out, path, err)
	}
	fmt.Fprintf(c.App.Writer, "copied: %s (%d bytes)\n", out, n)
	return nil
}

// copyTree copies the regular files and folders under src to dst (which
// must not exist) and returns the bytes copied. The copy is built in a
// hidden folder beside dst and renamed to dst only once complete: a copy
// cut short (dbctl killed, disk full) must not be left under the name the
// operator asked for, where it would pass for a backup while missing a WAL
// or table. Each file is synced, then each folder, children before
// parents, and after the rename dst's parent: a copy reported done must
// not lose a file's name in a power loss (the checkpoint's
// TWINMX-CHECKPOINT mark among them).
func copyTree(src, dst string) (total int64, err error) {
	parent := filepath.Dir(dst)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".partial-")
	if err != nil {
		return 0, fmt.Errorf("make the copy's folder: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	var dirs []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(tmp, rel)
		switch {
		case d.IsDir():
			dirs = append(dirs, to)
			return os.MkdirAll(to, 0o700)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file", p)
		}
		n, err := copyFile(p, to)
		total += n
		return err
	})
	if err != nil {
		return total, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncFolder(dirs[i]); err != nil {
			return total, fmt.Errorf("sync folder %s: %w", dirs[i], err)
		}
	}
	// The rename would replace an empty folder made at dst since the
	// check before the checkpoint (and fail on a full one): look again.
	if _, err := os.Lstat(dst); err == nil {
		return total, fmt.Errorf("%s appeared while copying: %w", dst, fs.ErrExist)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return total, fmt.Errorf("rename the finished copy: %w", err)
	}
	if err := syncFolder(parent); err != nil {
		return total, fmt.Errorf("sync folder %s: %w", parent, err)
	}
	return total, nil
}

// syncFolder makes a folder's entries durable. Windows cannot sync a folder
// (NTFS journals its entries itself), so there it does nothing.
func syncFolder(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
