#!/bin/sh
# tests/e2e/test_artifacts.sh — versioned outputs, names, aliases, @REF
# inputs, lineage, audit, and kill -9 during ingest.
#
# 1. A run's declared outputs become artifacts: STAGE.OUTPUT@1, or the
#    recipe's name for them (student@1).
# 2. A run that makes new content makes @2; one that makes the same
#    content keeps @1.
# 3. tag, show, ls, lineage (tree and json) agree with what ran.
# 4. anneal add registers a root; "@base" feeds it to a step; its lineage
#    shows it with the role.
# 5. audit is clean; a flipped byte is found by --deep; an edited lineage
#    row is found.
# 6. anneal killed after ingest and after registration: resume finishes,
#    no duplicate version, audit clean.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

cat >art.json <<'EOF'
{
  "name": "art",
  "params": {"msg": "hello"},
  "stages": [
    {"id": "data", "kind": "exec",
     "command": ["sh", "-c", "printf '%s\\n' \"$1\" > \"$2/text.txt\"", "sh", "${params.msg}", "${outputs.corpus}"],
     "outputs": {"corpus": "dataset"}},
    {"id": "train", "kind": "exec",
     "command": ["sh", "-c", "tr a-z A-Z < \"$1/text.txt\" > \"$2/weights.bin\"", "sh", "${inputs.data}", "${outputs.model}"],
     "inputs": {"data": "data.corpus"},
     "outputs": {"model": {"type": "checkpoint", "name": "student"}}}
  ]
}
EOF

# ls_ref NAME: the latest ref of NAME per `ls --json`
ls_json() { anneal ls "$@" --json; }
count_versions() {
	anneal ls "$1" --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

# ---- 1. outputs become artifacts ------------------------------------------------
rc=0
anneal run art.json >out1 2>err1 || rc=$?
assert_rc "run 1" 0 "$rc" out1 err1
anneal ls >ls1 2>&1
assert_grep "ls shows data.corpus@1" ls1 '^data.corpus@1 '
assert_grep "ls shows the recipe's name student@1" ls1 '^student@1 '
assert_eq "versions of student" 1 "$(count_versions student)"
pass "outputs are versioned artifacts"

# ---- 2. new content makes @2, same content keeps its version ----------------------
rc=0
anneal run art.json --set msg=world >out2 2>err2 || rc=$?
assert_rc "run 2 (--set msg=world)" 0 "$rc" out2 err2
assert_eq "versions of student after new content" 2 "$(count_versions student)"
assert_eq "versions of data.corpus" 2 "$(count_versions data.corpus)"
rc=0
anneal run art.json --no-cache >out3 2>err3 || rc=$?
assert_rc "run 3 (same content as run 1, recomputed)" 0 "$rc" out3 err3
assert_eq "versions of student after identical content" 2 "$(count_versions student)"
pass "versions grow with content only"

# ---- 3. refs, tag, show, lineage --------------------------------------------------------
rc=0
anneal tag student@1 champion >tag.out 2>&1 || rc=$?
assert_rc "tag" 0 "$rc" tag.out
anneal show champion --json >show.json 2>&1
assert_eq "alias resolves to student@1" "student@1" \
	"$($PY -c 'import json; print(json.load(open("show.json"))["ref"])')"
assert_eq "parent of student@1" "data:data.corpus@1" \
	"$($PY -c 'import json; d=json.load(open("show.json")); print(",".join(p["role"]+":"+p["ref"] for p in d["parents"]))')"
d1=$($PY -c 'import json; print(json.load(open("show.json"))["digest"])')
rc=0
anneal show "$(printf %.10s "$d1")" >show2.out 2>&1 || rc=$?
assert_rc "show by digest prefix" 0 "$rc" show2.out
assert_grep "digest prefix finds student@1" show2.out '^student@1 '
rc=0
anneal show studnet >bad.out 2>&1 || rc=$?
assert_rc "show of a misspelt name" 2 "$rc" bad.out
assert_grep "did you mean" bad.out "did you mean 'student'"
anneal lineage student >lin.out 2>&1
assert_grep "lineage tree root" lin.out '^student@2$'
assert_grep "lineage tree parent" lin.out 'data data.corpus@2'
anneal lineage data.corpus@1 --descendants --format json >desc.json 2>&1
assert_eq "descendants of data.corpus@1" "student@1" \
	"$($PY -c 'import json; d=json.load(open("desc.json")); n={x["id"]:x["ref"] for x in d["nodes"]}; print(",".join(sorted(n[e["child"]] for e in d["edges"])))')"
pass "refs, aliases, show and lineage"

# ---- 4. anneal add and @REF inputs ----------------------------------------------------
mkdir -p ext
printf 'base weights\n' >ext/base.bin
rc=0
anneal add ext --name base --type checkpoint >add.out 2>&1 || rc=$?
assert_rc "add" 0 "$rc" add.out
assert_grep "add says what it added" add.out '^added base@1: checkpoint, 1 file'
cat >tune.json <<'EOF'
{
  "name": "tune",
  "stages": [
    {"id": "tune", "kind": "exec",
     "command": ["sh", "-c", "cat \"$1/base.bin\" \"$2/weights.bin\" > \"$3/tuned.bin\"", "sh", "${inputs.init}", "${inputs.data}", "${outputs.model}"],
     "inputs": {"init": "@base", "data": "@student@1"},
     "outputs": {"model": "checkpoint"}}
  ]
}
EOF
rc=0
anneal run tune.json >out4 2>err4 || rc=$?
assert_rc "run with @base and @student@1 inputs" 0 "$rc" out4 err4
anneal show tune.model --json >tune.json.out 2>&1
assert_eq "parents of tune.model" "data:student@1,init:base@1" \
	"$($PY -c 'import json; d=json.load(open("tune.json.out")); print(",".join(sorted(p["role"]+":"+p["ref"] for p in d["parents"])))')"
rc=0
anneal validate tune.json >/dev/null 2>&1 || rc=$?
assert_rc "validate accepts @REF inputs" 0 "$rc"
cat >missing.json <<'EOF'
{"name": "m", "stages": [{"id": "t", "kind": "exec", "command": ["true"], "inputs": {"init": "@bsae"}}]}
EOF
rc=0
anneal run missing.json >out5 2>err5 || rc=$?
assert_rc "run naming a missing artifact" 2 "$rc" out5 err5
assert_grep "missing artifact message" err5 "missing.json: step 't': input 'init': no artifact 'bsae' (did you mean 'base'?)"
pass "add and @REF inputs"

# ---- 5. audit -------------------------------------------------------------------------
rc=0
anneal audit --deep >audit1 2>&1 || rc=$?
assert_rc "audit --deep of a healthy workspace" 0 "$rc" audit1
assert_grep "clean" audit1 ': clean$'
# Flip one byte of the object holding student@1's weights.
obj=$($PY -c '
import json,sys
m=json.load(open("show.json"))["manifest"].split()[0]
print(".anneal/store/objects/%s/%s" % (m[:2], m[2:]))')
[ -f "$WS/$obj" ] || fail "object $obj not in the store"
printf 'X' | dd of="$WS/$obj" bs=1 seek=0 conv=notrunc 2>/dev/null
rc=0
anneal audit >audit2 2>&1 || rc=$?
assert_rc "shallow audit (same size)" 0 "$rc" audit2
rc=0
anneal audit --deep >audit3 2>&1 || rc=$?
assert_rc "deep audit after a flipped byte" 1 "$rc" audit3
assert_grep "the flipped object is named" audit3 "FAIL student@1: weights.bin (object $(printf %.12s "$(basename "$(dirname "$obj")")$(basename "$obj")")"
# Edit a recorded fact: the weight of nothing becomes 0.5.
$PY - <<EOF
import sqlite3
c = sqlite3.connect("$WS/.anneal/state.db")
c.execute("UPDATE lineage SET role = 'teacher' WHERE role = 'init'")
c.commit()
EOF
rc=0
anneal audit >audit4 2>&1 || rc=$?
assert_rc "audit after an edited lineage row" 1 "$rc" audit4
assert_grep "the edited row is found" audit4 'FAIL tune.model@1: lineage digest does not recompute'
pass "audit finds flipped bytes and edited rows"

# ---- 6. kill -9 around ingest ------------------------------------------------------------
for point in ingested registered; do
	cat >k.json <<EOF
{"name": "k", "stages": [
  {"id": "k", "kind": "exec",
   "command": ["sh", "-c", "printf '$point' > \"\$1/x\"", "sh", "\${outputs.o}"],
   "outputs": {"o": {"type": "dataset", "name": "k-$point"}}}]}
EOF
	rc=0
	ANNEAL_FAULT=$point anneal run k.json >k.out 2>&1 || rc=$?
	assert_rc "anneal killed at '$point'" 137 "$rc" k.out
	run=$(anneal status --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["run"])')
	driver_gone "$run"
	rc=0
	anneal resume >r.out 2>&1 || rc=$?
	assert_rc "resume after a kill at '$point'" 0 "$rc" r.out
	assert_eq "versions of k-$point after resume" 1 "$(count_versions "k-$point")"
done
# The store holds no staging files and the catalog is consistent.
[ -z "$(ls -A "$WS/.anneal/store/tmp" 2>/dev/null)" ] || fail "staging files left: $(ls "$WS/.anneal/store/tmp")"
rc=0
anneal audit k-registered >audit5 2>&1 || rc=$?
assert_rc "audit of what was ingested around the kills" 0 "$rc" audit5
pass "kill -9 around ingest leaves a consistent store"
