package svc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// Spec is one service as installed: everything the service manager needs
// to start the program. Install builds it from the command line; the
// managers only read it.
type Spec struct {
	Name        string   // service name, e.g. twinmx-smtpd (the unit is NAME.service)
	Description string   // one line
	Exec        string   // absolute path of the program
	Args        []string // the program's flags given before `service install`
	Env         []string // KEY=VALUE the program's flags read, captured at install (sorted)
	WorkDir     string   // absolute folder install ran in; relative paths in Args resolve here
	User        string   // account the service runs as (empty: root, or LocalSystem on Windows)
	EnvFile     string   // optional environment file (systemd only), e.g. /etc/twinmx/smtpd.env
	Writable    []string // absolute folders the program writes (systemd: its only writable paths)
	LowPorts    bool     // may bind ports below 1024 (CAP_NET_BIND_SERVICE)
	Reload      bool     // SIGHUP re-reads the program's settings (systemd: ExecReload)
}

// Hardening is the sandbox every twinmx unit gets, generated or in
// deploy/systemd (a test checks both). Go programs need no W+X memory, no
// new privileges, no devices and no kernel tunables. SystemCallArchitectures
// is left out on purpose: a linux/386 build on an amd64 kernel would be
// killed by "native".
var Hardening = []string{
	"NoNewPrivileges=yes",
	"ProtectSystem=strict",
	"ProtectHome=read-only",
	"PrivateTmp=yes",
	"PrivateDevices=yes",
	"ProtectKernelTunables=yes",
	"ProtectKernelModules=yes",
	"ProtectKernelLogs=yes",
	"ProtectControlGroups=yes",
	"ProtectClock=yes",
	"ProtectHostname=yes",
	"RestrictNamespaces=yes",
	"RestrictRealtime=yes",
	"RestrictSUIDSGID=yes",
	"LockPersonality=yes",
	"MemoryDenyWriteExecute=yes",
	"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
	"SystemCallFilter=@system-service",
	"SystemCallErrorNumber=EPERM",
	"UMask=0077",
}

// SystemdUnit renders spec as a systemd unit file. Type=notify: the program
// sends READY=1 (Ready) once it serves.
func SystemdUnit(s Spec) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Installed by `%s service install`; see docs/operations.md.", filepath.Base(s.Exec))
	w("[Unit]")
	w("Description=%s", unitValue(s.Description))
	w("After=network-online.target")
	w("Wants=network-online.target")
	w("")
	w("[Service]")
	w("Type=notify")
	w("NotifyAccess=main")
	cmd := []string{execArg(s.Exec)}
	for _, a := range s.Args {
		cmd = append(cmd, execArg(a))
	}
	w("ExecStart=%s", strings.Join(cmd, " "))
	if s.Reload {
		w("ExecReload=/bin/kill -HUP $MAINPID")
	}
	if s.WorkDir != "" {
		w("WorkingDirectory=%s", execArg(s.WorkDir))
	}
	if s.EnvFile != "" {
		w("EnvironmentFile=-%s", s.EnvFile)
	}
	for _, e := range s.Env {
		w("Environment=%s", envArg(e))
	}
	if s.User != "" {
		w("User=%s", s.User)
	}
	w("Restart=on-failure")
	w("RestartSec=2s")
	w("TimeoutStopSec=30s")
	w("")
	w("# Sandbox (the same in deploy/systemd).")
	for _, h := range Hardening {
		w("%s", h)
	}
	if s.LowPorts {
		w("CapabilityBoundingSet=CAP_NET_BIND_SERVICE")
		w("AmbientCapabilities=CAP_NET_BIND_SERVICE")
	} else {
		w("CapabilityBoundingSet=")
	}
	for _, p := range s.Writable {
		w("ReadWritePaths=%s", execArg(p))
	}
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return b.String()
}

// unitValue makes a free-text value safe on one line: no line breaks, and
// % is systemd's specifier character.
func unitValue(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	return strings.ReplaceAll(s, "%", "%%")
}

// execArg quotes one word of ExecStart= (systemd.service(5) "Command
// lines"): plain words stay as they are; anything else goes in double
// quotes with C escapes. % (specifiers) and $ (variable expansion) are
// doubled so the program gets the word exactly.
func execArg(s string) string {
	s = strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !plainRune(r) }) < 0 {
		return s
	}
	return quote(s)
}

// envArg quotes KEY=VALUE for Environment= (no $ expansion there).
func envArg(kv string) string {
	return quote(strings.ReplaceAll(kv, "%", "%%"))
}

func plainRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("-_./:=,@+%$", r)
}

// quote is a double-quoted word with C escapes for the characters systemd
// would otherwise read as syntax.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Systemd installs units into Dir and drives them with systemctl. The zero
// value is not usable; see NewSystemd.
type Systemd struct {
	Dir string // where unit files go: /etc/systemd/system
	// Systemctl runs systemctl with args and returns its combined output.
	Systemctl func(args ...string) (string, error)
	// Chown gives a created writable folder to the service's user (nil: no
	// chown).
	Chown func(path, user string) error
}

// NewSystemd returns the manager of the system's systemd.
func NewSystemd() *Systemd {
	return &Systemd{Dir: "/etc/systemd/system", Systemctl: systemctl, Chown: chownUser}
}

func systemctl(args ...string) (string, error) {
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func chownUser(path, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("user %s: uid %q", name, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("user %s: gid %q", name, u.Gid)
	}
	return os.Chown(path, uid, gid)
}

func (m *Systemd) unitPath(name string) string { return filepath.Join(m.Dir, name+".service") }

// Install writes the unit, creates missing writable folders (owned by the
// service's user), reloads systemd and enables the unit. It refuses to
// overwrite an installed unit.
func (m *Systemd) Install(s Spec) error {
	path := m.unitPath(s.Name)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%w: %s (uninstall it first)", ErrInstalled, path)
	}
	for _, d := range s.Writable {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create writable folder: %w", err)
		}
		if s.User != "" && m.Chown != nil {
			if err := m.Chown(d, s.User); err != nil {
				return fmt.Errorf("give %s to %s: %w", d, s.User, err)
			}
		}
	}
	if err := os.WriteFile(path, []byte(SystemdUnit(s)), 0o644); err != nil {
		return fmt.Errorf("write unit: %w", err)
	}
	if _, err := m.Systemctl("daemon-reload"); err != nil {
		os.Remove(path)
		return err
	}
	_, err := m.Systemctl("enable", s.Name+".service")
	return err
}

// Uninstall stops and disables the unit and removes its file.
func (m *Systemd) Uninstall(name string) error {
	path := m.unitPath(name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s", ErrNotInstalled, path)
	}
	if _, err := m.Systemctl("disable", "--now", name+".service"); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove unit: %w", err)
	}
	_, err := m.Systemctl("daemon-reload")
	return err
}

// Start starts the unit.
func (m *Systemd) Start(name string) error {
	_, err := m.Systemctl("start", name+".service")
	return err
}

// Stop stops the unit.
func (m *Systemd) Stop(name string) error {
	_, err := m.Systemctl("stop", name+".service")
	return err
}

// Status is systemctl is-active's answer (active, inactive, failed,
// activating, ...) or ErrNotInstalled.
func (m *Systemd) Status(name string) (string, error) {
	if _, err := os.Stat(m.unitPath(name)); err != nil {
		return "", fmt.Errorf("%w: %s", ErrNotInstalled, m.unitPath(name))
	}
	// is-active exits non-zero for anything but active; its output is the
	// answer either way.
	out, err := m.Systemctl("is-active", name+".service")
	if st := strings.TrimSpace(firstLine(out)); st != "" && !strings.Contains(st, " ") {
		return st, nil
	}
	return "", err
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
