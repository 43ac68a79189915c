// Package deploy holds no code: its tests check the files of deploy/
// against the programs. The systemd environment files name exactly the
// variables each program reads; the alert rules and the Grafana dashboard
// use only metric names some twinmx program exports; the Prometheus files
// pass promtool (when it is installed; TWINMX_REQUIRE_PROMTOOL=1 makes a
// missing promtool fail the tests); every alert is explained in
// docs/operations.md. The systemd units themselves are checked by
// pkg/wire/svc, which owns their sandbox.
package deploy
