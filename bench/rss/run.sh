#!/bin/sh
# bench/rss/run.sh — anneal's own peak memory on a 10,000-step run, beside
# ninja's (the same DAG) and Snakemake's (a tenth of it: it is slow).
#
# The DAGs are bench/dag's no-op ones (every step `touch`es one file): 'chain'
# (each step after the previous) and 'fan' (N independent steps and a join
# after all of them). Peak RSS is GNU time's %M (the process's high-water mark
# of resident memory, kB) of the driver itself; steps are other processes and
# not counted. Also measured: the cached re-run (every step a cache hit) and
# the read-only commands a user runs against a finished run of that size
# (status --json, lineage of the last artifact, audit).
#
# usage: sh bench/rss/run.sh         (from the repo root, or via 'make bench')
# env:   BENCH_RSS_STEPS=N (10000)  BENCH_RSS_SMK_STEPS=M (1000, 0: skip)
#        BENCH_SKIP="snakemake ninja"
# Target (issue 7): anneal's peak RSS on the 10,000-step run <= 50 MB.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
anneal="$root/bin/anneal"
gen_py="$root/bench/dag/gen.py"
[ -x "$anneal" ] || { echo "bench/rss: $anneal not found: run 'make' first" >&2; exit 2; }
N=${BENCH_RSS_STEPS:-10000}
SMK_N=${BENCH_RSS_SMK_STEPS:-1000}
SKIP=${BENCH_SKIP:-}
case $N in ''|*[!0-9]*|0) echo "bench/rss: BENCH_RSS_STEPS must be a positive integer" >&2; exit 2;; esac
case $SMK_N in ''|*[!0-9]*) echo "bench/rss: BENCH_RSS_SMK_STEPS must be an integer" >&2; exit 2;; esac
if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py=python3; fi
if [ ! -x /usr/bin/time ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null 2>&1 || :
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null 2>&1 || :
	fi
	[ -x /usr/bin/time ] || { echo "bench/rss: GNU time (/usr/bin/time) is needed: apt-get install time" >&2; exit 2; }
fi
has() { case " $SKIP " in *" $1 "*) return 1;; esac; command -v "$1" >/dev/null 2>&1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/anneal-bench-rss.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# measure LABEL STEPS CMD...: runs CMD (output discarded), records its peak
# RSS (kB) and wall seconds as one line of $tmp/results.
measure() {
	_label=$1 _steps=$2
	shift 2
	if ! /usr/bin/time -f '%M %e' -o "$tmp/time" "$@" >"$tmp/out" 2>"$tmp/err"; then
		echo "bench/rss: failed: $*" >&2
		tail -n 20 "$tmp/err" >&2
		exit 3
	fi
	read -r _kb _s <"$tmp/time"
	echo "$_label $_steps $_kb $_s" >>"$tmp/results"
	printf '  %-28s %6s steps  %8.1f MB  %7.2f s\n' "$_label" "$_steps" \
		"$(awk -v k="$_kb" 'BEGIN { print k / 1024 }')" "$_s"
}
: >"$tmp/results"

echo "bench/rss: peak RSS of the driver; N=$N no-op steps, -j2; $("$anneal" --version | head -n 1)"
for shape in chain fan; do
	g="$tmp/gen-$shape"
	"$py" "$gen_py" "$shape" "$N" "$g"
	if [ $shape = fan ]; then steps=$((N + 1)); else steps=$N; fi
	ws="$tmp/ws-$shape"
	mkdir -p "$ws"
	measure "anneal run ($shape)" $steps "$anneal" -C "$ws" run -j2 --no-cache "$g/recipe.json"
	measure "anneal run, cached ($shape)" $steps "$anneal" -C "$ws" run -j2 "$g/recipe.json"
	measure "anneal status --json ($shape)" $steps "$anneal" -C "$ws" status --json
	last=$("$anneal" -C "$ws" ls --json | "$py" -c 'import json,sys; a=json.load(sys.stdin); print(a[-1]["name"] if isinstance(a, list) else a["artifacts"][-1]["name"])')
	measure "anneal lineage ($shape)" $steps "$anneal" -C "$ws" lineage "$last"
	measure "anneal audit ($shape)" $steps "$anneal" -C "$ws" audit
	if has ninja; then
		mkdir -p "$tmp/ninja-$shape"
		cp "$g/build.ninja" "$tmp/ninja-$shape/"
		measure "ninja ($shape)" $steps ninja -C "$tmp/ninja-$shape" -j2
	fi
	if has snakemake && [ "$SMK_N" -gt 0 ]; then
		gs="$tmp/gen-smk-$shape"
		"$py" "$gen_py" "$shape" "$SMK_N" "$gs"
		if [ $shape = fan ]; then ssteps=$((SMK_N + 1)); else ssteps=$SMK_N; fi
		mkdir -p "$tmp/smk-$shape"
		cp "$gs/Snakefile" "$tmp/smk-$shape/"
		measure "snakemake ($shape)" $ssteps snakemake -s "$tmp/smk-$shape/Snakefile" \
			-d "$tmp/smk-$shape" --cores 2 -j 2 --quiet
	fi
done

echo
awk -v n="$N" '
	$1 == "anneal" && $2 == "run" && $3 ~ /^\(/ && $5 > worst { worst = $5 }
	END {
		printf "anneal peak RSS on the %d-step run: %.1f MB (target <= 50 MB): %s\n",
			n, worst / 1024, (worst / 1024 <= 50) ? "met" : "NOT met"
	}' "$tmp/results"
awk '
	$1 == "anneal" && $2 == "run" && $3 ~ /^\(/ { sh = $3; gsub(/[()]/, "", sh); a[sh] = $5 }
	$1 == "ninja" { sh = $2; gsub(/[()]/, "", sh); nj[sh] = $4 }
	$1 == "snakemake" { sh = $2; gsub(/[()]/, "", sh); sm[sh] = $4; smn[sh] = $3 }
	END {
		for (sh in a) {
			line = sprintf("%-5s anneal %.1f MB", sh, a[sh] / 1024)
			if (sh in nj) line = line sprintf("  ninja %.1f MB (anneal/ninja %.1fx)", nj[sh] / 1024, a[sh] / nj[sh])
			if (sh in sm) line = line sprintf("  snakemake %.1f MB at %d steps", sm[sh] / 1024, smn[sh])
			print line
		}
	}' "$tmp/results"
