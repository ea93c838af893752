#!/bin/sh
# bench/ingest/run.sh — registering a multi-shard checkpoint in the store
# against `sha256sum` and `openssl dgst -sha256` over the same files, in one
# run, reported as ratios (issue 3).
#
# Makes a checkpoint of BENCH_INGEST_GB GB in BENCH_INGEST_SHARDS shards of
# pseudo-random bytes (AES-CTR keystream from `openssl enc`: fast, and no
# two shards alike), fsyncs it (an engine's checkpoint is fsynced before it
# is reported: see the engine contract), then times:
#   sha256sum     all shards, one process (sequential, as users do)
#   openssl dgst  all shards, one process (single core)
#   anneal ingest bench/ingest/ingest.c: store_open + store_ingest_tree in
#                 link mode, default threads (one per CPU), into a store on
#                 the same filesystem
# and checks that the ingest copied nothing: every object is the source's
# inode, and the filesystem's used space did not grow by the checkpoint.
#
# The page cache: by default every tool reads warm data (a warm-up read of
# all shards before each tool, and the data must fit in free memory): this
# measures hashing, which is what the targets are about. BENCH_INGEST_CACHE=
# cold drops the caches before each tool instead (needs root and a writable
# /proc/sys/vm/drop_caches; falls back to warm, and says so, when refused).
#
# usage: sh bench/ingest/run.sh        (from anywhere; builds what it needs)
# env:   BENCH_INGEST_GB (4)  BENCH_INGEST_SHARDS (8)  BENCH_REPS (5: best of,
#        for openssl and anneal; sha256sum runs once, it is slow)
#        BENCH_INGEST_CACHE (warm|cold)  TMPDIR (where the checkpoint and the
#        store go)
#
# Prints a table; writes nothing outside a temporary directory, removed at exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

GB=${BENCH_INGEST_GB:-4}
SHARDS=${BENCH_INGEST_SHARDS:-8}
REPS=${BENCH_REPS:-5}
CACHE=${BENCH_INGEST_CACHE:-warm}
case $GB in ''|*[!0-9]*|0) echo "bench/ingest: BENCH_INGEST_GB must be a positive integer, not '$GB'" >&2; exit 2;; esac
case $SHARDS in ''|*[!0-9]*|0) echo "bench/ingest: BENCH_INGEST_SHARDS must be a positive integer, not '$SHARDS'" >&2; exit 2;; esac
case $REPS in ''|*[!0-9]*|0) echo "bench/ingest: BENCH_REPS must be a positive integer, not '$REPS'" >&2; exit 2;; esac
case $CACHE in warm|cold) ;; *) echo "bench/ingest: BENCH_INGEST_CACHE must be 'warm' or 'cold', not '$CACHE'" >&2; exit 2;; esac
for tool in sha256sum openssl df stat awk cc; do
	command -v $tool >/dev/null 2>&1 || { echo "bench/ingest: '$tool' is needed" >&2; exit 2; }
done

total_bytes=$((GB * 1000 * 1000 * 1000))
shard_bytes=$((total_bytes / SHARDS))
total_bytes=$((shard_bytes * SHARDS))

# --- disk space, before writing anything -------------------------------------------
base=${TMPDIR:-/tmp}
avail_kb=$(df -Pk "$base" | awk 'NR == 2 { print $4 }')
need_kb=$((total_bytes / 1024 + 1024 * 1024))   # the checkpoint + 1 GiB of slack
if [ "$avail_kb" -lt "$need_kb" ]; then
	echo "bench/ingest: not enough space in '$base': $((avail_kb / 1024)) MiB free, $((need_kb / 1024)) MiB needed" >&2
	echo "bench/ingest: set TMPDIR to a roomier filesystem or lower BENCH_INGEST_GB" >&2
	exit 3
fi

tmp=$(mktemp -d "$base/anneal-bench-ingest.XXXXXX")
cleanup() { chmod -R u+w "$tmp" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the driver -------------------------------------------------------------------
echo "bench/ingest: building build/libanneal.a and the driver" >&2
if ! make -s -C "$root" build/libanneal.a >"$tmp/make.log" 2>&1; then
	cat "$tmp/make.log" >&2
	echo "bench/ingest: 'make build/libanneal.a' failed" >&2
	exit 3
fi
libs=$(pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)
cc -std=c11 -D_GNU_SOURCE -O2 -I"$root" -o "$tmp/ingest" "$here/ingest.c" \
	"$root/build/libanneal.a" $libs -pthread

# --- the checkpoint -----------------------------------------------------------------
ckpt="$tmp/checkpoint"
mkdir "$ckpt"
echo "bench/ingest: writing $SHARDS shards of $shard_bytes bytes to $ckpt" >&2
t0=$(date +%s.%N)
i=1
shard_files=""
while [ $i -le "$SHARDS" ]; do
	name=$(printf 'model-%05d-of-%05d.safetensors' $i "$SHARDS")
	iv=$(printf '%032x' $i)
	head -c "$shard_bytes" /dev/zero |
		openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv "$iv" \
		>"$ckpt/$name"
	shard_files="$shard_files $name"
	i=$((i + 1))
done
printf '{"shards": %s}\n' "$SHARDS" >"$ckpt/config.json"
sync
t1=$(date +%s.%N)
echo "bench/ingest: written and synced in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s" >&2

# --- cache policy ------------------------------------------------------------------------
mem_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo 2>/dev/null || echo 0)
cache_note=""
if [ "$CACHE" = cold ]; then
	if [ "$(id -u)" = 0 ] && sync && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
		cache_note="cold: page cache dropped before each tool"
	else
		CACHE=warm
		cache_note="warm (cold was asked for, but dropping the page cache was refused here)"
	fi
fi
if [ "$CACHE" = warm ]; then
	[ -n "$cache_note" ] || cache_note="warm: every tool reads page-cached data (a warm-up read before each)"
	if [ "$mem_kb" -gt 0 ] && [ "$mem_kb" -lt $((total_bytes / 1024 * 3 / 2)) ]; then
		cache_note="$cache_note; WARNING: only $((mem_kb / 1024)) MiB available, data may not stay cached"
	fi
fi
prepare() {
	if [ "$CACHE" = cold ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	else
		(cd "$ckpt" && cat $shard_files config.json >/dev/null)
	fi
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }

# --- sha256sum and openssl -------------------------------------------------------------------
prepare
t0=$(now)
(cd "$ckpt" && sha256sum $shard_files config.json) >"$tmp/sha256sum.out"
t_sum=$(elapsed "$t0" "$(now)")

t_ssl=""
r=0
while [ $r -lt "$REPS" ]; do
	prepare
	t0=$(now)
	(cd "$ckpt" && openssl dgst -sha256 $shard_files config.json) >"$tmp/openssl.out"
	t_ssl=$(best "$t_ssl" "$(elapsed "$t0" "$(now)")")
	r=$((r + 1))
done

# --- anneal ingest ---------------------------------------------------------------------------------
used_kb() { df -Pk "$tmp" | awk 'NR == 2 { print $3 }'; }
t_ing=""
r=0
grew_kb=0
threads=""
while [ $r -lt "$REPS" ]; do
	store="$tmp/store.$r"
	prepare
	u0=$(used_kb)
	t0=$(now)
	"$tmp/ingest" "$store" "$ckpt" >"$tmp/ingest.out"
	t=$(elapsed "$t0" "$(now)")
	u1=$(used_kb)
	g=$((u1 - u0))
	[ $g -gt $grew_kb ] && grew_kb=$g
	t_ing=$(best "$t_ing" "$t")
	threads=$(sed -n 's/.*threads=\([0-9]*\).*/\1/p' "$tmp/ingest.out")
	# The bytes agree with sha256sum's, shard by shard.
	for f in $shard_files config.json; do
		want=$(awk -v f="$f" '$2 == f { print $1 }' "$tmp/sha256sum.out")
		obj="$store/objects/$(echo "$want" | cut -c1-2)/$(echo "$want" | cut -c3-)"
		[ -f "$obj" ] || { echo "bench/ingest: no object $want for $f (sha256sum's digest)" >&2; exit 1; }
		if [ "$(stat -c %i "$obj")" != "$(stat -c %i "$ckpt/$f")" ]; then
			echo "bench/ingest: $f was copied, not linked (inode differs from its object)" >&2
			exit 1
		fi
	done
	r=$((r + 1))
done

# --- the table -----------------------------------------------------------------------------------------
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
grew_mb=$((grew_kb / 1024))
ckpt_mb=$((total_bytes / 1024 / 1024))
echo
echo "bench/ingest: $SHARDS shards, $total_bytes bytes (+ config.json), $cpus CPUs, $(openssl version | cut -d' ' -f1-2)"
echo "cache: $cache_note"
echo "best of $REPS for openssl and anneal, 1 run of sha256sum"
echo
awk -v bytes="$total_bytes" -v sum="$t_sum" -v ssl="$t_ssl" -v ing="$t_ing" -v thr="$threads" '
function row(name, t) {
	printf "%-34s %8.2f s %7.2f GB/s %8.2fx %10.2fx\n", name, t, bytes / t / 1e9, ssl / t, sum / t
}
BEGIN {
	printf "%-34s %10s %12s %9s %11s\n", "tool", "time", "throughput", "vs openssl", "vs sha256sum"
	row("sha256sum (sequential)", sum)
	row("openssl dgst -sha256 (1 core)", ssl)
	row(sprintf("anneal ingest (link, %s threads)", thr), ing)
	printf "\n"
	printf "target >= 1.80x openssl: %s (%.2fx)\n", (ssl / ing >= 1.8 ? "met" : "MISSED"), ssl / ing
	printf "target >= 4.00x sha256sum: %s (%.2fx)\n", (sum / ing >= 4 ? "met" : "MISSED"), sum / ing
}'
if [ $grew_kb -lt $((total_bytes / 1024 / 100)) ]; then
	echo "no copy: met (every object is its shard's inode; used space grew by $grew_mb MiB at most for a $ckpt_mb MiB checkpoint)"
else
	echo "no copy: MISSED (used space grew by $grew_mb MiB during an ingest of $ckpt_mb MiB)"
fi
