#!/bin/sh
# imap-bench.sh: FETCH BODY[] of corpus mails from twinmx imapd (over a
# real dbd) and from Dovecot (over a Maildir of the same mails), same
# client, one UID FETCH 1:*. Prints mails/s and peak RSS. Runs twice, once
# with each client: Python's imaplib, then the lean Go client of
# services/imapd/test/leanclient_test.go, which reads the response as bytes
# and so leaves the servers to set the rate (imaplib spends about as much
# CPU on a mail as either server).
#
# Needs: go, python3, dovecot-imapd (Debian), the shared corpus.
# Usage: [CLIENTS="python lean"] deploy/bench/imap-bench.sh [MAILS]   (default 1000)
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
for client in ${CLIENTS:-python lean}; do
	TWINMX_BENCH=1 TWINMX_BENCH_MAILS="${1:-1000}" TWINMX_BENCH_CLIENT="$client" \
		go test -count=1 -timeout 20m -run TestBenchFetchVsDovecot -v ./test/ |
		grep -E 'FETCH BODY|imapd:|dovecot:|ratio|CPU during|CPU after|again|^(--- |ok|FAIL)'
done
