#!/usr/bin/env bash
# Starts twinmx locally for trying it out, everything on loopback with keys,
# data and logs under ./run/: per site (A and B) a dbd, an smtpd and a spamd,
# and one backupd between them. spamd's model is trained from
# ../shared/corpus on the first start when that corpus is there (kept in
# ./run/spamd-model and pushed into dbd); without it spamd judges by lists
# and sender authentication only. Greylisting is off here so a first test
# mail gets its 250 at once (production default: 1 minute). Later services
# join here as they are built (issue 8). Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
run=${RUN:-run}
for p in dbd dbctl smtpd backupd spamd; do
	[ -x "$bin/$p" ] || { echo "run 'make build' first ($bin/$p missing)" >&2; exit 1; }
done
mkdir -p "$run/keys"
for name in dbd-a dbd-b admin smtpd-a smtpd-b spamd backupd mailbox notify; do
	[ -f "$run/keys/$name" ] || "$bin/dbctl" keygen --out "$run/keys/$name" >/dev/null
done
cat > "$run/clients" <<CLIENTS
# ROLE PATH-TO-PUBKEY (paths relative to this file); see docs/roles.md
admin keys/admin.pub
smtpd keys/smtpd-a.pub
smtpd keys/smtpd-b.pub
spamd keys/spamd.pub
backupd keys/backupd.pub
mailbox keys/mailbox.pub
notify keys/notify.pub
CLIENTS

pids=()
cleanup() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	wait
}
trap cleanup EXIT INT TERM

dbd() { # site port metrics-port
	"$bin/dbd" --data "$run/data-$1" --listen "127.0.0.1:$2" --key "$run/keys/dbd-$1" \
		--clients "$run/clients" --metrics "127.0.0.1:$3" --site "$1" 2>>"$run/dbd-$1.log" &
	pids+=($!)
}
smtpd() { # site smtp-port dbd-port metrics-port
	"$bin/smtpd" --listen "127.0.0.1:$2" --hostname "mx-$1.twinmx.test" --db "127.0.0.1:$3" \
		--db-pub "$run/keys/dbd-$1.pub" --key "$run/keys/smtpd-$1" --metrics "127.0.0.1:$4" \
		--tls-self-signed 2>>"$run/smtpd-$1.log" &
	pids+=($!)
}
wait_port() {
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	echo "nothing listens on 127.0.0.1:$1; see $run/*.log" >&2
	exit 1
}

dbd a 7301 7311
dbd b 7302 7312
wait_port 7301
wait_port 7302
"$bin/backupd" --site "A=127.0.0.1:7301,$run/keys/dbd-a.pub" --site "B=127.0.0.1:7302,$run/keys/dbd-b.pub" \
	--key "$run/keys/backupd" --metrics 127.0.0.1:7331 2>>"$run/backupd.log" &
pids+=($!)
smtpd a 2525 7301 7321
smtpd b 2526 7302 7322
admin_a=(--db 127.0.0.1:7301 --db-pub "$run/keys/dbd-a.pub" --key "$run/keys/admin")
corpus=${CORPUS:-../shared/corpus/spamassassin-train.tar.gz}
if [ ! -f "$run/spamd-model/model.bin" ] && [ -f "$corpus" ]; then
	echo "training spamd's model from $corpus (once)"
	mkdir -p "$run/corpus"
	tar -xzf "$corpus" -C "$run/corpus"
	"$bin/spamd" train --ham "$run/corpus/ham" --spam "$run/corpus/spam" --model "$run/spamd-model" >>"$run/spamd-train.log"
fi
if [ -f "$run/spamd-model/model.bin" ]; then
	"$bin/spamd" push --db 127.0.0.1:7301 --db-pub "$run/keys/dbd-a.pub" --key "$run/keys/spamd" --model "$run/spamd-model" >/dev/null
fi
spamd() { # site dbd-port metrics-port
	"$bin/spamd" --db "127.0.0.1:$2" --db-pub "$run/keys/dbd-$1.pub" --key "$run/keys/spamd" \
		--metrics "127.0.0.1:$3" --grey-delay 0s --no-auth 2>>"$run/spamd-$1.log" &
	pids+=($!)
}
spamd a 7301 7341
spamd b 7302 7342
wait_port 2525
wait_port 2526
"$bin/dbctl" "${admin_a[@]}" mailbox add demo@twinmx.test >/dev/null

cat > "$run/cluster.env" <<ENV
# twinmx local cluster ($(date -u +%FT%TZ)); source this file
TWINMX_DB=127.0.0.1:7301
TWINMX_DB_PUB=$run/keys/dbd-a.pub
TWINMX_KEY=$run/keys/admin
TWINMX_DBD_A=127.0.0.1:7301
TWINMX_DBD_B=127.0.0.1:7302
TWINMX_SMTP_A=127.0.0.1:2525
TWINMX_SMTP_B=127.0.0.1:2526
ENV

cat <<INFO
twinmx is running (logs in $run/*.log, addresses in $run/cluster.env):
  site A: dbd 127.0.0.1:7301 (metrics :7311)   smtpd 127.0.0.1:2525 (metrics :7321)
  site B: dbd 127.0.0.1:7302 (metrics :7312)   smtpd 127.0.0.1:2526 (metrics :7322)
  spamd per site (metrics :7341, :7342; greylisting and DNS checks off for local use)
  backupd A<->B (metrics :7331)
  demo mailbox: demo@twinmx.test
Try, in another shell:
  swaks --server 127.0.0.1:2525 --to demo@twinmx.test --from you@example.net     # 250 once on both sites
  set -a; . $run/cluster.env; set +a; $bin/dbctl mails --last 5
Ctrl-C stops everything.
INFO
wait
