#!/bin/sh
# bench/dag/run.sh — per-step overhead of anneal against ninja and Snakemake,
# measured in one run, reported as ratios.
#
# Two DAG shapes of no-op steps (every step, in every tool, runs `touch` of one
# small file): 'chain' (step i after step i-1, N steps) and 'fan' (N independent
# steps, then one join step after all of them: N+1 steps). Each tool runs cold,
# in a fresh directory, with 2 jobs at once; best of BENCH_REPS for ninja and
# anneal, BENCH_SNAKEMAKE_REPS for Snakemake (it is slow). Then the no-op
# re-run: anneal again in the same workspace with the cache on (every step
# cached) against ninja's no-op rebuild.
#
# usage: sh bench/dag/run.sh          (from the repo root, or via 'make bench')
# env:   BENCH_STEPS=N (1000)  BENCH_REPS=R (3)  BENCH_SNAKEMAKE_REPS=R (1)
#        BENCH_SKIP="snakemake ninja" (peers not to run)
#        TMPDIR (where the work dirs go; per-step costs depend on its file
#        system: anneal creates ~10 files and directories per step, ninja 1)
#
# Prints a table; writes nothing outside a temporary directory, removed at exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
anneal="$root/bin/anneal"
if [ ! -x "$anneal" ]; then
	echo "bench/dag: $anneal not found: run 'make' first" >&2
	exit 2
fi

N=${BENCH_STEPS:-1000}
REPS=${BENCH_REPS:-3}
SMK_REPS=${BENCH_SNAKEMAKE_REPS:-1}
SKIP=${BENCH_SKIP:-}
JOBS=2
case $N in ''|*[!0-9]*|0) echo "bench/dag: BENCH_STEPS must be a positive integer, not '$N'" >&2; exit 2;; esac
case $REPS in ''|*[!0-9]*|0) echo "bench/dag: BENCH_REPS must be a positive integer, not '$REPS'" >&2; exit 2;; esac
case $SMK_REPS in ''|*[!0-9]*|0) echo "bench/dag: BENCH_SNAKEMAKE_REPS must be a positive integer" >&2; exit 2;; esac

# Debian's Snakemake runs under /usr/bin/python3; the python3 on PATH may be another build.
if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py=python3; fi
command -v "$py" >/dev/null 2>&1 || { echo "bench/dag: python3 is needed to generate the DAGs" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/anneal-bench-dag.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- peers: install on Debian as root, otherwise say how and skip ---------------
apt_updated=0
have_peer() { # have_peer COMMAND PACKAGE -> 0 if usable
	case " $SKIP " in *" $1 "*) echo "bench/dag: skipping $1 (BENCH_SKIP)"; return 1;; esac
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then
		echo "bench/dag: $1 missing; installing Debian package $2" >&2
		if [ $apt_updated = 0 ]; then
			apt-get update -o DPkg::Lock::Timeout=300 >"$tmp/apt.log" 2>&1 || true
			apt_updated=1
		fi
		if DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 "$2" \
			>>"$tmp/apt.log" 2>&1 && command -v "$1" >/dev/null 2>&1; then
			return 0
		fi
		tail -n 5 "$tmp/apt.log" >&2
	fi
	echo "bench/dag: skipping $1: not installed (Debian: apt-get install $2)" >&2
	return 1
}
use_ninja=0; use_smk=0
if have_peer ninja ninja-build; then use_ninja=1; fi
if have_peer snakemake snakemake; then use_smk=1; fi

# --- timing ---------------------------------------------------------------------
now() { date +%s%N; }
# run_timed LOG CMD... : run CMD (stdout to /dev/null, stderr to LOG); sets t to
# its seconds. Runs in this shell (not in $(...)) so that a signal to the script
# waits for the tool to stop before the temporary directory is removed.
run_timed() {
	_log=$1; shift
	_t0=$(now)
	if ! "$@" >/dev/null 2>"$_log"; then
		echo "bench/dag: failed: $*" >&2
		tail -n 20 "$_log" >&2
		exit 3
	fi
	_t1=$(now)
	t=$(awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%.4f\n", (b - a) / 1e9 }')
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }

results="$tmp/results"   # lines: shape tool steps seconds
: >"$results"
record() { echo "$1 $2 $3 $4" >>"$results"; }

# One cold run in a fresh directory DIR; leaves DIR behind for the no-op re-run.
cold_ninja() { # gen dir
	mkdir -p "$2"; cp "$1/build.ninja" "$2/"
	run_timed "$2.log" ninja -C "$2" -j "$JOBS"
}
cold_anneal() {
	mkdir -p "$2"
	run_timed "$2.log" "$anneal" -C "$2" run -j "$JOBS" --no-cache "$1/recipe.json"
}
cold_smk() {
	mkdir -p "$2"; cp "$1/Snakefile" "$2/"
	run_timed "$2.log" snakemake -s "$2/Snakefile" -d "$2" --cores "$JOBS" -j "$JOBS" --quiet
}

fstype=$(stat -f -c %T "$tmp" 2>/dev/null || echo unknown)
echo "bench/dag: N=$N no-op steps (touch), -j$JOBS, cold in a fresh directory;" \
	"best of $REPS (Snakemake: $SMK_REPS)"
echo "bench/dag: work dirs under ${TMPDIR:-/tmp} ($fstype); $("$anneal" --version 2>/dev/null | head -n 1)"

for shape in chain fan; do
	gen="$tmp/gen-$shape"
	"$py" "$here/gen.py" "$shape" "$N" "$gen"
	if [ $shape = fan ]; then steps=$((N + 1)); else steps=$N; fi
	"$anneal" validate "$gen/recipe.json" >/dev/null

	for tool in ninja anneal snakemake; do
		case $tool in
		ninja) [ $use_ninja = 1 ] || continue; reps=$REPS;;
		anneal) reps=$REPS;;
		snakemake) [ $use_smk = 1 ] || continue; reps=$SMK_REPS;;
		esac
		best=
		r=1
		while [ "$r" -le "$reps" ]; do
			d="$tmp/$shape-$tool-$r"
			case $tool in
			ninja) cold_ninja "$gen" "$d";;
			anneal) cold_anneal "$gen" "$d";;
			snakemake) cold_smk "$gen" "$d";;
			esac
			best=$(min "$best" "$t")
			printf '  %-5s %-9s run %d: %.3f s\n' "$shape" "$tool" "$r" "$t"
			r=$((r + 1))
		done
		record "$shape" "$tool" "$steps" "$best"
	done

	# Sanity: every anneal step really ran (one output file each).
	ran=$(find "$tmp/$shape-anneal-1" -type f \( -name "s[0-9]*" -o -name join \) | wc -l | tr -d ' ')
	if [ "$ran" -lt "$steps" ]; then
		echo "bench/dag: anneal produced $ran output files for $steps steps ($shape)" >&2
		exit 3
	fi

	# No-op re-run: same directory, nothing to do (anneal: every step cached).
	best=
	r=1
	while [ "$r" -le "$REPS" ]; do
		run_timed "$tmp/$shape-anneal-noop.log" \
			"$anneal" -C "$tmp/$shape-anneal-1" run -j "$JOBS" "$gen/recipe.json"
		best=$(min "$best" "$t")
		r=$((r + 1))
	done
	record "$shape" anneal-cached "$steps" "$best"
	if [ $use_ninja = 1 ]; then
		best=
		r=1
		while [ "$r" -le "$REPS" ]; do
			run_timed "$tmp/$shape-ninja-noop.log" ninja -C "$tmp/$shape-ninja-1" -j "$JOBS"
			best=$(min "$best" "$t")
			r=$((r + 1))
		done
		record "$shape" ninja-noop "$steps" "$best"
	fi
done

# --- report ---------------------------------------------------------------------
echo
awk -v n="$N" '
	{ sh[NR] = $1; tool[NR] = $2; steps[NR] = $3; secs[NR] = $4
	  key[$1 " " $2] = $4 / $3 }
	END {
		printf "%-6s %-14s %6s %9s %9s  %s\n", "shape", "tool", "steps", "total s", "ms/step", "ratio"
		for (i = 1; i <= NR; i++) {
			if (tool[i] ~ /-(cached|noop)$/) continue
			ms = secs[i] / steps[i] * 1000
			ratio = ""
			a = key[sh[i] " anneal"]
			if (tool[i] == "anneal") {
				if ((sh[i] " ninja") in key)
					ratio = sprintf("anneal/ninja %.1fx", a / key[sh[i] " ninja"])
				if ((sh[i] " snakemake") in key)
					ratio = ratio (ratio == "" ? "" : "  ") \
						sprintf("anneal/snakemake %.2fx", a / key[sh[i] " snakemake"])
			}
			printf "%-6s %-14s %6d %9.3f %9.3f  %s\n", sh[i], tool[i], steps[i], secs[i], ms, ratio
		}
		print ""
		print "no-op re-run in the same directory (anneal: every step cached; ninja: nothing to do):"
		for (i = 1; i <= NR; i++) {
			if (tool[i] !~ /-(cached|noop)$/) continue
			ms = secs[i] / steps[i] * 1000
			printf "%-6s %-14s %6d %9.3f %9.3f\n", sh[i], tool[i], steps[i], secs[i], ms
		}
		print ""
		line = "target: anneal within 2x of ninja'"'"'s per-step overhead"
		verdict = ""
		for (s = 0; s < 2; s++) {
			shp = s == 0 ? "chain" : "fan"
			if (!((shp " ninja") in key) || !((shp " anneal") in key)) continue
			r = key[shp " anneal"] / key[shp " ninja"]
			verdict = verdict sprintf("  %s %.1fx %s", shp, r, r <= 2 ? "met" : "MISSED")
		}
		if (verdict == "") verdict = "  (ninja not run)"
		print line ":" verdict
	}' "$results"
