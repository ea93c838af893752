#!/bin/sh
# bench/merge/run.sh — `anneal merge` against the bytes-moved floor and a
# NumPy implementation of the same formulas, in one run, as ratios (issue 4).
#
# Makes three BF16 checkpoints of BENCH_MERGE_GB GB each (24 tensors of
# 4096 x 5120 a GB, bench/merge/gen.c: a shared "pretrained" matrix plus a
# small per-model perturbation; the first one is the base), then times:
#   floor        bench/merge/floor.c: reads the 3 inputs, writes one output
#                of the same size once, fsyncs (THREADS threads, libc only)
#   linear       anneal merge --method linear over the 3 (weights 1)
#   ties         anneal merge --method ties --param density=0.5 (base + 2)
#   numpy-linear bench/merge/merge_numpy.py, the same formula, np.memmap'd
#   numpy-ties   idem, TIES with np.partition for the top-k threshold
# Throughput is input GB/s (3 inputs' tensor bytes over wall seconds); each
# tool writes 1 output of the same size and fsyncs it. Every tool reads warm
# inputs (a read of all three before each), so this measures the merge, not
# the disk's read speed. NumPy's linear output is compared with anneal's
# byte for byte (the same float32 operations in the same order).
#
# Targets (issue 4): linear >= 0.6x floor, >= 5x NumPy; ties within 3x of
# linear (ties/linear time <= 3).
#
# usage: sh bench/merge/run.sh        (from anywhere; builds what it needs)
# env:   BENCH_MERGE_GB (1; 0.25 for a quick run)  BENCH_THREADS (one per
#        CPU: anneal's and the floor's threads)  BENCH_REPS (3: best of, for
#        floor and anneal; NumPy runs once)  TMPDIR (where the files go)
#
# NumPy is Debian's python3-numpy under /usr/bin/python3: installed with
# apt-get when missing and running as root, else those rows are skipped.
# Prints a table; writes nothing outside a temporary directory, removed at exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

GB=${BENCH_MERGE_GB:-1}
REPS=${BENCH_REPS:-3}
THREADS=${BENCH_THREADS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
PY=/usr/bin/python3
case $GB in ''|*[!0-9.]*|*.*.*) echo "bench/merge: BENCH_MERGE_GB must be a positive number, not '$GB'" >&2; exit 2;; esac
case $REPS in ''|*[!0-9]*|0) echo "bench/merge: BENCH_REPS must be a positive integer, not '$REPS'" >&2; exit 2;; esac
case $THREADS in ''|*[!0-9]*|0) echo "bench/merge: BENCH_THREADS must be a positive integer, not '$THREADS'" >&2; exit 2;; esac
for tool in cc make df awk cmp date; do
	command -v $tool >/dev/null 2>&1 || { echo "bench/merge: '$tool' is needed" >&2; exit 2; }
done

ROWS=4096 COLS=5120
NT=$(awk -v g="$GB" 'BEGIN { n = int(g * 24 + 0.5); print n < 1 ? 1 : n }')
tensor_bytes=$((ROWS * COLS * 2))
model_bytes=$((NT * tensor_bytes))

# --- disk space: 3 inputs + 2 outputs at a time (anneal's, NumPy's) + 1 GiB ------
base=${TMPDIR:-/tmp}
avail_kb=$(df -Pk "$base" | awk 'NR == 2 { print $4 }')
need_kb=$((model_bytes * 5 / 1024 + 1024 * 1024))
if [ "$avail_kb" -lt "$need_kb" ]; then
	echo "bench/merge: not enough space in '$base': $((avail_kb / 1024)) MiB free, $((need_kb / 1024)) MiB needed" >&2
	echo "bench/merge: set TMPDIR to a roomier filesystem or lower BENCH_MERGE_GB" >&2
	exit 3
fi

tmp=$(mktemp -d "$base/anneal-bench-merge.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build --------------------------------------------------------------------------
echo "bench/merge: building bin/anneal, gen and floor" >&2
if ! make -s -C "$root" bin/anneal >"$tmp/make.log" 2>&1; then
	cat "$tmp/make.log" >&2
	echo "bench/merge: 'make bin/anneal' failed" >&2
	exit 3
fi
ANNEAL=$root/bin/anneal
cc -std=c11 -D_GNU_SOURCE -O2 -o "$tmp/gen" "$here/gen.c"
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$tmp/floor" "$here/floor.c"

# --- NumPy ------------------------------------------------------------------------------
have_numpy=0
if [ -x "$PY" ] && "$PY" -c 'import numpy' 2>/dev/null; then
	have_numpy=1
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "bench/merge: installing python3-numpy" >&2
	if apt-get install -y -q -o DPkg::Lock::Timeout=300 python3-numpy >"$tmp/apt.log" 2>&1 ||
		{ apt-get update -q -o DPkg::Lock::Timeout=300 >>"$tmp/apt.log" 2>&1 &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
			python3-numpy >>"$tmp/apt.log" 2>&1; }; then
		"$PY" -c 'import numpy' 2>/dev/null && have_numpy=1
	fi
	[ $have_numpy = 1 ] || echo "bench/merge: could not install python3-numpy (see apt-get); NumPy rows skipped" >&2
else
	echo "bench/merge: NumPy missing under $PY and not root to install python3-numpy; NumPy rows skipped" >&2
fi

# --- inputs -------------------------------------------------------------------------------
echo "bench/merge: writing 3 checkpoints of $NT x ${ROWS}x${COLS} bf16 ($(awk -v b=$model_bytes 'BEGIN { printf "%.2f", b / 1e9 }') GB each)" >&2
for s in 0 1 2; do
	"$tmp/gen" "$tmp/m$s.safetensors" $s "$NT" $ROWS $COLS &
done
wait
# Flush the new files now: their writeback would otherwise overlap, and
# slow, the first tools' fsync of their outputs.
sync
IN="$tmp/m0.safetensors $tmp/m1.safetensors $tmp/m2.safetensors"
in_bytes=$((3 * model_bytes))

# Before each timed tool: warm inputs, and no dirty data of an earlier
# tool's output still being written back under the next one's fsync.
warm() { cat $IN >/dev/null; sync; }
now() { date +%s.%N; }
# the JSON field F of anneal's --json report in FILE
jfield() { sed -n "s/.*\"$2\": \\([0-9.e+-]*\\).*/\\1/p" "$1"; }

# Results: name seconds peak_rss_bytes, one line each, best (least seconds) kept.
res=$tmp/results
: >"$res"
record() {
	awk -v n="$1" -v s="$2" -v r="$3" '
		$1 == n { found = 1; if (s + 0 < $2 + 0) { $2 = s; $3 = r } }
		{ print }
		END { if (!found) print n, s, r }' "$res" >"$res.new"
	mv "$res.new" "$res"
}

echo "bench/merge: $THREADS threads, best of $REPS (NumPy: once)" >&2
rep=1
while [ $rep -le "$REPS" ]; do
	warm
	out=$("$tmp/floor" "$THREADS" "$tmp/floor.out" $IN)
	record floor $out
	rm -f "$tmp/floor.out"

	warm
	t0=$(now)
	"$ANNEAL" merge --method linear --model "$tmp/m0.safetensors" --model "$tmp/m1.safetensors" \
		--model "$tmp/m2.safetensors" --threads "$THREADS" --max-shard-size 0 --json \
		-o "$tmp/linear" >"$tmp/linear.json"
	t1=$(now)
	record linear "$(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }')" "$(jfield "$tmp/linear.json" peak_rss)"
	[ $rep -eq "$REPS" ] || rm -rf "$tmp/linear"

	warm
	t0=$(now)
	"$ANNEAL" merge --method ties --param density=0.5 --base "$tmp/m0.safetensors" \
		--model "$tmp/m1.safetensors" --model "$tmp/m2.safetensors" --threads "$THREADS" \
		--max-shard-size 0 --json -o "$tmp/ties" >"$tmp/ties.json"
	t1=$(now)
	record ties "$(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }')" "$(jfield "$tmp/ties.json" peak_rss)"
	rm -rf "$tmp/ties"
	rep=$((rep + 1))
done

same=
if [ $have_numpy = 1 ]; then
	warm
	t0=$(now)
	"$PY" "$here/merge_numpy.py" linear "$tmp/np.out" 1,1,1 $IN >"$tmp/np.txt"
	t1=$(now)
	record numpy-linear "$(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }')" "$(awk '{ print $2 }' "$tmp/np.txt")"
	# anneal's data section starts after 8 + header bytes.
	skip=$(od -An -t u8 -N 8 "$tmp/linear/model.safetensors" | awk '{ print $1 + 8 }')
	if cmp -s -i "$skip:0" "$tmp/linear/model.safetensors" "$tmp/np.out"; then
		same="NumPy's linear output is byte-identical to anneal's"
	else
		same="NumPy's linear output DIFFERS from anneal's"
	fi
	rm -f "$tmp/np.out"
	rm -rf "$tmp/linear"

	warm
	t0=$(now)
	"$PY" "$here/merge_numpy.py" ties "$tmp/np.out" 0.5 $IN >"$tmp/np.txt"
	t1=$(now)
	record numpy-ties "$(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }')" "$(awk '{ print $2 }' "$tmp/np.txt")"
	rm -f "$tmp/np.out"
fi

# --- report ---------------------------------------------------------------------------------
echo
echo "merge bench: 3 x $(awk -v b=$model_bytes 'BEGIN { printf "%.2f", b / 1e9 }') GB bf16 ($NT tensors of ${ROWS}x${COLS} each), $THREADS threads, $(getconf _NPROCESSORS_ONLN) CPUs"
awk -v in_bytes="$in_bytes" '
	{ s[$1] = $2; r[$1] = $3 }
	END {
		printf "%-14s %9s %12s %12s\n", "tool", "seconds", "input GB/s", "peak RSS"
		n = split("floor linear ties numpy-linear numpy-ties", order, " ")
		for (i = 1; i <= n; i++) {
			k = order[i]
			if (!(k in s)) continue
			printf "%-14s %9.3f %12.2f %8.0f MiB\n", k, s[k], in_bytes / s[k] / 1e9, r[k] / 1048576
		}
		print ""
		v = s["floor"] / s["linear"]
		printf "linear vs floor:  %5.2fx throughput  (target >= 0.6x)  %s\n", v, (v >= 0.6 ? "met" : "MISSED")
		if ("numpy-linear" in s) {
			v = s["numpy-linear"] / s["linear"]
			printf "linear vs NumPy:  %5.2fx throughput  (target >= 5x)    %s\n", v, (v >= 5 ? "met" : "MISSED")
		}
		v = s["ties"] / s["linear"]
		printf "ties vs linear:   %5.2fx the time    (target <= 3x)    %s\n", v, (v <= 3 ? "met" : "MISSED")
		if ("numpy-ties" in s) {
			v = s["numpy-ties"] / s["ties"]
			printf "ties vs NumPy:    %5.2fx throughput\n", v
		}
	}' "$res"
[ -z "$same" ] || echo "$same"
