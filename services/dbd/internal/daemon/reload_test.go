package daemon

import (
	"bytes"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// recordingSetter records every list of clients it is given, as the
// number of clients in it.
type recordingSetter struct {
	mu   sync.Mutex
	lens []int
}

func (r *recordingSetter) SetClients(c *auth.Clients) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lens = append(r.lens, c.Len())
}

func (r *recordingSetter) taken() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.lens...)
}

// TestReloadWaitsForStableContent: a clients file rewritten in place is
// read empty or half-written for a moment; dbd takes a change only once
// two checks in a row find the same content, so a list read mid-write
// never closes the sessions of the keys it lacks (TestKeyRotation failed
// now and then before: its live session of the new key was closed by a
// reload that read the file while os.WriteFile rewrote it). The test calls
// each check itself, so each step is exact.
func TestReloadWaitsForStableContent(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"smtpd", "imapd", "admin"} {
		kp, err := wire.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.WriteKeyFiles(filepath.Join(dir, name), kp); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "clients")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	two := "smtpd smtpd.pub\nmailbox imapd.pub\n"
	three := two + "admin admin.pub\n"
	write(two)

	logs := &bytes.Buffer{}
	set := &recordingSetter{}
	r := newClientsReloader(path, set, slog.New(slog.NewTextHandler(logs, nil)), fileDigest(path))

	steps := []struct {
		name    string
		write   string // "" leaves the file as it is; "-" empties it; "rm" removes it
		want    []int  // the sizes of every list taken so far
		refused int    // reloads refused and logged so far
	}{
		{"unchanged", "", nil, 0},
		{"emptied mid-write", "-", nil, 0},
		{"written whole after the empty read", three, nil, 0},
		{"the same content a second time", "", []int{3}, 0},
		{"unchanged after the reload", "", []int{3}, 0},
		{"half a line written", three + "mailbox ima", []int{3}, 0},
		{"the same half line seen twice: a bad file, refused", "", []int{3}, 1},
		{"the rest of the line", three + "mailbox imapd.pub\n", []int{3}, 1},
		{"seen twice: taken (the key listed twice is one client)", "", []int{3, 3}, 1},
		{"back to two lines", two, []int{3, 3}, 1},
		{"seen twice", "", []int{3, 3, 2}, 1},
		{"removed", "rm", []int{3, 3, 2}, 1},
		{"removed, seen twice: refused", "", []int{3, 3, 2}, 2},
		{"still removed", "", []int{3, 3, 2}, 2},
	}
	for _, s := range steps {
		switch s.write {
		case "":
		case "-":
			write("")
		case "rm":
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		default:
			write(s.write)
		}
		r.check()
		if got := set.taken(); !slices.Equal(got, s.want) {
			t.Fatalf("%s: lists taken %v, want %v\n%s", s.name, got, s.want, logs)
		}
		if got := strings.Count(logs.String(), "reload clients file; keeping the old list"); got != s.refused {
			t.Fatalf("%s: %d refusals logged, want %d\n%s", s.name, got, s.refused, logs)
		}
	}

	// SIGHUP takes the file at once: the operator says it is complete.
	write(three)
	r.reload()
	if got := set.taken(); !slices.Equal(got, []int{3, 3, 2, 3}) {
		t.Fatalf("after SIGHUP: lists taken %v, want [3 3 2 3]", got)
	}
	r.check()
	if got := set.taken(); len(got) != 4 {
		t.Fatalf("a check after SIGHUP took the same file again: %v", got)
	}
}
