#!/bin/sh
# tests/e2e/test_crash_resume.sh — anneal kill -9'd at any moment, then
# `anneal resume`: the run succeeds, every step succeeds exactly once, and
# no two copies of a step ever run at once (step.sh fails loudly if it
# finds its lock held by a live copy).
#
# 1. kill -9 while a step runs: the step lives on (its shim leads its own
#    process group); resume re-attaches to it instead of starting it
#    again, waits for it, and records its success.
# 2. The same, but the step finishes while no anneal is alive: resume
#    reads its exit status and records it, without running it again.
# 3. The same, but the step's whole job (shim too) is killed while no anneal
#    is alive: resume records the loss and restarts it from its latest
#    checkpoint.
# 4. ANNEAL_FAULT at each point (run-created, attempt-begun, submitted,
#    handle-recorded, job-ended, attempt-ended, cached; some at their 2nd or
#    3rd hit) on a 4-step diamond: anneal dies (137), resume finishes.
# 5. Faults around a failed attempt that is retried and an exit 75 that is
#    requeued: each step still ends with exactly its expected copies.
. "$(dirname "$0")/lib.sh"

# chain FILE GO: a -> b -> c; b writes checkpoint 1 then waits for e2e/GO,
# then writes 2 and 3.
chain() {
	recipe "$1" "chain-$2" \
		"$(stage a 'value=a' '"outputs": {"o": "dataset"}')" \
		"$(stage b "ckpts=3 block_at=1 block=$2" '"inputs": {"i": "a.o"}, "outputs": {"o": "checkpoint"}')" \
		"$(stage c 'value=c' '"inputs": {"i": "b.o"}')"
}

# all_once RUN STEPS...: each step succeeded, started once, succeeded once.
all_once() {
	_run=$1
	shift
	assert_eq "run $_run state" succeeded "$(sj "$_run" 'd["state"]')"
	for _s in "$@"; do
		assert_eq "run $_run: state of $_s" succeeded "$(sj "$_run" "s['$_s']['state']")"
		assert_eq "run $_run: starts of $_s" 1 "$(starts "$_run" "$_s")"
		assert_eq "run $_run: successes of $_s" 1 "$(successes "$_run" "$_s")"
	done
	assert_no_concurrent
}

# ---- 1. re-attach -------------------------------------------------------------
chain c1.json go1
anneal_bg out1 err1 run c1.json
wait_for "b to write checkpoint 1" has_line "$LOG" '^ckpt 1 b 1 1$'
bpid=$(step_pid 1 b)
kill -9 "$apid"
wait_exit "$apid"
assert_rc "kill -9'd anneal" 137 "$rc"
proc_alive "$bpid" || fail "step b ($bpid) died with anneal"
driver_gone 1
anneal_bg out2 err2 resume
rpid=$apid
wait_for "resume to re-attach to b" has_line out2 'attach.* b'
wait_for "resume to be the live driver" driver_alive_is 1 true
assert_eq "b starts while re-attached" 1 "$(starts 1 b)"
release go1
wait_exit "$rpid"
assert_rc "resume that re-attached" 0 "$rc" out2 err2
all_once 1 a b c
pass "kill -9 while a step runs: resume re-attaches, the step runs once"

# ---- 2. the step ends while no anneal is alive ---------------------------------
# (--no-cache, on resume too: the options of a run are not kept.)
chain c2.json go2
anneal_bg out3 err3 run c2.json --no-cache
wait_for "run 2's b to write checkpoint 1" has_line "$LOG" '^ckpt 2 b 1 1$'
bpid=$(step_pid 2 b)
kill -9 "$apid"
wait_exit "$apid"
driver_gone 2
release go2
wait_for "run 2's b to end on its own" has_line "$LOG" '^end 2 b 1 0$'
wait_for "b (pid $bpid) and its process group to be gone" step_gone 2 b
rc=0
anneal resume 2 --no-cache >out4 2>err4 || rc=$?
assert_rc "resume after b ended unobserved" 0 "$rc" out4 err4
assert_eq "b attempts" 1 "$(sj 2 "s['b']['attempts']")"
all_once 2 a b c
pass "a step that ended while anneal was dead is recorded, not rerun"

# ---- 3. the job vanishes while no anneal is alive ---------------------------------
# Its whole process group (shim included) is kill -9'd, as when the machine
# goes down: no exit status is left. resume records the loss and restarts
# b from its latest checkpoint (a lost job is requeued, like exit 75).
chain c3.json go3
anneal_bg out5 err5 run c3.json --no-cache
wait_for "run 3's b to write checkpoint 1" has_line "$LOG" '^ckpt 3 b 1 1$'
bpid=$(step_pid 3 b)
handle=$(sj 3 "s['b']['handle']")
case $handle in
pid:[0-9]*) shim=${handle#pid:} ;;
*) fail "handle of running step b: expected pid:N, saw '$handle'" ;;
esac
kill -9 "$apid"
wait_exit "$apid"
driver_gone 3
kill -9 "-$shim"
wait_for "b's job (process group $shim) to die" pgroup_gone "$shim"
proc_gone "$bpid" || fail "step b ($bpid) survived the kill of its group"
release go3
rc=0
anneal resume 3 --no-cache >out6 2>err6 || rc=$?
assert_rc "resume after b's job vanished unobserved" 0 "$rc" out6 err6
assert_eq "run 3" succeeded "$(sj 3 'd["state"]')"
assert_eq "b starts (lost once, restarted once)" 2 "$(starts 3 b)"
assert_grep "b restarted from checkpoint 1" "$LOG" '^start 3 b 2 pid=[0-9]* resume=1$'
for s in a c; do
	assert_eq "run 3: starts of $s" 1 "$(starts 3 "$s")"
done
assert_eq "run 3: successes of b" 1 "$(successes 3 b)"
assert_no_concurrent
pass "a job lost while anneal was dead restarts from its checkpoint"

# ---- 4. fault points ------------------------------------------------------------
#   a -> b, a -> c, (b, c) -> d; each step holds a moment and checkpoints.
recipe diamond.json diamond \
	"$(stage a 'ckpts=1 hold=0.2 value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'ckpts=1 hold=0.2 value=b' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')" \
	"$(stage c 'ckpts=1 hold=0.2 value=c' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')" \
	"$(stage d 'ckpts=1 hold=0.2 value=d' '"inputs": {"x": "b.o", "y": "c.o"}')"
run=3
for point in run-created attempt-begun submitted handle-recorded job-ended \
	attempt-ended attempt-begun:3 submitted:2 handle-recorded:4 job-ended:2 \
	attempt-ended:3; do
	run=$((run + 1))
	rc=0
	env ANNEAL_FAULT="$point" "$ANNEAL_BIN" run diamond.json --no-cache \
		</dev/null >"f$run.out" 2>"f$run.err" || rc=$?
	assert_rc "run $run with ANNEAL_FAULT=$point" 137 "$rc" "f$run.out" "f$run.err"
	driver_gone $run
	assert_eq "run $run after the fault" running "$(sj $run 'd["state"]')"
	rc=0
	anneal resume --no-cache >"r$run.out" 2>"r$run.err" || rc=$?
	assert_rc "resume after ANNEAL_FAULT=$point" 0 "$rc" "r$run.out" "r$run.err"
	all_once $run a b c d
	pass "ANNEAL_FAULT=$point: resume finishes, every step ran once"
done

# cached: run once more with the cache on; anneal dies when reusing.
run=$((run + 1))
rc=0
env ANNEAL_FAULT=cached:2 "$ANNEAL_BIN" run diamond.json </dev/null >"f$run.out" 2>"f$run.err" || rc=$?
assert_rc "run $run with ANNEAL_FAULT=cached:2" 137 "$rc" "f$run.out" "f$run.err"
driver_gone $run
rc=0
anneal resume >"r$run.out" 2>"r$run.err" || rc=$?
assert_rc "resume after ANNEAL_FAULT=cached:2" 0 "$rc" "r$run.out" "r$run.err"
assert_eq "run $run" succeeded "$(sj $run 'd["state"]')"
for s in a b c d; do
	assert_eq "run $run: $s" cached "$(sj $run "s['$s']['state']")"
	assert_eq "run $run: starts of $s" 0 "$(starts $run "$s")"
done
pass "ANNEAL_FAULT=cached:2: resume finishes, nothing runs"

# ---- 5. faults around retries and requeues -----------------------------------------
# flaky fails its first attempt (1 retry); pre exits 75 after checkpoint 1
# on its first attempt. Whatever the fault, each ends up started twice and
# succeeded once, and pre's second copy resumes from checkpoint 1.
recipe retry.json retry \
	"$(stage flaky 'fail_attempts=1 hold=0.1' '"retries": {"max": 1, "backoff": "0s"}')" \
	"$(stage pre 'ckpts=2 exit75=1:1 hold=0.1' '"retries": 0')" \
	"$(stage last 'value=l' '"after": ["flaky", "pre"]')"
for point in job-ended attempt-ended job-ended:2 attempt-ended:2 attempt-begun:3 \
	submitted:3 handle-recorded:3; do
	run=$((run + 1))
	rc=0
	env ANNEAL_FAULT="$point" "$ANNEAL_BIN" run retry.json --no-cache \
		</dev/null >"f$run.out" 2>"f$run.err" || rc=$?
	assert_rc "run $run (retry.json) with ANNEAL_FAULT=$point" 137 "$rc" "f$run.out" "f$run.err"
	driver_gone $run
	rc=0
	anneal resume --no-cache >"r$run.out" 2>"r$run.err" || rc=$?
	assert_rc "resume after ANNEAL_FAULT=$point" 0 "$rc" "r$run.out" "r$run.err"
	assert_eq "run $run" succeeded "$(sj $run 'd["state"]')"
	for s in flaky pre; do
		assert_eq "run $run: starts of $s" 2 "$(starts $run $s)"
		assert_eq "run $run: successes of $s" 1 "$(successes $run $s)"
	done
	assert_grep "run $run: pre resumed from checkpoint 1" "$LOG" "^start $run pre 2 pid=[0-9]* resume=1\$"
	assert_eq "run $run: starts of last" 1 "$(starts $run last)"
	assert_no_concurrent
	pass "ANNEAL_FAULT=$point around a retry and a requeue: resume finishes"
done
