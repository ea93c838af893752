#!/bin/sh
# tests/e2e/test_one_driver.sh — one anneal process drives a run at a time.
#
# While `anneal resume N` drives run N (a step blocks), a second `anneal
# resume N` exits 2 with "run N is being driven by another anneal
# process", starts nothing, and changes nothing; so does one while the
# original `anneal run` drives it. The driving process then finishes the
# run with every step run once.
. "$(dirname "$0")/lib.sh"

recipe one.json one \
	"$(stage a 'value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'ckpts=2 block_at=1 block=go' '"inputs": {"i": "a.o"}')"

anneal_bg out1 err1 run one.json
runpid=$apid
wait_for "b to write checkpoint 1" has_line "$LOG" '^ckpt 1 b 1 1$'
rc=0
anneal resume 1 >out2 2>err2 || rc=$?
assert_rc "resume 1 while 'anneal run' drives run 1" 2 "$rc" out2 err2
assert_grep "refusal on stderr" err2 '^anneal: run 1 is being driven by another anneal process'
# No RUN given: run 1 is driven, so there is nothing to resume.
rc=0
anneal resume >out2b 2>err2b || rc=$?
assert_rc "plain resume while run 1 is driven" 2 "$rc" out2b err2b
assert_grep "refusal on stderr" err2b '^anneal: .*\(being driven by another anneal process\|no unfinished run\)'
assert_eq "b starts" 1 "$(starts 1 b)"
pass "resume is refused while 'anneal run' drives the run"

# The driver dies; a resume takes over; a second resume is refused.
kill -9 "$runpid"
wait_exit "$runpid"
driver_gone 1
anneal_bg out3 err3 resume 1
drv=$apid
wait_for "the resume to re-attach to b" has_line out3 'attach.* b'
wait_for "the resume to be run 1's live driver" driver_alive_is 1 true
assert_eq "driver_pid" "$drv" "$(sj 1 'd["driver_pid"]')"
rc=0
anneal resume 1 >out4 2>err4 || rc=$?
assert_rc "second resume 1 while a resume drives run 1" 2 "$rc" out4 err4
assert_grep "refusal on stderr" err4 '^anneal: run 1 is being driven by another anneal process'
proc_alive "$drv" || fail "the driving resume died when a second one was refused"
assert_eq "run 1 still running" running "$(sj 1 'd["state"]')"
assert_eq "b starts" 1 "$(starts 1 b)"
release go
wait_exit "$drv"
assert_rc "the driving resume" 0 "$rc" out3 err3
assert_eq "run 1" succeeded "$(sj 1 'd["state"]')"
assert_eq "a starts" 1 "$(starts 1 a)"
assert_eq "b starts" 1 "$(starts 1 b)"
assert_no_concurrent
pass "a second resume of a driven run exits 2 and changes nothing"

# A refused resume must not touch the run: here it would clear a cancel
# request the driver has not acted on yet. The driver is stopped (SIGSTOP)
# so that the request stays pending; `anneal cancel` records it and waits;
# a refused `anneal resume`; then the driver continues. The run must end
# cancelled (as it does without the refused resume), not interrupted.
cancel_requested() { # RUN: runs.cancel_requested (docs/state.md) is 1
	[ "$("$PY" -c '
import sqlite3, sys
db = sqlite3.connect("file:.anneal/state.db?mode=ro", uri=True, timeout=10)
print(db.execute("SELECT cancel_requested FROM runs WHERE id = ?", (int(sys.argv[1]),)).fetchone()[0])
' "$1")" = 1 ]
}
recipe two.json two "$(stage held 'ckpts=1 block_at=1 block=never')"
anneal_bg out5 err5 run two.json
drv=$apid
wait_for "held to block" has_line "$LOG" '^ckpt 2 held 1 1$'
kill -STOP "$drv"
"$ANNEAL_BIN" cancel 2 </dev/null >cout 2>cerr &
cpid=$!
wait_for "the cancel request of run 2 to be recorded" cancel_requested 2
rc=0
anneal resume 2 >out6 2>err6 || rc=$?
assert_rc "resume 2 while its (stopped) driver holds it" 2 "$rc" out6 err6
cancel_requested 2 || expect_eq "runs.cancel_requested of run 2 after a refused resume" 1 0
kill -CONT "$drv"
wait_exit "$drv"
expect_eq "exit status of the driver of run 2 after cancel" 1 "$rc"
wait_exit "$cpid"
assert_rc "anneal cancel 2" 0 "$rc" cout cerr
expect_eq "run 2 after cancel (a refused resume came in between)" cancelled "$(sj 2 'd["state"]')"
wait_for "held and its process group to be gone" step_gone 2 held
pass "a refused resume leaves a pending cancel alone (checked)"

# A refused resume says only that it is refused: not "resuming run 1".
for f in out2 out2b out4; do
	expect_eq "stdout of a refused resume ($f)" "" "$(cat $f)"
done
pass "refused resume's stdout checked"
