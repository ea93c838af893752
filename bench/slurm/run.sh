#!/bin/sh
# bench/slurm/run.sh — anneal's Slurm runner against Snakemake's Slurm
# executor and against plain sbatch, on the same real single-node cluster
# (tests/slurm/start.sh), in one run, reported as ratios. Not a test.
#
# Workload: BENCH_SLURM_STEPS (100) independent trivial steps, all queued at
# once. Every step, in every tool, runs the same one line of sh:
#     echo "$(date +%s.%N) $SLURM_JOB_ID" > MARKS/sI
# (it records when the step's command really began). The rows:
#   sbatch          the floor: a shell loop of `sbatch --wrap` for every
#                   step, then nothing but reading slurmctld's log for the
#                   completions (no Slurm command after the submissions)
#   anneal          anneal run RECIPE --runner slurm --no-cache
#   snakemake       /usr/bin/snakemake --slurm -j N with
#                   --max-status-checks-per-second 1 (see below)
#   snakemake-dflt  the same with Snakemake's own default status rate,
#                   stopped (SIGINT) after BENCH_SLURM_SMK_DEFAULT_S (45) s:
#                   only its command load and how many jobs it noticed
#
# Every Slurm command a tool runs (sbatch squeue scontrol sacct scancel
# sinfo srun sacctmgr) goes through a wrapper first in PATH (wrap.bash) that logs its
# start and end (bash $EPOCHREALTIME), exit status, job id (sbatch), whether
# it ran inside a job (SLURM_JOB_ID set: Snakemake's in-job srun) and its
# arguments, then runs the real /usr/bin command. slurmctld's log gives each
# job's submit, start (sched: Allocate / backfill Started) and completion to
# the millisecond. Per job:
#   submit->start   the tool's sbatch call began -> Slurm started the job
#                   (on 2 CPUs most of it is queueing behind other steps:
#                   compare with the sbatch row, which queues the same way)
#   start->cmd      Slurm started the job -> the step's command began
#                   (batch script; for Snakemake two Python start-ups + srun)
#   end->noticed    the job completed -> the tool's last status command
#                   naming it began (when the tool could know it ended)
#   sbatch call     how long the tool's sbatch call took
# Per tool: wall (the tool's process, start to exit; for the sbatch row,
# first submit to last completion), overhead per job = (wall - the sbatch
# row's wall) / N, Slurm commands per minute of wall (outside jobs), and
# the status commands (squeue, scontrol, sacct) per poll. A poll is, for
# anneal, one squeue and the scontrol / sacct -c that follow it before the
# next squeue (runners/slurm.c: one squeue per poll interval for all jobs,
# one scontrol per ended job); for Snakemake, one pass over its active jobs
# (sacct, then scontrol when sacct fails, per job: a pass ends when a job is
# asked about again). Also the most status commands begun in any 1 s.
# Target: at most one status command per poll interval, whatever the number
# of jobs.
#
# Snakemake 7.21 (Debian) facts that shape its rows, from its source
# (executors/slurm/slurm_submit.py, scheduler.py):
#   - every status check runs `sacct -P -n --format=JobIdRaw,State -j ID`,
#     which fails here (no slurmdbd: "accounting storage is disabled"), then
#     falls back to `scontrol show jobid -dd ID`: 2 commands per job per pass;
#   - with --slurm, any --max-status-checks-per-second above 1 (the default
#     is 10) is replaced by 0.03: 3 checks per 100 s, and 33 s of sleep
#     between passes. 100 jobs would take about 100/3*100 s (~55 min) to be
#     noticed, hence the capped snakemake-dflt row and 1/s for the full run;
#   - it guesses an account with `sacct -nu $USER` (fails, harmless) and the
#     partition with `sinfo`; it needs $USER set.
#
# usage: sh bench/slurm/run.sh       (from anywhere; builds bin/anneal; root)
# env:   BENCH_SLURM_STEPS (100)  BENCH_SLURM_RUNDIR (/tmp/anneal-bench-slurm)
#        ANNEAL_SLURM_PORT (7817 when this script starts the cluster: the
#        default cluster of tests/slurm uses 6817/6818, others' tests stop it)
#        BENCH_SLURM_SMK_DEFAULT_S (45; 0 skips snakemake-dflt)
#        BENCH_SKIP="snakemake" (skip both Snakemake rows)  TMPDIR
#        BENCH_SLURM_KEEP=1 (keep the temporary directory: logs, marks)
# The cluster of BENCH_SLURM_RUNDIR is used if it is up, else started here
# and stopped at exit. Prints the tables; everything else goes into a
# temporary directory, removed at exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

N=${BENCH_SLURM_STEPS:-100}
RUNDIR=${BENCH_SLURM_RUNDIR:-/tmp/anneal-bench-slurm}
DFLT_S=${BENCH_SLURM_SMK_DEFAULT_S:-45}
SKIP=${BENCH_SKIP:-}
case $N in ''|*[!0-9]*|0) echo "bench/slurm: BENCH_SLURM_STEPS must be a positive integer, not '$N'" >&2; exit 2;; esac
case $DFLT_S in ''|*[!0-9]*) echo "bench/slurm: BENCH_SLURM_SMK_DEFAULT_S must be an integer, not '$DFLT_S'" >&2; exit 2;; esac
[ "$(id -u)" = 0 ] || { echo "bench/slurm: run as root (the test cluster runs jobs as root)" >&2; exit 2; }
[ -x /usr/bin/python3 ] || { echo "bench/slurm: /usr/bin/python3 is needed for the report" >&2; exit 2; }
[ -x /bin/bash ] || { echo "bench/slurm: bash is needed for the command wrappers" >&2; exit 2; }
for c in make awk timeout date; do
	command -v $c >/dev/null 2>&1 || { echo "bench/slurm: '$c' is needed" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/anneal-bench-slurm.XXXXXX")
started_here=0
cleanup() {
	# Jobs of ours still queued (an interrupted run): cancel them by id.
	if [ -n "${SLURM_CONF:-}" ]; then
		ids=$(cat "$tmp"/*/cmds 2>/dev/null | awk -F'\t' '$3 == "sbatch" && $4 == "" && $5 == 0 && match($6, /[0-9]+/) { print substr($6, RSTART, RLENGTH) }' | tr '\n' ' ')
		# shellcheck disable=SC2086
		[ -z "$ids" ] || /usr/bin/scancel $ids >/dev/null 2>&1 || true
	fi
	if [ $started_here = 1 ]; then
		bash "$root/tests/slurm/stop.sh" "$RUNDIR" >/dev/null 2>&1 || true
	fi
	if [ "${BENCH_SLURM_KEEP:-0}" = 1 ]; then echo "bench/slurm: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- anneal, Snakemake --------------------------------------------------------------
echo "bench/slurm: building bin/anneal" >&2
if ! make -s -C "$root" bin/anneal >"$tmp/make.log" 2>&1; then
	cat "$tmp/make.log" >&2
	echo "bench/slurm: 'make bin/anneal' failed" >&2
	exit 3
fi
ANNEAL=$root/bin/anneal
SMK=/usr/bin/snakemake   # Debian's, under /usr/bin/python3 (the python3 on PATH may be another build)
use_smk=1
case " $SKIP " in *" snakemake "*) use_smk=0;; esac
if [ $use_smk = 1 ] && [ ! -x $SMK ]; then
	if [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then
		echo "bench/slurm: installing Debian's snakemake" >&2
		{ apt-get update -o DPkg::Lock::Timeout=300 &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 snakemake; } \
			>"$tmp/apt.log" 2>&1 || tail -n 5 "$tmp/apt.log" >&2
	fi
	[ -x $SMK ] || { echo "bench/slurm: no $SMK (apt-get install snakemake): Snakemake rows skipped" >&2; use_smk=0; }
fi
if [ $use_smk = 1 ] && ! $SMK --help 2>/dev/null | grep -q -- '--slurm '; then
	echo "bench/slurm: $SMK ($($SMK --version 2>/dev/null)) has no --slurm executor (7.19+): Snakemake rows skipped" >&2
	use_smk=0
fi

# --- the cluster ----------------------------------------------------------------------
# shellcheck disable=SC1091 # written by tests/slurm/start.sh
cluster_up() { [ -f "$RUNDIR/env" ] && (. "$RUNDIR/env" && /usr/bin/scontrol ping 2>/dev/null | grep -q UP); }
if ! cluster_up; then
	echo "bench/slurm: starting a cluster in $RUNDIR (port ${ANNEAL_SLURM_PORT:-7817})" >&2
	ANNEAL_SLURM_PORT=${ANNEAL_SLURM_PORT:-7817} bash "$root/tests/slurm/start.sh" "$RUNDIR" >/dev/null ||
		{ echo "bench/slurm: could not start the cluster" >&2; exit 3; }
	started_here=1
fi
# shellcheck disable=SC1091
. "$RUNDIR/env"
CTLD_LOG=$(sed -n 's/^SlurmctldLogFile=//p' "$SLURM_CONF")
[ -f "$CTLD_LOG" ] || { echo "bench/slurm: no slurmctld log ($CTLD_LOG)" >&2; exit 3; }
ncpu=$(/usr/bin/scontrol show node -o 2>/dev/null | sed -n 's/.* CPUTot=\([0-9]*\).*/\1/p' | head -n 1)
port=$(sed -n 's/^SlurmctldPort=//p' "$SLURM_CONF")
ctld_off=$(wc -c <"$CTLD_LOG")

# Nothing of anyone else's in the queue: the rows would not be comparable.
busy=$(/usr/bin/squeue -h -t PD,R,CG,CF,S 2>/dev/null | wc -l)
if [ "$busy" -gt 0 ]; then
	echo "bench/slurm: $busy job(s) already in $RUNDIR's queue; use an idle cluster" >&2
	exit 3
fi

# --- wrappers ------------------------------------------------------------------------------
# bench/slurm/wrap.bash under each command's name (it runs /usr/bin/NAME).
mkdir -p "$tmp/bin"
cp "$here/wrap.bash" "$tmp/wrap.bash"
chmod 755 "$tmp/wrap.bash"
for c in sbatch squeue scontrol sacct scancel sinfo srun sacctmgr; do
	[ -x "/usr/bin/$c" ] || continue
	ln -s "$tmp/wrap.bash" "$tmp/bin/$c"
done
WPATH=$tmp/bin:$PATH
export USER="${USER:-$(id -un)}"

now() { date +%s.%N; }
# wait_idle: no job of this cluster pending, running or completing (the
# bench's own look, by the real squeue: not counted).
wait_idle() {
	i=0
	while [ "$(/usr/bin/squeue -h -t PD,R,CG,CF 2>/dev/null | wc -l)" -gt 0 ]; do
		i=$((i + 1))
		[ $i -lt 600 ] || { echo "bench/slurm: the queue did not drain" >&2; exit 3; }
		sleep 0.2
	done
}
# job ids a phase's sbatch calls got
phase_ids() { awk -F'\t' '$3 == "sbatch" && $4 == "" && $5 == 0 && match($6, /[0-9]+/) { print substr($6, RSTART, RLENGTH) }' "$1"; }
step_cmd() { # MARKS I
	# shellcheck disable=SC2016 # expanded by the job's shell, not here
	printf 'echo "$(date +%%s.%%N) $SLURM_JOB_ID" > %s/s%s' "$1" "$2"
}
load0=$(awk '{ print $1, $2, $3 }' /proc/loadavg)

# --- sbatch: the floor -------------------------------------------------------------------------
run_floor() {
	d=$tmp/sbatch; mkdir -p "$d/marks"; : >"$d/cmds"
	echo "bench/slurm: sbatch loop, $N jobs" >&2
	t0=$(now)
	i=0
	while [ $i -lt "$N" ]; do
		BENCH_SLURM_LOG=$d/cmds "$tmp/bin/sbatch" --parsable -J "bench.s$i" -o /dev/null \
			--wrap "$(step_cmd "$d/marks" $i)" >/dev/null
		i=$((i + 1))
	done
	phase_ids "$d/cmds" >"$d/ids"
	# Completion from slurmctld's log only: the floor asks Slurm nothing.
	i=0
	while :; do
		done_n=$(tail -c +$((ctld_off + 1)) "$CTLD_LOG" | awk -v f="$d/ids" '
			BEGIN { while ((getline l < f) > 0) want[l] = 1 }
			/_job_complete: JobId=[0-9]+ done/ { s = $0; sub(/.*JobId=/, "", s); sub(/ .*/, "", s); if (s in want) n++ }
			END { print n + 0 }')
		[ "$done_n" -lt "$N" ] || break
		i=$((i + 1))
		[ $i -lt 3000 ] || { echo "bench/slurm: sbatch jobs did not complete" >&2; exit 3; }
		sleep 0.1
	done
	t1=$(now)
	echo "$t0 $t1" >"$d/wall"
}

# --- anneal ------------------------------------------------------------------------------------
run_anneal() {
	d=$tmp/anneal; mkdir -p "$d/marks" "$d/ws"; : >"$d/cmds"
	{
		printf '{"name":"bench-slurm-%s","stages":[' "$N"
		i=0
		while [ $i -lt "$N" ]; do
			[ $i = 0 ] || printf ','
			# JSON string of the sh line: only " needs escaping in it
			printf '{"id":"s%s","kind":"exec","command":["sh","-c","%s"]}' $i \
				"$(step_cmd "$d/marks" $i | sed 's/"/\\"/g')"
			i=$((i + 1))
		done
		printf ']}\n'
	} >"$d/recipe.json"
	"$ANNEAL" validate "$d/recipe.json" >/dev/null
	echo "bench/slurm: anneal run --runner slurm, $N steps" >&2
	t0=$(now)
	if ! PATH=$WPATH BENCH_SLURM_LOG=$d/cmds "$ANNEAL" -C "$d/ws" run "$d/recipe.json" \
		--runner slurm --no-cache >"$d/out" 2>&1; then
		tail -n 20 "$d/out" >&2
		echo "bench/slurm: anneal failed" >&2
		exit 3
	fi
	t1=$(now)
	echo "$t0 $t1" >"$d/wall"
	phase_ids "$d/cmds" >"$d/ids"
}

# --- Snakemake -----------------------------------------------------------------------------------
smk_files() { # DIR
	mkdir -p "$1/marks"
	cat >"$1/Snakefile" <<EOF
N = int(config["n"])
localrules: all
rule all:
    input: expand("o/s{i}", i=range(N))
rule s:
    output: "o/s{i}"
    shell: 'echo "\$(date +%s.%N) \$SLURM_JOB_ID" > $1/marks/s{wildcards.i}; touch {output}'
EOF
	: >"$1/cmds"
}
run_smk() {
	d=$tmp/snakemake; smk_files "$d"
	echo "bench/slurm: snakemake --slurm -j $N --max-status-checks-per-second 1, $N jobs" >&2
	t0=$(now)
	if ! PATH=$WPATH BENCH_SLURM_LOG=$d/cmds $SMK --slurm -j "$N" -s "$d/Snakefile" -d "$d" \
		--config n="$N" --max-status-checks-per-second 1 >"$d/out" 2>&1; then
		tail -n 30 "$d/out" >&2
		echo "bench/slurm: snakemake failed (rows from what it did)" >&2
		echo failed >"$d/failed"
	fi
	t1=$(now)
	echo "$t0 $t1" >"$d/wall"
	phase_ids "$d/cmds" >"$d/ids"
}
run_smk_default() {
	d=$tmp/snakemake-dflt; smk_files "$d"
	echo "bench/slurm: snakemake --slurm -j $N (default status rate), stopped after ${DFLT_S} s" >&2
	t0=$(now)
	# Snakemake 7.21 answers SIGINT with "Terminating processes on user
	# request" and may then hang (measured: still there 60 s later): SIGKILL
	# after 10 s more, and the jobs it left are cancelled below.
	rc=0
	PATH=$WPATH BENCH_SLURM_LOG=$d/cmds timeout -s INT -k 10 "$DFLT_S" $SMK --slurm -j "$N" \
		-s "$d/Snakefile" -d "$d" --config n="$N" >"$d/out" 2>&1 || rc=$?
	t1=$(now)
	echo "$t0 $t1" >"$d/wall"
	echo "$t0 $DFLT_S $rc" >"$d/capped"
	phase_ids "$d/cmds" >"$d/ids"
	# What its SIGINT handling left queued: cancel by id (not counted).
	# shellcheck disable=SC2046
	/usr/bin/scancel $(cat "$d/ids") >/dev/null 2>&1 || true
}

run_floor; wait_idle
run_anneal; wait_idle
if [ $use_smk = 1 ]; then
	run_smk; wait_idle
	if [ "$DFLT_S" -gt 0 ]; then run_smk_default; wait_idle; fi
fi
load1=$(awk '{ print $1, $2, $3 }' /proc/loadavg)
tail -c +$((ctld_off + 1)) "$CTLD_LOG" >"$tmp/ctld.log"

# --- report --------------------------------------------------------------------------------------
echo
echo "slurm bench: $N independent trivial steps queued at once; single-node Slurm $(/usr/bin/sinfo -V 2>/dev/null | awk '{ print $2 }') on $(getconf _NPROCESSORS_ONLN) CPUs (node CPUs=${ncpu:-?}, slurmctld port ${port:-?}, $RUNDIR)"
echo "$("$ANNEAL" --version | head -n 1); $( [ $use_smk = 1 ] && echo "snakemake $($SMK --version)" || echo "snakemake: not run")"
echo "load average (1, 5, 15 min): $load0 at the start, $load1 at the end"
/usr/bin/python3 "$here/report.py" "$tmp" "$N"
