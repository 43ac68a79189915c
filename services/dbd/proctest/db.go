package proctest

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// DBConfig says how NewDB sets up a dbd for a test.
type DBConfig struct {
	// Bin is the folder with the dbd and dbctl binaries (see Build).
	Bin string
	// Dir is the site's folder (keys, clients file, data); "" makes a
	// temporary one.
	Dir string
	// Site is dbd's --site name (lower-cased), "" for none.
	Site string
	// Keys are the client keys to make in Dir/keys besides admin, key
	// name to role; each gets its line in the clients file.
	Keys map[string]string
	// Clients are more lines of the clients file ("ROLE PUBFILE"), for
	// keys shared by several sites.
	Clients []string
	// Flags are more dbd flags.
	Flags []string
	// Env is more environment (NAME=VALUE) for dbd, e.g. RuntimeEnv's.
	Env []string
}

// DB is one dbd process of a black-box test, run as an operator runs
// it: its own keys, clients file and data folder, started, stopped and
// killed with SIGKILL. Every service's test package uses it for its
// sites.
type DB struct {
	t    testing.TB
	bin  string
	Dir  string
	Addr string // fixed at the first Start, so a restart keeps it
	Site string
	// Flags are more dbd flags for the next Start.
	Flags []string
	// Env is more environment (NAME=VALUE) for the next Start.
	Env []string
	Pub wire.PublicKey
	Cmd *exec.Cmd // nil while dbd does not run
	Log *SyncBuffer

	adminOnce sync.Once
	admin     *client.Client
}

// NewDB makes the keys (dbd, admin and cfg.Keys) and the clients file of
// a dbd; it does not start it. The test's cleanup kills it and, if the
// test failed, logs the end of its log.
func NewDB(t testing.TB, cfg DBConfig) *DB {
	t.Helper()
	d := &DB{t: t, bin: cfg.Bin, Dir: cfg.Dir, Site: cfg.Site, Flags: cfg.Flags, Env: cfg.Env}
	if d.Dir == "" {
		d.Dir = t.TempDir()
	}
	lines := []string{"admin keys/admin.pub"}
	names := keyNames(cfg.Keys)
	for _, name := range names {
		lines = append(lines, cfg.Keys[name]+" keys/"+name+".pub")
	}
	lines = append(lines, cfg.Clients...)
	for _, name := range append([]string{"dbd", "admin"}, names...) {
		d.Run(nil, "dbctl", "keygen", "--out", d.Key(name))
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "clients"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := wire.LoadPublicKey(d.Key("dbd.pub"))
	if err != nil {
		t.Fatal(err)
	}
	d.Pub = pub
	t.Cleanup(func() {
		if t.Failed() && d.Log != nil {
			t.Logf("dbd %s log (tail):\n%s", d.Dir, Tail(d.Log.String(), 40))
		}
		d.Kill()
	})
	return d
}

func keyNames(keys map[string]string) []string {
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// T returns the test the DB belongs to, for helpers built on it.
func (d *DB) T() testing.TB { return d.t }

// Key returns the path of key file name in the site's keys folder
// ("smtpd", "dbd.pub").
func (d *DB) Key(name string) string { return filepath.Join(d.Dir, "keys", name) }

// DBFlags returns the flags a service needs to reach this dbd with key
// name: --db, --db-pub and --key.
func (d *DB) DBFlags(name string) []string {
	return []string{"--db", d.Addr, "--db-pub", d.Key("dbd.pub"), "--key", d.Key(name)}
}

// Start runs dbd and waits until it accepts connections.
func (d *DB) Start() {
	d.t.Helper()
	if d.Addr == "" {
		d.Addr = FreePort(d.t)
	}
	args := []string{"--data", filepath.Join(d.Dir, "data"), "--listen", d.Addr,
		"--key", d.Key("dbd"), "--clients", filepath.Join(d.Dir, "clients")}
	if d.Site != "" {
		args = append(args, "--site", strings.ToLower(d.Site))
	}
	d.Log = &SyncBuffer{}
	d.Cmd = exec.Command(filepath.Join(d.bin, "dbd"), append(args, d.Flags...)...)
	if len(d.Env) > 0 {
		d.Cmd.Env = append(os.Environ(), d.Env...)
	}
	d.Cmd.Stderr = d.Log
	DieWithTest(d.Cmd)
	if err := d.Cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	WaitListening(d.t, d.Addr, 20*time.Second, d.Log)
}

// Kill sends SIGKILL and reaps the process.
func (d *DB) Kill() {
	killWait(d.Cmd)
	d.Cmd = nil
}

// Stop sends SIGINT and requires a clean exit.
func (d *DB) Stop() {
	d.t.Helper()
	d.Cmd.Process.Signal(os.Interrupt)
	if err := d.Cmd.Wait(); err != nil {
		d.t.Errorf("dbd exit after SIGINT: %v; log:\n%s", err, d.Log)
	}
	d.Cmd = nil
}

// Run runs one of the built programs and fails the test unless it exits
// 0; it returns the standard output.
func (d *DB) Run(stdin io.Reader, prog string, args ...string) string {
	d.t.Helper()
	return RunProg(d.t, d.bin, stdin, prog, args...)
}

// DbctlExit runs dbctl against this dbd with the admin key, feeding
// stdin, and returns stdout, stderr and the exit status.
func (d *DB) DbctlExit(stdin io.Reader, args ...string) (string, string, int) {
	d.t.Helper()
	full := append(d.DBFlags("admin"), "--timeout", "20s")
	cmd := exec.Command(filepath.Join(d.bin, "dbctl"), append(full, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	DieWithTest(cmd)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("dbctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// Dbctl runs dbctl as DbctlExit does and fails the test unless it exits 0.
func (d *DB) Dbctl(stdin io.Reader, args ...string) string {
	d.t.Helper()
	out, errs, code := d.DbctlExit(stdin, args...)
	if code != 0 {
		d.t.Fatalf("dbctl %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// Client returns a wire client with the admin key, one for the test,
// closed by its cleanup. It reconnects quickly, for tests that restart
// dbd.
func (d *DB) Client() *client.Client {
	d.t.Helper()
	d.adminOnce.Do(func() {
		d.admin = d.NewClient("admin")
	})
	return d.admin
}

// NewClient returns a new wire client with key name, closed by the
// test's cleanup.
func (d *DB) NewClient(name string) *client.Client {
	d.t.Helper()
	kp, err := wire.LoadKeyPair(d.Key(name))
	if err != nil {
		d.t.Fatal(err)
	}
	c, err := client.New(client.Config{Addr: d.Addr, Static: kp, Server: d.Pub, Timeout: 20 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

// RunProg runs program prog from folder bin, feeding stdin, and fails
// the test unless it exits 0; it returns the standard output.
func RunProg(t testing.TB, bin string, stdin io.Reader, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, prog), args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	DieWithTest(cmd)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", prog, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// Tail returns the last n lines of s, or all of them with
// TWINMX_FULL_LOGS set.
func Tail(s string, n int) string {
	if os.Getenv("TWINMX_FULL_LOGS") != "" {
		return s
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
