#!/bin/sh
# spam-compare.sh: the same k-fold split of the SpamAssassin corpus through
# twinmx spamd, SpamAssassin 4 (local tests only, -L, plus its Bayes trained
# with sa-learn on the training folds) and bogofilter (trained on the same
# folds). Prints ham rejected / spam caught per corpus folder for each.
#
# Run as root from the repository root (it may apt-get install spamassassin
# and bogofilter; it runs spamd as user nobody). Usage:
#   [FOLDS="0 1"] [KEEP=DIR] deploy/bench/spam-compare.sh [K] [--strip-hints]
# FOLDS limits which test folds are judged (default all K); the models are
# still trained on the other K-1 folds, so fold 0 alone is one fifth of the
# full run at k=5. KEEP keeps the folds and per-mail verdicts in DIR.
# SpamAssassin is judged through its own spamd/spamc (one Perl process per
# fold, not per mail); Bayes training with sa-learn takes a few minutes per fold.
set -eu
K=${1:-5}
STRIP=${2:-}
FOLDS=${FOLDS:-$(seq 0 $((K - 1)))}
CORPUS=${CORPUS:-../shared/corpus/spamassassin-train.tar.gz}
[ -f "$CORPUS" ] || CORPUS=/work/shared/corpus/spamassassin-train.tar.gz
PORT=${SA_PORT:-17830}
if [ -n "${KEEP:-}" ]; then
	WORK=$KEEP
	mkdir -p "$WORK"
else
	WORK=$(mktemp -d /tmp/spam-compare.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
chmod 755 "$WORK"

command -v spamassassin >/dev/null && command -v sa-learn >/dev/null && command -v spamc >/dev/null ||
	apt-get install -y spamassassin spamc
command -v bogofilter >/dev/null || apt-get install -y bogofilter

(cd services/spamd && go build -o "$WORK/spamd" ./cmd/spamd)
# twinmx: k-fold, and the split written out for the others (twinmx.tsv:
# fold class group file verdict).
"$WORK/spamd" eval --kfold "$K" $STRIP --write-folds "$WORK/folds" "$CORPUS" | tee "$WORK/twinmx-table.txt"

: >"$WORK/sa.tsv"
: >"$WORK/bf.tsv"
for f in $FOLDS; do
	echo "fold $f: training" >&2
	sadir="$WORK/sa-$f"
	bfdir="$WORK/bf-$f"
	mkdir -p "$sadir/site" "$bfdir"
	cp /etc/spamassassin/*.pre "$sadir/site/"
	cat >"$sadir/site/local.cf" <<CF
use_bayes 1
bayes_path $sadir/bayes
bayes_file_mode 0666
bayes_auto_learn 0
bayes_auto_expire 0
required_score 5.0
CF
	for t in $(seq 0 $((K - 1))); do
		[ "$t" -eq "$f" ] && continue
		sa-learn --siteconfigpath="$sadir/site" --no-sync --ham "$WORK/folds/fold-$t/ham" >/dev/null
		sa-learn --siteconfigpath="$sadir/site" --no-sync --spam "$WORK/folds/fold-$t/spam" >/dev/null
		bogofilter -d "$bfdir" -n -B "$WORK/folds/fold-$t"/ham/*.eml
		bogofilter -d "$bfdir" -s -B "$WORK/folds/fold-$t"/spam/*.eml
	done
	sa-learn --siteconfigpath="$sadir/site" --sync >/dev/null
	sa-learn --siteconfigpath="$sadir/site" --dump magic | grep -E 'nham|nspam' >&2
	chmod -R a+rwX "$sadir"
	spamd -L -x --siteconfigpath="$sadir/site" -u nobody -p "$PORT" -i 127.0.0.1 -m 2 \
		-r "$sadir/spamd.pid" -d -s "$sadir/spamd.log"
	for _ in $(seq 1 60); do
		spamc -p "$PORT" -K >/dev/null 2>&1 && break
		sleep 1
	done
	echo "fold $f: judging" >&2
	for class in ham spam; do
		for m in "$WORK/folds/fold-$f/$class"/*.eml; do
			b=$(basename "$m")
			# spamc -c: prints score/threshold, exit 1 for spam (>= 5.0).
			set +e
			spamc -p "$PORT" -c -x <"$m" >/dev/null
			rc=$?
			bogofilter -d "$bfdir" <"$m"
			brc=$?
			set -e
			case $rc in 0) v=accept ;; 1) v=reject ;; *) v=error ;; esac
			printf '%s\t%s\t%s\n' "$class" "$b" "$v" >>"$WORK/sa.tsv"
			# bogofilter: exit 0 spam, 1 ham, 2 unsure, 3 error.
			case $brc in 0) v=reject ;; 1 | 2) v=accept ;; *) v=error ;; esac
			printf '%s\t%s\t%s\n' "$class" "$b" "$v" >>"$WORK/bf.tsv"
		done
	done
	kill "$(cat "$sadir/spamd.pid")"
	sleep 1
done

# One table: per folder, rejected / judged for each filter, over the judged
# folds only.
awk -F'\t' -v folds=" $(echo $FOLDS) " '
	FILENAME ~ /twinmx.tsv$/ { if (index(folds, " " $1 " ") == 0) next
		g=$3; grp[$4]=g; cls[g]=$2; n[g]++; if ($5=="reject") tw[g]++; next }
	FILENAME ~ /sa.tsv$/     { g=grp[$2]; if ($3=="reject") sa[g]++; if ($3=="error") saerr++; next }
	FILENAME ~ /bf.tsv$/     { g=grp[$2]; if ($3=="reject") bf[g]++; if ($3=="error") bferr++; next }
	END {
		printf "| folder | class | mails | twinmx | SpamAssassin 5.0 (-L + Bayes) | bogofilter |\n|---|---|---:|---:|---:|---:|\n"
		fflush()
		cmd = "sort"
		for (g in n) printf "| %s | %s | %d | %d (%.1f%%) | %d (%.1f%%) | %d (%.1f%%) |\n", g, cls[g], n[g], tw[g], 100*tw[g]/n[g], sa[g], 100*sa[g]/n[g], bf[g], 100*bf[g]/n[g] | cmd
		close(cmd)
		if (saerr + bferr > 0) printf "errors: SpamAssassin %d, bogofilter %d\n", saerr, bferr
	}' "$WORK/folds/twinmx.tsv" "$WORK/sa.tsv" "$WORK/bf.tsv"
