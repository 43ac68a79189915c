package svc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Sentinels of the managers, for callers that branch.
var (
	ErrInstalled    = errors.New("svc: service already installed")
	ErrNotInstalled = errors.New("svc: service not installed")
	ErrUnsupported  = errors.New("svc: no service manager on this platform")
)

// Unit is what a program asks of the service manager beyond its command
// line. The zero value suits a daemon that writes nothing and binds no low
// port.
type Unit struct {
	// Description is one line for the service manager (default: the app's
	// Usage).
	Description string
	// Writable names the program's flags whose values are folders it
	// writes (dbd: "data"). Under systemd they are the only writable
	// paths.
	Writable []string
	// LowPorts: the program may listen on ports below 1024 (smtpd, pop3d,
	// imapd), so its unit keeps CAP_NET_BIND_SERVICE.
	LowPorts bool
	// Reload: SIGHUP makes the program re-read its settings (dbd: its
	// clients file), so `systemctl reload` sends it.
	Reload bool
}

// Manager installs and controls services. Systemd and the Windows manager
// implement it; tests use a fake.
type Manager interface {
	Install(Spec) error
	Uninstall(name string) error
	Start(name string) error
	Stop(name string) error
	Status(name string) (string, error)
}

// env is what Run needs from the process; tests replace it.
type env struct {
	manager    func() (Manager, error)
	executable func() (string, error)
	getwd      func() (string, error)
	lookupEnv  func(string) (string, bool)
	// service reports whether the process runs under the Windows service
	// manager; runService then runs the action as that service.
	service    func() bool
	runService func(name string, action cli.ActionFunc, c *cli.Context) error
}

var osEnv = env{
	manager:    newManager,
	executable: executable,
	getwd:      os.Getwd,
	lookupEnv:  os.LookupEnv,
	service:    isWindowsService,
	runService: runWindowsService,
}

func executable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

// Run runs app with args (os.Args) after adding the `service` command to
// it. The program's required flags are checked by its default action (and
// by `service install`) rather than before every command, so `service
// status` needs none of them. Under the Windows service manager the
// default action runs as that service, its c.Context cancelled when the
// service is stopped.
func Run(app *cli.App, args []string, u Unit) error {
	return osEnv.run(app, args, u)
}

func (e env) run(app *cli.App, args []string, u Unit) error {
	required := unrequire(app.Flags)
	if action := app.Action; action != nil {
		app.Action = func(c *cli.Context) error {
			if err := checkRequired(c, required); err != nil {
				return err
			}
			if e.service() {
				return e.runService(serviceName(app.Name, e.lookupEnv), action, c)
			}
			return action(c)
		}
	}
	app.Commands = append(app.Commands, e.command(app, args, u, required))
	return app.Run(args)
}

// unrequire clears Required on flags (every urfave/cli v2 flag type has
// that field) and returns the names that were required.
func unrequire(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		v := reflect.ValueOf(f)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			continue
		}
		r := v.Elem().FieldByName("Required")
		if r.IsValid() && r.Kind() == reflect.Bool && r.Bool() && r.CanSet() {
			r.SetBool(false)
			names = append(names, f.Names()[0])
		}
	}
	return names
}

// checkRequired reports the required flags set neither on the command line
// nor in the environment, worded as urfave/cli words it.
func checkRequired(c *cli.Context, required []string) error {
	var missing []string
	for _, n := range required {
		if !c.IsSet(n) {
			missing = append(missing, n)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		//lint:ignore ST1005 urfave/cli's own wording, which users already know
		return fmt.Errorf("Required flag %q not set", missing[0])
	}
	//lint:ignore ST1005 urfave/cli's own wording, which users already know
	return fmt.Errorf("Required flags %q not set", strings.Join(missing, ", "))
}

// serviceName is the name a Windows service was installed under
// (TWINMX_SERVICE_NAME, set by install) or the default.
func serviceName(program string, lookup func(string) (string, bool)) string {
	if n, ok := lookup("TWINMX_SERVICE_NAME"); ok && n != "" {
		return n
	}
	return "twinmx-" + program
}

func (e env) command(app *cli.App, args []string, u Unit, required []string) *cli.Command {
	name := &cli.StringFlag{Name: "name", Value: "twinmx-" + app.Name, Usage: "service name (the systemd unit is NAME.service)"}
	manage := func(f func(m Manager, name string) error) cli.ActionFunc {
		return func(c *cli.Context) error {
			m, err := e.manager()
			if err != nil {
				return err
			}
			return f(m, c.String("name"))
		}
	}
	return &cli.Command{
		Name:  "service",
		Usage: "install, uninstall, start, stop or status of " + app.Name + " as a systemd unit or Windows service",
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "install (and enable) a service that runs " + app.Name + " with the flags given before `service`",
				Flags: []cli.Flag{name,
					&cli.StringFlag{Name: "user", Usage: "account the service runs as (systemd: User=; create it first, e.g. useradd --system twinmx)"},
					&cli.StringFlag{Name: "env-file", Usage: "systemd: optional EnvironmentFile= (default /etc/twinmx/NAME.env without the twinmx- prefix)"},
					&cli.BoolFlag{Name: "dry-run", Usage: "print what would be installed and install nothing"},
				},
				Action: func(c *cli.Context) error {
					if err := checkRequired(c, required); err != nil {
						return fmt.Errorf("%w (give the program's flags before `service install`)", err)
					}
					s, err := e.spec(c, app, args, u)
					if err != nil {
						return err
					}
					if c.Bool("dry-run") {
						return printSpec(c, s)
					}
					m, err := e.manager()
					if err != nil {
						return err
					}
					if err := m.Install(s); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "installed %s: %s\n", s.Name, strings.Join(append([]string{s.Exec}, s.Args...), " "))
					return nil
				},
			},
			{
				Name: "uninstall", Usage: "stop and remove the service", Flags: []cli.Flag{name},
				Action: manage(func(m Manager, n string) error { return m.Uninstall(n) }),
			},
			{
				Name: "start", Usage: "start the service", Flags: []cli.Flag{name},
				Action: manage(func(m Manager, n string) error { return m.Start(n) }),
			},
			{
				Name: "stop", Usage: "stop the service", Flags: []cli.Flag{name},
				Action: manage(func(m Manager, n string) error { return m.Stop(n) }),
			},
			{
				Name: "status", Usage: "print the service's state (exit status 1 if not installed)", Flags: []cli.Flag{name},
				Action: func(c *cli.Context) error {
					m, err := e.manager()
					if err != nil {
						return err
					}
					st, err := m.Status(c.String("name"))
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s: %s\n", c.String("name"), st)
					return nil
				},
			},
		},
	}
}

// spec builds the installed service from the install command line: the
// program's own arguments are those before `service`.
func (e env) spec(c *cli.Context, app *cli.App, args []string, u Unit) (Spec, error) {
	// The program's own context is the parent of the service command's;
	// its Args() are what followed the program's flags: service install ...
	var root *cli.Context
	lin := c.Lineage()
	for i, x := range lin[:len(lin)-1] {
		if x.Command != nil && x.Command.Name == "service" {
			root = lin[i+1]
			break
		}
	}
	if root == nil || len(args) < 1 || len(args)-1-root.Args().Len() < 0 {
		return Spec{}, fmt.Errorf("svc: cannot find the program's arguments in %q", args)
	}
	n := len(args) - 1 - root.Args().Len()
	exe, err := e.executable()
	if err != nil {
		return Spec{}, fmt.Errorf("find the program: %w", err)
	}
	wd, err := e.getwd()
	if err != nil {
		return Spec{}, err
	}
	s := Spec{
		Name: c.String("name"), Description: u.Description, Exec: exe,
		Args: slices.Clone(args[1 : 1+n]), WorkDir: wd, User: c.String("user"),
		EnvFile: c.String("env-file"), LowPorts: u.LowPorts, Reload: u.Reload,
	}
	if s.Name == "" || strings.ContainsAny(s.Name, " /\\\t\n") {
		return Spec{}, fmt.Errorf("svc: bad service name %q", s.Name)
	}
	if s.Description == "" {
		s.Description = app.Usage + " (" + app.Name + ")"
	}
	if s.EnvFile == "" {
		s.EnvFile = "/etc/twinmx/" + strings.TrimPrefix(s.Name, "twinmx-") + ".env"
	}
	for _, f := range app.Flags {
		df, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		for _, v := range df.GetEnvVars() {
			if val, ok := e.lookupEnv(v); ok {
				s.Env = append(s.Env, v+"="+val)
			}
		}
	}
	slices.Sort(s.Env)
	s.Env = slices.Compact(s.Env)
	for _, fl := range u.Writable {
		p := root.String(fl)
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(wd, p)
		}
		s.Writable = append(s.Writable, filepath.Clean(p))
	}
	return s, nil
}

func printSpec(c *cli.Context, s Spec) error {
	w := c.App.Writer
	if runtimeGOOS == "windows" {
		fmt.Fprintf(w, "service %s (%s)\ncommand: %s\nfolder: %s\n", s.Name, s.Description,
			strings.Join(append([]string{s.Exec}, s.Args...), " "), s.WorkDir)
		env := WindowsEnv(s)
		for _, k := range sortedKeys(env) {
			fmt.Fprintf(w, "environment: %s=%s\n", k, env[k])
		}
		return nil
	}
	fmt.Fprintf(w, "# %s.service\n%s", s.Name, SystemdUnit(s))
	return nil
}
