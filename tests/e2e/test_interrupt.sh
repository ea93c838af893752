#!/bin/sh
# tests/e2e/test_interrupt.sh — Ctrl-C (SIGINT) or SIGTERM to anneal stops
# the run cleanly and `anneal resume` continues it from checkpoints.
#
# The step writes checkpoints 1 and 2 and waits; SIGINT to anneal → the
# step gets SIGTERM, saves checkpoint 3 and exits 75; anneal exits 130 and
# records the run interrupted. `anneal resume` restarts the step from
# checkpoint 3 (not from scratch) and the run succeeds; the step that had
# succeeded before the interrupt does not run again.
. "$(dirname "$0")/lib.sh"

recipe ctrlc.json ctrlc \
	"$(stage data 'value=d' '"outputs": {"d": "dataset"}')" \
	"$(stage train 'ckpts=5 block_at=2 block=go' '"inputs": {"d": "data.d"}, "outputs": {"m": "checkpoint"}')" \
	"$(stage eval 'value=e' '"inputs": {"m": "train.m"}')"

anneal_bg out1 err1 run ctrlc.json
wait_for "train to write checkpoint 2" has_line "$LOG" '^ckpt 1 train 1 2$'
spid=$(step_pid 1 train)
kill -INT "$apid"
wait_exit "$apid"
assert_rc "anneal after SIGINT" 130 "$rc" out1 err1
assert_eq "run state" interrupted "$(sj 1 'd["state"]')"
assert_eq "data" succeeded "$(sj 1 "s['data']['state']")"
assert_grep "train got SIGTERM" "$LOG" '^term 1 train 1$'
assert_grep "train saved checkpoint 3 on SIGTERM" "$LOG" '^ckpt 1 train 1 3$'
assert_grep "train exited 75" "$LOG" '^end 1 train 1 75$'
wait_for "train (pid $spid) and its process group to be gone" step_gone 1 train
case $(sj 1 "s['train']['state']") in
pending | running | cancelled | failed)
	# not succeeded, whatever the word: resume must run it again
	;;
*) fail "train after the interrupt: expected not succeeded, saw '$(sj 1 "s['train']['state']")'" ;;
esac
assert_eq "eval starts" 0 "$(starts 1 eval)"
pass "SIGINT: exit 130, run interrupted, step saved and exited 75"

release go
rc=0
anneal resume >out2 2>err2 || rc=$?
assert_rc "resume of the interrupted run" 0 "$rc" out2 err2
assert_eq "run state after resume" succeeded "$(sj 1 'd["state"]')"
assert_eq "data starts (succeeded before the interrupt)" 1 "$(starts 1 data)"
assert_eq "train starts" 2 "$(starts 1 train)"
assert_grep "train restarted from checkpoint 3" "$LOG" '^start 1 train [0-9]* pid=[0-9]* resume=3$'
assert_eq "checkpoints written after the resume" "4
5" "$(sed -n 's/^ckpt 1 train [2-9] \([0-9]*\)$/\1/p' "$LOG")"
assert_eq "eval starts" 1 "$(starts 1 eval)"
assert_eq "eval" succeeded "$(sj 1 "s['eval']['state']")"
assert_no_concurrent
pass "resume restarts the step from its latest checkpoint and finishes"

# SIGTERM to anneal behaves the same.
recipe term.json term "$(stage hold 'ckpts=2 block=go2 block_at=1')"
anneal_bg out3 err3 run term.json
wait_for "hold to write checkpoint 1" has_line "$LOG" '^ckpt 2 hold 1 1$'
kill -TERM "$apid"
wait_exit "$apid"
assert_rc "anneal after SIGTERM" 130 "$rc" out3 err3
assert_eq "run 2 state" interrupted "$(sj 2 'd["state"]')"
assert_grep "hold exited 75" "$LOG" '^end 2 hold 1 75$'
release go2
rc=0
anneal resume 2 >out4 2>err4 || rc=$?
assert_rc "resume 2" 0 "$rc" out4 err4
assert_grep "hold restarted from checkpoint 2" "$LOG" '^start 2 hold [0-9]* pid=[0-9]* resume=2$'
pass "SIGTERM to anneal: exit 130, resumable"

# SIGINT at an arbitrary moment while the step writes checkpoints back to
# back: it saves one more on SIGTERM, and resume continues right after the
# last checkpoint it announced.
recipe busy.json busy "$(stage busy 'ckpts=40 pace=0.02')"
anneal_bg out5 err5 run busy.json
wait_for "busy to write checkpoint 5" has_line "$LOG" '^ckpt 3 busy 1 5$'
kill -INT "$apid"
wait_exit "$apid"
assert_rc "anneal after SIGINT mid-checkpointing" 130 "$rc" out5 err5
assert_grep "busy exited 75" "$LOG" '^end 3 busy 1 75$'
last=$(sed -n 's/^ckpt 3 busy 1 \([0-9]*\)$/\1/p' "$LOG" | tail -n 1)
rc=0
anneal resume 3 >out6 2>err6 || rc=$?
assert_rc "resume 3" 0 "$rc" out6 err6
assert_grep "busy restarted from its last checkpoint ($last)" "$LOG" "^start 3 busy 2 pid=[0-9]* resume=$last\$"
assert_eq "checkpoints of busy, each written once" 40 \
	"$(grep '^ckpt 3 busy ' "$LOG" | awk '{print $5}' | sort -un | wc -l | tr -d ' ')"
assert_eq "checkpoint lines of busy" 40 "$(grep -c '^ckpt 3 busy ' "$LOG")"
assert_no_concurrent
pass "SIGINT mid-checkpointing: resume continues from the last checkpoint"

# SIGINT while the step ignores SIGTERM: SIGKILL after --grace 1s.
recipe deaf.json deaf "$(stage deaf 'block=never term=ignore')"
anneal_bg out7 err7 run deaf.json --grace 1s
wait_for "deaf to start" started 4 deaf
t0=$(date +%s)
kill -INT "$apid"
wait_exit "$apid"
t1=$(date +%s)
assert_rc "anneal after SIGINT, step ignoring SIGTERM" 130 "$rc" out7 err7
[ $((t1 - t0)) -lt 8 ] || fail "SIGINT + --grace 1s took $((t1 - t0)) s to stop a step ignoring SIGTERM"
wait_for "deaf and its process group to be gone" step_gone 4 deaf
assert_eq "run 4" interrupted "$(sj 4 'd["state"]')"
pass "SIGINT: a step ignoring SIGTERM is SIGKILLed after --grace"

# An interrupted run can be cancelled (no driver).
rc=0
anneal cancel 4 >cout 2>cerr || rc=$?
assert_rc "cancel of an interrupted run" 0 "$rc" cout cerr
assert_eq "run 4 after cancel" cancelled "$(sj 4 'd["state"]')"
assert_eq "deaf starts (cancel starts nothing)" 1 "$(starts 4 deaf)"
pass "an interrupted run can be cancelled"
