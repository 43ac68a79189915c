#!/bin/sh
# spam-compare.sh: the same k-fold split of the SpamAssassin corpus through
# twinmx spamd, SpamAssassin (local tests only, -L, plus its Bayes trained
# with sa-learn on the training folds) and bogofilter (trained on the same
# folds). Prints ham rejected / spam caught per corpus folder for each.
#
# Run as root from the repository root (it may apt-get install spamassassin
# and bogofilter). Usage:
#   deploy/bench/spam-compare.sh [K] [--strip-hints]
# Takes long: SpamAssassin judges a few mails a second.
set -eu
K=${1:-5}
STRIP=${2:-}
CORPUS=${CORPUS:-../shared/corpus/spamassassin-train.tar.gz}
[ -f "$CORPUS" ] || CORPUS=/work/shared/corpus/spamassassin-train.tar.gz
WORK=$(mktemp -d /tmp/spam-compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

command -v spamassassin >/dev/null && command -v sa-learn >/dev/null || apt-get install -y spamassassin
command -v bogofilter >/dev/null || apt-get install -y bogofilter

(cd services/spamd && go build -o "$WORK/spamd" ./cmd/spamd)
# twinmx: k-fold, and the split written out for the others (twinmx.tsv:
# fold class group file verdict).
"$WORK/spamd" eval --kfold "$K" $STRIP --write-folds "$WORK/folds" "$CORPUS"

: >"$WORK/sa.tsv"
: >"$WORK/bf.tsv"
f=0
while [ "$f" -lt "$K" ]; do
	echo "fold $f: training" >&2
	sadir="$WORK/sa-$f"; bfdir="$WORK/bf-$f"
	mkdir -p "$sadir" "$bfdir"
	for t in $(seq 0 $((K - 1))); do
		[ "$t" -eq "$f" ] && continue
		sa-learn --dbpath "$sadir" --ham "$WORK/folds/fold-$t/ham" >/dev/null
		sa-learn --dbpath "$sadir" --spam "$WORK/folds/fold-$t/spam" >/dev/null
		cat "$WORK/folds/fold-$t"/ham/*.eml | bogofilter -d "$bfdir" -M -n
		cat "$WORK/folds/fold-$t"/spam/*.eml | bogofilter -d "$bfdir" -M -s
	done
	cat >"$sadir/user_prefs" <<PREFS
use_bayes 1
bayes_path $sadir/bayes
bayes_auto_learn 0
required_score 5.0
PREFS
	echo "fold $f: judging" >&2
	for class in ham spam; do
		for m in "$WORK/folds/fold-$f/$class"/*.eml; do
			b=$(basename "$m")
			# SpamAssassin: exit code 1 means spam (score >= 5.0).
			if spamassassin -L -e -p "$sadir/user_prefs" --siteconfigpath=/etc/spamassassin <"$m" >/dev/null 2>&1; then v=accept; else v=reject; fi
			printf '%s\t%s\t%s\n' "$class" "$b" "$v" >>"$WORK/sa.tsv"
			# bogofilter: exit 0 spam, 1 ham, 2 unsure.
			set +e; bogofilter -d "$bfdir" <"$m"; rc=$?; set -e
			if [ "$rc" -eq 0 ]; then v=reject; else v=accept; fi
			printf '%s\t%s\t%s\n' "$class" "$b" "$v" >>"$WORK/bf.tsv"
		done
	done
	f=$((f + 1))
done

# One table: per folder, rejected / total for each filter.
awk -F'\t' '
	FILENAME ~ /twinmx.tsv$/ { g=$3; grp[$4]=g; cls[g]=$2; n[g]++; if ($5=="reject") tw[g]++; next }
	FILENAME ~ /sa.tsv$/     { g=grp[$2]; if ($3=="reject") sa[g]++; next }
	FILENAME ~ /bf.tsv$/     { g=grp[$2]; if ($3=="reject") bf[g]++; next }
	END {
		printf "| folder | class | mails | twinmx rejected | SpamAssassin 5.0 (-L + Bayes) | bogofilter |\n|---|---|---:|---:|---:|---:|\n"
		for (g in n) printf "| %s | %s | %d | %d (%.1f%%) | %d (%.1f%%) | %d (%.1f%%) |\n", g, cls[g], n[g], tw[g], 100*tw[g]/n[g], sa[g], 100*sa[g]/n[g], bf[g], 100*bf[g]/n[g]
	}' "$WORK/folds/twinmx.tsv" "$WORK/sa.tsv" "$WORK/bf.tsv" | sort
