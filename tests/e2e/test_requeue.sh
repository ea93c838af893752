#!/bin/sh
# tests/e2e/test_requeue.sh — exit 75 means "interrupted, resumable": the
# step is requeued at once from its latest checkpoint, without spending a
# retry.
#
# The step writes checkpoints 1 and 2 on attempt 1, then exits 75 (as an
# engine does when preempted); with "retries": 0 it must still succeed, on
# attempt 2, resumed from checkpoint 2 (ANNEAL_RESUME_FROM set), and
# retries_used stays 0.
. "$(dirname "$0")/lib.sh"

recipe pre.json pre \
	"$(stage pre 'ckpts=4 exit75=1:2' '"retries": 0, "outputs": {"model": "checkpoint"}')" \
	"$(stage post 'value=p' '"inputs": {"model": "pre.model"}')"
rc=0
anneal run pre.json >out 2>err || rc=$?
assert_rc "run of a step exiting 75 once, retries 0" 0 "$rc" out err
assert_eq "run state" succeeded "$(sj 1 'd["state"]')"
assert_eq "pre state" succeeded "$(sj 1 "s['pre']['state']")"
assert_eq "pre attempts" 2 "$(sj 1 "s['pre']['attempts']")"
assert_eq "pre retries_used" 0 "$(sj 1 "s['pre']['retries_used']")"
assert_eq "post state" succeeded "$(sj 1 "s['post']['state']")"
assert_eq "starts of pre" 2 "$(starts 1 pre)"
assert_grep "attempt 1 started fresh" "$LOG" '^start 1 pre 1 pid=[0-9]* resume=-$'
assert_grep "attempt 2 resumed from checkpoint 2" "$LOG" '^start 1 pre 2 pid=[0-9]* resume=2$'
assert_grep "attempt 1 ended 75" "$LOG" '^end 1 pre 1 75$'
# Checkpoints 1 and 2 came from attempt 1, 3 and 4 from attempt 2: never
# written twice.
assert_eq "checkpoints written" "1 1
1 2
2 3
2 4" "$(sed -n 's/^ckpt 1 pre \([0-9]*\) \([0-9]*\)$/\1 \2/p' "$LOG")"
[ -d .anneal/runs/1/pre/a2 ] || fail "no attempt dir a2 for the requeued attempt"
anneal logs 1 pre --attempt 2 >log2 2>&1 || :
assert_grep "attempt 2's log shows resume=2" log2 '^hello from pre attempt 2 (resume=2)$'
assert_no_concurrent
pass "exit 75 requeues from the latest checkpoint without spending a retry"
