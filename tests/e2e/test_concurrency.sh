#!/bin/sh
# tests/e2e/test_concurrency.sh — several anneal processes on one workspace.
#
#   - A second driver of one run is refused, naming the live driver's pid;
#     it changes nothing and the first finishes the run.
#   - Three runs at once in one workspace — two different recipes, and one
#     of them twice with different params — with the same artifact names:
#     all complete; every (name, version) is unique and each name's versions
#     are 1..n with no gap; every step's output is the artifact its own
#     value.txt says.
#   - `status --json`, `lineage` and `audit` called in a loop while a run
#     writes checkpoints and outputs: every call exits 0, status always
#     parses, every lineage names artifacts that exist, audit is clean.
. "$(dirname "$0")/lib.sh"

anneal init >/dev/null
N=6
[ "${SAN:-0}" = 1 ] && N=4

# ---- one run, two drivers ----------------------------------------------------------
recipe one.json one "$(stage a 'block=go-one value=one' '"outputs": {"o": "dataset"}')"
anneal_bg out1 err1 run one.json
drv=$apid
wait_for "a of run 1 to start" started 1 a
rc=0
anneal resume 1 >out2 2>err2 || rc=$?
[ "$rc" != 0 ] || fail "a second driver of run 1 was not refused"
assert_grep "the refusal names the driver" err2 \
	"^anneal: run 1 is being driven by another anneal process (pid $drv)\$"
proc_alive "$drv" || fail "the first driver died when a second was refused"
release go-one
wait_exit "$drv"
assert_rc "the first driver" 0 "$rc" out1 err1
assert_eq "a of run 1 starts" 1 "$(starts 1 a)"
pass "a second driver of a run is refused, naming the driver's pid"

# ---- three runs at once, same artifact names -----------------------------------------
"$PY" - "$STEP" "$N" <<'PY'
import json, sys
step, n = sys.argv[1], int(sys.argv[2])
def rec(name, params, opts):
    return {"name": name, "params": params, "stages": [
        {"id": "s%d" % i, "kind": "exec",
         "command": ["sh", step] + [o.replace("%d", str(i)) for o in opts],
         "outputs": {"o": "dataset"}} for i in range(1, n + 1)]}
json.dump(rec("p", {"v": "x"}, ["value=${params.v}-%d"]), open("p.json", "w"))
json.dump(rec("q", {}, ["value=q-%d", "ckpts=1"]), open("q.json", "w"))
PY
anneal_bg outp1 errp1 run p.json --set v=y --jobs 2
p1=$apid
anneal_bg outp2 errp2 run p.json --set v=z --jobs 2
p2=$apid
anneal_bg outq errq run q.json --jobs 2
q=$apid
wait_exit "$p1"
assert_rc "run p (v=y)" 0 "$rc" outp1 errp1
wait_exit "$p2"
assert_rc "run p (v=z)" 0 "$rc" outp2 errp2
wait_exit "$q"
assert_rc "run q" 0 "$rc" outq errq
assert_no_concurrent
anneal ls --all --json >ls.json
"$PY" - "$N" "$WS/.anneal/state.db" <<'PY' || fail "artifact versions of concurrent runs (above)"
import collections, json, sqlite3, sys
n = int(sys.argv[1])
arts = json.load(open("ls.json"))
bad = []
seen = collections.Counter((a["name"], a["version"]) for a in arts if a["name"])
bad += ["%s@%d twice" % k for k, c in seen.items() if c > 1]
by = collections.defaultdict(list)
for a in arts:
    if a["kind"] == "output":
        by[a["name"]].append(a["version"])
for i in range(1, n + 1):
    name = "s%d.o" % i
    v = sorted(by.get(name, []))
    # run 1 made none of these; runs 2, 3, 4 one each
    if v != [1, 2, 3]:
        bad.append("%s: versions %s, expected [1, 2, 3]" % (name, v))
db = sqlite3.connect(sys.argv[2])
for run, step, path, art in db.execute(
        "SELECT o.run_id, o.step_id, o.path, a.id FROM outputs o"
        " LEFT JOIN artifacts a ON a.id = o.artifact WHERE o.run_id > 1"):
    if art is None:
        bad.append("run %d step %s: output without an artifact" % (run, step))
        continue
    a = [x for x in arts if x["id"] == art][0]
    if a["run"] != run or a["step"] != step or a["path"] != path:
        bad.append("run %d step %s: output is artifact %s@%d of run %s step %s" %
                   (run, step, a["name"], a["version"], a["run"], a["step"]))
    # The three runs got their ids in whatever order they started.
    name, params = db.execute("SELECT r.recipe_name, r.params_json FROM runs r"
                              " WHERE r.id = ?", (run,)).fetchone()
    tag = "q" if name == "q" else json.loads(params)["v"]
    want = "%s %s-%s" % (step, tag, step[1:])
    got = open(path + "/value.txt").read().split("\n")[0]
    if got != want:
        bad.append("run %d step %s: value '%s', expected '%s'" % (run, step, got, want))
for b in bad:
    print("  " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
rc=0
anneal audit --deep >aout 2>aerr || rc=$?
assert_rc "audit --deep after three concurrent runs" 0 "$rc" aout aerr
pass "three runs at once: all complete, versions unique and gap-free per name"

# ---- readers while a run writes ---------------------------------------------------------
recipe busy.json busy \
	"$(stage a 'ckpts=4 pace=0.1 value=a' '"outputs": {"o": "checkpoint"}')" \
	"$(stage b 'ckpts=4 pace=0.1 value=b' '"inputs": {"i": "a.o"}, "outputs": {"o": "checkpoint"}')" \
	"$(stage c 'ckpts=4 pace=0.1 value=c' '"inputs": {"i": "b.o"}, "outputs": {"o": "checkpoint"}')"
anneal_bg out5 err5 run busy.json
drv=$apid
wait_for "run 5 to be recorded" sj 5 'd["state"]'
calls=0
while proc_alive "$drv" || [ "$calls" -lt 3 ]; do
	rc=0
	anneal status 5 --json >st.json 2>st.err || rc=$?
	assert_rc "status --json while run 5 writes" 0 "$rc" st.json st.err
	"$PY" -c 'import json, sys; d = json.load(open("st.json")); assert d["steps"]' ||
		fail "status --json while run 5 writes did not parse: $(head -c 300 st.json)"
	rc=0
	anneal ls --json >l.json 2>l.err || rc=$?
	assert_rc "ls --json while run 5 writes" 0 "$rc" l.json l.err
	for ref in $("$PY" -c '
import json
arts = json.load(open("l.json"))
print(" ".join(a["ref"] for a in arts if a["run"] == 5))'); do
		rc=0
		anneal lineage "$ref" --format json >lin.json 2>lin.err || rc=$?
		assert_rc "lineage $ref while run 5 writes" 0 "$rc" lin.json lin.err
		"$PY" - "$WS/.anneal/state.db" <<'PY' || fail "lineage $ref names an artifact that does not exist: $(head -c 400 lin.json)"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
def ids(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "id" and isinstance(v, int):
                yield v
            else:
                yield from ids(v)
    elif isinstance(x, list):
        for v in x:
            yield from ids(v)
for i in ids(json.load(open("lin.json"))):
    if not db.execute("SELECT 1 FROM artifacts WHERE id = ?", (i,)).fetchone():
        sys.exit(1)
PY
	done
	rc=0
	anneal audit >au.out 2>au.err || rc=$?
	assert_rc "audit while run 5 writes" 0 "$rc" au.out au.err
	calls=$((calls + 1))
done
wait_exit "$drv"
assert_rc "run 5" 0 "$rc" out5 err5
[ "$calls" -ge 3 ] || fail "only $calls rounds of readers"
rc=0
anneal audit --deep >aout 2>aerr || rc=$?
assert_rc "audit --deep after run 5" 0 "$rc" aout aerr
pass "status, lineage and audit while a run writes: $calls rounds, all consistent"
