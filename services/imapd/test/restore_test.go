package test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestRestoredStoreNewUIDValidity: dbd brought back from a checkpoint has
// lost the placements (UIDs) it made after the checkpoint, and would number
// new ones from the same row numbers. A client that knew those UIDs must not
// get other mails under them with the same UIDVALIDITY (RFC 9051 §2.3.1.1):
// the restored store is a new incarnation, so UIDVALIDITY changes. imapd
// keeps running through the restore.
func TestRestoredStoreNewUIDValidity(t *testing.T) {
	s := newSite(t)
	mail := func(i int) []byte {
		return []byte(fmt.Sprintf("From: r@y.example\r\nTo: %s\r\nSubject: restore %d\r\nMessage-ID: <restore%d@y.example>\r\n\r\nbody %d\r\n", address, i, i, i))
	}
	s.deliver([][]byte{mail(0), mail(1)})
	if v, err := look(t, s.imapAddr, "INBOX"); err != nil || len(v.byUID) != 2 {
		t.Fatalf("before the checkpoint: %v, %v", v, err)
	}
	ctx := proctest.Ctx(t, 2*time.Minute)
	path, err := s.Client().Checkpoint(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	s.deliver([][]byte{mail(2), mail(3)})
	before, err := look(t, s.imapAddr, "INBOX")
	if err != nil || len(before.byUID) != 4 {
		t.Fatalf("after the checkpoint: %v, %v", before, err)
	}

	// Restore: dbd stopped, the checkpoint put in place of its data, dbd
	// started again on the same address.
	s.Kill()
	data := filepath.Join(s.Dir, "data")
	ckpt := filepath.Join(s.Dir, "checkpoint")
	if err := os.Rename(path, ckpt); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ckpt, data); err != nil {
		t.Fatal(err)
	}
	s.Start()
	s.deliver([][]byte{mail(4), mail(5)})

	var after *view
	eventually(t, "INBOX after the restore", func() (bool, error) {
		after, err = look(t, s.imapAddr, "INBOX")
		return err == nil && len(after.byUID) == 4, err
	})
	if after.validity == before.validity {
		for uid, body := range after.byUID {
			if old, ok := before.byUID[uid]; ok && old != body {
				t.Fatalf("UIDVALIDITY %d kept after the restore, and UID %d now names another mail:\nwas %q\nnow %q",
					before.validity, uid, old, body)
			}
		}
		t.Fatalf("UIDVALIDITY %d kept after the restore", before.validity)
	}
}
