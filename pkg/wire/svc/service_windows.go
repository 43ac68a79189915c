//go:build windows

package svc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kardianos/service"
	"github.com/urfave/cli/v2"
)

// isWindowsService reports whether the service control manager started
// this process.
func isWindowsService() bool { return !service.Interactive() }

// program runs a cli action as a Windows service: Start runs it with a
// context that Stop cancels; Stop waits until it returned.
type program struct {
	action cli.ActionFunc
	c      *cli.Context
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(p.c.Context)
	p.cancel, p.done, p.c.Context = cancel, make(chan struct{}), ctx
	go func() {
		defer close(p.done)
		p.err = p.action(p.c)
		if ctx.Err() == nil {
			// The program ended on its own, not by Stop: end the process
			// so the service manager sees the service stop (and, after a
			// failure, applies the restart recovery action).
			if p.err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", p.c.App.Name, p.err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}()
	return nil
}

func (p *program) Stop(service.Service) error {
	p.cancel()
	<-p.done
	return nil
}

// runWindowsService runs action under the service control manager until
// the service is stopped. It runs in TWINMX_SERVICE_DIR and logs to
// NAME.log there (a service has no console).
func runWindowsService(name string, action cli.ActionFunc, c *cli.Context) error {
	if dir := os.Getenv("TWINMX_SERVICE_DIR"); dir != "" {
		if err := os.Chdir(dir); err != nil {
			return err
		}
	}
	if f, err := os.OpenFile(filepath.Clean(name+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		defer f.Close()
		os.Stderr = f
	}
	p := &program{action: action, c: c}
	s, err := service.New(p, &service.Config{Name: name})
	if err != nil {
		return err
	}
	if err := s.Run(); err != nil {
		return err
	}
	return p.err
}

// windowsManager controls services through the service control manager.
type windowsManager struct{}

func newManager() (Manager, error) { return windowsManager{}, nil }

// nop is the service.Interface of a service handle that only installs or
// controls (never runs) the service.
type nop struct{}

func (nop) Start(service.Service) error { return nil }
func (nop) Stop(service.Service) error  { return nil }

func open(cfg *service.Config) (service.Service, error) { return service.New(nop{}, cfg) }

func (windowsManager) Install(s Spec) error {
	if err := makeWritable(s.Writable); err != nil {
		return err
	}
	sv, err := open(&service.Config{
		Name: s.Name, DisplayName: s.Name, Description: s.Description,
		Executable: s.Exec, Arguments: s.Args, EnvVars: WindowsEnv(s), UserName: s.User,
		Option: service.KeyValue{
			service.StartType: service.ServiceStartAutomatic,
			service.OnFailure: service.OnFailureRestart, "OnFailureDelayDuration": "5s", "OnFailureResetPeriod": 60,
		},
	})
	if err != nil {
		return err
	}
	return sv.Install()
}

func (windowsManager) control(name string, f func(service.Service) error) error {
	sv, err := open(&service.Config{Name: name})
	if err != nil {
		return err
	}
	return f(sv)
}

func (m windowsManager) Uninstall(name string) error {
	return m.control(name, func(sv service.Service) error {
		if st, err := sv.Status(); err == nil && st == service.StatusRunning {
			if err := sv.Stop(); err != nil {
				return err
			}
		}
		return sv.Uninstall()
	})
}

func (m windowsManager) Start(name string) error {
	return m.control(name, func(sv service.Service) error { return sv.Start() })
}

func (m windowsManager) Stop(name string) error {
	return m.control(name, func(sv service.Service) error { return sv.Stop() })
}

func (m windowsManager) Status(name string) (string, error) {
	var st service.Status
	err := m.control(name, func(sv service.Service) (err error) { st, err = sv.Status(); return err })
	if errors.Is(err, service.ErrNotInstalled) {
		return "", fmt.Errorf("%w: %s", ErrNotInstalled, name)
	}
	if err != nil {
		return "", err
	}
	return windowsStatus(st == service.StatusRunning, st == service.StatusStopped), nil
}

// makeWritable creates the writable folders that do not exist yet.
func makeWritable(dirs []string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create writable folder: %w", err)
		}
	}
	return nil
}

// windowsStatus names a Windows service state like systemctl is-active.
func windowsStatus(running, stopped bool) string {
	switch {
	case running:
		return "active"
	case stopped:
		return "inactive"
	}
	return "unknown"
}
