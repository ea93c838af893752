#!/bin/sh
# tests/e2e/test_cancel.sh — `anneal cancel` from another process stops a
# run and its steps, whether or not the run's driver is alive.
#
# 1. A step blocks; `anneal cancel` → the driving `anneal run` exits 1, the
#    run is recorded cancelled, the step's process group is gone.
# 2. The driver is kill -9'd while a step blocks (the step lives on, its
#    shim in a process group of its own); `anneal cancel` alone stops the
#    orphaned step and records the run cancelled.
. "$(dirname "$0")/lib.sh"

recipe block.json block \
	"$(stage first 'value=1' '"outputs": {"o": "dataset"}')" \
	"$(stage wait 'block=never ckpts=1 block_at=1' '"inputs": {"i": "first.o"}')" \
	"$(stage after 'value=2' '"after": ["wait"]')"

anneal_bg out1 err1 run block.json
wait_for "step 'wait' to start" started 1 wait
wait_for "step 'wait' to write its checkpoint" has_line "$LOG" '^ckpt 1 wait 1 1$'
spid=$(step_pid 1 wait)
proc_alive "$spid" || fail "step 'wait' ($spid) not alive while blocked"
rc=0
anneal cancel 1 >cout1 2>cerr1 || rc=$?
assert_rc "anneal cancel 1" 0 "$rc" cout1 cerr1
wait_exit "$apid"
assert_rc "the cancelled 'anneal run'" 1 "$rc" out1 err1
assert_eq "run state" cancelled "$(sj 1 'd["state"]')"
assert_eq "first" succeeded "$(sj 1 "s['first']['state']")"
assert_eq "wait" cancelled "$(sj 1 "s['wait']['state']")"
case $(sj 1 "s['after']['state']") in
pending | cancelled) ;;
*) fail "after (never started): expected pending or cancelled, saw '$(sj 1 "s['after']['state']")'" ;;
esac
assert_eq "driver_alive" false "$(sj 1 'd["driver_alive"]')"
wait_for "the cancelled step (pid $spid) and its process group to be gone" step_gone 1 wait
assert_eq "after never started" 0 "$(starts 1 after)"
pass "cancel from another process stops a driven run"

# A cancelled run stays cancelled: cancel again has nothing to do.
rc=0
anneal cancel >cout1b 2>cerr1b || rc=$?
[ "$rc" -ne 0 ] || [ "$(sj 1 'd["state"]')" = cancelled ] ||
	fail "second cancel changed run 1"
assert_eq "run 1 after a second cancel" cancelled "$(sj 1 'd["state"]')"

# 2. No driver: kill -9 anneal, then cancel.
anneal_bg out2 err2 run block.json
wait_for "run 2's step 'wait' to block" has_line "$LOG" '^ckpt 2 wait 1 1$'
spid=$(step_pid 2 wait)
kill -9 "$apid"
wait_exit "$apid"
assert_rc "the kill -9'd anneal" 137 "$rc"
proc_alive "$spid" || fail "the step ($spid) died with its driver; it should outlive it"
driver_gone 2
assert_eq "run 2 state after kill -9" running "$(sj 2 'd["state"]')"
rc=0
anneal cancel 2 >cout2 2>cerr2 || rc=$?
assert_rc "anneal cancel of a run without a driver" 0 "$rc" cout2 cerr2
wait_for "the orphaned step (pid $spid) and its process group to be gone" step_gone 2 wait
assert_eq "run 2 state" cancelled "$(sj 2 'd["state"]')"
assert_eq "wait in run 2" cancelled "$(sj 2 "s['wait']['state']")"
# first was cached from run 1, so run 2 never started it.
assert_eq "first starts in run 2" 0 "$(starts 2 first)"
assert_eq "after starts in run 2" 0 "$(starts 2 after)"
pass "cancel stops the orphaned step of a run whose driver was kill -9'd"

assert_no_concurrent

# 3. Cancel while a resume drives a re-attached step.
recipe block3.json block3 "$(stage held 'ckpts=1 block_at=1 block=never')"
anneal_bg out5 err5 run block3.json
wait_for "held to block" has_line "$LOG" '^ckpt 3 held 1 1$'
kill -9 "$apid"
wait_exit "$apid"
driver_gone 3
anneal_bg out6 err6 resume 3
wait_for "the resume to re-attach to held" has_line out6 'attach.* held'
rc=0
anneal cancel 3 >cout3 2>cerr3 || rc=$?
assert_rc "cancel of a run driven by a resume" 0 "$rc" cout3 cerr3
wait_exit "$apid"
assert_rc "the cancelled resume" 1 "$rc" out6 err6
assert_eq "run 3" cancelled "$(sj 3 'd["state"]')"
assert_eq "held" cancelled "$(sj 3 "s['held']['state']")"
wait_for "held and its process group to be gone" step_gone 3 held
assert_eq "held starts" 1 "$(starts 3 held)"
assert_no_concurrent
pass "cancel stops a run driven by a resume that re-attached"
