#!/bin/sh
# imap-bench.sh: FETCH BODY[] of corpus mails from twinmx imapd (over a
# real dbd) and from Dovecot (over a Maildir of the same mails), same
# client (Python imaplib, one UID FETCH 1:*). Prints mails/s and peak RSS.
#
# Needs: go, python3, dovecot-imapd (Debian), the shared corpus.
# Usage: deploy/bench/imap-bench.sh [MAILS]   (default 1000)
set -eu
cd "$(dirname "$0")/../../services/imapd"
TWINMX_BENCH=1 TWINMX_BENCH_MAILS="${1:-1000}" \
	go test -count=1 -timeout 20m -run TestBenchFetchVsDovecot -v ./test/ |
	grep -E 'FETCH BODY|imapd:|dovecot:|ratio|CPU during|again|^(--- |ok|FAIL)'
