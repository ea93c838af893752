#!/bin/bash
# bench/slurm/wrap.bash — what bench/slurm/run.sh puts first in PATH under
# the name of each Slurm command (a symlink per name): runs the real
# /usr/bin/NAME with the same arguments and appends one line to
# $BENCH_SLURM_LOG, tab-separated:
#   start end NAME SLURM_JOB_ID(in a job) exit-status sbatch-output args
# (start, end: $EPOCHREALTIME). sbatch's stdout is captured for the job id
# and passed on; every other command's output goes straight through.
t0=$EPOCHREALTIME
name=${0##*/}
real=/usr/bin/$name
out=
if [ "$name" = sbatch ]; then
	out=$("$real" "$@")
	rc=$?
	[ -z "$out" ] || printf '%s\n' "$out"
else
	"$real" "$@"
	rc=$?
fi
t1=$EPOCHREALTIME
a="$*"
a=${a//[$'\t\n']/ }
out=${out//[$'\t\n']/ }
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t0" "$t1" "$name" "${SLURM_JOB_ID:-}" "$rc" "$out" "$a" \
	>>"${BENCH_SLURM_LOG:-/dev/null}"
exit "$rc"
