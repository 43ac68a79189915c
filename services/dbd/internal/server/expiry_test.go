package server_test

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
)

// TestClientKeyNotAfter (TEST-CATALOG item 67, "allow-listed key past
// not_after"): a clients-file line may end with not-after=WHEN.
//   - A key already past it is refused at the handshake, and dbd logs the
//     refusal as an expired key, naming its key file.
//   - A key that expires while its session is open is served until then;
//     at its not-after dbd closes the session and refuses new handshakes.
//   - A key whose not-after is moved later by a reload before it passes
//     keeps its session past the old time.
func TestClientKeyNotAfter(t *testing.T) {
	logs := &syncBuffer{}
	e := dbdtest.Start(t, dbdtest.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := ctxT(t)
	key := func(name string) wire.KeyPair {
		kp, err := wire.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.WriteKeyFiles(filepath.Join(e.Dir, "keys", name), kp); err != nil {
			t.Fatal(err)
		}
		return kp
	}
	old, dev, ext := key("old"), key("dev"), key("ext")
	base, err := os.ReadFile(e.Clients)
	if err != nil {
		t.Fatal(err)
	}
	write := func(devNotAfter, extNotAfter string) {
		t.Helper()
		lines := string(base) + "notify keys/old.pub not-after=2020-01-31\n"
		for name, na := range map[string]string{"dev": devNotAfter, "ext": extNotAfter} {
			lines += fmt.Sprintf("spamd keys/%s.pub", name)
			if na != "" {
				lines += " not-after=" + na
			}
			lines += "\n"
		}
		if err := writeFile(e.Clients, lines); err != nil {
			t.Fatal(err)
		}
	}
	write("", "")
	logs.waitCount(t, 1, "clients file reloaded")
	if wc, err := handshake(ctx, e, old); err == nil {
		wc.Close()
		t.Fatal("a key past its not-after was served")
	}
	logs.waitLine(t, "handshake refused: client key past its not-after", "key_file=keys/old.pub", old.Public.String())

	// The sessions open before the not-after is set: the reloads that
	// follow must end one of them at its time and leave the other.
	devLive := dialKey(t, e, dev)
	pingRaw(t, devLive, 1, "dev key before its not-after")
	extLive := dialKey(t, e, ext)
	pingRaw(t, extLive, 1, "ext key before its not-after")
	// Whole seconds (RFC 3339 without fraction), 3-4 s ahead: time for two
	// reloads (50 ms each) before it, even on a loaded machine.
	soon := time.Now().Add(4 * time.Second).UTC().Truncate(time.Second)
	write(soon.Format(time.RFC3339), soon.Format(time.RFC3339))
	logs.waitCount(t, 2, "clients file reloaded")
	logs.waitLine(t, "client key expires soon", "key_file=keys/dev.pub")
	write(soon.Format(time.RFC3339), "2099-12-31")
	logs.waitCount(t, 3, "clients file reloaded")
	if time.Now().After(soon) {
		t.Fatalf("the reloads took until %s, past the not-after %s: the test cannot tell the extended key from the other", time.Now(), soon)
	}

	closed := make(chan time.Time, 1)
	go func() {
		devLive.ReadFrame() // returns when dbd closes the session
		closed <- time.Now()
	}()
	select {
	case at := <-closed:
		if at.Before(soon) {
			t.Fatalf("session closed at %s, before the key's not-after %s", at, soon)
		}
	case <-ctx.Done():
		t.Fatal("the session of an expired key stayed open")
	}
	logs.waitLine(t, "closing connection of an expired client key", "key_file=keys/dev.pub")
	logs.waitLine(t, "client key expired", "key_file=keys/dev.pub")
	if wc, err := handshake(ctx, e, dev); err == nil {
		wc.Close()
		t.Fatal("a key was served after its not-after")
	}
	pingRaw(t, extLive, 2, "ext key past its first not-after, moved later by a reload")
	if err := e.Client(auth.Admin).Ping(ctx); err != nil {
		t.Fatalf("a key without not-after: %v", err)
	}

	// dbctl status (an admin) shows the keys' state; other roles do not
	// see it.
	figs, err := e.Client(auth.Admin).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range figs {
		got[f.Name] = f.Value
	}
	for name, want := range map[string]string{
		"clients.expired": "2", "clients.expiring": "0", "clients.next_not_after": "2099-12-31T23:59:59Z",
	} {
		if got[name] != want {
			t.Errorf("status %s = %q, want %q", name, got[name], want)
		}
	}
	figs, err = e.Client(auth.SMTPD).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range figs {
		if strings.HasPrefix(f.Name, "clients") {
			t.Errorf("smtpd's status shows %s", f.Name)
		}
	}

	// A reload that gives a live key a past not-after closes its session.
	write(soon.Format(time.RFC3339), "2020-01-31")
	logs.waitCount(t, 4, "clients file reloaded")
	waitClosed(ctx, t, extLive, "a reload moved a key's not-after into the past and its session stayed open")
}

// TestClientKeyNotAfterGauge: the gauge holds, per role, the soonest
// not-after of the role's keys that have not expired, and changes with
// the clients.
func TestClientKeyNotAfterGauge(t *testing.T) {
	d := startDBD(t, server.Config{})
	keys := make([]wire.PublicKey, 4)
	for i := range keys {
		kp, err := wire.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = kp.Public
	}
	now := d.now()
	later, latest := now.Add(48*time.Hour).Truncate(time.Second), now.Add(96*time.Hour).Truncate(time.Second)
	d.srv.SetClients(auth.NewClients(map[wire.PublicKey]auth.Client{
		d.admin.Public: {Role: auth.Admin},
		keys[0]:        {Role: auth.SpamD, NotAfter: latest},
		keys[1]:        {Role: auth.SpamD, NotAfter: later},
		keys[2]:        {Role: auth.SpamD, NotAfter: now.Add(-time.Hour)}, // expired: not counted
		keys[3]:        {Role: auth.SMTPD},
	}))
	gauge := func(r auth.Role) float64 { return testutil.ToFloat64(d.m.ClientKeyNotAfter.WithLabelValues(string(r))) }
	waitFor(t, "the spamd gauge", func() bool { return gauge(auth.SpamD) == float64(later.Unix()) })
	if n := testutil.CollectAndCount(d.m.ClientKeyNotAfter); n != 1 {
		t.Errorf("gauge has %d series, want 1 (spamd)", n)
	}
	d.srv.SetClients(auth.NewClients(map[wire.PublicKey]auth.Client{d.admin.Public: {Role: auth.Admin}}))
	waitFor(t, "the gauge emptied", func() bool { return testutil.CollectAndCount(d.m.ClientKeyNotAfter) == 0 })
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
