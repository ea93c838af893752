#!/bin/sh
# tests/e2e/test_workdir_deleted.sh — work dirs deleted under a run.
#
#   - The step's attempt dir is rm -rf'd while the step runs: the driver
#     does not crash or hang; the step's ending is recorded (from its wait
#     status) and the run completes.
#   - The whole run dir is rm -rf'd while a step runs: the driver ends
#     (no crash, no hang) and resume completes the run; audit is clean.
#   - anneal is killed, the attempt dir of the still-running step is
#     deleted, then resume: the orphaned step (its lock and status gone
#     with the dir) is stopped, never run twice at once; the step is
#     retried and the run completes.
. "$(dirname "$0")/lib.sh"

anneal init >/dev/null

# ---- the attempt dir, driver alive ------------------------------------------------
recipe att.json att \
	"$(stage a 'block=go-a value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'value=b' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')"
anneal_bg out1 err1 run att.json
drv=$apid
wait_for "a to start" started 1 a
rm -rf .anneal/runs/1/a/a1
release go-a
wait_exit "$drv"
assert_rc "run whose running step lost its attempt dir" 0 "$rc" out1 err1
assert_eq "a starts" 1 "$(starts 1 a)"
assert_eq "b" succeeded "$(sj 1 "s['b']['state']")"
pass "an attempt dir deleted under a running step: its exit is still recorded"

# ---- the run dir, driver alive ---------------------------------------------------------
recipe run.json run \
	"$(stage a 'ckpts=2 block_at=1 block=go-r value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'value=b' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')"
anneal_bg out2 err2 run run.json
drv=$apid
wait_for "a of run 2 to write checkpoint 1" has_line "$LOG" '^ckpt 2 a 1 1$'
rm -rf .anneal/runs/2
release go-r
wait_exit "$drv"
[ "$rc" -lt 128 ] || fail "anneal died of signal $((rc - 128)) after its run dir was deleted"
[ "$rc" = 0 ] || {
	assert_eq "error lines" 1 "$(grep -c '^anneal: ' err2)"
	driver_gone 2
	rc=0
	anneal resume 2 >out2r 2>err2r || rc=$?
	assert_rc "resume after the run dir was deleted" 0 "$rc" out2r err2r
}
assert_eq "run 2" succeeded "$(sj 2 'd["state"]')"
assert_no_concurrent
rc=0
anneal audit --deep >aout 2>aerr || rc=$?
assert_rc "audit --deep" 0 "$rc" aout aerr
pass "a run dir deleted under a running step: no crash, no hang, resume completes it"

# ---- the attempt dir, driver down ---------------------------------------------------------
recipe down.json down \
	"$(stage a 'block=go-d value=d' '"outputs": {"o": "dataset"}')"
anneal_bg out3 err3 run down.json
wait_for "a of run 3 to start" started 3 a
old=$(step_pid 3 a)
kill -9 "$apid"
wait_exit "$apid"
driver_gone 3
proc_alive "$old" || fail "a of run 3 died with its driver"
rm -rf .anneal/runs/3/a/a1
anneal_bg out3r err3r resume 3
drv=$apid
wait_for "a's retry to start" started 3 a 2
proc_gone "$old" || fail "the orphaned copy $old of a still runs beside its retry"
release go-d
wait_exit "$drv"
assert_rc "resume after the attempt dir of a running step was deleted" 0 "$rc" out3r err3r
assert_no_concurrent
assert_eq "a of run 3" succeeded "$(sj 3 "s['a']['state']")"
assert_eq "a's first attempt" lost "$("$PY" -c '
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute(
    "SELECT state FROM attempts WHERE run_id = 3 AND step_id = ? AND n = 1", ("a",)).fetchone()[0])' "$WS/.anneal/state.db")"
assert_grep "the reason says what happened" out3r 'attempt directory was deleted'
pass "an attempt dir deleted while anneal was down: the orphan is stopped, the step retried"
