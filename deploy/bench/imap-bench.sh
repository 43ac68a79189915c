#!/bin/sh
# imap-bench.sh: FETCH BODY[] of corpus mails from twinmx imapd (over a
# real dbd) and from Dovecot (over a Maildir of the same mails), same
# client (Python imaplib, one UID FETCH 1:*). Prints mails/s and peak RSS.
#
# Needs: go, python3, dovecot-imapd (Debian), the shared corpus.
# Usage: deploy/bench/imap-bench.sh [MAILS]   (default 1000)
set -eu
# The processes run with the Go runtime setting the deploy/systemd env files
# give them (GODEBUG=schedtrace=2000000000: sysmon kept out of its deep sleep,
# docs/benchmarks.md, sixteenth session), unless GODEBUG is set already
# (GODEBUG= for the runtime's default). The test client gets it too.
export GODEBUG="${GODEBUG-schedtrace=2000000000}"
# GOGC and the other runtime variables of each program's env file (dbd.env:
# GOGC=400; imapd.env: the default) are given to dbd and imapd by the test
# (proctest.RuntimeEnv), unless the environment sets them (`GOGC=100
# deploy/bench/...` runs both with the default).
cd "$(dirname "$0")/../../services/imapd"
TWINMX_BENCH=1 TWINMX_BENCH_MAILS="${1:-1000}" \
	go test -count=1 -timeout 20m -run TestBenchFetchVsDovecot -v ./test/ |
	grep -E 'FETCH BODY|imapd:|dovecot:|ratio|CPU during|CPU after|again|^(--- |ok|FAIL)'
