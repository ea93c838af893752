#!/bin/sh
# tests/e2e/test_retries.sh — retry policy, failure, and resume after a fix.
#
# A step failing twice then succeeding with retries {"max":2} takes three
# attempts and succeeds; one whose retries run out fails the run (exit 1),
# leaves its dependents pending and shows its error in status; after the
# cause is fixed, `anneal resume` finishes the run without running again the
# steps that had succeeded.
. "$(dirname "$0")/lib.sh"

# 1. Two failures, then success, within the budget.
recipe flaky.json flaky \
	"$(stage flaky 'fail_attempts=2' '"retries": {"max": 2, "backoff": "0s"}')"
rc=0
anneal run flaky.json >out1 2>err1 || rc=$?
assert_rc "run of a step failing twice with 2 retries" 0 "$rc" out1 err1
assert_eq "state" succeeded "$(sj 1 "s['flaky']['state']")"
assert_eq "attempts" 3 "$(sj 1 "s['flaky']['attempts']")"
assert_eq "retries_used" 2 "$(sj 1 "s['flaky']['retries_used']")"
assert_eq "last attempt" '{"n": 3, "state": "succeeded"}' "$(sj 1 "s['flaky']['last_attempt']")"
assert_eq "starts" 3 "$(starts 1 flaky)"
assert_grep "retry line" out1 '^\[0/1\] retry  *flaky: exit 1; retry 1 of 2'
assert_grep "second retry line" out1 '^\[0/1\] retry  *flaky: exit 1; retry 2 of 2'
for n in 1 2 3; do
	[ -d .anneal/runs/1/flaky/a$n ] || fail "no attempt dir a$n"
done
pass "two failures then success: 3 attempts, succeeded"

# 2. Retries exhausted: prep ok, check fails (1 retry), report pending.
recipe chain.json chain \
	"$(stage prep 'value=p' '"outputs": {"data": "dataset"}')" \
	"$(stage check 'need=fixed' '"inputs": {"data": "prep.data"}, "outputs": {"data": "dataset"}, "retries": {"max": 1, "backoff": "0s"}')" \
	"$(stage report 'value=r' '"inputs": {"data": "check.data"}')"
rc=0
anneal run chain.json >out2 2>err2 || rc=$?
assert_rc "run whose step exhausts its retries" 1 "$rc" out2 err2
assert_eq "run state" failed "$(sj 2 'd["state"]')"
assert_eq "prep" succeeded "$(sj 2 "s['prep']['state']")"
assert_eq "check" failed "$(sj 2 "s['check']['state']")"
assert_eq "check attempts" 2 "$(sj 2 "s['check']['attempts']")"
expect_eq "check retries_used (max 1, one retry made)" 1 "$(sj 2 "s['check']['retries_used']")"
assert_eq "report (downstream of the failure)" pending "$(sj 2 "s['report']['state']")"
assert_eq "report starts" 0 "$(starts 2 report)"
err=$(sj 2 "s['check'].get('error') or ''")
case $err in
*"exit 1"*) ;;
*) fail "status --json error of check: expected to mention 'exit 1', saw '$err'" ;;
esac
assert_grep "stderr names the failed step" err2 "^anneal: .*'check'"
anneal status 2 >st2 2>&1 || :
assert_grep "status text shows the error" st2 'check.*failed.*exit 1'
pass "exhausted retries: exit 1, failed, downstream pending, error shown"

# 3. Fix the cause, resume: check and report run; prep does not.
release fixed
rc=0
anneal resume 2 >out3 2>err3 || rc=$?
assert_rc "resume after the fix" 0 "$rc" out3 err3
assert_eq "run state after resume" succeeded "$(sj 2 'd["state"]')"
for s in prep check report; do
	assert_eq "$s after resume" succeeded "$(sj 2 "s['$s']['state']")"
done
assert_eq "prep starts (succeeded before: never again)" 1 "$(starts 2 prep)"
assert_eq "check starts (2 failed + 1)" 3 "$(starts 2 check)"
assert_eq "report starts" 1 "$(starts 2 report)"
assert_eq "check's output holds prep's" "check 
prep p" "$(cat "$(sj 2 "s['check']['outputs'][0]['path']")/value.txt")"
assert_no_concurrent
pass "resume after the fix finishes without rerunning succeeded steps"

# 4. A failed run resumed again without a fix gets a fresh retry budget.
recipe stuck.json stuck \
	"$(stage stuck 'need=never' '"retries": {"max": 1, "backoff": "0s"}')"
rc=0
anneal run stuck.json >out4 2>err4 || rc=$?
assert_rc "run of stuck" 1 "$rc" out4 err4
rc=0
anneal resume 3 >out5 2>err5 || rc=$?
assert_rc "resume 3 of stuck, still broken" 1 "$rc" out5 err5
assert_eq "stuck starts (2 + a fresh budget of 2)" 4 "$(starts 3 stuck)"
assert_eq "stuck state" failed "$(sj 3 "s['stuck']['state']")"
pass "resume gives failed steps a fresh retry budget"

# 5. Plain `anneal resume` (no RUN) picks the latest run when it failed:
# the top-level help says resume "finish[es] an interrupted or failed run".
rc=0
anneal resume >out6 2>err6 || rc=$?
expect_eq "exit status of plain 'anneal resume' after a failed run (resumes run 3; stderr: $(cat err6))" 1 "$rc"
expect_eq "stuck starts after a plain resume" 6 "$(starts 3 stuck)"
pass "plain resume checked"
