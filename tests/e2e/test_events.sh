#!/bin/sh
# tests/e2e/test_events.sh — a step's events file is input anneal must not
# trust: malformed lines (not JSON, truncated, wrong types, unknown events,
# binary, a 70 kB line) are skipped; the step still succeeds and its valid
# metric is recorded.
. "$(dirname "$0")/lib.sh"

recipe ev.json ev \
	"$(stage noisy 'garbage=1 ckpts=2 metric=loss:0.25' '"outputs": {"m": "checkpoint"}')" \
	"$(stage after 'value=a' '"inputs": {"m": "noisy.m"}')"
rc=0
anneal run ev.json >out 2>err || rc=$?
assert_rc "run of a step writing garbage events" 0 "$rc" out err
assert_eq "noisy" succeeded "$(sj 1 "s['noisy']['state']")"
assert_eq "after" succeeded "$(sj 1 "s['after']['state']")"
assert_eq "noisy metric" '{"name": "loss", "value": 0.25}' "$(sj 1 "s['noisy'].get('metric')")"
assert_eq "noisy attempts" 1 "$(sj 1 "s['noisy']['attempts']")"
[ "$(wc -l <.anneal/runs/1/noisy/a1/events.jsonl)" -gt 10 ] ||
	fail "the events file does not hold the garbage: $(head -c 300 .anneal/runs/1/noisy/a1/events.jsonl)"
pass "garbage in ANNEAL_EVENTS is skipped; the valid metric is recorded"

# Garbage with a checkpoint after it: a requeue still resumes from it.
recipe ev2.json ev2 \
	"$(stage pre 'garbage=1 ckpts=3 exit75=1:2' '"retries": 0')"
rc=0
anneal run ev2.json >out2 2>err2 || rc=$?
assert_rc "run of a noisy step that exits 75 once" 0 "$rc" out2 err2
assert_grep "resumed from the checkpoint announced after the garbage" "$LOG" '^start 2 pre 2 pid=[0-9]* resume=2$'
pass "checkpoint events after garbage lines are still honoured"
