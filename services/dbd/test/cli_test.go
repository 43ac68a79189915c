package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDBCtl drives a dbd process with the dbctl binary, the interface the
// operators (and the project's checks) use.
func TestDBCtl(t *testing.T) {
	s := newSite(t)
	s.Start()
	if got := s.Dbctl(nil, "find-or-insert", "body", "hello"); got != "1 new\n" {
		t.Fatalf("first find-or-insert printed %q, want \"1 new\"", got)
	}
	if got := s.Dbctl(nil, "find-or-insert", "body", "hello"); got != "1 old\n" {
		t.Fatalf("second find-or-insert printed %q, want \"1 old\"", got)
	}
	if got := s.Dbctl(nil, "set", "body", "hello", "verdict", "7"); got != "1\n" {
		t.Fatalf("set printed %q", got)
	}
	s.Dbctl(nil, "set", "body", "hello", "verdict", "3") // never lowers
	s.Dbctl(nil, "increment", "body", "hello", "hits", "2")
	s.Dbctl(nil, "increment", "body", "hello", "hits", "3")
	out := s.Dbctl(nil, "find", "body", "hello")
	for _, want := range []string{"rowno: 1", "columns: verdict=7", "counters: hits=5(", `content: "hello"`} {
		if !strings.Contains(out, want) {
			t.Errorf("find output lacks %q:\n%s", want, out)
		}
	}
	if _, _, code := s.DbctlExit(nil, "find", "body", "absent"); code != 1 {
		t.Errorf("find of a missing row exited %d, want 1", code)
	}
	if _, _, code := s.DbctlExit(nil, "set", "body", "absent", "x", "1"); code != 1 {
		t.Errorf("set of a missing row exited %d, want 1", code)
	}
	if _, _, code := s.DbctlExit(nil, "find", "nosuchtable", "x"); code != 2 {
		t.Errorf("unknown table exited %d, want 2 (usage)", code)
	}
	dump := s.Dbctl(nil, "dump")
	if lines := strings.Split(strings.TrimSpace(dump), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "body ") || !strings.Contains(lines[0], "cols=verdict=7") {
		t.Errorf("dump = %q", dump)
	}
	status := s.Dbctl(nil, "status")
	if !strings.Contains(status, "rows.body: 1") {
		t.Errorf("status lacks the row count:\n%s", status)
	}
	// A key of another role is refused for what its role may not do.
	_, errs, code := s.DbctlExit(nil, "--db", s.Addr, "--db-pub", filepath.Join(s.Dir, "keys", "dbd.pub"),
		"--key", filepath.Join(s.Dir, "keys", "smtpd"), "find", "body", "hello")
	if code == 0 || !strings.Contains(errs, "forbidden") {
		t.Errorf("smtpd reading a body: exit %d, stderr %q; want forbidden", code, errs)
	}
	// Content from a file and from stdin, and --raw output.
	path := filepath.Join(t.TempDir(), "c")
	os.WriteFile(path, []byte("from a file\n"), 0o600)
	s.Dbctl(nil, "find-or-insert", "--file", "text", path)
	if got := s.Dbctl(nil, "find", "--raw", "--file", "text", path); got != "from a file\n" {
		t.Errorf("find --raw = %q", got)
	}
	s.Stop()
	s.Start()
	if got := s.Dbctl(nil, "find-or-insert", "body", "hello"); got != "1 old\n" {
		t.Fatalf("after restart: %q", got)
	}
}

// TestDbctlClientsCheck: `dbctl clients check FILE` reads a clients file
// as dbd does, lists its keys in file order with their not-after, marks
// the expired and the soon expiring, and exits 1 with every problem of a
// file dbd would refuse.
func TestDbctlClientsCheck(t *testing.T) {
	s := newSite(t)
	dir := t.TempDir()
	pub := func(name string) string {
		s.Dbctl(nil, "keygen", "--out", filepath.Join(dir, "keys", name))
		b, err := os.ReadFile(filepath.Join(dir, "keys", name+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return lines[len(lines)-1]
	}
	mx, old, dev := pub("mx"), pub("old"), pub("dev")
	soon := time.Now().UTC().Add(72 * time.Hour).Format(time.DateOnly)
	good := filepath.Join(dir, "clients")
	os.WriteFile(good, []byte("# test\nsmtpd keys/mx.pub\nnotify keys/old.pub not-after=2020-01-31\nspamd keys/dev.pub not-after="+soon+"\n"), 0o600)
	out := s.Dbctl(nil, "clients", "check", good)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("clients check printed %d lines, want a header and 3 keys:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"2", "smtpd", "keys/mx.pub", mx, "-", "ok"},
		{"3", "notify", "keys/old.pub", old, "2020-01-31T23:59:59Z", "EXPIRED: refused"},
		{"4", "spamd", "keys/dev.pub", dev, soon + "T23:59:59Z", "expires in 3d"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("smtpd keys/mx.pub\nroot keys/old.pub\nspamd keys/dev.pub not-after=2027-13-01\n"), 0o600)
	out, errs, code := s.DbctlExit(nil, "clients", "check", bad)
	if code != 1 || out != "" || !strings.Contains(errs, bad+":2: ") || !strings.Contains(errs, bad+":3: ") {
		t.Errorf("clients check of a bad file: exit %d, stdout %q, stderr %q; want 1 and lines 2 and 3 named", code, out, errs)
	}
}
