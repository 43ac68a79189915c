#!/usr/bin/env bash
# smtp-bench.sh — smtpd against Postfix's own smtpd and smtp-sink, in one run
# (issue 3: "Benchmark with Postfix's smtp-source").
#
# Run by hand, as root (Postfix's master starts as root). NOT run by CI or by
# `make test`: it is services/smtpd/test's TestBenchSMTP and TestBenchStrict
# (strict mode: two dbds and backupd; TESTS=TestBenchStrict runs only it), which skip unless
# TWINMX_BENCH is set.
#
# What it does:
#   1. builds dbd, dbctl and smtpd from this checkout into a temp dir;
#   2. starts dbd, `dbctl autoverdict accept` (the stand-in spam filter) and
#      smtpd --min-copies 1 --greet-pause 0; a private Postfix instance on a
#      loopback port that accepts every mail into its queue and puts it on
#      hold (written and fsynced, never delivered); and smtp-sink;
#   3. warms each up, then for ROUNDS rounds, against each server in turn:
#      smtp-source -s 20 -l 10240 -m MAILS (a new connection per mail; its
#      mails share one body), then a Go client, 20 sessions, MAILS/2 mails
#      with distinct 10 kB bodies, timing end of DATA → reply per mail; and
#      smtpd once more with every verdict written before the mail arrives;
#   4. prints mails/s (median of rounds), the ratios, p50/p99 end of DATA →
#      reply, smtpd's own decision histogram, and smtpd's peak RSS (VmHWM)
#      under 100 concurrent sessions;
#   5. stops everything and removes its temp dirs (also on failure).
#
# Only 127.0.0.1 is used. Figures mean something only on an otherwise idle
# machine: dbd, smtpd, Postfix and the clients share its cores.
#
# Knobs (environment): MAILS=5000 ROUNDS=5 (Postfix's rate moves by a third
# between rounds, so the median of five is the figure; docs/benchmarks.md,
# seventeenth session); TWINMX_BENCH_BACKUPD_ENV: backupd's
# environment in TestBenchStrict (e.g. GODEBUG=schedtrace=2000000000, as
# deploy/systemd/backupd.env sets; the bench does not read the env files)
# TWINMX_BENCH_DBD_FLAGS: more dbd flags in TestBenchSMTP (e.g. --metrics
# 127.0.0.1:19191, to read dbd's commit and request figures while it runs).
# Needs: apt-get install postfix (smtp-source, smtp-sink); Go on PATH.
set -euo pipefail
cd "$(dirname "$0")/../../services/smtpd/test"
export PATH=/usr/local/go/bin:$PATH
# The processes run with the Go runtime setting the deploy/systemd env files
# give them (GODEBUG=schedtrace=2000000000: sysmon kept out of its deep sleep,
# docs/benchmarks.md, sixteenth session), unless GODEBUG is set already
# (GODEBUG= for the runtime's default). The test client gets it too.
export GODEBUG="${GODEBUG-schedtrace=2000000000}"
# And with GOGC=400, as the env files of smtpd, dbd and backupd give
# it (docs/operations.md §8, seventeenth session), unless GOGC is set already.
export GOGC="${GOGC-400}"
if [ "$(id -u)" != 0 ]; then
	echo "smtp-bench: run as root (Postfix's master must start as root)" >&2
	exit 1
fi
for p in /usr/sbin/postfix /usr/sbin/smtp-source /usr/sbin/smtp-sink; do
	[ -x "$p" ] || { echo "smtp-bench: $p missing (apt-get install postfix)" >&2; exit 1; }
done
TWINMX_BENCH=1 TWINMX_REQUIRE_POSTFIX=1 \
	TWINMX_BENCH_MAILS="${MAILS:-5000}" TWINMX_BENCH_ROUNDS="${ROUNDS:-5}" \
	go test -count=1 -run "^(${TESTS:-TestBenchSMTP|TestBenchStrict})\$" -timeout 60m -v . |
	grep -v '^        ' # the per-process logs are for failures only
