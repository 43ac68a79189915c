package svc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// fakeManager records every call and fails where told.
type fakeManager struct {
	calls     []string
	installed []Spec
	status    string
	err       error // returned by every call
}

func (m *fakeManager) Install(s Spec) error {
	m.calls = append(m.calls, "install "+s.Name)
	if m.err == nil {
		m.installed = append(m.installed, s)
	}
	return m.err
}
func (m *fakeManager) Uninstall(n string) error {
	m.calls = append(m.calls, "uninstall "+n)
	return m.err
}
func (m *fakeManager) Start(n string) error { m.calls = append(m.calls, "start "+n); return m.err }
func (m *fakeManager) Stop(n string) error  { m.calls = append(m.calls, "stop "+n); return m.err }
func (m *fakeManager) Status(n string) (string, error) {
	m.calls = append(m.calls, "status "+n)
	return m.status, m.err
}

// harness is one program ("mxd") with a required flag, an env-only flag and
// a data folder, run through env.run with a fake manager and environment.
type harness struct {
	m       *fakeManager
	service bool // pretend the Windows service manager started us
	ran     []string
	out     bytes.Buffer
}

func newHarness() *harness {
	return &harness{m: &fakeManager{status: "active"}}
}

func (h *harness) env() env {
	return env{
		manager:    func() (Manager, error) { return h.m, nil },
		executable: func() (string, error) { return "/usr/local/bin/mxd", nil },
		getwd:      func() (string, error) { return "/srv/twinmx", nil },
		lookupEnv:  os.LookupEnv,
		service:    func() bool { return h.service },
		runService: func(name string, action cli.ActionFunc, c *cli.Context) error {
			h.ran = append(h.ran, "as service "+name)
			return action(c)
		},
	}
}

func (h *harness) run(args ...string) error {
	app := &cli.App{
		Name: "mxd", Usage: "a test daemon", Writer: &h.out, ErrWriter: &h.out,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", EnvVars: []string{"TWINMX_MXD_DATA"}, Required: true},
			&cli.StringFlag{Name: "listen", EnvVars: []string{"TWINMX_MXD_LISTEN"}},
			&cli.StringFlag{Name: "hostname", EnvVars: []string{"TWINMX_MXD_HOSTNAME"}},
			&cli.BoolFlag{Name: "debug", EnvVars: []string{"TWINMX_DEBUG"}},
		},
		Action: func(c *cli.Context) error {
			h.ran = append(h.ran, "action data="+c.String("data"))
			return nil
		},
	}
	return h.env().run(app, append([]string{"mxd"}, args...), Unit{Writable: []string{"data"}, LowPorts: true})
}

func TestInstallCapturesArgsAndEnv(t *testing.T) {
	h := newHarness()
	t.Setenv("TWINMX_MXD_LISTEN", ":25")
	t.Setenv("TWINMX_DEBUG", "1")
	t.Setenv("HOME", "/root")                  // read by no flag: not captured
	t.Setenv("TWINMX_SMTPD_LISTEN", "nothing") // another program's: not captured
	err := h.run("--data", "var/data", "--hostname", "service", "service", "install", "--user", "twinmx")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.m.installed) != 1 {
		t.Fatalf("calls %q, want one install", h.m.calls)
	}
	got := h.m.installed[0]
	want := Spec{
		Name: "twinmx-mxd", Description: "a test daemon (mxd)", Exec: "/usr/local/bin/mxd",
		Args: []string{"--data", "var/data", "--hostname", "service"},
		Env:  []string{"TWINMX_DEBUG=1", "TWINMX_MXD_LISTEN=:25"}, WorkDir: "/srv/twinmx", User: "twinmx",
		EnvFile: "/etc/twinmx/mxd.env", Writable: []string{"/srv/twinmx/var/data"}, LowPorts: true,
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("installed\n%#v\nwant\n%#v", got, want)
	}
	if len(h.ran) != 0 {
		t.Errorf("install ran the program: %q", h.ran)
	}
	if !strings.Contains(h.out.String(), "installed twinmx-mxd: /usr/local/bin/mxd --data var/data --hostname service") {
		t.Errorf("output %q", h.out.String())
	}
}

func TestInstallNameAndEnvFile(t *testing.T) {
	h := newHarness()
	t.Setenv("TWINMX_MXD_DATA", "/var/lib/twinmx/mxd-b") // a required flag from the environment
	if err := h.run("service", "install", "--name", "twinmx-mxd-b"); err != nil {
		t.Fatal(err)
	}
	s := h.m.installed[0]
	if s.Name != "twinmx-mxd-b" || s.EnvFile != "/etc/twinmx/mxd-b.env" || len(s.Args) != 0 ||
		!slices.Equal(s.Env, []string{"TWINMX_MXD_DATA=/var/lib/twinmx/mxd-b"}) ||
		!slices.Equal(s.Writable, []string{"/var/lib/twinmx/mxd-b"}) {
		t.Errorf("installed %#v", s)
	}
}

func TestInstallErrors(t *testing.T) {
	t.Run("required flag missing", func(t *testing.T) {
		h := newHarness()
		err := h.run("--listen", ":25", "service", "install")
		if err == nil || !strings.Contains(err.Error(), `Required flag "data" not set`) {
			t.Fatalf("err = %v", err)
		}
		if len(h.m.calls) != 0 {
			t.Errorf("manager called: %q", h.m.calls)
		}
	})
	t.Run("manager fails", func(t *testing.T) {
		h := newHarness()
		h.m.err = ErrInstalled
		if err := h.run("--data", "d", "service", "install"); !errors.Is(err, ErrInstalled) {
			t.Fatalf("err = %v, want ErrInstalled", err)
		}
	})
	t.Run("bad name", func(t *testing.T) {
		h := newHarness()
		if err := h.run("--data", "d", "service", "install", "--name", "a/b"); err == nil || len(h.m.calls) != 0 {
			t.Fatalf("err = %v, calls %q", err, h.m.calls)
		}
	})
	t.Run("no manager", func(t *testing.T) {
		h := newHarness()
		e := h.env()
		e.manager = func() (Manager, error) { return nil, ErrUnsupported }
		app := &cli.App{Name: "mxd", Action: func(*cli.Context) error { return nil }, Writer: &h.out}
		if err := e.run(app, []string{"mxd", "service", "status"}, Unit{}); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestControlCommands(t *testing.T) {
	h := newHarness()
	// No required flag is needed to control an installed service.
	for _, c := range []string{"start", "stop", "status", "uninstall"} {
		if err := h.run("service", c, "--name", "twinmx-mxd-a"); err != nil {
			t.Fatalf("service %s: %v", c, err)
		}
	}
	want := []string{"start twinmx-mxd-a", "stop twinmx-mxd-a", "status twinmx-mxd-a", "uninstall twinmx-mxd-a"}
	if !slices.Equal(h.m.calls, want) {
		t.Errorf("calls %q, want %q", h.m.calls, want)
	}
	if h.out.String() != "twinmx-mxd-a: active\n" {
		t.Errorf("status printed %q", h.out.String())
	}
	h.m.err = ErrNotInstalled
	if err := h.run("service", "status"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("status of a missing service: %v", err)
	}
}

func TestDefaultAction(t *testing.T) {
	h := newHarness()
	if err := h.run("--data", "d"); err != nil {
		t.Fatal(err)
	}
	if err := h.run(); err == nil || !strings.Contains(err.Error(), `Required flag "data" not set`) {
		t.Errorf("without --data: %v", err)
	}
	h.service = true
	t.Setenv("TWINMX_SERVICE_NAME", "twinmx-mxd-b")
	if err := h.run("--data", "e"); err != nil {
		t.Fatal(err)
	}
	want := []string{"action data=d", "as service twinmx-mxd-b", "action data=e"}
	if !slices.Equal(h.ran, want) {
		t.Errorf("ran %q, want %q", h.ran, want)
	}
}

func TestDryRun(t *testing.T) {
	h := newHarness()
	if err := h.run("--data", "d", "--listen", "0.0.0.0:25", "service", "install", "--dry-run"); err != nil {
		t.Fatal(err)
	}
	out := h.out.String()
	for _, want := range []string{"# twinmx-mxd.service\n", "ExecStart=/usr/local/bin/mxd --data d --listen 0.0.0.0:25\n",
		"ReadWritePaths=/srv/twinmx/d\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if len(h.m.calls) != 0 {
		t.Errorf("dry run called the manager: %q", h.m.calls)
	}

	defer func(g string) { runtimeGOOS = g }(runtimeGOOS)
	runtimeGOOS = "windows"
	h = newHarness()
	if err := h.run("--data", "d", "service", "install", "--dry-run"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"command: /usr/local/bin/mxd --data d\n", "environment: TWINMX_SERVICE_DIR=/srv/twinmx\n",
		"environment: TWINMX_SERVICE_NAME=twinmx-mxd\n"} {
		if !strings.Contains(h.out.String(), want) {
			t.Errorf("windows dry run lacks %q:\n%s", want, h.out.String())
		}
	}
}

func TestWindowsEnv(t *testing.T) {
	got := WindowsEnv(Spec{Name: "twinmx-dbd", WorkDir: `C:\twinmx`, Env: []string{"TWINMX_DBD_DATA=data", "TWINMX_X=a=b"}})
	want := map[string]string{"TWINMX_DBD_DATA": "data", "TWINMX_X": "a=b", "TWINMX_SERVICE_DIR": `C:\twinmx`, "TWINMX_SERVICE_NAME": "twinmx-dbd"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("WindowsEnv = %v, want %v", got, want)
	}
}

func TestServiceName(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	if n := serviceName("smtpd", none); n != "twinmx-smtpd" {
		t.Errorf("default name %q", n)
	}
	set := func(string) (string, bool) { return "twinmx-smtpd-b", true }
	if n := serviceName("smtpd", set); n != "twinmx-smtpd-b" {
		t.Errorf("installed name %q", n)
	}
}
