package svc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExecArg(t *testing.T) {
	tests := []struct{ in, want string }{
		{"--listen", "--listen"},
		{"0.0.0.0:25", "0.0.0.0:25"},
		{"A=10.0.0.1:7301,/etc/twinmx/dbd-a.pub", "A=10.0.0.1:7301,/etc/twinmx/dbd-a.pub"},
		{"", `""`},
		{"a b", `"a b"`},
		{`say "hi"`, `"say \"hi\""`},
		{`C:\x`, `"C:\\x"`},
		{"100%", "100%%"},
		{"$HOME", "$$HOME"},
		{"line\nbreak", `"line\nbreak"`},
		{"semi;colon", `"semi;colon"`},
		{"{{.To}}", `"{{.To}}"`},
	}
	for _, tt := range tests {
		if got := execArg(tt.in); got != tt.want {
			t.Errorf("execArg(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := envArg("TWINMX_X=50% off"); got != `"TWINMX_X=50%% off"` {
		t.Errorf("envArg = %s", got)
	}
}

func testSpec() Spec {
	return Spec{
		Name: "twinmx-dbd", Description: "twinmx dbd: 100% durable", Exec: "/usr/local/bin/dbd",
		Args: []string{"--data", "data dir", "--listen", "0.0.0.0:7301"}, Env: []string{"TWINMX_DEBUG=1"},
		WorkDir: "/srv/twinmx", User: "twinmx", EnvFile: "/etc/twinmx/dbd.env", Writable: []string{"/srv/twinmx/data dir"},
	}
}

func TestSystemdUnit(t *testing.T) {
	u := SystemdUnit(testSpec())
	for _, want := range []string{
		"Description=twinmx dbd: 100%% durable\n",
		"Type=notify\n",
		`ExecStart=/usr/local/bin/dbd --data "data dir" --listen 0.0.0.0:7301` + "\n",
		"WorkingDirectory=/srv/twinmx\n",
		"EnvironmentFile=-/etc/twinmx/dbd.env\n",
		`Environment="TWINMX_DEBUG=1"` + "\n",
		"User=twinmx\n",
		"Restart=on-failure\n",
		"CapabilityBoundingSet=\n",
		`ReadWritePaths="/srv/twinmx/data dir"` + "\n",
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
	for _, h := range Hardening {
		if !strings.Contains(u, "\n"+h+"\n") {
			t.Errorf("unit lacks hardening %q", h)
		}
	}
	if strings.Contains(u, "AmbientCapabilities") {
		t.Errorf("dbd needs no capability:\n%s", u)
	}
	if strings.Contains(u, "ExecReload") {
		t.Errorf("a unit without Reload has ExecReload:\n%s", u)
	}
	s := testSpec()
	s.Reload = true
	// dbd re-reads its clients file on SIGHUP; `systemctl reload` of a
	// unit made by `dbd service install` failed without this line.
	if u := SystemdUnit(s); !strings.Contains(u, "\nExecReload=/bin/kill -HUP $MAINPID\n") {
		t.Errorf("unit with Reload lacks ExecReload:\n%s", u)
	}
	s = testSpec()
	s.LowPorts, s.User, s.Env, s.Writable = true, "", nil, nil
	u = SystemdUnit(s)
	if !strings.Contains(u, "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n") ||
		strings.Contains(u, "User=") || strings.Contains(u, "ReadWritePaths") || strings.Contains(u, "Environment=") {
		t.Errorf("low-port unit:\n%s", u)
	}
}

// TestSystemdUnitVerify runs systemd-analyze verify on generated units:
// every key known, every value parsed.
func TestSystemdUnitVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	for i, low := range []bool{false, true} {
		s := testSpec()
		s.Exec, s.User, s.LowPorts, s.WorkDir = "/bin/true", "", low, dir
		s.Writable = []string{filepath.Join(dir, "data")}
		s.Name = []string{"twinmx-verify-a", "twinmx-verify-b"}[i]
		verifyUnit(t, filepath.Join(dir, s.Name+".service"), SystemdUnit(s))
	}
}

// verifyUnit writes text to path and fails on anything systemd-analyze
// says about it (unknown keys are only warnings there).
func verifyUnit(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, filepath.Base(path)) {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s\n%s", filepath.Base(path), err, strings.Join(ours, "\n"), text)
	}
}

// fakeSystemctl records systemctl calls and fails the ones named in fail.
type fakeSystemctl struct {
	calls []string
	fail  map[string]bool
	out   map[string]string
}

func (f *fakeSystemctl) run(args ...string) (string, error) {
	c := strings.Join(args, " ")
	f.calls = append(f.calls, c)
	if f.fail[args[0]] {
		return f.out[args[0]], errors.New("exit status 3")
	}
	return f.out[args[0]], nil
}

func TestSystemdManager(t *testing.T) {
	dir := t.TempDir()
	f := &fakeSystemctl{}
	var chowned []string
	m := &Systemd{Dir: dir, Systemctl: f.run, Chown: func(p, u string) error { chowned = append(chowned, p+" "+u); return nil }}
	s := testSpec()
	s.Writable = []string{filepath.Join(dir, "data", "a")}
	if err := m.Install(s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "twinmx-dbd.service"))
	if err != nil || string(b) != SystemdUnit(s) {
		t.Fatalf("unit file %q, %v", b, err)
	}
	if fi, err := os.Stat(s.Writable[0]); err != nil || !fi.IsDir() {
		t.Errorf("writable folder not made: %v", err)
	}
	if !slices.Equal(chowned, []string{s.Writable[0] + " twinmx"}) {
		t.Errorf("chowned %q", chowned)
	}
	if err := m.Install(s); !errors.Is(err, ErrInstalled) {
		t.Errorf("second install: %v, want ErrInstalled", err)
	}
	if err := m.Start("twinmx-dbd"); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop("twinmx-dbd"); err != nil {
		t.Fatal(err)
	}
	f.out = map[string]string{"is-active": "inactive\n"}
	f.fail = map[string]bool{"is-active": true} // is-active exits 3 for inactive
	if st, err := m.Status("twinmx-dbd"); st != "inactive" || err != nil {
		t.Errorf("Status = %q, %v", st, err)
	}
	f.out["is-active"] = "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
	if _, err := m.Status("twinmx-dbd"); err == nil {
		t.Errorf("Status without systemd: no error")
	}
	f.fail = nil
	if err := m.Uninstall("twinmx-dbd"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "twinmx-dbd.service")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit file left: %v", err)
	}
	want := []string{"daemon-reload", "enable twinmx-dbd.service", "start twinmx-dbd.service", "stop twinmx-dbd.service",
		"is-active twinmx-dbd.service", "is-active twinmx-dbd.service", "disable --now twinmx-dbd.service", "daemon-reload"}
	if !slices.Equal(f.calls, want) {
		t.Errorf("systemctl calls\n%q\nwant\n%q", f.calls, want)
	}
	if err := m.Uninstall("twinmx-dbd"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("uninstall twice: %v", err)
	}
	if _, err := m.Status("twinmx-dbd"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("status after uninstall: %v", err)
	}
}

func TestSystemdManagerReloadFails(t *testing.T) {
	dir := t.TempDir()
	f := &fakeSystemctl{fail: map[string]bool{"daemon-reload": true}}
	m := &Systemd{Dir: dir, Systemctl: f.run}
	s := testSpec()
	s.Writable = nil
	if err := m.Install(s); err == nil {
		t.Fatal("install succeeded although daemon-reload failed")
	}
	if _, err := os.Stat(filepath.Join(dir, "twinmx-dbd.service")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-installed unit left behind: %v", err)
	}
}
