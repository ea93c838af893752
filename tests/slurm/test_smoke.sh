#!/bin/bash
# tests/slurm/test_smoke.sh [RUNDIR] — check a real Slurm cluster behaves as
# anneal's Slurm runner expects. Starts the cluster of RUNDIR (default
# /tmp/anneal-slurm) unless it is running, and then stops it again (only if
# it started it). One "ok" line per check; exits non-zero at the first
# failure. SLOW=1 adds a --time/--signal check (about a minute).
# Run as root.
# shellcheck disable=SC2086 # $JOBS is a list of job ids, split on purpose
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
RUNDIR=$(rundir_of "${1:-}")
T0=$(now_ms)
STARTED=0
JOBS=
WORK=

cleanup() {
	local rc=$?
	# Cancel what we submitted (no-op for finished jobs).
	if [ -n "$JOBS" ] && [ -n "${SLURM_CONF:-}" ]; then scancel $JOBS 2>/dev/null || true; fi
	if [ "$STARTED" = 1 ]; then "$HERE/stop.sh" "$RUNDIR" >&2 || rc=1; fi
	[ -n "$WORK" ] && rm -rf "$WORK"
	if [ $rc = 0 ]; then
		echo "test_smoke: all ok in $(($(now_ms) - T0)) ms"
	else
		echo "test_smoke: FAILED (logs in $RUNDIR/log)"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! cluster_running "$RUNDIR"; then
	"$HERE/start.sh" "$RUNDIR" >/dev/null
	STARTED=1
fi
# shellcheck source=/dev/null
. "$RUNDIR/env"
NODE=$ANNEAL_SLURM_NODE
WORK=$(mktemp -d /tmp/anneal-slurm-smoke.XXXXXX)
cd "$WORK"

CHECK_T=$(now_ms)
ok() {
	echo "ok - $* ($(($(now_ms) - CHECK_T)) ms)"
	CHECK_T=$(now_ms)
}
fail() {
	echo "not ok - $*"
	show_logs "$RUNDIR"
	exit 1
}

# The checks count running/pending jobs: they need the cluster to themselves.
busy=$(squeue -h -o '%i' | tr '\n' ' ')
[ -z "$busy" ] || fail "cluster of $RUNDIR is busy (jobs: $busy); the smoke test needs it idle"

# submit SBATCH_ARGS...: sbatch --parsable, output in WORK; prints the id.
submit() {
	local id
	id=$(sbatch --parsable -o "$WORK/%j.out" "$@") || return 1
	id=${id%%;*} # --parsable prints "id" or "id;cluster"
	JOBS="$JOBS $id"
	printf '%s\n' "$id"
}

# field ID NAME: NAME=value from `scontrol show job -o ID`.
field() {
	scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# state_is ID STATE: the job's JobState is STATE.
state_is() { [ "$(field "$1" JobState)" = "$2" ]; }

# wait_state ID STATE TIMEOUT_S
wait_state() {
	wait_until "$3" state_is "$1" "$2" ||
		fail "job $1: JobState=$(field "$1" JobState) (Reason=$(field "$1" Reason)), not $2 after $3 s"
}

# expect_final ID STATE EXITCODE: scontrol's state/exit code, and the last
# completion record from `sacct -c` (no slurmdbd; notes).
expect_final() {
	local id=$1 st=$2 ec=$3 got sacct_ec=$3
	got=$(field "$id" ExitCode)
	[ "$got" = "$ec" ] || fail "job $id: scontrol ExitCode=$got, want $ec"
	# sacct -c records CANCELLED/TIMEOUT with ExitCode 0:0: it is written
	# before the processes die (notes).
	case $st in CANCELLED | TIMEOUT) sacct_ec=0:0 ;; esac
	# The record is written as the job ends; give it a moment.
	sacct_is() {
		got=$(sacct -c -n -P -j "$id" -o state,exitcode 2>/dev/null | tail -n 1)
		[ "$got" = "$st|$sacct_ec" ]
	}
	wait_until 10 sacct_is || fail "job $id: sacct -c says '$got', want '$st|$sacct_ec'"
}

# 1. A trivial job completes.
J=$(submit --wrap 'echo hello') || fail "sbatch of a trivial job"
wait_state "$J" COMPLETED 30
expect_final "$J" COMPLETED 0:0
grep -qx hello "$WORK/$J.out" || fail "job $J: output file lacks 'hello'"
ok "trivial job $J: COMPLETED 0:0 (sbatch -> scontrol -> sacct -c; first job after start)"

# 2. A failing job reports its exit status.
J=$(submit --wrap 'exit 3') || fail "sbatch of exit 3"
wait_state "$J" FAILED 30
expect_final "$J" FAILED 3:0
ok "exit 3 job $J: FAILED 3:0 (scontrol and sacct -c)"

# 3. npu:8 is counted: two npu:4 jobs run together, a third pends on Resources.
A=$(submit --gres=npu:4 --wrap 'sleep 300') || fail "sbatch npu:4 (A)"
B=$(submit --gres=npu:4 --wrap 'sleep 300') || fail "sbatch npu:4 (B)"
wait_state "$A" RUNNING 30
wait_state "$B" RUNNING 30
C=$(submit --gres=npu:4 --wrap 'sleep 300') || fail "sbatch npu:4 (C)"
pending_on_resources() {
	squeue -h -o '%i %T %r' | grep -qx "$C PENDING Resources"
}
wait_until 15 pending_on_resources || fail "job $C not 'PENDING Resources'; squeue: $(squeue -h -o '%i %T %r' | tr '\n' ';')"
running=$(squeue -h -t RUNNING -o '%i' | sort -n | tr '\n' ' ')
[ "$running" = "$A $B " ] || fail "running jobs: '$running', want '$A $B '"
ok "gres: npu:4 jobs $A and $B RUNNING together, $C 'PENDING Resources'"

# 4. scancel of a running job: CANCELLED; the pending one takes its place.
scancel "$B"
wait_state "$B" CANCELLED 15
expect_final "$B" CANCELLED 0:15
wait_state "$C" RUNNING 15
ok "scancel of running job $B: CANCELLED 0:15; pending $C then RUNNING"

# 5. The pend is about GRES, not CPUs: npu:6 running leaves a core free,
#    yet an npu:4 job pends on Resources.
scancel "$A" "$C"
wait_state "$A" CANCELLED 15
wait_state "$C" CANCELLED 15
cpu_free() { scontrol show node -o "$NODE" | grep -q ' CPUAlloc=0 '; }
wait_until 15 cpu_free || fail "node $NODE still has CPUs allocated"
D=$(submit --gres=npu:6 --wrap 'sleep 300') || fail "sbatch npu:6"
wait_state "$D" RUNNING 30
E=$(submit --gres=npu:4 --wrap 'sleep 300') || fail "sbatch npu:4 (E)"
pending_e() { squeue -h -o '%i %T %r' | grep -qx "$E PENDING Resources"; }
wait_until 15 pending_e || fail "job $E not 'PENDING Resources'"
scontrol show node -o "$NODE" | grep -q ' CPUAlloc=1 ' ||
	fail "expected 1 of 2 CPUs allocated: $(scontrol show node -o "$NODE")"
scancel "$D" "$E"
ok "gres: npu:4 job $E pends on Resources behind npu:6 job $D with a CPU free"

# 6. More npus than the node has: refused at submit.
if out=$(sbatch --parsable -o /dev/null --gres=npu:9 --wrap true 2>&1); then
	JOBS="$JOBS ${out%%;*}"
	fail "--gres=npu:9 was accepted (job $out)"
fi
ok "--gres=npu:9 refused at submit: $(printf '%s' "$out" | head -n 1)"

# 7. A job's orphan (background process that outlives the job) is found
#    and killed by stop.sh — only when this test owns the cluster.
if [ "$STARTED" = 1 ]; then
	J=$(submit --wrap "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo \$! >$WORK/orphan.pid") || fail "sbatch orphan job"
	wait_state "$J" COMPLETED 30
	read -r ORPHAN <"$WORK/orphan.pid"
	alive "$ORPHAN" || fail "job $J: its orphan $ORPHAN did not outlive it (proctrack changed?)"
	ok "job $J left orphan $ORPHAN running (proctrack/linuxproc, notes)"
fi

# 8. Optional (SLOW=1): --time=1 with --signal=B:TERM@30: the batch shell
#    gets TERM before the limit (limits are checked every 30 s, notes).
if [ "${SLOW:-0}" = 1 ]; then
	J=$(submit --time=1 --signal=B:TERM@30 --wrap "trap 'echo got TERM; exit 0' TERM; sleep 200 & wait") ||
		fail "sbatch --time=1"
	wait_state "$J" COMPLETED 100
	grep -qx 'got TERM' "$WORK/$J.out" || fail "job $J: no TERM seen"
	ok "--time=1 --signal=B:TERM@30 job $J: TERM delivered, then COMPLETED"
	J=$(submit --time=1 --wrap 'sleep 200') || fail "sbatch --time=1"
	wait_state "$J" TIMEOUT 130
	expect_final "$J" TIMEOUT 0:15
	ok "--time=1 job $J: TIMEOUT 0:15"
fi

# Stop (only our own cluster), then the orphan must be gone.
if [ "$STARTED" = 1 ]; then
	STARTED=0
	"$HERE/stop.sh" "$RUNDIR" >&2 || fail "stop.sh failed"
	if [ -n "${ORPHAN:-}" ]; then
		alive "$ORPHAN" && fail "orphan $ORPHAN survived stop.sh"
	fi
	any_running "$RUNDIR" && fail "a daemon survived stop.sh"
	ok "stop.sh stopped the daemons and the orphan"
fi
