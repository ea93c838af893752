#!/bin/sh
# tests/slurm/test_runner.sh — anneal's Slurm runner against the real
# single-node cluster of tests/slurm/start.sh (started here if it is not
# running, and stopped again only then). Steps are tests/e2e/step.sh, the
# fake engine that records every copy it starts (tests/e2e/lib.sh).
#
# 1. A DAG with parallel jobs asking --gres=npu:4: two of them run at once
#    (a barrier only they can pass together), Slurm counted their NPUs.
# 2. anneal kill -9'd while jobs run: `resume` re-attaches by job id, each
#    step runs once.
# 3. scancel of a running job: retried from its checkpoint.
# 4. A step hitting its time limit gets SIGTERM before it (--signal),
#    saves a checkpoint and exits 75: requeued, resumed, finished.
# 5. The small Pangu recipe on Slurm: the final model's digest equals the
#    local run's.
. "$(dirname "$0")/../e2e/lib.sh"

SLURM_DIR=$E2E_DIR
E2E_DIR=$(cd "$SLURM_DIR/../e2e" && pwd)
STEP=$E2E_DIR/step.sh
RUNDIR=${ANNEAL_SLURM_RUNDIR:-/tmp/anneal-slurm}
started_here=0
if ! [ -f "$RUNDIR/env" ] || ! (. "$RUNDIR/env" && scontrol ping 2>/dev/null | grep -q UP); then
	bash "$SLURM_DIR/start.sh" "$RUNDIR" >/dev/null || fail "could not start the Slurm cluster"
	started_here=1
fi
. "$RUNDIR/env"
if [ "$started_here" = 1 ]; then
	trap 'bash "$SLURM_DIR/stop.sh" "$RUNDIR" >/dev/null 2>&1; e2e_cleanup' EXIT
fi
E2E_TIMEOUT=${E2E_TIMEOUT_SLURM:-180}

# handle_of RUN STEP: the Slurm job id of STEP's latest attempt.
jobid_of() {
	sj "$1" "s['$2']['handle'] or ''" | sed 's/^slurm://'
}

# ---- 0. no Slurm: a clear error, nothing recorded ---------------------------------------
recipe none.json none "$(stage a 'value=a')"
rc=0
PATH=/nonexistent "$ANNEAL_BIN" -C "$WS/none" run none.json --runner slurm </dev/null >none.out 2>none.err || rc=$?
assert_rc "run without Slurm's commands" 3 "$rc" none.out none.err
assert_grep "no Slurm: the command is named" none.err 'scontrol: not found in PATH'
[ ! -e "$WS/none/.anneal/state.db" ] || [ -z "$(anneal -C "$WS/none" status --json 2>/dev/null)" ] ||
	fail "a run was recorded although Slurm could not be reached"
pass "no Slurm: exit 3 naming the command, no run recorded"

# ---- 1. parallel jobs with NPUs ----------------------------------------------------
recipe dag.json dag \
	"$(stage a 'value=a' '"outputs": {"o": "dataset"}, "resources": {"npus": 4}')" \
	"$(stage b 'barrier=bc:2 value=b' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}, "resources": {"npus": 4}')" \
	"$(stage c 'barrier=bc:2 value=c' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}, "resources": {"npus": 4}')" \
	"$(stage d 'value=d' '"inputs": {"b": "b.o", "c": "c.o"}')"
rc=0
anneal run dag.json --runner slurm >dag.out 2>dag.err || rc=$?
assert_rc "DAG on Slurm" 0 "$rc" dag.out dag.err
for s in a b c d; do
	assert_eq "DAG: $s starts" 1 "$(starts 1 $s)"
	assert_eq "DAG: $s succeeded" succeeded "$(sj 1 "s['$s']['state']")"
done
assert_no_concurrent
job=$(jobid_of 1 b)
scontrol show job -o "$job" >job_b.txt 2>&1 || fail "scontrol does not know job $job"
assert_grep "DAG: b asked for 4 NPUs" job_b.txt 'gres/npu=4\|gres:npu:4\|gres:npu=4'
assert_grep "DAG: job name" job_b.txt 'JobName=anneal\.1\.b'
pass "DAG on Slurm: b and c ran at once with --gres=npu:4 each"

# ---- 1a. tasks per node: srun starts one copy per task ---------------------------------
cat >tasks.json <<'EOF'
{"name": "tasks", "stages": [{"id": "a", "kind": "exec",
  "command": ["sh", "-c", "echo task $SLURM_PROCID of $SLURM_NTASKS > $ANNEAL_OUTPUT_O/t$SLURM_PROCID"],
  "outputs": {"o": "dataset"}, "resources": {"tasks_per_node": 2}}]}
EOF
rc=0
anneal -C "$WS/tasks" run tasks.json --runner slurm >tasks.out 2>tasks.err || rc=$?
assert_rc "a two-task step" 0 "$rc" tasks.out tasks.err
assert_eq "tasks: both ran" "task 0 of 2
task 1 of 2" "$(cat "$WS"/tasks/.anneal/runs/1/a/out/o/t0 "$WS"/tasks/.anneal/runs/1/a/out/o/t1)"
pass "tasks_per_node 2: srun ran the step's argv once per task"

# ---- 1b. status shows Slurm's state and reason ------------------------------------------
recipe st.json status \
	"$(stage a 'block=go1b' '"resources": {"npus": 6}')" \
	"$(stage b 'value=b' '"resources": {"npus": 6}')"
anneal_bg st.out st.err run st.json --runner slurm
wait_for "a to start on Slurm" started 2 a
slurm_pending() { [ "$(sj 2 "s['b'].get('slurm', '')")" = "PENDING (Resources)" ]; }
wait_for "status to show b PENDING (Resources)" slurm_pending
anneal status 2 >st.txt
assert_grep "status text: b pending on resources" st.txt '^  b .*slurm:[0-9]* PENDING (Resources)'
assert_grep "status text: a running" st.txt '^  a .*slurm:[0-9]* RUNNING'
release go1b
wait_exit "$apid"
assert_rc "run 2" 0 "$rc" st.out st.err
pass "status shows each job's Slurm state and reason"

# ---- 2. anneal kill -9'd while jobs run ------------------------------------------------
recipe k.json kill \
	"$(stage a 'ckpts=2 block_at=1 block=go2' '"outputs": {"o": "checkpoint"}')" \
	"$(stage b 'value=b' '"inputs": {"i": "a.o"}')"
anneal_bg k.out k.err run k.json --runner slurm
wait_for "a to write checkpoint 1 on Slurm" has_line "$LOG" '^ckpt 3 a 1 1$'
kill -9 "$apid"
wait_exit "$apid"
driver_gone 3
anneal_bg k2.out k2.err resume 3
rpid=$apid
wait_for "resume to re-attach to a" has_line k2.out 'attach.* a'
release go2
wait_exit "$rpid"
assert_rc "resume after kill -9" 0 "$rc" k2.out k2.err
assert_eq "kill: a starts" 1 "$(starts 3 a)"
assert_eq "kill: a attempts" 1 "$(sj 3 "s['a']['attempts']")"
assert_eq "kill: b succeeded" succeeded "$(sj 3 "s['b']['state']")"
assert_no_concurrent
pass "anneal kill -9'd while a Slurm job ran: resume re-attached, the step ran once"

# ---- 3. scancel of a running job ----------------------------------------------------------
recipe c.json scancel \
	"$(stage a 'ckpts=3 block_at=1 block=go3' '"outputs": {"o": "checkpoint"}, "retries": 1')"
anneal_bg c.out c.err run c.json --runner slurm
wait_for "a to write checkpoint 1" has_line "$LOG" '^ckpt 4 a 1 1$'
job=$(jobid_of 4 a)
[ -n "$job" ] || fail "no Slurm job id recorded for a"
scancel "$job" || fail "scancel $job"
wait_for "attempt 2 of a, resumed" has_line "$LOG" '^start 4 a 2 .*resume=[0-9]'
release go3
wait_exit "$apid"
assert_rc "run with a scancel'd job" 0 "$rc" c.out c.err
assert_eq "scancel: attempts" 2 "$(sj 4 "s['a']['attempts']")"
assert_eq "scancel: state" succeeded "$(sj 4 "s['a']['state']")"
pass "scancel of a running job: retried from its checkpoint"

# ---- 4. the time limit ------------------------------------------------------------------------
# --time=1 (minute) and --signal=B:TERM@50: Slurm checks limits every 30 s,
# so SIGTERM comes 10-50 s after the start; step.sh saves and exits 75.
cat >t.json <<EOF
{"name": "limit", "runner": {"type": "slurm", "signal_grace": "50s"},
 "stages": [$(stage a 'ckpts=2 block_at=1 block=never4' '"outputs": {"o": "checkpoint"}, "timeout": "1m"')]}
EOF
anneal_bg t.out t.err run t.json
wait_for "a to write checkpoint 1" has_line "$LOG" '^ckpt 5 a 1 1$'
E2E_TIMEOUT=120 wait_for "SIGTERM before the time limit" has_line "$LOG" '^term 5 a 1'
wait_for "attempt 2 of a" has_line "$LOG" '^start 5 a 2 .*resume='
release never4
wait_exit "$apid"
assert_rc "run through a time limit" 0 "$rc" t.out t.err
assert_eq "limit: state" succeeded "$(sj 5 "s['a']['state']")"
assert_eq "limit: retries spent" 0 "$(sj 5 "s['a']['retries_used']")"
pass "a step at its time limit: SIGTERM, checkpoint, requeue, finish"

# ---- 6. --detach; the detached driver stopped: its job is left running --------------------
recipe dt.json detach \
	"$(stage a 'ckpts=2 block_at=1 block=go6' '"outputs": {"o": "checkpoint"}')" \
	"$(stage b 'value=b' '"inputs": {"i": "a.o"}')"
rc=0
anneal run dt.json --runner slurm --detach >dt.out 2>dt.err || rc=$?
assert_rc "run --detach" 0 "$rc" dt.out dt.err
assert_grep "detach: says so" dt.out 'run 6 detached (driver pid [0-9]*'
dpid=$(sed -n 's/.*driver pid \([0-9]*\).*/\1/p' dt.out)
wait_for "a to write checkpoint 1 (detached)" has_line "$LOG" '^ckpt 6 a 1 1$'
job=$(jobid_of 6 a)
kill -TERM "$dpid"
wait_for "the detached driver to exit" proc_gone "$dpid"
driver_gone 6
assert_grep "detach: the driver left the job" "$WS/.anneal/runs/6/driver.log" '1 job left running'
squeue -h -j "$job" -o '%T' >sq.txt 2>&1
assert_grep "detach: the job still runs" sq.txt 'RUNNING'
release go6
rc=0
anneal resume 6 >dt2.out 2>dt2.err || rc=$?
assert_rc "resume of the detached run" 0 "$rc" dt2.out dt2.err
assert_eq "detach: a ran once" 1 "$(starts 6 a)"
pass "--detach: a stopped driver leaves its Slurm job running; resume finishes the run"

# ---- 7. anneal cancel without a driver: scancel ---------------------------------------
recipe cn.json cancel "$(stage a 'ckpts=2 block_at=1 block=go7' '"outputs": {"o": "checkpoint"}')"
anneal_bg cn.out cn.err run cn.json --runner slurm
wait_for "a to write checkpoint 1" has_line "$LOG" '^ckpt 7 a 1 1$'
job=$(jobid_of 7 a)
kill -9 "$apid"
wait_exit "$apid"
driver_gone 7
rc=0
anneal cancel 7 >cn2.out 2>cn2.err || rc=$?
assert_rc "cancel of a driverless Slurm run" 0 "$rc" cn2.out cn2.err
assert_eq "cancel: run state" cancelled "$(sj 7 'd["state"]')"
job_over() { ! squeue -h -j "$job" -o '%T' 2>/dev/null | grep -q -e RUNNING -e PENDING; }
wait_for "job $job to leave the queue" job_over
pass "anneal cancel of a Slurm run whose driver died: its job is cancelled"

# ---- 5. the Pangu recipe on Slurm and locally ---------------------------------------------
RECIPE=$E2E_DIR/../../recipes/pangu-embedded.json
SETS="--set teacher_steps=500 --set pretrain_steps=300 --set distill_steps=120
      --set distill_prompts=60 --set rl_steps=10 --set dual_steps=200
      --set eval_per_bucket=10 --set ckpt_every=40 --set teacher_hidden=[64]
      --set student_hidden=[32]"
mkdir -p "$WS/pl" "$WS/ps"
rc=0
# shellcheck disable=SC2086
anneal -C "$WS/pl" run "$RECIPE" $SETS >pl.out 2>pl.err || rc=$?
assert_rc "Pangu, local" 0 "$rc" pl.out pl.err
rc=0
# shellcheck disable=SC2086
anneal -C "$WS/ps" run "$RECIPE" $SETS --runner slurm >ps.out 2>ps.err || rc=$?
assert_rc "Pangu, Slurm" 0 "$rc" ps.out ps.err
dig() { anneal -C "$1" show pangu-embedded --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["digest"])'; }
assert_eq "Pangu: the final model on Slurm equals the local one" "$(dig "$WS/pl")" "$(dig "$WS/ps")"
pass "the Pangu recipe on Slurm: same final model as locally"
