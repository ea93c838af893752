#!/bin/sh
# tests/e2e/test_timeouts.sh — "timeout" kills a step that runs too long,
# and --grace bounds how long a step may ignore SIGTERM.
#
# A step sleeping 30 s with "timeout": 1 is stopped after about a second:
# attempt state timeout, step failed, exit 1. A step that ignores SIGTERM
# (and so do its children) is SIGKILLed --grace 1s after the SIGTERM: the
# run ends in far less than the default 10 s grace, and nothing of the step
# is left.
. "$(dirname "$0")/lib.sh"

recipe slow.json slow "$(stage slow 'sleep=30 term=default' '"timeout": 1')"
t0=$(date +%s)
rc=0
anneal run slow.json >out1 2>err1 || rc=$?
t1=$(date +%s)
assert_rc "run of a step past its timeout" 1 "$rc" out1 err1
assert_eq "step state" failed "$(sj 1 "s['slow']['state']")"
assert_eq "attempt state" timeout "$(sj 1 "s['slow']['last_attempt']['state']")"
assert_eq "attempts (no retries)" 1 "$(sj 1 "s['slow']['attempts']")"
err=$(sj 1 "s['slow'].get('error') or ''")
case $err in
*timeout* | *"timed out"*) ;;
*) fail "error of a timed-out step: expected to mention the timeout, saw '$err'" ;;
esac
[ $((t1 - t0)) -lt 20 ] || fail "timeout 1 took $((t1 - t0)) s to stop a 30 s sleep"
assert_no_grep "the step never finished" "$LOG" '^end 1 slow'
wait_for "the timed-out step and its process group to be gone" step_gone 1 slow
pass "timeout 1 stops a 30 s step (attempt state timeout)"

# Ignores SIGTERM: killed after --grace 1s (the default grace is 10 s).
recipe stubborn.json stubborn \
	"$(stage stubborn 'sleep=60 term=ignore' '"timeout": 1')"
t0=$(date +%s)
rc=0
anneal run stubborn.json --grace 1s >out2 2>err2 || rc=$?
t1=$(date +%s)
assert_rc "run of a step ignoring SIGTERM past its timeout" 1 "$rc" out2 err2
assert_eq "step state" failed "$(sj 2 "s['stubborn']['state']")"
assert_eq "attempt state" timeout "$(sj 2 "s['stubborn']['last_attempt']['state']")"
[ $((t1 - t0)) -lt 8 ] ||
	fail "timeout 1 + --grace 1s took $((t1 - t0)) s: SIGKILL did not follow the grace"
pid=$(step_pid 2 stubborn)
proc_gone "$pid" || fail "the step ($pid) ignoring SIGTERM is still alive after the run ended"
wait_for "the SIGKILLed step's process group to be gone" step_gone 2 stubborn
pass "a step ignoring SIGTERM is SIGKILLed after --grace 1s"

# With a retry, a timed-out attempt is retried (and times out again).
recipe again.json again \
	"$(stage again 'sleep=30 term=default' '"timeout": 1, "retries": {"max": 1, "backoff": "0s"}')"
rc=0
anneal run again.json >out3 2>err3 || rc=$?
assert_rc "run of a timing-out step with 1 retry" 1 "$rc" out3 err3
assert_eq "attempts" 2 "$(sj 3 "s['again']['attempts']")"
assert_eq "starts" 2 "$(starts 3 again)"
pass "a timed-out attempt counts as a failed attempt and is retried"

# A step that honours the contract on SIGTERM (saves, exits 75) still timed
# out: it fails, and is not requeued as an exit 75 would be.
recipe polite.json polite "$(stage polite 'ckpts=1 sleep=30' '"timeout": 1')"
rc=0
anneal run polite.json >out4 2>err4 || rc=$?
assert_rc "run of a step that exits 75 when its timeout stops it" 1 "$rc" out4 err4
assert_eq "polite state" failed "$(sj 4 "s['polite']['state']")"
assert_eq "polite attempts" 1 "$(sj 4 "s['polite']['attempts']")"
assert_eq "polite attempt state" timeout "$(sj 4 "s['polite']['last_attempt']['state']")"
assert_grep "polite saved on SIGTERM" "$LOG" '^end 4 polite 1 75$'
pass "a timed-out step that exits 75 is not requeued"
