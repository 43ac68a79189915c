#!/bin/sh
# pop3-bench.sh: compare twinmx pop3d with Dovecot's POP3 server on the
# shared corpus (services/pop3d/test/bench_test.go, TestBenchDovecot):
# the same 4214 mails in a twinmx mailbox and in a Maildir, one Go client
# RETRs them all from each; prints mails/s, MB/s, peak RSS and the ratios.
# Run as root from the repository (installs dovecot-pop3d if missing).
set -eu
# The processes run with the Go runtime setting the deploy/systemd env files
# give them (GODEBUG=schedtrace=2000000000: sysmon kept out of its deep sleep,
# docs/benchmarks.md, sixteenth session), unless GODEBUG is set already
# (GODEBUG= for the runtime's default). The test client gets it too.
export GODEBUG="${GODEBUG-schedtrace=2000000000}"
# GOGC and the other runtime variables of each program's env file (dbd.env:
# GOGC=400; pop3d.env: the default) are given to dbd and pop3d by the test
# (proctest.RuntimeEnv), unless the environment sets them (`GOGC=100
# deploy/bench/...` runs both with the default).
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "pop3-bench.sh: run as root (Dovecot needs it)" >&2
	exit 2
fi
if ! command -v dovecot >/dev/null 2>&1; then
	apt-get install -y dovecot-pop3d
fi
# Dovecot is only started by the test, on a loopback port of its own.
systemctl stop dovecot 2>/dev/null || true
cd services/pop3d
TWINMX_BENCH=1 TWINMX_REQUIRE_CORPUS=1 exec go test -run TestBenchDovecot -count=1 -v -timeout 20m ./test/ 2>&1 |
	grep -E 'bench_test|^(--- |ok|FAIL|PASS)'
