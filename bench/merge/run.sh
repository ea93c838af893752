#!/bin/sh
# bench/merge/run.sh — `anneal merge` against the bytes-moved floor and a
# NumPy implementation of the same formulas, in one run, as ratios (issue 4).
#
# Makes three BF16 checkpoints of BENCH_MERGE_GB GB each (24 tensors of
# 4096 x 5120 a GB, bench/merge/gen.c: a shared "pretrained" matrix plus a
# small per-model perturbation; the first one is the base), then times:
#   floor        bench/merge/floor.c: the I/O of a merge, done the way anneal
#                does it (inputs mmapped and read in place, whole tensors per
#                thread, a 1 MiB stage pwritten at each tensor's offset, input
#                pages released, then fsync, rename and a directory fsync;
#                THREADS threads) with a XOR for the arithmetic
#   linear       anneal merge --method linear over the 3 (weights 1)
#   ties         anneal merge --method ties --param density=0.5 (base + 2)
#   numpy-linear bench/merge/merge_numpy.py, the same formula, np.memmap'd
#   numpy-ties   idem, TIES with np.partition for the top-k threshold
# Throughput is input GB/s (3 inputs' tensor bytes over wall seconds); each
# tool writes 1 output of the same size and fsyncs it.
#
# Fair and repeatable: floor, linear and ties run one after the other,
# BENCH_REPS times (the order rotated each round), and the table gives each
# one's median, best and worst; the ratios are of medians (and of bests).
# Before every timed run, of any tool, the machine is put in the same
# state: the previous output removed and everything synced (no tool pays
# for another's dirty pages or freed blocks), and the inputs read again
# (warm in the page cache: this measures the merge, not the disk's read
# speed). NumPy runs once. Its linear output is compared with anneal's
# byte for byte (the same float32 operations in the same order).
#
# On a small VM the time to write 1 GB into new page-cache pages varies a
# lot from run to run (floor and anneal alike); hence medians. The load
# average at the start and the end is printed with the table.
#
# Targets (issue 4): linear >= 0.6x floor, >= 5x NumPy; ties within 3x of
# linear (ties/linear time <= 3).
#
# usage: sh bench/merge/run.sh        (from anywhere; builds what it needs)
# env:   BENCH_MERGE_GB (1; 0.25 for a quick run)  BENCH_THREADS (one per
#        CPU: anneal's and the floor's threads)  BENCH_REPS (5: rounds of
#        floor, linear and ties)  BENCH_NUMPY (1; 0 skips NumPy)  TMPDIR
#        (where the files go)
#
# NumPy is Debian's python3-numpy under /usr/bin/python3: installed with
# apt-get when missing and running as root, else those rows are skipped.
# Prints a table; writes nothing outside a temporary directory, removed at exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

GB=${BENCH_MERGE_GB:-1}
REPS=${BENCH_REPS:-5}
NUMPY=${BENCH_NUMPY:-1}
THREADS=${BENCH_THREADS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
PY=/usr/bin/python3
case $GB in ''|*[!0-9.]*|*.*.*) echo "bench/merge: BENCH_MERGE_GB must be a positive number, not '$GB'" >&2; exit 2;; esac
case $REPS in ''|*[!0-9]*|0) echo "bench/merge: BENCH_REPS must be a positive integer, not '$REPS'" >&2; exit 2;; esac
case $THREADS in ''|*[!0-9]*|0) echo "bench/merge: BENCH_THREADS must be a positive integer, not '$THREADS'" >&2; exit 2;; esac
case $NUMPY in 0|1) ;; *) echo "bench/merge: BENCH_NUMPY must be 0 or 1, not '$NUMPY'" >&2; exit 2;; esac
for tool in cc make df awk cmp date sort sync; do
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
load0=$(awk '{ print $1, $2, $3 }' /proc/loadavg 2>/dev/null || echo '?')

# --- NumPy ------------------------------------------------------------------------------
have_numpy=0
if [ "$NUMPY" = 0 ]; then
	:
elif [ -x "$PY" ] && "$PY" -c 'import numpy' 2>/dev/null; then
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

# Before each timed run: no output of an earlier run left (removed, and
# the removal synced: no tool pays for another's dirty pages or freed
# blocks), inputs warm.
settle() { rm -rf "$tmp/out" "$tmp/np.out"; sync; cat $IN >/dev/null; }
now() { date +%s.%N; }
# the JSON field F of anneal's --json report in FILE
jfield() { sed -n "s/.*\"$2\": \\([0-9.e+-]*\\).*/\\1/p" "$1"; }

# Results: "name seconds peak_rss_bytes [write_seconds sync_seconds]", a line a run.
res=$tmp/results
: >"$res"

# Every tool is timed the same way, from outside (process start included);
# the floor's own report adds its two phases.
run_floor() {
	settle
	t0=$(now)
	"$tmp/floor" "$THREADS" "$tmp/out" $IN >"$tmp/floor.txt"
	t1=$(now)
	echo "floor $(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }') $(awk '{ print $2, $3, $4 }' "$tmp/floor.txt")" >>"$res"
}

run_linear() {
	settle
	t0=$(now)
	"$ANNEAL" merge --method linear --model "$tmp/m0.safetensors" --model "$tmp/m1.safetensors" \
		--model "$tmp/m2.safetensors" --threads "$THREADS" --max-shard-size 0 --json \
		-o "$tmp/out" >"$tmp/linear.json"
	t1=$(now)
	echo "linear $(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }') $(jfield "$tmp/linear.json" peak_rss)" >>"$res"
}

run_ties() {
	settle
	t0=$(now)
	"$ANNEAL" merge --method ties --param density=0.5 --base "$tmp/m0.safetensors" \
		--model "$tmp/m1.safetensors" --model "$tmp/m2.safetensors" --threads "$THREADS" \
		--max-shard-size 0 --json -o "$tmp/out" >"$tmp/ties.json"
	t1=$(now)
	echo "ties $(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }') $(jfield "$tmp/ties.json" peak_rss)" >>"$res"
}

echo "bench/merge: $THREADS threads, $REPS rounds of floor, linear and ties (NumPy: once)" >&2
rep=1
while [ $rep -le "$REPS" ]; do
	case $((rep % 3)) in
	1) run_floor; run_linear; run_ties;;
	2) run_linear; run_ties; run_floor;;
	0) run_ties; run_floor; run_linear;;
	esac
	rep=$((rep + 1))
done

same=
if [ $have_numpy = 1 ]; then
	# anneal's linear output, to compare NumPy's with, made outside the timings.
	"$ANNEAL" merge --method linear --model "$tmp/m0.safetensors" --model "$tmp/m1.safetensors" \
		--model "$tmp/m2.safetensors" --threads "$THREADS" --max-shard-size 0 \
		-o "$tmp/linear" >/dev/null
	settle
	t0=$(now)
	"$PY" "$here/merge_numpy.py" linear "$tmp/np.out" 1,1,1 $IN >"$tmp/np.txt"
	t1=$(now)
	echo "numpy-linear $(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }') $(awk '{ print $2 }' "$tmp/np.txt")" >>"$res"
	# anneal's data section starts after 8 + header bytes.
	skip=$(od -An -t u8 -N 8 "$tmp/linear/model.safetensors" | awk '{ print $1 + 8 }')
	if cmp -s -i "$skip:0" "$tmp/linear/model.safetensors" "$tmp/np.out"; then
		same="NumPy's linear output is byte-identical to anneal's"
	else
		same="NumPy's linear output DIFFERS from anneal's"
	fi
	rm -rf "$tmp/linear"

	settle
	t0=$(now)
	"$PY" "$here/merge_numpy.py" ties "$tmp/np.out" 0.5 $IN >"$tmp/np.txt"
	t1=$(now)
	echo "numpy-ties $(awk -v a=$t0 -v b=$t1 'BEGIN { print b - a }') $(awk '{ print $2 }' "$tmp/np.txt")" >>"$res"
fi
rm -rf "$tmp/out" "$tmp/np.out"
load1=$(awk '{ print $1, $2, $3 }' /proc/loadavg 2>/dev/null || echo '?')

# --- report ---------------------------------------------------------------------------------
echo
echo "merge bench: 3 x $(awk -v b=$model_bytes 'BEGIN { printf "%.2f", b / 1e9 }') GB bf16 ($NT tensors of ${ROWS}x${COLS} each), $THREADS threads, $(getconf _NPROCESSORS_ONLN) CPUs, $REPS rounds"
echo "load average (1, 5, 15 min): $load0 at the start, $load1 at the end"
# Per tool: its times sorted, then one line of "name runs median best worst
# peak_rss"; for the floor, the medians of its two phases too.
med() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$res.sum"
for t in floor linear ties numpy-linear numpy-ties; do
	grep -q "^$t " "$res" || continue
	awk -v t=$t -v m="$(awk -v t=$t '$1 == t { print $2 }' "$res" | med)" '
		$1 == t { n++; if (n == 1 || $2 < b) b = $2; if (n == 1 || $2 > w) w = $2; if ($3 > r) r = $3 }
		END { print t, n, m, b, w, r }' "$res" >>"$res.sum"
done
floor_write=$(awk '$1 == "floor" { print $4 }' "$res" | med)
floor_sync=$(awk '$1 == "floor" { print $5 }' "$res" | med)
awk -v in_bytes="$in_bytes" -v fw="$floor_write" -v fs="$floor_sync" '
	{ n[$1] = $2; med[$1] = $3; best[$1] = $4; worst[$1] = $5; r[$1] = $6 }
	END {
		printf "%-14s %5s %9s %9s %9s %7s %12s %10s\n", "tool", "runs", "median s", "best s", "worst s", "spread", "GB/s (med)", "peak RSS"
		k = split("floor linear ties numpy-linear numpy-ties", order, " ")
		for (i = 1; i <= k; i++) {
			t = order[i]
			if (!(t in med)) continue
			printf "%-14s %5d %9.3f %9.3f %9.3f %6.0f%% %12.2f %6.0f MiB\n", t, n[t], med[t], best[t], worst[t],
				100 * (worst[t] - best[t]) / med[t], in_bytes / med[t] / 1e9, r[t] / 1048576
		}
		if (fw != "")
			printf "(floor, medians of its phases: %.3f s reading and writing, %.3f s fsync, rename and directory fsync)\n", fw, fs
		print ""
		v = med["floor"] / med["linear"]
		printf "linear vs floor:  %5.2fx throughput  (target >= 0.6x)  %s   [best runs: %.2fx]\n", v, (v >= 0.6 ? "met" : "MISSED"), best["floor"] / best["linear"]
		if ("numpy-linear" in med) {
			v = med["numpy-linear"] / med["linear"]
			printf "linear vs NumPy:  %5.2fx throughput  (target >= 5x)    %s\n", v, (v >= 5 ? "met" : "MISSED")
		}
		v = med["ties"] / med["linear"]
		printf "ties vs linear:   %5.2fx the time    (target <= 3x)    %s   [best runs: %.2fx]\n", v, (v <= 3 ? "met" : "MISSED"), best["ties"] / best["linear"]
		if ("numpy-ties" in med) {
			v = med["numpy-ties"] / med["ties"]
			printf "ties vs NumPy:    %5.2fx throughput\n", v
		}
	}' "$res.sum"
[ -z "$same" ] || echo "$same"
