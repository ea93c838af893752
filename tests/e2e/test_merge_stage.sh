#!/bin/sh
# tests/e2e/test_merge_stage.sh — the `merge` stage kind in a recipe: two
# "fine-tuned" checkpoints written by exec steps are merged by a merge
# stage run through the scheduler; the merged values are the formula's,
# and the output's lineage carries the base, each merge-input's weight,
# and the method in its producing step's command. A second run is cached;
# a changed weight re-runs only the merge.
. "$(dirname "$0")/lib.sh"

cat >mk.py <<'PYEOF'
import json, struct, sys
out, vals = sys.argv[1], [float(x) for x in sys.argv[2:]]
b = struct.pack("<%df" % len(vals), *vals)
h = json.dumps({"w": {"dtype": "F32", "shape": [len(vals)],
                      "data_offsets": [0, len(b)]}}).encode()
h += b" " * (-len(h) % 8)
open(out + "/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b)
PYEOF
cat >rd.py <<'PYEOF'
import json, struct, sys
d = open(sys.argv[1] + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", d[:8])[0]
t = json.loads(d[8:8 + n])["w"]
b = d[8 + n + t["data_offsets"][0]: 8 + n + t["data_offsets"][1]]
print(" ".join("%g" % v for v in struct.unpack("<%df" % (len(b) // 4), b)))
PYEOF

write_recipe() {
	cat >ms.json <<EOF2
{
  "name": "merge-stage",
  "params": {"wa": $1},
  "stages": [
    {"id": "base", "kind": "exec", "command": ["$PY", "mk.py", "\${outputs.model}", "1", "1", "1", "1"],
     "outputs": {"model": "checkpoint"}},
    {"id": "a", "kind": "exec", "command": ["$PY", "mk.py", "\${outputs.model}", "3", "1", "1", "5"],
     "outputs": {"model": "checkpoint"}},
    {"id": "b", "kind": "exec", "command": ["$PY", "mk.py", "\${outputs.model}", "1", "3", "1", "-3"],
     "outputs": {"model": "checkpoint"}},
    {"id": "merge", "kind": "merge", "method": "task_arithmetic",
     "base": "base.model",
     "models": [{"from": "a.model", "weight": $1}, {"from": "b.model", "weight": 0.5}],
     "name": "merged"}
  ]
}
EOF2
}

write_recipe 0.5
rc=0
anneal run ms.json >out1 2>err1 || rc=$?
assert_rc "run with a merge stage" 0 "$rc" out1 err1
path=$(anneal show merged --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["path"])')
# base + 0.5 (a - base) + 0.5 (b - base) = (a + b) / 2
assert_eq "merged values" "2 2 1 1" "$($PY rd.py "$path")"
anneal show merged --json >show.json
assert_eq "lineage of the merged checkpoint" "base:base.model@1:-,merge-input:a.model@1:0.5,merge-input:b.model@1:0.5" \
	"$($PY -c '
import json
d = json.load(open("show.json"))
print(",".join(sorted("%s:%s:%s" % (p["role"], p["ref"], p.get("weight", "-")) for p in d["parents"])))')"
anneal lineage merged >lin.out
assert_grep "lineage tree shows the weight" lin.out 'merge-input (0.5) a.model@1'

# Same recipe: everything cached. A new weight: only the merge runs again.
rc=0
anneal run ms.json >out2 2>err2 || rc=$?
assert_rc "second run" 0 "$rc" out2 err2
assert_grep "all cached" out2 '(0 ran, 4 cached)'
write_recipe 1.0
rc=0
anneal run ms.json >out3 2>err3 || rc=$?
assert_rc "run with a new weight" 0 "$rc" out3 err3
assert_grep "only the merge ran" out3 '(1 ran, 3 cached)'
path=$(anneal show merged@2 --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["path"])')
# base + 1 (a - base) + 0.5 (b - base) = (3,1,1,5) + 0.5 (0,2,0,-4)
assert_eq "merged@2 values" "3 2 1 3" "$($PY rd.py "$path")"
anneal audit >audit.out 2>&1 || fail "audit after merges: $(cat audit.out)"
pass "merge stage: values, lineage with weights, cache"
