#!/bin/sh
# tests/e2e/test_cache.sh — reuse of earlier results, and `anneal plan`.
#
# Recipe: a -> b -> c, and x alone; only b uses the param lr.
# 1. Run twice: the second run reuses everything (nothing starts).
# 2. `anneal plan` says cached / run with reasons; --format json parses,
#    --format dot is a digraph.
# 3. A finished output changed in place (same size) or with a file deleted
#    is not reused: its step runs again. --no-cache runs everything.
# 4. --set lr=...: b and its dependent c run again; a and x (which do not
#    use lr) stay cached, in `anneal plan` and in the run.
. "$(dirname "$0")/lib.sh"

recipe cache.json cache \
	"$(stage a 'value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'value=${params.lr}' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')" \
	"$(stage c 'value=c' '"inputs": {"i": "b.o"}, "outputs": {"o": "dataset"}')" \
	"$(stage x 'value=x' '"outputs": {"o": "dataset"}')" \
	-- '{"lr": 0.5, "unused": 7}'

# plan_word FILE STEP: cached / run / run? for STEP in `anneal plan` text.
plan_word() { awk -v s="$2" '$2 == s { print $1; exit }' "$1"; }

rc=0
anneal plan cache.json >plan0 2>&1 || rc=$?
assert_rc "plan in a fresh workspace" 0 "$rc" plan0
for s in a x; do
	assert_eq "plan before any run: $s" run "$(plan_word plan0 $s)"
done

# ---- 1. identical rerun -----------------------------------------------------------
rc=0
anneal run cache.json >out1 2>err1 || rc=$?
assert_rc "run 1" 0 "$rc" out1 err1
cp "$LOG" log1
rc=0
anneal run cache.json >out2 2>err2 || rc=$?
assert_rc "run 2 (same recipe)" 0 "$rc" out2 err2
cmp -s "$LOG" log1 || fail "run 2 started steps: $(diff log1 "$LOG")"
for s in a b c x; do
	assert_eq "run 2: $s" cached "$(sj 2 "s['$s']['state']")"
	assert_eq "run 2: $s cached from" 1 "$(sj 2 "s['$s']['cached_from']['run']")"
	assert_grep "run 2 output: $s cached" out2 "cached  *$s: from run 1"
done
assert_grep "run 2 summary" out2 '^run 2 succeeded in [0-9:]* (0 ran, 4 cached)$'
pass "the same recipe again: everything cached, nothing started"

# ---- 2. plan ---------------------------------------------------------------------------
rc=0
anneal plan cache.json >plan1 2>&1 || rc=$?
assert_rc "plan" 0 "$rc" plan1
for s in a b c x; do
	assert_eq "plan: $s" cached "$(plan_word plan1 $s)"
done
assert_grep "plan gives the reason" plan1 "run [12] step 'a', outputs intact"
rc=0
anneal plan cache.json --format json >plan.json 2>planerr || rc=$?
assert_rc "plan --format json" 0 "$rc" plan.json planerr
got=$("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s:%s" % (s["id"], s["cached"]) for s in d["steps"]), d["name"])
' plan.json) || fail "plan --format json does not parse: $(head -c 300 plan.json)"
assert_eq "plan json" "a:True b:True c:True x:True cache" "$got"
rc=0
anneal plan cache.json --format dot >plan.dot 2>planerr || rc=$?
assert_rc "plan --format dot" 0 "$rc" plan.dot planerr
case $(head -n 1 plan.dot) in
digraph*) ;;
*) fail "plan --format dot: expected a first line starting with 'digraph', saw '$(head -n 1 plan.dot)'" ;;
esac
assert_grep "dot has the edge a -> b" plan.dot '"a" -> "b"'
[ "$(tail -n 1 plan.dot)" = "}" ] || fail "plan --format dot does not end with '}'"
cmp -s "$LOG" log1 || fail "plan started steps"
pass "plan: cached/run with reasons; json parses; dot is a digraph"

# ---- 3. damaged outputs -------------------------------------------------------------
# The intact a that a default run would reuse: run 1's (run 2 reused it).
apath=$(sj 1 "s['a']['outputs'][0]['path']")
[ -f "$apath/value.txt" ] || fail "no value.txt in a's output $apath"
sed -i 's/^a a$/a z/' "$apath/value.txt"
assert_eq "damaged a output" "a z" "$(cat "$apath/value.txt")"
rc=0
anneal plan cache.json >plan3 2>&1 || rc=$?
assert_eq "plan after a's output changed in place: a" run "$(plan_word plan3 a)"
assert_grep "plan says why a runs" plan3 'damaged'
rc=0
anneal run cache.json >out3 2>err3 || rc=$?
assert_rc "run 3 after damaging a's output" 0 "$rc" out3 err3
assert_eq "run 3: a" succeeded "$(sj 3 "s['a']['state']")"
assert_eq "run 3: starts of a (damaged entry not reused)" 1 "$(starts 3 a)"
assert_eq "run 3: x" cached "$(sj 3 "s['x']['state']")"
# a rebuilt the same bytes, so b's inputs are unchanged: b and c are reused.
assert_eq "run 3: b (same input digest)" cached "$(sj 3 "s['b']['state']")"
assert_eq "run 3: c's input chain" "c c
b 0.5
a a" "$(cat "$(sj 3 "s['c']['outputs'][0]['path']")/value.txt")"
pass "an output changed in place is not reused"

# Delete a file from the output that would now be reused (run 3's a).
apath=$(sj 3 "s['a']['outputs'][0]['path']")
rm "$apath/value.txt"
rc=0
anneal run cache.json >out4 2>err4 || rc=$?
assert_rc "run 4 after deleting a file of a's output" 0 "$rc" out4 err4
assert_eq "run 4: starts of a (damaged entry not reused)" 1 "$(starts 4 a)"
assert_eq "run 4: a" succeeded "$(sj 4 "s['a']['state']")"
[ -f "$(sj 4 "s['a']['outputs'][0]['path']")/value.txt" ] || fail "run 4's a output lacks value.txt"
pass "an output with a deleted file is not reused"

# --no-cache runs everything.
rc=0
anneal run cache.json --no-cache >out5 2>err5 || rc=$?
assert_rc "run 5 --no-cache" 0 "$rc" out5 err5
for s in a b c x; do
	assert_eq "run 5 --no-cache: starts of $s" 1 "$(starts 5 "$s")"
done
pass "--no-cache runs every step"

# ---- 4. --set of a param ------------------------------------------------------------
rc=0
anneal plan cache.json --set lr=0.25 >plan2 2>&1 || rc=$?
assert_rc "plan --set" 0 "$rc" plan2
expect_eq "plan --set lr: a (does not use lr)" cached "$(plan_word plan2 a)"
expect_eq "plan --set lr: x (does not use lr)" cached "$(plan_word plan2 x)"
case $(plan_word plan2 b) in
run | 'run?') ;;
*) fail "plan --set lr: b: expected run, saw '$(plan_word plan2 b)'" ;;
esac
case $(plan_word plan2 c) in
run | 'run?') ;;
*) fail "plan --set lr: c (after b): expected run or run?, saw '$(plan_word plan2 c)'" ;;
esac
awk '($1 == "run" || $1 == "run?") && $2 == "b" { getline; print; exit }' plan2 | grep -q '[a-z]' ||
	fail "plan gives no reason for running b: $(cat plan2)"
pass "plan --set lr: b runs (a and x checked)"
rc=0
anneal run cache.json --set lr=0.25 >out6 2>err6 || rc=$?
assert_rc "run 6 --set lr=0.25" 0 "$rc" out6 err6
assert_eq "run 6: b (uses lr)" succeeded "$(sj 6 "s['b']['state']")"
assert_eq "run 6: c (after b)" succeeded "$(sj 6 "s['c']['state']")"
assert_eq "run 6: starts of b" 1 "$(starts 6 b)"
assert_eq "run 6: starts of c" 1 "$(starts 6 c)"
assert_eq "b's output has the new lr" "b 0.25" "$(head -n 1 "$(sj 6 "s['b']['outputs'][0]['path']")/value.txt")"
for s in a x; do
	expect_eq "run 6: $s (does not use lr)" cached "$(sj 6 "s['$s']['state']")"
	expect_eq "run 6: starts of $s" 0 "$(starts 6 "$s")"
done
pass "--set lr reruns b and c (a and x checked)"

