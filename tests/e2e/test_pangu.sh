#!/bin/sh
# tests/e2e/test_pangu.sh — recipes/pangu-embedded.json end to end on the
# reference engine, at a small size (the same recipe with smaller params):
#
# 1. An uninterrupted run: every step succeeds; `anneal report` has a
#    report for each of the 10 checkpoints, merges beside their inputs;
#    the final model's lineage shows every role (init, teacher, data,
#    merge-input with both weights, policy, reward).
# 2. The same run again: every step cached.
# 3. anneal kill -9'd while pretrain, distill.2 and dual run, resumed after
#    each: the run completes, no step is started twice, and the final
#    model's digest equals the uninterrupted run's.
# 4. The engine kill -9'd mid-step (after an intra-step checkpoint) in
#    teacher, distill.1 and dual: each is retried from its checkpoint and
#    the final digest is still the same.
. "$(dirname "$0")/lib.sh"

RECIPE=$E2E_DIR/../../recipes/pangu-embedded.json
E2E_TIMEOUT=${PANGU_TIMEOUT:-300}
# Steps are sized so that a kill after a stage's first checkpoint (every
# 100 updates) usually lands while it still runs; the tests do not depend
# on it (section 4 needs one of three to land).
# Under sanitizers (several times slower) the steps are fewer, the windows
# as wide.
if [ "${SAN:-0}" = 1 ]; then
	SETS="--set teacher_steps=500 --set pretrain_steps=300 --set distill_steps=120
	      --set distill_prompts=60 --set rl_steps=10 --set dual_steps=200
	      --set eval_per_bucket=10 --set ckpt_every=40 --set teacher_hidden=[64]
	      --set student_hidden=[32]"
else
	SETS="--set teacher_steps=1500 --set pretrain_steps=1000 --set distill_steps=300
	      --set distill_prompts=120 --set rl_steps=30 --set dual_steps=600
	      --set eval_per_bucket=20 --set ckpt_every=100 --set teacher_hidden=[128]
	      --set student_hidden=[64]"
fi

# inw DIR ARGS...: anneal -C DIR ARGS
inw() {
	_d=$1
	shift
	anneal -C "$_d" "$@"
}

# digest DIR REF: the content digest of artifact REF in workspace DIR.
digest() {
	inw "$1" show "$2" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["digest"])'
}

# ckpt_announced DIR RUN STEP: attempt 1 of STEP announced a checkpoint.
ckpt_announced() {
	grep -q '"checkpoint"' "$1/.anneal/runs/$2/$3/a1/events.jsonl" 2>/dev/null
}

# engine_pid DIR STEP: the pid of the engine process running STEP in DIR.
engine_pid() {
	for p in /proc/[0-9]*; do
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		[ "$cwd" = "$1" ] || continue
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -q 'anneal-engine$' || continue
		tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "ANNEAL_STEP_ID=$2" || continue
		echo "${p#/proc/}"
		return 0
	done
	return 1
}

# digests DIR: "ref digest" of every artifact in workspace DIR, one a line.
digests() {
	inw "$1" ls --json | "$PY" -c '
import json, sys
for a in json.load(sys.stdin):
    print(a["ref"], a["digest"])'
}

# sjd DIR RUN EXPR: sj in workspace DIR.
sjd() {
	(cd "$1" && sj "$2" "$3")
}

# ---- 1. uninterrupted ------------------------------------------------------------
mkdir A
rc=0
# shellcheck disable=SC2086
inw "$WS/A" run "$RECIPE" $SETS -j2 >a.out 2>a.err || rc=$?
assert_rc "uninterrupted run" 0 "$rc" a.out a.err
assert_eq "steps" 21 "$(sjd A 1 'len(d["steps"])')"
assert_eq "every step succeeded" true "$(sjd A 1 'all(x["state"] == "succeeded" for x in d["steps"])')"
FINAL=$(digest "$WS/A" pangu-embedded)
[ -n "$FINAL" ] || fail "no digest for pangu-embedded"

inw "$WS/A" report --json >report.json || fail "report --json failed"
rj() { "$PY" -c 'import json,sys; d=json.load(open("report.json")); c=d["checkpoints"]; v=eval(sys.argv[1]); print(v if isinstance(v,str) else json.dumps(v))' "$1"; }
assert_eq "checkpoints in the report" 10 "$(rj 'len(c)')"
assert_eq "every checkpoint has a report" true "$(rj 'all(x["report"] and x["report"]["modes"]["slow"]["accuracy"] >= 0 for x in c)')"
assert_eq "report rows" "teacher.model@1 pretrain.model@1 distill.1.student@1 distill.1.model@1 distill.2.student@1 distill.2.model@1 distill.3.student@1 distill.3.model@1 rl.model@1 pangu-embedded@1" \
	"$(rj '" ".join(x["checkpoint"] for x in c)')"
assert_eq "merge 2 beside its inputs" '[["distill.2.student@1", 0.7], ["distill.1.model@1", 0.3]]' \
	"$(rj '[[m["checkpoint"], m["weight"]] for m in c[5]["merge_inputs"]]')"
assert_eq "auto mode reported" true "$(rj 'all(0 <= x["report"]["modes"]["auto"]["slow_rate"] <= 1 for x in c)')"
inw "$WS/A" report >report.txt || fail "report failed"
assert_grep "report text: merge line" report.txt '= 0.7 x distill.3.student@1 (slow [0-9.]*) + 0.3 x distill.2.model@1'

inw "$WS/A" lineage pangu-embedded --format json >lineage.json || fail "lineage failed"
for role in init teacher data merge-input policy reward; do
	assert_grep "lineage role $role" lineage.json "\"role\":\"$role\""
done
assert_grep "lineage weight 0.7" lineage.json '"weight":0.7'
assert_grep "lineage weight 0.3" lineage.json '"weight":0.3'
pass "uninterrupted: 21 steps, 10 reports, lineage with every role and weight"

# ---- 2. again: all cached -------------------------------------------------------
rc=0
# shellcheck disable=SC2086
inw "$WS/A" run "$RECIPE" $SETS -j2 >a2.out 2>a2.err || rc=$?
assert_rc "second run" 0 "$rc" a2.out a2.err
assert_eq "every step cached" true "$(sjd A 2 'all(x["state"] == "cached" for x in d["steps"])')"
pass "second run: every step cached"

# ---- 3. anneal kill -9'd three times ------------------------------------------------
mkdir B
cd B
# shellcheck disable=SC2086
anneal_bg b.out b.err run "$RECIPE" $SETS -j2
for s in pretrain distill.2 dual; do
	wait_for "B: a checkpoint of $s" ckpt_announced "$WS/B" 1 "$s"
	kill -9 "$apid" 2>/dev/null || :
	wait_exit "$apid"
	driver_gone 1
	anneal_bg "b.$s.out" "b.$s.err" resume 1
done
wait_exit "$apid"
assert_rc "B: the last resume" 0 "$rc" b.dual.out b.dual.err
assert_eq "B: every step succeeded" true "$(sj 1 'all(x["state"] == "succeeded" for x in d["steps"])')"
assert_eq "B: one attempt per step" true "$(sj 1 'all(x["attempts"] == 1 for x in d["steps"])')"
cd "$WS"
assert_eq "B: final digest equals the uninterrupted run's" "$FINAL" "$(digest "$WS/B" pangu-embedded)"
# Every output, merges included, is the same bytes in another workspace
# (a merge names its inputs relative to the workspace, not by where it is).
assert_eq "B: every artifact's digest equals the uninterrupted run's" \
	"$(digests "$WS/A")" "$(digests "$WS/B")"
pass "anneal kill -9'd during pretrain, distill.2 and dual: resumed, same final model"

# ---- 4. the engine kill -9'd mid-step --------------------------------------------------
mkdir C
cd C
# shellcheck disable=SC2086
anneal_bg c.out c.err run "$RECIPE" $SETS -j2
cpid=$apid
hits=0
for s in teacher distill.1 dual; do
	wait_for "C: a checkpoint of $s" ckpt_announced "$WS/C" 1 "$s"
	if pid=$(engine_pid "$WS/C" "$s") && kill -9 "$pid" 2>/dev/null; then
		hits=$((hits + 1))
		echo "$s" >>killed
	fi
done
wait_exit "$cpid"
assert_rc "C: run with engines killed" 0 "$rc" c.out c.err
[ "$hits" -ge 1 ] || fail "C: no engine was caught running after its checkpoint"
for s in $(cat killed); do
	assert_eq "C: $s retried once" 2 "$(sj 1 "s['$s']['attempts']")"
	assert_grep "C: $s attempt 2 resumed from a checkpoint" \
		"$WS/C/.anneal/runs/1/$s/a2/output.log" 'resum'
done
assert_eq "C: every step succeeded" true "$(sj 1 'all(x["state"] == "succeeded" for x in d["steps"])')"
cd "$WS"
assert_eq "C: final digest equals the uninterrupted run's" "$FINAL" "$(digest "$WS/C" pangu-embedded)"
pass "engine kill -9'd in $hits step(s): retried from checkpoints, same final model"
