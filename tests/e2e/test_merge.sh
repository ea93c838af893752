#!/bin/sh
# tests/e2e/test_merge.sh — `anneal merge` on small safetensors files.
#
# 1. linear and ties on hand-written F32/BF16/I64 files: values checked
#    against the formulas (inputs chosen so the results are exact), the
#    one-line report, the metadata; --json parses.
# 2. Sharded output (--max-shard-size), the same tensors; --threads 1 and 3
#    write the same bytes.
# 3. Bad input exits 2 with one line naming the problem (unknown method or
#    parameter with a suggestion, bad weight, missing input, a tensor that
#    differs, an output dir holding a checkpoint), an I/O failure exits 3,
#    and no output is left behind; --pass-through-base copies the base's.
# 4. REF resolution: models registered with `anneal add` merge by name; a
#    registered file deleted from its place is checked out from the store.
#
# The files are written and read with Python's struct module (python3 is
# always there; NumPy is not needed).
. "$(dirname "$0")/lib.sh"

cat >st.py <<'EOF'
import json, struct, sys

def write(path, tensors):
    """tensors: [(name, dtype, shape, [values])]"""
    hdr, data = {}, b""
    for name, dt, shape, vals in tensors:
        if dt == "F32":
            b = struct.pack("<%df" % len(vals), *vals)
        elif dt == "BF16":   # exact values only: truncate the float32
            b = b"".join(struct.pack("<f", v)[2:] for v in vals)
        elif dt == "I64":
            b = struct.pack("<%dq" % len(vals), *vals)
        hdr[name] = {"dtype": dt, "shape": shape,
                     "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)

def read(path):
    """{name: (dtype, shape, values)}, metadata"""
    d = open(path, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    hdr = json.loads(d[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    out = {}
    for name, t in hdr.items():
        b = d[8 + n + t["data_offsets"][0]: 8 + n + t["data_offsets"][1]]
        if t["dtype"] == "F32":
            v = list(struct.unpack("<%df" % (len(b) // 4), b))
        elif t["dtype"] == "BF16":
            v = [struct.unpack("<f", b"\0\0" + b[i:i + 2])[0] for i in range(0, len(b), 2)]
        else:
            v = list(struct.unpack("<%dq" % (len(b) // 8), b))
        out[name] = (t["dtype"], t["shape"], v)
    return out, meta

def read_ckpt(d):
    import os
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            out.update(read(os.path.join(d, shard))[0])
        return out, read(os.path.join(d, sorted(set(wm.values()))[0]))[1]
    return read(os.path.join(d, "model.safetensors"))

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        write(sys.argv[2], json.loads(sys.argv[3]))
    elif cmd == "get":   # get DIR EXPR  (t: tensors, m: metadata)
        t, m = read_ckpt(sys.argv[2])
        v = eval(sys.argv[3])
        print(v if isinstance(v, str) else json.dumps(v, sort_keys=True))
EOF
mk() { "$PY" st.py make "$1" "$2"; }
get() { "$PY" st.py get "$1" "$2"; }

mk base.safetensors '[["w", "F32", [2, 2], [0, 0, 0, 0]], ["e", "BF16", [3], [1, 1, 1]], ["pos", "I64", [3], [0, 1, 2]]]'
mk a.safetensors '[["w", "F32", [2, 2], [1, -2, 3, 0.5]], ["e", "BF16", [3], [1, 2, 3]], ["pos", "I64", [3], [0, 1, 2]]]'
mk b.safetensors '[["w", "F32", [2, 2], [1, 2, -1, 0.5]], ["e", "BF16", [3], [5, 6, 7]], ["pos", "I64", [3], [0, 1, 2]]]'

# ---- 1. linear and ties -------------------------------------------------------------
rc=0
anneal merge --method linear --model a.safetensors --model b.safetensors:3 -o out1 >o1 2>e1 || rc=$?
assert_rc "merge linear" 0 "$rc" o1 e1
assert_grep "the report line" o1 \
	'^merged 2 models (linear) into out1: 3 tensors, [0-9.]* [kMG]*B in [0-9.]* s ([0-9.]* [kMG]*B/s), peak RSS [0-9]* MiB$'
assert_eq "one line" 1 "$(wc -l <o1)"
assert_eq "linear w = (a + 3b)/4" "[1.0, 1.0, 0.0, 0.5]" "$(get out1 't["w"][2]')"
assert_eq "linear e (bf16)" "[4.0, 5.0, 6.0]" "$(get out1 't["e"][2]')"
assert_eq "linear e dtype" "BF16" "$(get out1 't["e"][0]')"
assert_eq "pos passes through" "[0, 1, 2]" "$(get out1 't["pos"][2]')"
assert_eq "metadata: method" "linear" "$(get out1 'm["anneal.merge.method"]')"
assert_eq "metadata: weights" "[1, 3]" "$(get out1 '[x["weight"] for x in json.loads(m["anneal.merge.models"])]')"
assert_eq "metadata: format" "pt" "$(get out1 'm["format"]')"
pass "linear: values, report, metadata"

rc=0
anneal merge --method ties --base base.safetensors --model a.safetensors --model b.safetensors \
	--param density=1 --json -o out2 >o2 2>e2 || rc=$?
assert_rc "merge ties" 0 "$rc" o2 e2
# Sign election by sum, disjoint mean: [1, 2, 3, 0.5] (see docs/merging.md).
assert_eq "ties w" "[1.0, 2.0, 3.0, 0.5]" "$(get out2 't["w"][2]')"
assert_eq "ties --json" "3 2 1" "$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["tensors"], d["merged"], d["copied"])' <o2)"
assert_eq "ties spec recorded" "ties lambda=1 density=1 normalize=true rescale=none consensus=sum" \
	"$(get out2 'm["anneal.merge.spec"]')"
pass "ties: values, --json"

# ---- 2. shards and threads ------------------------------------------------------------
rc=0
anneal merge --method linear --model a.safetensors --model b.safetensors:3 --max-shard-size 8B \
	-o out3 >o3 2>e3 || rc=$?
assert_rc "merge with shards" 0 "$rc" o3 e3
[ -f out3/model.safetensors.index.json ] || fail "no index in out3: $(ls out3)"
assert_eq "sharded: same tensors" "$(get out1 't')" "$(get out3 't')"
for n in 1 3; do
	rc=0
	anneal merge --method ties --base base.safetensors --model a.safetensors --model b.safetensors \
		--param density=0.5 --threads $n -o out-t$n >ot 2>et || rc=$?
	assert_rc "ties with $n threads" 0 "$rc" ot et
done
cmp -s out-t1/model.safetensors out-t3/model.safetensors || fail "1 and 3 threads wrote other bytes"
pass "sharded output, same bytes on 1 and 3 threads"

# ---- 3. bad input -------------------------------------------------------------------------
# bad WHAT STATUS PATTERN ARGS...: anneal merge ARGS fails with STATUS, one
# line on stderr matching PATTERN, and leaves no out-bad behind.
bad() {
	what=$1 want=$2 pat=$3
	shift 3
	rc=0
	anneal merge "$@" >ob 2>eb || rc=$?
	assert_rc "$what" "$want" "$rc" ob eb
	assert_grep "$what: message" eb "$pat"
	assert_eq "$what: one line" 1 "$(wc -l <eb)"
	[ ! -e out-bad ] || fail "$what: left out-bad behind: $(ls -la out-bad)"
}
bad "unknown method" 2 "^anneal: unknown merge method 'tie' (did you mean 'ties'?)" \
	--method tie --base base.safetensors --model a.safetensors -o out-bad
bad "unknown param" 2 "unknown parameter 'densty' for method 'ties' (did you mean 'density'?)" \
	--method ties --base base.safetensors --model a.safetensors --param densty=0.5 -o out-bad
bad "bad weight" 2 "^anneal: --model 'a.safetensors:x': expected PATH\[:WEIGHT\]" \
	--method linear --model a.safetensors:x -o out-bad
bad "missing model" 2 "^anneal: --model 'nope.safetensors': no such file or directory" \
	--method linear --model nope.safetensors -o out-bad
bad "no -o" 2 "^anneal: merge: -o DIR is required" --method linear --model a.safetensors
bad "linear with a base" 2 "method 'linear' takes no base" \
	--method linear --base base.safetensors --model a.safetensors -o out-bad
bad "weights with slerp" 2 "method 'slerp' takes no model weights" \
	--method slerp --param t=0.5 --base base.safetensors --model a.safetensors:2 -o out-bad
bad "bad shard size" 2 "max-shard-size must be a size" \
	--method linear --model a.safetensors --max-shard-size 5XB -o out-bad

mk short.safetensors '[["w", "F32", [4], [1, 2, 3, 4]], ["e", "BF16", [3], [1, 2, 3]], ["pos", "I64", [3], [0, 1, 2]]]'
mk nopos.safetensors '[["w", "F32", [2, 2], [1, 2, 3, 4]], ["e", "BF16", [3], [1, 2, 3]]]'
bad "shape mismatch" 2 "^anneal: tensor 'w': shape \[4\] in 'short.safetensors' differs from \[2, 2\] in base$" \
	--method ties --base base.safetensors --model a.safetensors --model short.safetensors -o out-bad
bad "missing tensor" 2 "^anneal: tensor 'pos': missing from 'nopos.safetensors' (present in base and 'a.safetensors')$" \
	--method ties --base base.safetensors --model a.safetensors --model nopos.safetensors -o out-bad
: >afile
bad "I/O error" 3 "^anneal: " \
	--method linear --model a.safetensors -o afile/out-bad
mkdir -p out-bad
cp a.safetensors out-bad/model.safetensors
rc=0
anneal merge --method linear --model a.safetensors -o out-bad >ob 2>eb || rc=$?
assert_rc "output holds a checkpoint" 2 "$rc" ob eb
assert_grep "output holds a checkpoint: message" eb "already holds a checkpoint"
cmp -s a.safetensors out-bad/model.safetensors || fail "the existing checkpoint was changed"
rm -rf out-bad
pass "bad input: exit 2, one line, nothing left; I/O: exit 3"

rc=0
anneal merge --method ties --base base.safetensors --model a.safetensors --model short.safetensors \
	--model nopos.safetensors --pass-through-base -o out4 >o4 2>e4 || rc=$?
assert_rc "--pass-through-base" 0 "$rc" o4 e4
assert_grep "report says so" o4 "(2 from the base, 0 left out)"
assert_eq "w from the base" "[0.0, 0.0, 0.0, 0.0]" "$(get out4 't["w"][2]')"
assert_eq "pos from the base" "[0, 1, 2]" "$(get out4 't["pos"][2]')"
pass "--pass-through-base copies the base's tensors"

# ---- 4. references ------------------------------------------------------------------------
bad "a ref without a workspace" 2 "no workspace to look it up in" \
	--method linear --model ma --model mb:3 -o out-bad
cp a.safetensors a-copy.safetensors
rc=0
{ anneal add a-copy.safetensors --name ma --type checkpoint &&
	anneal add b.safetensors --name mb --type checkpoint; } >oa 2>ea || rc=$?
assert_rc "anneal add" 0 "$rc" oa ea
rc=0
anneal merge --method linear --model ma --model mb:3 -o out5 >o5 2>e5 || rc=$?
assert_rc "merge by reference" 0 "$rc" o5 e5
assert_eq "by reference: same tensors" "$(get out1 't')" "$(get out5 't')"
assert_eq "by reference: labels" '["ma", "mb"]' \
	"$(get out5 '[x["model"] for x in json.loads(m["anneal.merge.models"])]')"
digest=$(get out5 'json.loads(m["anneal.merge.models"])[0]["digest"]')
assert_eq "digest recorded" 64 "${#digest}"
bad "unknown ref" 2 "^anneal: --model 'mc': no such file or directory, nor artifact: no artifact 'mc'" \
	--method linear --model ma --model mc -o out-bad
# The registered file is gone from its place: checked out from the store.
rm -f a-copy.safetensors
rc=0
anneal merge --method linear --model ma@1 --model mb:3 -o out6 >o6 2>e6 || rc=$?
assert_rc "merge after the file is gone" 0 "$rc" o6 e6
assert_eq "checked out: same tensors" "$(get out1 't')" "$(get out6 't')"
[ -e ".anneal/store/checkouts/$digest" ] || fail "no checkout at .anneal/store/checkouts/$digest: $(ls .anneal/store/checkouts 2>&1)"
pass "references: by name, recorded digest, checked out when the file is gone"
