// Package svc lets every twinmx program install and run itself as a
// systemd service on Linux and as a Windows service, from the same binary
// (SPEC §2, §10), and tells systemd when a daemon is ready (sd_notify).
//
// A program's main needs two lines: Run instead of app.Run, and Ready where
// the daemon serves:
//
//	err := svc.Run(app, os.Args, svc.Unit{Writable: []string{"data"}})
//	...
//	cfg.Ready = func(net.Addr) { svc.Ready() }
//
// and its action derives its context from c.Context (cancelled when the
// Windows service manager stops the service).
//
// # Commands
//
// Run adds `PROGRAM service install|uninstall|start|stop|status`. install
// captures the program's own command line given before `service` and the
// TWINMX_* variables its flags read that are set at install time, so
//
//	smtpd --listen :25 --db 10.0.0.1:7301 ... service install --user twinmx
//
// installs a unit (or a Windows service) that runs `smtpd --listen :25 --db
// 10.0.0.1:7301 ...`, in the folder install ran in. `--dry-run` prints what
// would be installed. On Linux the unit is the hardened one of
// deploy/systemd (Type=notify, ProtectSystem=strict, an empty capability
// set except CAP_NET_BIND_SERVICE for programs that ask for low ports, a
// system-call filter, ...); the folders named by Unit.Writable are its only
// writable paths. On Windows github.com/kardianos/service talks to the
// service control manager (docs/dependencies.md).
//
// # Why in pkg/wire
//
// Every service module already requires pkg/wire (with a replace
// directive), so a package here is importable by all of them without a new
// module, a new replace line per service or a go.work change. It depends
// on urfave/cli (which every program uses for its flags) and, on Windows
// only, kardianos/service; it has no I/O beyond the service manager and
// the notify socket.
//
// # Concurrency
//
// Run is called once per process from main. Ready and Notify are safe for
// concurrent use.
package svc
