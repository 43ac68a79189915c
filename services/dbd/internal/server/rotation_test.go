package server_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestKeyRotation (TEST-CATALOG item 73) rotates smtpd's client key the
// way an operator does (docs/dbd.md, "Keys and clients"): add the new
// key's line to the clients file, move the service over, remove the old
// line. dbd reloads the file when it changes.
//   - Before its line is added, the new key is refused (unknown-key).
//   - With both lines, both keys work side by side: a live session of the
//     old key stays open and is served, new handshakes with either key
//     succeed, and both write concurrently. The new key has exactly the
//     role of its line (smtpd may not read a body).
//   - With the old line removed, the old key's live session is closed,
//     and a new handshake with it fails; dbd logs the refusal as a key
//     not in the clients file, naming the key. The new key's live session
//     is untouched and it keeps working.
func TestKeyRotation(t *testing.T) {
	logs := &syncBuffer{}
	e := dbdtest.Start(t, dbdtest.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := ctxT(t)
	oldKey := e.Keys[auth.SMTPD]
	newKey, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteKeyFiles(filepath.Join(e.Dir, "keys", "smtpd-next"), newKey); err != nil {
		t.Fatal(err)
	}
	const unknownKey = "handshake refused: client key not in the clients file"

	if wc, err := handshake(ctx, e, newKey); err == nil {
		wc.Close()
		t.Fatal("a key not yet in the clients file was served")
	}
	logs.waitLine(t, unknownKey, newKey.Public.String())

	oldLive := dialKey(t, e, oldKey)
	base, err := os.ReadFile(e.Clients)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(base), "smtpd keys/smtpd.pub\n") {
		t.Fatalf("clients file lacks smtpd's line:\n%s", base)
	}
	if err := writeFile(e.Clients, string(base)+"smtpd keys/smtpd-next.pub\n"); err != nil {
		t.Fatal(err)
	}
	logs.waitCount(t, 1, "clients file reloaded")

	// Both keys, side by side.
	pingRaw(t, oldLive, 1, "old key's live session after adding the new key")
	newLive := dialKey(t, e, newKey)
	pingRaw(t, newLive, 1, "new key's first session")
	oldC, newC := e.ClientWithKey(oldKey, e.DBKey.Public), e.ClientWithKey(newKey, e.DBKey.Public)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for name, c := range map[string]interface {
		FindOrInsert(context.Context, model.Table, []byte) (uint64, bool, error)
	}{"old": oldC, "new": newC} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, _, err := c.FindOrInsert(ctx, model.Header, fmt.Appendf(nil, "%s key header %d", name, i)); err != nil {
					errs <- fmt.Errorf("%s key, write %d: %w", name, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("both keys listed: %v", err)
	}
	if _, err := newC.Find(ctx, model.Body, []byte("x")); !isCode(err, wire.CodeForbidden) {
		t.Fatalf("new smtpd key reads a body: %v, want forbidden (its line's role)", err)
	}

	// Remove the old key.
	if err := writeFile(e.Clients, strings.Replace(string(base), "smtpd keys/smtpd.pub\n", "", 1)+"smtpd keys/smtpd-next.pub\n"); err != nil {
		t.Fatal(err)
	}
	waitClosed(ctx, t, oldLive, "the old key's live session stayed open after its removal")
	logs.waitCount(t, 2, "clients file reloaded")
	if wc, err := handshake(ctx, e, oldKey); err == nil {
		wc.Close()
		t.Fatal("a new handshake with the removed key succeeded")
	}
	logs.waitLine(t, unknownKey, oldKey.Public.String())
	pingRaw(t, newLive, 2, "new key's live session after removing the old key")
	if _, _, err := e.ClientWithKey(newKey, e.DBKey.Public).FindOrInsert(ctx, model.Header, []byte("after rotation")); err != nil {
		t.Fatalf("new key after removing the old: %v", err)
	}
}

// TestClockSkewLogged (TEST-CATALOG item 76): a client whose clock is 5
// minutes ahead or behind is refused, and dbd's log says why in one line
// that names clock skew, its size and the client's key, so an operator
// can fix NTP (docs/wire.md §2.3 step 3). A client 90 s off is inside the
// ±2 min window and is served.
func TestClockSkewLogged(t *testing.T) {
	logs := &syncBuffer{}
	e := dbdtest.Start(t, dbdtest.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := ctxT(t)
	admin := e.Keys[auth.Admin]
	const msg = "handshake refused: clock skew; check NTP on both hosts"
	skewAttr := regexp.MustCompile(`\bskew=(\S+)`)
	for i, off := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		nc, err := net.Dial("tcp", e.Addr)
		if err != nil {
			t.Fatal(err)
		}
		now := func() time.Time { return time.Now().Add(off) }
		if wc, err := wire.ClientHandshake(ctx, nc, &wire.ClientConfig{Static: admin, Server: e.DBKey.Public, Now: now}); err == nil {
			wc.Close()
			t.Fatalf("client clock %+v off: served", off)
		}
		lines := logs.waitCount(t, i+1, msg)
		line := lines[i]
		if !strings.Contains(line, admin.Public.String()) || !strings.Contains(line, "level=WARN") {
			t.Fatalf("clock-skew line %q: want level WARN and the client key", line)
		}
		m := skewAttr.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("clock-skew line %q has no skew", line)
		}
		skew, err := time.ParseDuration(m[1])
		// The measured skew is the client's offset, give or take the
		// time the handshake took (far less than the 2 min window).
		if err != nil || math.Abs(float64(skew-off)) > float64(wire.DefaultWindow) {
			t.Fatalf("clock-skew line %q: skew %v (%v), want about %v", line, skew, err, off)
		}
	}
	nc, err := net.Dial("tcp", e.Addr)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Now().Add(90 * time.Second) }
	wc, err := wire.ClientHandshake(ctx, nc, &wire.ClientConfig{Static: admin, Server: e.DBKey.Public, Now: now})
	if err != nil {
		t.Fatalf("client clock 90 s ahead (inside the window): %v", err)
	}
	defer wc.Close()
	pingRaw(t, wc, 1, "client 90 s ahead")
	if n := len(logs.lines(msg)); n != 2 {
		t.Fatalf("%d clock-skew lines, want 2", n)
	}
}

// handshake opens a TCP connection to e and handshakes with kp.
func handshake(ctx context.Context, e *dbdtest.Env, kp wire.KeyPair) (*wire.Conn, error) {
	nc, err := net.Dial("tcp", e.Addr)
	if err != nil {
		return nil, err
	}
	return wire.ClientHandshake(ctx, nc, &wire.ClientConfig{Static: kp, Server: e.DBKey.Public})
}

// dialKey is handshake that fails the test on error and closes the
// connection at its end.
func dialKey(t *testing.T, e *dbdtest.Env, kp wire.KeyPair) *wire.Conn {
	t.Helper()
	wc, err := handshake(ctxT(t), e, kp)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	t.Cleanup(func() { wc.Close() })
	return wc
}

// waitClosed waits until dbd ends the session of wc (its next read
// fails), failing with what when ctx ends first.
func waitClosed(ctx context.Context, t *testing.T, wc *wire.Conn, what string) {
	t.Helper()
	closed := make(chan error, 1)
	go func() {
		_, err := wc.ReadFrame()
		closed <- err
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal(what)
	}
}

// pingRaw sends a ping with request id id on wc and requires its answer.
func pingRaw(t *testing.T, wc *wire.Conn, id uint32, what string) {
	t.Helper()
	ping, err := wire.AppendRequest(nil, &wire.Request{Op: wire.OpPing})
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.WriteFrame(wire.Frame{ReqID: id, Data: ping}); err != nil {
		t.Fatalf("%s: send ping: %v", what, err)
	}
	f, err := wc.ReadFrame()
	if err != nil {
		t.Fatalf("%s: read the answer: %v", what, err)
	}
	if _, err := wire.DecodeAnswer(wire.OpPing, f.Data); err != nil || f.ReqID != id {
		t.Fatalf("%s: answer %+v: %v", what, f, err)
	}
}

func isCode(err error, c wire.Code) bool {
	var we *wire.Error
	return errors.As(err, &we) && we.Code == c
}

// syncBuffer is a log sink the server writes while the test reads it,
// with ways to wait for lines.
type syncBuffer struct{ proctest.SyncBuffer }

// lines returns the log lines that contain every one of parts.
func (b *syncBuffer) lines(parts ...string) []string {
	var out []string
next:
	for _, l := range strings.Split(b.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// waitCount waits until at least n lines contain every one of parts and
// returns them (a line is logged after the event a client sees).
func (b *syncBuffer) waitCount(t *testing.T, n int, parts ...string) []string {
	t.Helper()
	for range 2000 {
		if l := b.lines(parts...); len(l) >= n {
			return l
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %d log lines with %q after 10 s; log:\n%s", n, parts, b.String())
	return nil
}

// waitLine waits for one line with every one of parts.
func (b *syncBuffer) waitLine(t *testing.T, parts ...string) string {
	t.Helper()
	return b.waitCount(t, 1, parts...)[0]
}
