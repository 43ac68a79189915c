#!/usr/bin/env bash
# soak.sh — the whole local system (deploy/run-local.sh: two sites, backupd,
# spamd, pop3d, imapd, smsd) under a steady mixed load for a bounded time,
# watching each process's memory, goroutines, threads and descriptors for
# growth, then checking that every mail answered 250 is in the mailbox at
# both sites. Not run by CI (it takes minutes); run by hand:
#
#   SOAK_SECONDS=1200 deploy/bench/soak.sh
#
# Knobs (environment): SOAK_SECONDS=600 (load time), SOAK_WARMUP=60 (the
# growth is measured from the first sample after it), SOAK_EVERY=15,
# SOAK_MAX_MAILS=200000, SOAK_CORPUS (default ../shared/corpus's tarball),
# SOAK_KILL_EVERY=0 (seconds; above 0, chaos: a random process of the
# system killed with SIGKILL that often and started again after up to
# SOAK_KILL_DOWN=3 seconds; the check then also waits up to 2 minutes for
# replication to settle):
#
#   SOAK_SECONDS=300 SOAK_KILL_EVERY=5 deploy/bench/soak.sh
# Uses its own run folder (a temp dir) and run-local.sh's fixed loopback
# ports: nothing else may listen there (no `make run` at the same time).
# Needs: Go, python3; the corpus for spamd's model and the mails.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
make -s build >/dev/null
run=$(mktemp -d /tmp/twinmx-soak-XXXXXX)
export SOAK_RUN=$run
RUN=$run CORPUS=${SOAK_CORPUS:-../shared/corpus/spamassassin-train.tar.gz} deploy/run-local.sh >"$run/run-local.out" 2>&1 &
runner=$!
stop() {
	kill -TERM "$runner" 2>/dev/null || true
	wait "$runner" 2>/dev/null || true
	rm -rf "$run"
}
trap stop EXIT
for _ in $(seq 600); do
	grep -q "twinmx is running" "$run/run-local.out" 2>/dev/null && break
	kill -0 "$runner" 2>/dev/null || { cat "$run/run-local.out" >&2; exit 1; }
	sleep 0.5
done
grep -q "twinmx is running" "$run/run-local.out" || { echo "soak: the system did not start" >&2; exit 1; }
python3 deploy/bench/soak.py
