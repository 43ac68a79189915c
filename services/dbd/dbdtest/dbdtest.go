// Package dbdtest starts a real dbd (store, server, daemon wiring) inside a
// test process on 127.0.0.1 with fresh keys, and makes clients for it. It
// is for tests only.
package dbdtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/daemon"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
)

// Env is one running dbd and the keys of one client per role.
type Env struct {
	Addr    string
	Dir     string
	DBKey   wire.KeyPair
	Keys    map[auth.Role]wire.KeyPair
	Clients string // path of the clients file

	t      testing.TB
	cfg    daemon.Config
	cancel context.CancelFunc
	done   chan error
}

// Options tune Start.
type Options struct {
	Server server.Config // protocol limits
	// MaxMessage, if set, overrides Server.MaxMessage: for tests outside
	// dbd, which cannot name server.Config.
	MaxMessage int
	Dir        string       // data and keys folder; default t.TempDir()
	Logger     *slog.Logger // default: discard
}

// Start runs a dbd until the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	dir := o.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	e := &Env{Dir: dir, Keys: map[auth.Role]wire.KeyPair{}, t: t, Clients: filepath.Join(dir, "clients")}
	var lines []string
	keyDir := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range append([]string{"dbd"}, roleNames()...) {
		path := filepath.Join(keyDir, name)
		kp, err := wire.LoadKeyPair(path)
		if err != nil {
			if kp, err = wire.GenerateKeyPair(rand.Reader); err != nil {
				t.Fatal(err)
			}
			if err := wire.WriteKeyFiles(path, kp); err != nil {
				t.Fatal(err)
			}
		}
		if name == "dbd" {
			e.DBKey = kp
			continue
		}
		e.Keys[auth.Role(name)] = kp
		lines = append(lines, fmt.Sprintf("%s keys/%s.pub", name, name))
	}
	if err := os.WriteFile(e.Clients, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxMessage != 0 {
		o.Server.MaxMessage = o.MaxMessage
	}
	e.cfg = daemon.Config{
		Data: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", KeyPath: filepath.Join(keyDir, "dbd"),
		Clients: e.Clients, Logger: log, Server: o.Server, ReloadInterval: 50 * time.Millisecond,
	}
	if err := e.run(); err != nil {
		t.Fatalf("start dbd: %v", err)
	}
	e.cfg.Listen = e.Addr
	t.Cleanup(e.Stop)
	return e
}

// run starts dbd with e.cfg and waits until it listens.
func (e *Env) run() error {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	ready := make(chan net.Addr, 1)
	cfg := e.cfg
	cfg.Ready = func(a net.Addr) { ready <- a }
	go func() { e.done <- daemon.Run(ctx, cfg) }()
	select {
	case a := <-ready:
		e.Addr = a.String()
		return nil
	case err := <-e.done:
		cancel()
		e.cancel = nil
		return err
	}
}

// Restart stops dbd and starts it again on the same data folder and
// address: its block cache starts empty, as after a reboot, while the
// operating system's page cache stays as it was. Clients reconnect.
func (e *Env) Restart() {
	e.t.Helper()
	e.Stop()
	// The old dbd's accepted connections may outlive it for a moment
	// and keep the port.
	var err error
	for try := 0; try < 500; try++ {
		if err = e.run(); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("restart dbd: %v", err)
	}
}

func roleNames() []string {
	var names []string
	for _, r := range auth.Roles() {
		names = append(names, string(r))
	}
	return names
}

// Stop stops dbd and waits for it. It is safe to call more than once.
func (e *Env) Stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("dbd exited with %v", err)
	}
	e.cancel = nil
}

// Client returns a client with the key of role r, closed at the end of the
// test.
func (e *Env) Client(r auth.Role) *client.Client {
	e.t.Helper()
	return e.ClientWithKey(e.Keys[r], e.DBKey.Public)
}

// ClientWithKey returns a client with any key pair, pinning server.
func (e *Env) ClientWithKey(kp wire.KeyPair, server wire.PublicKey) *client.Client {
	e.t.Helper()
	c, err := client.New(client.Config{
		Addr: e.Addr, Static: kp, Server: server, Timeout: 10 * time.Second,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// Dial opens a raw authenticated wire connection with role r's key, for
// tests that send hand-made frames.
func (e *Env) Dial(r auth.Role) *wire.Conn {
	e.t.Helper()
	nc, err := net.Dial("tcp", e.Addr)
	if err != nil {
		e.t.Fatal(err)
	}
	wc, err := wire.ClientHandshake(context.Background(), nc, &wire.ClientConfig{Static: e.Keys[r], Server: e.DBKey.Public})
	if err != nil {
		nc.Close()
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { wc.Close() })
	return wc
}
