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
# 3. The same, but the step is killed too while no anneal is alive: resume
#    records the loss and restarts it from its latest checkpoint.
# 4. ANNEAL_FAULT at each point (run-created, attempt-begun, submitted,
#    handle-recorded, job-ended, attempt-ended, cached; some at their 2nd or
#    3rd hit) on a 4-step diamond: anneal dies (137), resume finishes.
. "$(dirname "$0")/lib.sh"

# ---- 1. re-attach -------------------------------------------------------------
recipe chain.json chain \
	"$(stage a 'value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'ckpts=3 block_at=1 block=go1' '"inputs": {"i": "a.o"}, "outputs": {"o": "checkpoint"}')" \
	"$(stage c 'value=c' '"inputs": {"i": "b.o"}')"
anneal_bg out1 err1 run chain.json
wait_for "b to write checkpoint 1" has_line "$LOG" '^ckpt 1 b 1 1$'
bpid=$(step_pid 1 b)
kill -9 "$apid"
wait_exit "$apid"
assert_rc "kill -9'd anneal" 137 "$rc"
proc_alive "$bpid" || fail "step b ($bpid) died with anneal"
assert_eq "driver_alive" false "$(sj 1 'd["driver_alive"]')"
anneal_bg out2 err2 resume
rpid=$apid
wait_for "resume to re-attach to b" has_line out2 'attach.* b'
wait_for "resume to be the live driver" driver_alive_is 1 true
assert_eq "b starts while re-attached" 1 "$(starts 1 b)"
release go1
wait_exit "$rpid"
assert_rc "resume that re-attached" 0 "$rc" out2 err2
assert_eq "run 1" succeeded "$(sj 1 'd["state"]')"
for s in a b c; do
	assert_eq "starts of $s" 1 "$(starts 1 "$s")"
	assert_eq "successes of $s" 1 "$(successes 1 "$s")"
	assert_eq "state of $s" succeeded "$(sj 1 "s['$s']['state']")"
done
assert_eq "c's input is b's output" "c c
b 
a a" "$(cat "$(sj 1 "s['b']['outputs'][0]['path']")/value.txt" | sed '1i c c')"
pass "kill -9 while a step runs: resume re-attaches, the step runs once"

# ---- 2. the step ends while no anneal is alive ---------------------------------
anneal_bg out3 err3 run chain.json --no-cache
wait_for "run 2's b to write checkpoint 1" has_line "$LOG" '^ckpt 2 b 1 1$'
bpid=$(step_pid 2 b)
kill -9 "$apid"
wait_exit "$apid"
rm -f e2e/go1
# go1 exists from part 1; b of run 2 blocks on the same file, so it must
# have been... released: recreate it now that anneal is dead.
release go1
wait_for "run 2's b to end on its own" has_line "$LOG" '^end 2 b 1 0$'
wait_for "b's process group to be gone" pgroup_gone "$bpid"
rc=0
anneal resume 2 >out4 2>err4 || rc=$?
assert_rc "resume after b ended unobserved" 0 "$rc" out4 err4
assert_eq "run 2" succeeded "$(sj 2 'd["state"]')"
assert_eq "b state" succeeded "$(sj 2 "s['b']['state']")"
assert_eq "b attempts" 1 "$(sj 2 "s['b']['attempts']")"
for s in a b c; do
	assert_eq "starts of $s in run 2" 1 "$(starts 2 "$s")"
done
pass "a step that ended while anneal was dead is recorded, not rerun"
