#!/usr/bin/env bash
# Starts twinmx locally for trying it out: one dbd per site (A and B) on
# loopback, with keys and data under ./run/. What exists of the system so
# far is started; later services join here as they are built.
# Stop with Ctrl-C: both dbds shut down cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
run=${RUN:-run}
[ -x "$bin/dbd" ] && [ -x "$bin/dbctl" ] || { echo "run 'make build' first" >&2; exit 1; }
mkdir -p "$run/keys"
for name in dbd-a dbd-b admin smtpd spamd backupd mailbox notify; do
	[ -f "$run/keys/$name" ] || "$bin/dbctl" keygen --out "$run/keys/$name" >/dev/null
done
cat > "$run/clients" <<CLIENTS
# ROLE PATH-TO-PUBKEY (paths relative to this file); see docs/roles.md
admin keys/admin.pub
smtpd keys/smtpd.pub
spamd keys/spamd.pub
backupd keys/backupd.pub
mailbox keys/mailbox.pub
notify keys/notify.pub
CLIENTS

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	wait
}
trap cleanup EXIT INT TERM

start() { # site port metrics-port
	"$bin/dbd" --data "$run/data-$1" --listen "127.0.0.1:$2" --key "$run/keys/dbd-$1" \
		--clients "$run/clients" --metrics "127.0.0.1:$3" --site "$1" 2>>"$run/dbd-$1.log" &
	pids+=($!)
}
start a 7301 7311
start b 7302 7312
sleep 0.5
cat <<INFO
twinmx is running (logs in $run/dbd-a.log, $run/dbd-b.log):
  site A dbd  127.0.0.1:7301   metrics http://127.0.0.1:7311/metrics
  site B dbd  127.0.0.1:7302   metrics http://127.0.0.1:7312/metrics
Try, in another shell:
  export TWINMX_DB=127.0.0.1:7301 TWINMX_DB_PUB=$run/keys/dbd-a.pub TWINMX_KEY=$run/keys/admin
  $bin/dbctl find-or-insert body hello && $bin/dbctl find body hello && $bin/dbctl status
Ctrl-C stops everything.
INFO
wait
