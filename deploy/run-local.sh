#!/usr/bin/env bash
# Starts twinmx locally for trying it out, everything on loopback with keys,
# data and logs under ./run/: per site (A and B) a dbd, smtpd, spamd, pop3d,
# imapd and smsd, and one backupd between them; a demo mailbox, account and
# SMS rule (SMS go to ./run/sms.log, the console sink). spamd's model is trained from
# ../shared/corpus on the first start when that corpus is there (kept in
# ./run/spamd-model and pushed into dbd); without it spamd judges by lists
# and sender authentication only. Greylisting is off here so a first test
# mail gets its 250 at once (production default: 1 minute). Later services
# join here as they are built (issue 8). Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
run=${RUN:-run}
for p in dbd dbctl smtpd backupd spamd pop3d imapd smsd; do
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
		--tls-self-signed --postmaster demo@twinmx.test 2>>"$run/smtpd-$1.log" &
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
push_model() {
	"$bin/spamd" push --db 127.0.0.1:7301 --db-pub "$run/keys/dbd-a.pub" --key "$run/keys/spamd" --model "$run/spamd-model" >/dev/null 2>&1
}
train_model() {
	echo "training spamd's model from $corpus (kept in $run/spamd-model)"
	mkdir -p "$run/corpus"
	tar -xzf "$corpus" -C "$run/corpus"
	"$bin/spamd" train --ham "$run/corpus/ham" --spam "$run/corpus/spam" --model "$run/spamd-model" >>"$run/spamd-train.log"
}
# A model from an older spamd (another format) is trained again.
if [ -f "$corpus" ] && { [ ! -f "$run/spamd-model/model.bin" ] || ! push_model; }; then
	train_model
	push_model
fi
spamd() { # site dbd-port metrics-port
	"$bin/spamd" --db "127.0.0.1:$2" --db-pub "$run/keys/dbd-$1.pub" --key "$run/keys/spamd" \
		--metrics "127.0.0.1:$3" --grey-delay 0s --no-auth 2>>"$run/spamd-$1.log" &
	pids+=($!)
}
spamd a 7301 7341
spamd b 7302 7342
mail_access() { # site pop3-port pop3s-port imap-port imaps-port dbd-port pop3-metrics imap-metrics
	"$bin/pop3d" --listen "127.0.0.1:$2" --tls-listen "127.0.0.1:$3" --db "127.0.0.1:$6" --db-pub "$run/keys/dbd-$1.pub" \
		--key "$run/keys/mailbox" --tls-self-signed --metrics "127.0.0.1:$7" 2>>"$run/pop3d-$1.log" &
	pids+=($!)
	"$bin/imapd" --listen "127.0.0.1:$4" --tls-listen "127.0.0.1:$5" --db "127.0.0.1:$6" --db-pub "$run/keys/dbd-$1.pub" \
		--key "$run/keys/mailbox" --tls-self-signed --metrics "127.0.0.1:$8" 2>>"$run/imapd-$1.log" &
	pids+=($!)
}
mail_access a 1110 1995 1143 1993 7301 7351 7361
mail_access b 1111 1996 1144 1994 7302 7352 7362
# The console SMS sink: each SMS is a line in run/sms.log.
cat > "$run/sms-sink.sh" <<'SINK'
#!/bin/sh
{ printf '%s SMS to %s: ' "$(date -u +%FT%TZ)" "$1"; cat; echo; } >>"$(dirname "$0")/sms.log"
SINK
chmod +x "$run/sms-sink.sh"
smsd() { # site dbd-port metrics-port
	"$bin/smsd" --db "127.0.0.1:$2" --db-pub "$run/keys/dbd-$1.pub" --key "$run/keys/notify" --site "$(echo "$1" | tr ab AB)" \
		--peer-delay 10s --gateway-cmd "$run/sms-sink.sh {{.To}}" --metrics "127.0.0.1:$3" 2>>"$run/smsd-$1.log" &
	pids+=($!)
}
smsd a 7301 7371
smsd b 7302 7372
wait_port 2525
wait_port 2526
wait_port 1110
wait_port 1143
"$bin/dbctl" "${admin_a[@]}" mailbox add demo@twinmx.test >/dev/null
if ! "$bin/dbctl" "${admin_a[@]}" user show demo >/dev/null 2>&1; then
	echo "demo-password" | "$bin/dbctl" "${admin_a[@]}" user add demo --mailbox demo@twinmx.test >/dev/null
	"$bin/smsd" rule set --db 127.0.0.1:7301 --db-pub "$run/keys/dbd-a.pub" --key "$run/keys/admin" \
		--mailbox demo@twinmx.test --name boss --from boss@example.net --phone +15550100 \
		--template "mail from {from}: {subject}" >/dev/null
fi

cat > "$run/cluster.env" <<ENV
# twinmx local cluster ($(date -u +%FT%TZ)); source this file
TWINMX_DB=127.0.0.1:7301
TWINMX_DB_PUB=$run/keys/dbd-a.pub
TWINMX_KEY=$run/keys/admin
TWINMX_DBD_A=127.0.0.1:7301
TWINMX_DBD_B=127.0.0.1:7302
TWINMX_SMTP_A=127.0.0.1:2525
TWINMX_SMTP_B=127.0.0.1:2526
TWINMX_POP3_A=127.0.0.1:1110
TWINMX_POP3_B=127.0.0.1:1111
TWINMX_POP3S_A=127.0.0.1:1995
TWINMX_POP3S_B=127.0.0.1:1996
TWINMX_IMAP_A=127.0.0.1:1143
TWINMX_IMAP_B=127.0.0.1:1144
TWINMX_IMAPS_A=127.0.0.1:1993
TWINMX_IMAPS_B=127.0.0.1:1994
ENV

cat <<INFO
twinmx is running (logs in $run/*.log, addresses in $run/cluster.env):
  site A: dbd :7301  smtpd :2525  pop3d :1110 (pop3s :1995)  imapd :1143 (imaps :1993)
  site B: dbd :7302  smtpd :2526  pop3d :1111 (pop3s :1996)  imapd :1144 (imaps :1994)
  per site also spamd (greylisting and DNS checks off here) and smsd (SMS into $run/sms.log);
  backupd between A and B; metrics on :7311/7312 (dbd) :7321/7322 (smtpd) :7331 (backupd)
  :7341/7342 (spamd) :7351/7352 (pop3d) :7361/7362 (imapd) :7371/7372 (smsd)
  demo mailbox demo@twinmx.test, login "demo", password "demo-password" (all on 127.0.0.1)
Try, in another shell:
  swaks --server 127.0.0.1:2525 --to demo@twinmx.test --from you@example.net     # 250 once on both sites
  swaks --server 127.0.0.1:2526 --to demo@twinmx.test --from boss@example.net    # one SMS in $run/sms.log
  python3 -c 'import poplib; p=poplib.POP3("127.0.0.1",1111); p.user("demo"); p.pass_("demo-password"); print(p.uidl())'
  mutt -f imap://demo@127.0.0.1:1143/INBOX        # or any IMAP client; the TLS certificate is self-signed
  set -a; . $run/cluster.env; set +a; $bin/dbctl mails --last 5
Ctrl-C stops everything.
INFO
wait
