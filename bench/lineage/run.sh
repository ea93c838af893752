#!/bin/sh
# bench/lineage/run.sh — lineage queries on a catalog of 1,000,000
# artifacts (issue 3): "<= 50 ms for a depth-50 ancestry in a store of
# 1,000,000 artifacts".
#
# Builds bench/lineage/lineage_bench.c against build/libanneal.a; it makes
# a state database of BENCH_LINEAGE_N artifacts shaped like training
# histories (projects of a dataset and 9 runs of 111 checkpoints each, with
# merges; see the driver's header) through anneal's catalog API, then
# times catalog_lineage — what `anneal lineage` runs — for a depth-50
# ancestry (the target), a whole ancestry and a dataset's whole descent,
# median of BENCH_REPS runs each. Reports the build time and the database
# size. When the sqlite3 shell is installed, also prints the query plan of
# the ancestry query (the SQL of pipeline/catalog.c's C_ANCESTORS, copied).
#
# usage: sh bench/lineage/run.sh        (from anywhere; builds what it needs)
# env:   BENCH_LINEAGE_N (1000000)  BENCH_REPS (20)  TMPDIR (where the
#        database goes: about 1 GB for 1,000,000 artifacts)
#
# Writes nothing outside a temporary directory, removed at exit. Exit
# status 0 when the target is met, 1 when missed, 2/3 on usage/system errors.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

N=${BENCH_LINEAGE_N:-1000000}
REPS=${BENCH_REPS:-20}
case $N in ''|*[!0-9]*) echo "bench/lineage: BENCH_LINEAGE_N must be a number, not '$N'" >&2; exit 2;; esac
case $REPS in ''|*[!0-9]*|0) echo "bench/lineage: BENCH_REPS must be a positive integer, not '$REPS'" >&2; exit 2;; esac
[ "$N" -ge 1000 ] || { echo "bench/lineage: BENCH_LINEAGE_N must be at least 1000" >&2; exit 2; }
command -v cc >/dev/null 2>&1 || { echo "bench/lineage: 'cc' is needed" >&2; exit 2; }

base=${TMPDIR:-/tmp}
tmp=$(mktemp -d "$base/anneal-bench-lineage.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "bench/lineage: building build/libanneal.a and the driver" >&2
if ! make -s -C "$root" build/libanneal.a >"$tmp/make.log" 2>&1; then
	cat "$tmp/make.log" >&2
	echo "bench/lineage: 'make build/libanneal.a' failed" >&2
	exit 3
fi
libs=$(pkg-config --libs sqlite3 libgit2 libcjson libarchive libcrypto 2>/dev/null ||
	echo -lsqlite3 -lgit2 -lcjson -larchive -lcrypto)
# shellcheck disable=SC2086
cc -std=c11 -D_GNU_SOURCE -O2 -I"$root" -o "$tmp/lineage_bench" "$here/lineage_bench.c" \
	"$root/build/libanneal.a" $libs -pthread

echo "bench/lineage: building a catalog of $N artifacts in $tmp" >&2
"$tmp/lineage_bench" "$tmp/state.db" "$N" "$REPS" >"$tmp/report" || exit 3
cat "$tmp/report"

if command -v sqlite3 >/dev/null 2>&1; then
	id=$(awk '/^ids:/ { print $3 }' "$tmp/report" | tr -d ,)
	echo
	echo "query plan of one step of the walk (catalog_lineage expands each node once"
	echo "with this lookup; EXPLAIN QUERY PLAN, sqlite3 $(sqlite3 --version | cut -d' ' -f1)):"
	sqlite3 "$tmp/state.db" "EXPLAIN QUERY PLAN
		SELECT parent, role, weight FROM lineage WHERE child = $id ORDER BY role, parent" |
		sed 's/^/  /'
fi

grep -q -- '-> MET' "$tmp/report"
