#!/bin/sh
# tests/e2e/test_step_killed.sh — a step killed mid-way (kill -9 of its
# process while anneal drives the run) is retried from its latest
# checkpoint, within its retry budget.
#
# The step writes checkpoints 1 and 2 and waits; the test kill -9s it. With
# "retries": 1 the second attempt starts with ANNEAL_RESUME_FROM = checkpoint
# 2, writes 3 and 4, and the run succeeds. Without retries, the same kill
# fails the run with exit 1.
. "$(dirname "$0")/lib.sh"

recipe killed.json killed \
	"$(stage work 'ckpts=4 block_at=2 block=go' '"retries": {"max": 1, "backoff": "0s"}, "outputs": {"m": "checkpoint"}')"
anneal_bg out1 err1 run killed.json
wait_for "work to write checkpoint 2" has_line "$LOG" '^ckpt 1 work 1 2$'
spid=$(step_pid 1 work)
kill -9 "$spid"
wait_for "attempt 2 of work to start" started 1 work 2
release go
wait_exit "$apid"
assert_rc "run whose step was kill -9'd once, retries 1" 0 "$rc" out1 err1
assert_eq "run state" succeeded "$(sj 1 'd["state"]')"
assert_eq "work attempts" 2 "$(sj 1 "s['work']['attempts']")"
assert_eq "work retries_used" 1 "$(sj 1 "s['work']['retries_used']")"
assert_grep "attempt 2 resumed from checkpoint 2" "$LOG" '^start 1 work 2 pid=[0-9]* resume=2$'
assert_eq "checkpoints written by attempt 2" "3
4" "$(sed -n 's/^ckpt 1 work 2 \([0-9]*\)$/\1/p' "$LOG")"
assert_grep "retry line names the signal" out1 'retry  *work: .*signal 9'
assert_no_concurrent
pass "a step killed mid-way is retried from its latest checkpoint"

recipe once.json once "$(stage only 'ckpts=2 block_at=1 block=go2' '"retries": 0')"
anneal_bg out2 err2 run once.json
wait_for "only to write checkpoint 1" has_line "$LOG" '^ckpt 2 only 1 1$'
kill -9 "$(step_pid 2 only)"
wait_exit "$apid"
assert_rc "run whose step was kill -9'd, retries 0" 1 "$rc" out2 err2
assert_eq "only" failed "$(sj 2 "s['only']['state']")"
err=$(sj 2 "s['only'].get('error') or ''")
case $err in
*signal*9* | *Killed* | *killed*) ;;
*) fail "error of a step killed by SIGKILL: expected to name the signal, saw '$err'" ;;
esac
pass "without retries, a killed step fails the run"
