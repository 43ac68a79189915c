#!/usr/bin/env bash
# pg-compare.sh — dbd find-or-insert against PostgreSQL
# INSERT ... ON CONFLICT DO NOTHING RETURNING, both durable on every commit.
#
# Run once, by hand, for the record (docs/benchmarks-postgres.md). NOT run by CI.
#
# What it does, on a Debian 12 machine, as root:
#   1. apt-get installs postgresql + postgresql-contrib (pgbench, pgcrypto);
#   2. builds dbctl from this checkout (needs Go on PATH, see go.work);
#   3. creates a throwaway PostgreSQL cluster in a temp dir (same disk as the
#      dbctl bench data), listening on 127.0.0.1 only, with the default
#      durability: fsync=on, synchronous_commit=on, full_page_writes=on;
#   4. alternates RUNS times: pgbench with the content made server-side ("pg",
#      the issue's figure), pgbench with the content sent by the client
#      ("pg-sent"), then dbctl bench (CLIENTS in flight, DBCTL_ROUNDS rounds
#      of DURATION s; only its "wire find-or-insert" rounds are used);
#   5. prints every figure (with fsync, disk and CPU counters per phase), the
#      per-run ratio dbd/pg and the overall ratio (sum over sum);
#   6. optionally calibrates (content generation alone, pg_test_fsync);
#   7. stops the cluster and removes the temp dir (also on error / Ctrl-C).
#
# Apart from apt-get and go's module download, it touches nothing but
# 127.0.0.1:$PG_PORT and a fresh temp dir (cluster, dbctl binary, bench
# data). The Debian package's own "main" cluster is left alone (not started,
# not modified). Figures are only meaningful on an otherwise idle machine.
#
# Knobs (environment): RUNS=3 DURATION=10 CLIENTS=8 THREADS=2 SIZE=10240
#   DBCTL_ROUNDS=2 PG_PORT=55432 TMPROOT=/tmp SKIP_APT=0 CALIBRATE=1
#   DBCTL_B=PATH  a second dbctl binary (say, a build before a change) that
#                 runs right after dbd in every run, as "dbd-B", for an A/B
#                 comparison in one sitting; it is reported, not in the ratio.
#
# track_wal_io_timing=on (not a default) is set so pg_stat_wal reports the
# time spent in fsync; it costs two clock reads per WAL write/sync.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SIZE=${SIZE:-10240}
DBCTL_ROUNDS=${DBCTL_ROUNDS:-2}
PG_PORT=${PG_PORT:-55432}
TMPROOT=${TMPROOT:-/tmp}
SKIP_APT=${SKIP_APT:-0}
CALIBRATE=${CALIBRATE:-1}
DBCTL_B=${DBCTL_B:-}

die() { echo "pg-compare: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (needs apt-get and runuser -u postgres)"
(( SIZE % 1024 == 0 && SIZE > 0 )) || die "SIZE must be a positive multiple of 1024 (pgcrypto hands out ≤1024 random bytes per call)"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ -z $DBCTL_B || -x $DBCTL_B ]] || die "DBCTL_B=$DBCTL_B is not an executable"
[[ -f $REPO/go.work ]] || die "cannot find the twinmx checkout (expected $REPO/go.work)"

# --- 1. packages -----------------------------------------------------------
if [[ $SKIP_APT != 1 ]]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# The Debian package creates (and would try to start) a "main" cluster;
	# we never use it.
	apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[[ -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
id postgres >/dev/null 2>&1 || die "no postgres user (the postgresql package creates it)"

# --- temp dir and cleanup ----------------------------------------------------
WORK=$(mktemp -d "$TMPROOT/pg-compare.XXXXXX")
PGDATA=$WORK/pgdata
PG_STARTED=0
cleanup() {
	local rc=$?
	if [[ $PG_STARTED == 1 ]]; then
		runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -rf -- "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chown postgres: "$WORK"
chmod 0700 "$WORK"

# --- 2. dbctl ------------------------------------------------------------------
command -v go >/dev/null || die "Go is not on PATH; install the version named in $REPO/go.work from https://go.dev/dl/ (or any Go ≥ 1.21 with GOTOOLCHAIN=auto)"
DBCTL=$WORK/dbctl
(cd "$REPO/services/dbd" && go build -o "$DBCTL" ./cmd/dbctl)
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "unknown (not a git checkout)")
if [[ -n $DBCTL_B ]]; then
	cp -- "$DBCTL_B" "$WORK/dbctl-b"
	DBCTL_B=$WORK/dbctl-b
fi

# --- 3. cluster --------------------------------------------------------------
pgrun() { runuser -u postgres -- "$@"; }
pgrun "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
pgrun "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg.log" -w \
	-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories='$WORK' -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c track_wal_io_timing=on" \
	start >/dev/null
PG_STARTED=1

export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=postgres
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)

"${PSQL[@]}" <<'SQL'
CREATE EXTENSION pgcrypto;
-- Mirrors dbd's body table: a local row number, the content-hash key, the bytes.
CREATE TABLE body (id bigserial, key bytea PRIMARY KEY, content bytea NOT NULL);
-- Out-of-line (TOAST) but uncompressed: the contents are random and would not
-- compress anyway; EXTERNAL only saves PostgreSQL the attempt.
ALTER TABLE body ALTER COLUMN content SET STORAGE EXTERNAL;
SQL

# Two PostgreSQL variants, both INSERT ... ON CONFLICT (key) DO NOTHING RETURNING id:
#  pg      (the issue's figure) the random content is built server-side:
#          gen_random_bytes(1024) || ... so every row is distinct, SIZE bytes
#          long and incompressible; nothing but the statement crosses the wire;
#  pg-sent the client sends the content as a parameter (hex text, 2*SIZE
#          bytes on the wire, like a real client would): a fixed random
#          (SIZE-8)-byte block plus 8 random bytes per transaction (dbctl
#          bench likewise varies a prefix of a per-worker random buffer).
PARTS=$((SIZE / 1024))
GEN="gen_random_bytes(1024)"
for ((i = 1; i < PARTS; i++)); do GEN="$GEN || gen_random_bytes(1024)"; done
cat >"$WORK/pg.sql" <<SQL
INSERT INTO body(key, content) SELECT sha256(c), c FROM (SELECT $GEN AS c) AS s ON CONFLICT (key) DO NOTHING RETURNING id;
SQL
cat >"$WORK/pg-sent.sql" <<'SQL'
\set r random(1, 9000000000000000000)
INSERT INTO body(key, content) SELECT sha256(c), c FROM (SELECT decode(:blob, 'hex') || int8send(:r) AS c) AS s ON CONFLICT (key) DO NOTHING RETURNING id;
SQL
# Same content generation and hashing as "pg", no write: what generating costs.
cat >"$WORK/generate.sql" <<SQL
SELECT length(sha256(c)) + length(c) FROM (SELECT $GEN AS c) AS s;
SQL
BLOB=$(head -c $((SIZE - 8)) /dev/urandom | od -An -v -tx1 | tr -d ' \n')
chmod 0644 "$WORK"/*.sql

# Settings actually in force (for the record).
"${PSQL[@]}" -At -c "SELECT version()"
"${PSQL[@]}" -At -F= -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings
	WHERE name IN ('fsync','synchronous_commit','full_page_writes','wal_sync_method','shared_buffers',
	               'wal_buffers','commit_delay','max_wal_size','checkpoint_timeout','wal_compression',
	               'track_wal_io_timing','listen_addresses','port')
	ORDER BY name"
echo "machine: nproc=$(nproc) mem=$(free -g | awk '/^Mem:/ {print $2 "G"}') kernel=$(uname -r) load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "dbctl:   built from $REV with $(go version | cut -d' ' -f3-)"
[[ -z $DBCTL_B ]] || echo "dbd-B:   the dbctl given as DBCTL_B, run after dbd in every run"
echo "disk:    $(df -hT "$WORK" | awk 'NR == 2 {print $1, $2, $3 " total"}') (pg data, WAL and dbctl bench data all under $WORK)"
awk '$1 > 1.0 {print "warning: load average " $1 " before the first run; other work on this machine skews every figure"}' /proc/loadavg
echo

PGBENCH=("$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$DURATION")

# Whole-machine counters, sampled around each measured phase:
#   snap  = "uptime sectors_written flush_requests cpu-jiffies..." for the disk
#           holding $WORK (/proc/diskstats; flush requests need Linux ≥ 5.5).
#   delta = "seconds sectors flushes busy_jiffies all_jiffies iowait_jiffies".
DEVMM=$(stat -c '%Hd:%Ld' "$WORK")
awk -v mm="$DEVMM" '$1 ":" $2 == mm {f = 1} END {exit !f}' /proc/diskstats || DEVMM=
snap() {
	echo "$(cut -d' ' -f1 /proc/uptime)" \
		"$(awk -v mm="$DEVMM" '$1 ":" $2 == mm {print $10, $19; f = 1} END {if (!f) print 0, 0}' /proc/diskstats)" \
		"$(awk 'NR == 1 {$1 = ""; print; exit}' /proc/stat)"
}
delta() {
	paste -d' ' <(echo "$1") <(echo "$2") | awk '{
		n = NF / 2
		for (i = 4; i <= 11; i++) t += $(i + n) - $i
		idle = $(7 + n) - $7; iow = $(8 + n) - $8
		print $(1 + n) - $1, $(2 + n) - $2, $(3 + n) - $3, t - idle - iow, t, iow }'
}
# summary OPS DELTA... : "busy% iowait% device-kB/op ops/flush" over the deltas
summary() {
	local ops=$1
	shift
	printf '%s\n' "$@" | awk -v ops="$ops" -v dev="$DEVMM" '
		{dt += $1; sec += $2; fl += $3; busy += $4; all += $5; iow += $6}
		END {
			printf "%.0f%% %.0f%% ", 100 * busy / all, 100 * iow / all
			if (dev == "" || ops == 0) print "n/a n/a"
			else printf "%.1f %s\n", sec * 512 / 1024 / ops, (fl > 0 ? sprintf("%.2f", ops / fl) : "n/a") }'
}

pg_run() { # $1 = script; prints "tps lat_ms tx/fsync walkB/tx fsync% busy% iowait% devkB/tx tx/flush"
	local out s0 s1 tps lat n
	"${PSQL[@]}" -c "TRUNCATE body RESTART IDENTITY" -c "CHECKPOINT" -c "SELECT pg_stat_reset_shared('wal')" >/dev/null
	s0=$(snap)
	out=$("${PGBENCH[@]}" -D blob="$BLOB" -f "$WORK/$1.sql" 2>&1) || { echo "$out" >&2; return 1; }
	s1=$(snap)
	printf '== %s\n%s\n' "$1" "$out" >>"$WORK/pgbench.log"
	read -r tps lat < <(awk '/^latency average/ {lat = $4} /^tps = / {tps = $3} END {if (tps == "") exit 1; print tps, lat}' <<<"$out")
	n=$("${PSQL[@]}" -At -c "SELECT count(*) FROM body")
	read -r per_sync kb share < <("${PSQL[@]}" -At -F' ' -c "SELECT
		round($n::numeric / greatest(wal_sync, 1), 2),
		round(wal_bytes / 1024.0 / greatest($n, 1), 1),
		round(wal_sync_time::numeric / 10 / $DURATION, 0) FROM pg_stat_wal")
	echo "$tps $lat $per_sync $kb $share $(summary "$n" "$(delta "$s0" "$s1")")"
}

dbd_run() { # $1 = dbctl binary; prints "mean_ops r1,r2,... busy% iowait% devkB/op ops/flush" (wire rounds only)
	# dbctl bench prints one line as each phase ends, so the counters are
	# sampled as each line arrives: the window that ends with a "wire
	# find-or-insert" line is exactly that wire phase (its embedded-Pebble
	# baseline phases are left out).
	: >"$WORK/dbd.windows"
	"$1" bench --concurrency "$CLIENTS" --size "$SIZE" --duration "${DURATION}s" \
		--rounds "$DBCTL_ROUNDS" --dir "$WORK" 2>&1 | {
		prev=$(snap)
		while IFS= read -r line; do
			now=$(snap)
			echo "$line" >>"$WORK/$(basename "$1").log"
			if [[ $line == *"wire find-or-insert:"* ]]; then
				# "round N: wire find-or-insert: RATE ops/s (group commits ...)"
				rate=${line#*wire find-or-insert: }
				rate=${rate%% *}
				echo "$rate $(delta "$prev" "$now")" >>"$WORK/dbd.windows"
			fi
			prev=$now
		done
	} || return 1
	[[ -s $WORK/dbd.windows ]] || return 1
	local mean rounds ops
	read -r mean rounds ops < <(awk '{s += $1; n++; r = r (n > 1 ? "," : "") $1; ops += $1 * $2}
		END {printf "%.0f %s %.0f\n", s / n, r, ops}' "$WORK/dbd.windows")
	mapfile -t deltas < <(cut -d' ' -f2- "$WORK/dbd.windows")
	echo "$mean $rounds $(summary "$ops" "${deltas[@]}")"
}

# --- 4. alternate ---------------------------------------------------------------
# cpu = whole-machine busy% / iowait% over the measured phase; dev = bytes the
# disk holding $WORK was asked to write, per operation, and operations per
# disk flush request (one fsync/fdatasync = one flush on most devices).
PG_SUM=0 SENT_SUM=0 DBD_SUM=0 B_SUM=0
for ((run = 1; run <= RUNS; run++)); do
	read -r pg_tps pg_lat pg_ps pg_kb pg_share pg_busy pg_iow pg_dkb pg_pf < <(pg_run pg)
	printf 'run %d  pg       %5.0f tx/s   latency avg %s ms  %s tx/fsync  %s kB WAL/tx  fsync %s%% of wall  dev %s kB/tx %s tx/flush  cpu %s busy %s iowait\n' \
		"$run" "$pg_tps" "$pg_lat" "$pg_ps" "$pg_kb" "$pg_share" "$pg_dkb" "$pg_pf" "$pg_busy" "$pg_iow"
	read -r st_tps st_lat st_ps st_kb st_share st_busy st_iow st_dkb st_pf < <(pg_run pg-sent)
	printf 'run %d  pg-sent  %5.0f tx/s   latency avg %s ms  %s tx/fsync  %s kB WAL/tx  fsync %s%% of wall  dev %s kB/tx %s tx/flush  cpu %s busy %s iowait\n' \
		"$run" "$st_tps" "$st_lat" "$st_ps" "$st_kb" "$st_share" "$st_dkb" "$st_pf" "$st_busy" "$st_iow"
	read -r dbd_ops dbd_rounds dbd_busy dbd_iow dbd_dkb dbd_pf < <(dbd_run "$DBCTL")
	printf 'run %d  dbd      %5.0f ops/s  rounds %s  dev %s kB/op %s ops/flush  cpu %s busy %s iowait\n' \
		"$run" "$dbd_ops" "$dbd_rounds" "$dbd_dkb" "$dbd_pf" "$dbd_busy" "$dbd_iow"
	awk -v d="$dbd_ops" -v p="$pg_tps" -v s="$st_tps" -v r="$run" \
		'BEGIN {printf "run %d  ratio dbd/pg %.2f  dbd/pg-sent %.2f\n", r, d / p, d / s}'
	if [[ -n $DBCTL_B ]]; then
		read -r b_ops b_rounds b_busy b_iow b_dkb b_pf < <(dbd_run "$DBCTL_B")
		printf 'run %d  dbd-B    %5.0f ops/s  rounds %s  dev %s kB/op %s ops/flush  cpu %s busy %s iowait\n' \
			"$run" "$b_ops" "$b_rounds" "$b_dkb" "$b_pf" "$b_busy" "$b_iow"
		awk -v d="$b_ops" -v p="$pg_tps" -v r="$run" 'BEGIN {printf "run %d  ratio dbd-B/pg %.2f\n", r, d / p}'
		B_SUM=$(awk -v a="$B_SUM" -v b="$b_ops" 'BEGIN {print a + b}')
	fi
	PG_SUM=$(awk -v a="$PG_SUM" -v b="$pg_tps" 'BEGIN {print a + b}')
	SENT_SUM=$(awk -v a="$SENT_SUM" -v b="$st_tps" 'BEGIN {print a + b}')
	DBD_SUM=$(awk -v a="$DBD_SUM" -v b="$dbd_ops" 'BEGIN {print a + b}')
done
echo
awk -v d="$DBD_SUM" -v p="$PG_SUM" -v s="$SENT_SUM" -v n="$RUNS" 'BEGIN {
	printf "mean over %d runs: pg %.0f tx/s, pg-sent %.0f tx/s, dbd %.0f ops/s\n", n, p / n, s / n, d / n
	printf "ratio dbd/pg %.2f (target >= 2.00: %s), dbd/pg-sent %.2f\n", d / p, (d / p >= 2 ? "met" : "NOT met"), d / s }'
if [[ -n $DBCTL_B ]]; then
	awk -v b="$B_SUM" -v d="$DBD_SUM" -v p="$PG_SUM" -v n="$RUNS" \
		'BEGIN {printf "dbd-B: mean %.0f ops/s, ratio dbd-B/pg %.2f, dbd/dbd-B %.2f\n", b / n, b / p, d / b}'
fi

# --- calibration (not part of the ratio) ----------------------------------------
if [[ $CALIBRATE == 1 ]]; then
	echo
	gen=$("${PGBENCH[@]}" -f "$WORK/generate.sql" 2>&1 | awk '/^tps = / {print $3}')
	echo "calibration: pg content generation + sha256 only (no write): ${gen} tx/s at $CLIENTS clients"
	echo "calibration: pg_test_fsync, fdatasync of one 8 kB write, then of two, on the same disk:"
	"$PG_BIN/pg_test_fsync" -s 2 -f "$WORK/fsync.test" 2>&1 | awk '/fdatasync/ && /ops\/sec/ {print "  " $0}' | head -n 2
	echo "dbctl bench's own figures (embedded Pebble synced writes, latency at low load):"
	grep -E '^(round .*embedded|latency|handshake)' "$WORK/dbctl.log" | sed 's/^/  /'
fi
