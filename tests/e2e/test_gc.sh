#!/bin/sh
# tests/e2e/test_gc.sh — anneal gc on real workspaces.
#
# 1. Versions and tags: data@1..3 added by copy, data@2 tagged. --dry-run
#    reports what gc then does, and changes nothing; gc removes data@1's
#    object only, marks it pruned; show and audit still work.
# 2. A run whose step was requeued (exit 75 after checkpoint 2) and
#    resumed: the output descends from checkpoint 2. Plain gc keeps that
#    checkpoint and drops the two that nothing descends from;
#    --prune-intermediate drops it too, and lineage still shows it.
# 3. An interrupted run keeps its checkpoints and inputs through
#    gc --prune-intermediate, and resumes from its checkpoint afterwards.
# 4. gc over and over while a run writes checkpoints: the run succeeds and
#    audit is clean.
# 5. gc killed right after marking rows pruned (fault point gc-marked):
#    audit is clean, the objects are still there, the next gc removes them.
# After each gc, `anneal audit` must be clean.
. "$(dirname "$0")/lib.sh"

# gj FILE EXPR: EXPR on the JSON object in FILE (d), printed.
gj() {
	"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))
' "$1" "$2"
}

# pruned REF: true/false, from anneal show --json.
pruned() {
	anneal show "$1" --json >show.json 2>show.err || fail "show $1: $(cat show.err)"
	gj show.json 'd["pruned"] if "pruned" in d else d["artifact"]["pruned"]'
}

# object_of REF: the path of the object of REF's single file.
object_of() {
	anneal show "$1" --json >show.json 2>show.err || fail "show $1: $(cat show.err)"
	sha=$(gj show.json '(d.get("manifest") or d["artifact"]["manifest"]).split()[0]')
	echo "$WS/.anneal/store/objects/$(echo "$sha" | cut -c1-2)/$(echo "$sha" | cut -c3-)"
}

audit_clean() {
	rc=0
	anneal audit >audit.out 2>&1 || rc=$?
	assert_rc "audit after $1" 0 "$rc" audit.out
}

# gc_json OUT ARGS...: anneal gc --json ARGS, which must exit 0.
gc_json() {
	_o=$1
	shift
	rc=0
	anneal gc --json "$@" >"$_o" 2>gc.err || rc=$?
	assert_rc "gc $*" 0 "$rc" "$_o" gc.err
}

NUMS='"%d %d %d %d" % (d["objects"], d["bytes"], d["artifacts_pruned"], d["objects_kept"])'

# ---- 1. versions and tags ----------------------------------------------------------
echo one >d1
echo two >d2
echo three >d3
for i in 1 2 3; do
	anneal add --copy d$i --name data >/dev/null 2>add.err || fail "add d$i: $(cat add.err)"
done
anneal tag data@2 keep >/dev/null 2>tag.err || fail "tag: $(cat tag.err)"
obj1=$(object_of data@1)
obj2=$(object_of data@2)
[ -f "$obj1" ] || fail "no object for data@1 at $obj1"

gc_json dry.json --dry-run
assert_eq "dry run" true "$(gj dry.json 'd["dry_run"]')"
assert_eq "dry run numbers" "1 4 1 2" "$(gj dry.json "$NUMS")"
[ -f "$obj1" ] || fail "gc --dry-run removed data@1's object"
assert_eq "data@1 after a dry run" false "$(pruned data@1)"
gc_json real.json
assert_eq "gc numbers = dry-run numbers" "$(gj dry.json "$NUMS")" "$(gj real.json "$NUMS")"
assert_eq "bytes freed (copied in: no other link)" 4 "$(gj real.json 'd["bytes_freed"]')"
[ ! -e "$obj1" ] || fail "gc left data@1's object $obj1"
[ -f "$obj2" ] || fail "gc removed the tagged data@2's object"
assert_eq "data@1 pruned" true "$(pruned data@1)"
assert_eq "data@2 (tagged) pruned" false "$(pruned data@2)"
assert_eq "data@3 (latest) pruned" false "$(pruned data@3)"
audit_clean "gc of versions"
gc_json again.json
assert_eq "a second gc" "0 0 0 2" "$(gj again.json "$NUMS")"
rc=0
anneal gc >text.out 2>&1 || rc=$?
assert_rc "gc (text)" 0 "$rc" text.out
assert_grep "gc text" text.out '^removed 0 objects (0 B; 0 B freed on disk), marked 0 artifacts pruned, removed 0 stale checkouts$'
pass "old version removed, tagged and latest kept, dry run agrees, audit clean"

# ---- 2. checkpoints of a finished run -------------------------------------------------
recipe train.json train \
	"$(stage train 'ckpts=3 exit75=1:2 value=t' '"inputs": {"data": "@data"}, "outputs": {"model": {"type": "checkpoint", "name": "student"}}')"
rc=0
anneal run train.json >run1.out 2>run1.err || rc=$?
assert_rc "run 1" 0 "$rc" run1.out run1.err
assert_grep "train resumed from checkpoint 2" "$LOG" '^start 1 train 2 pid=[0-9]* resume=2$'
anneal ls --all --json >ls.json
ckpts=$(gj ls.json '" ".join(a["digest"][:12] for a in d if a["kind"] == "intermediate")')
set -- $ckpts
assert_eq "three checkpoints registered" 3 "$#"
anneal lineage student --format json >lin.json 2>lin.err || fail "lineage: $(cat lin.err)"

gc_json g2dry.json --dry-run
gc_json g2.json
assert_eq "plain gc after the run = its dry run" "$(gj g2dry.json "$NUMS")" "$(gj g2.json "$NUMS")"
assert_eq "plain gc prunes the 2 checkpoints nothing descends from" 2 "$(gj g2.json 'd["artifacts_pruned"]')"
anneal ls --all --json >ls.json
assert_eq "checkpoints pruned (steps 1, 2, 3)" "true false true" \
	"$(gj ls.json '" ".join(str(a["pruned"]).lower() for a in sorted((a for a in d if a["kind"] == "intermediate"), key=lambda a: a["engine_step"]))')"
audit_clean "plain gc of a run"

gc_json g3dry.json --dry-run --prune-intermediate
gc_json g3.json --prune-intermediate
assert_eq "--prune-intermediate = its dry run" "$(gj g3dry.json "$NUMS")" "$(gj g3.json "$NUMS")"
assert_eq "--prune-intermediate prunes the ancestor checkpoint" 1 "$(gj g3.json 'd["artifacts_pruned"]')"
anneal ls --all --json >ls.json
assert_eq "every checkpoint pruned" "true true true" \
	"$(gj ls.json '" ".join(str(a["pruned"]).lower() for a in d if a["kind"] == "intermediate")')"
assert_eq "student not pruned" false "$(pruned student)"
anneal lineage student --format json >lin2.json 2>lin.err || fail "lineage after gc: $(cat lin.err)"
cmp -s lin.json lin2.json || fail "lineage changed by gc: $(diff lin.json lin2.json)"
audit_clean "gc --prune-intermediate"
pass "checkpoints: ancestors kept by plain gc, dropped by --prune-intermediate, lineage unchanged"

# ---- 3. an interrupted run keeps what it resumes from --------------------------------------
echo four >d4
anneal add --copy d4 --name corpus >/dev/null 2>add.err || fail "add corpus: $(cat add.err)"
recipe long.json long \
	"$(stage long 'ckpts=4 block_at=2 block=go' '"inputs": {"c": "@corpus"}, "outputs": {"model": {"type": "checkpoint", "name": "long"}}')"
anneal_bg out3 err3 run long.json
wait_for "long to write checkpoint 2" has_line "$LOG" '^ckpt 2 long 1 2$'
kill -INT "$apid"
wait_exit "$apid"
assert_rc "anneal after SIGINT" 130 "$rc" out3 err3
assert_eq "run 2 state" interrupted "$(sj 2 'd["state"]')"
echo five >d5
anneal add --copy d5 --name corpus >/dev/null 2>add.err || fail "add corpus v2: $(cat add.err)"
gc_json g4.json --prune-intermediate
anneal ls --all --json >ls.json
assert_eq "the interrupted run's checkpoints stay" "false false false" \
	"$(gj ls.json '" ".join(str(a["pruned"]).lower() for a in d if a["kind"] == "intermediate" and a["run"] == 2)')"
assert_eq "its input (an old version now) stays" false "$(pruned corpus@1)"
audit_clean "gc with an interrupted run"
release go
rc=0
anneal resume 2 >out4 2>err4 || rc=$?
assert_rc "resume after gc" 0 "$rc" out4 err4
assert_grep "resumed from checkpoint 3" "$LOG" '^start 2 long 2 pid=[0-9]* resume=3$'
assert_no_grep "no checkpoint was lost" err4 'gone or damaged'
audit_clean "the resumed run"
pass "an interrupted run's checkpoints and inputs survive gc; it resumes from them"

# ---- 4. gc while a run writes --------------------------------------------------------------
recipe busy.json busy \
	"$(stage busy 'ckpts=8 pace=0.1 value=b' '"inputs": {"c": "@corpus"}, "outputs": {"model": {"type": "checkpoint", "name": "busy"}}')"
anneal_bg out5 err5 run busy.json
n=0
while proc_alive "$apid"; do
	rc=0
	anneal gc --prune-intermediate >gcbusy.out 2>&1 || rc=$?
	assert_rc "gc during a run" 0 "$rc" gcbusy.out
	n=$((n + 1))
done
wait_exit "$apid"
assert_rc "the run gc ran beside ($n times)" 0 "$rc" out5 err5
audit_clean "gc during a run"
gc_json g5.json --prune-intermediate
audit_clean "gc after the busy run"
assert_eq "busy pruned" false "$(pruned busy)"
pass "gc $n times while a run wrote checkpoints: run succeeded, audit clean"

# ---- 5. killed between marking and removing ----------------------------------------------------
echo n1 >n1
echo n2 >n2
anneal add --copy n1 --name notes >/dev/null 2>&1 || fail "add notes"
anneal add --copy n2 --name notes >/dev/null 2>&1 || fail "add notes v2"
objn=$(object_of notes@1)
rc=0
ANNEAL_FAULT=gc-marked "$ANNEAL_BIN" gc </dev/null >crash.out 2>&1 || rc=$?
assert_rc "gc killed at gc-marked" 137 "$rc" crash.out
assert_eq "notes@1 marked pruned" true "$(pruned notes@1)"
[ -f "$objn" ] || fail "the object went before the kill"
audit_clean "a gc killed after marking"
gc_json g6.json
assert_eq "the next gc removes the leftover" "1 3 0" \
	"$(gj g6.json '"%d %d %d" % (d["objects"], d["bytes"], d["artifacts_pruned"])')"
[ ! -e "$objn" ] || fail "leftover object $objn still there"
audit_clean "the gc after the crash"
pass "a gc killed after marking: audit clean, the next gc finishes"
