#!/bin/sh
# tests/e2e/test_bundles.sh — anneal export / import between workspaces.
#
# Recipe: data -> teacher; data + teacher -> train (student, 2 checkpoints).
# 1. export student --with-ancestors: a tar.zst plain tar lists (when zstd
#    is installed), written whole (no temp file left).
# 2. import into another workspace: lineage --format json and show --json
#    give the same digests, lineage digests, roles as the source; show
#    works; the objects are in the store with their sha256sum; a second
#    import adds nothing.
# 3. export without ancestors: they arrive as records without bytes
#    (pruned), the chain intact. audit --deep is clean after 2 and 3.
# 4. a flipped byte in the bundle: import fails (exit 2, one line naming
#    the bundle) and nothing is registered.
# 5. a hostile archive (a '..' entry, a symlink) is refused and nothing is
#    written outside the workspace.
. "$(dirname "$0")/lib.sh"

recipe bundles.json bundles \
	"$(stage data 'value=d' '"outputs": {"o": "dataset"}')" \
	"$(stage teacher 'value=t' '"inputs": {"data": "data.o"}, "outputs": {"model": "checkpoint"}')" \
	"$(stage train 'value=s ckpts=2' '"inputs": {"data": "data.o", "teacher": "teacher.model"}, "outputs": {"model": {"type": "checkpoint", "name": "student"}}')"

rc=0
anneal run bundles.json >run.out 2>run.err || rc=$?
assert_rc "run" 0 "$rc" run.out run.err

# lineage_norm FILE: `lineage --format json` with local ids replaced by
# content digests, sorted: what must be equal between workspaces.
lineage_norm() {
	"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
dig = {n["id"]: n["digest"] for n in d["nodes"]}
nodes = sorted((n["ref"], n["digest"]) for n in d["nodes"] if not n["ref"].startswith(("intermediate:", "imported:")))
unnamed = sorted(n["digest"] for n in d["nodes"] if n["ref"].startswith(("intermediate:", "imported:")))
edges = sorted((dig[e["child"]], dig[e["parent"]], e["role"], e.get("weight"), e["depth"]) for e in d["edges"])
print(json.dumps({"root": dig[d["root"]], "nodes": nodes, "unnamed": unnamed, "edges": edges}))
' "$1"
}

# sjson FILE EXPR: a Python expression on the JSON document d in FILE.
sjson() {
	"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))
' "$1" "$2"
}

# ---- 1. export ------------------------------------------------------------------------
rc=0
anneal export student --with-ancestors -o "$T/b.tar.zst" >exp.out 2>exp.err || rc=$?
assert_rc "export --with-ancestors" 0 "$rc" exp.out exp.err
assert_grep "export says what it wrote" exp.out "^exported student@1 to $T/b.tar.zst: 3 artifacts (3 with bytes), 3 objects"
[ -s "$T/b.tar.zst" ] || fail "no bundle at $T/b.tar.zst"
leftover=$(ls "$T" | grep -c 'anneal-tmp' || :)
assert_eq "temporary files left next to the bundle" 0 "$leftover"
if command -v zstd >/dev/null 2>&1; then
	rc=0
	tar --zstd -tf "$T/b.tar.zst" >listing 2>tar.err || rc=$?
	assert_rc "tar --zstd -tf lists the bundle" 0 "$rc" listing tar.err
	assert_eq "first entry" anneal-bundle.json "$(head -n 1 listing)"
	assert_eq "object entries" 3 "$(grep -c '^objects/[0-9a-f]\{64\}$' listing)"
	assert_eq "entries" 4 "$(wc -l <listing | tr -d ' ')"
	pass "export: a tar.zst that plain tar lists"
else
	echo "skip: zstd is not installed, 'tar --zstd -tf' not checked"
fi

# ---- 2. import into another workspace --------------------------------------------------
OTHER=$T/other
anneal init "$OTHER" >/dev/null 2>init.err || fail "init $OTHER: $(cat init.err)"
rc=0
anneal -C "$OTHER" import "$T/b.tar.zst" >imp.out 2>imp.err || rc=$?
assert_rc "import" 0 "$rc" imp.out imp.err
assert_grep "import says what it did" imp.out "^imported student@1 from $T/b.tar.zst: 3 artifacts (3 new, 0 already here, 0 without bytes), 3 objects"

anneal lineage student --format json >lin.src 2>lin.err || fail "lineage in the source: $(cat lin.err)"
anneal -C "$OTHER" lineage student --format json >lin.dst 2>lin.err || fail "lineage after import: $(cat lin.err)"
src=$(lineage_norm lin.src) || fail "lineage json does not parse: $(head -c 300 lin.src)"
dst=$(lineage_norm lin.dst) || fail "lineage json does not parse: $(head -c 300 lin.dst)"
assert_eq "lineage (digests, roles, depths) after import" "$src" "$dst"
assert_grep "the source's lineage has the teacher edge" lin.src '"role":"teacher"'

for ref in student data.o teacher.model; do
	anneal show "$ref" --json >show.src 2>show.err || fail "show $ref: $(cat show.err)"
	anneal -C "$OTHER" show "$ref" --json >show.dst 2>show.err || fail "show $ref after import: $(cat show.err)"
	for k in digest lineage_digest type bytes files; do
		assert_eq "$ref: $k after import" "$(sjson show.src "d['$k']")" "$(sjson show.dst "d['$k']")"
	done
	assert_eq "$ref: kind after import" imported "$(sjson show.dst "d['kind']")"
	assert_eq "$ref: step key after import" "$(sjson show.src "d['producer']['step_key']")" \
		"$(sjson show.dst "d['producer']['step_key']")"
	assert_eq "$ref: parents after import" \
		"$(sjson show.src "sorted((p['role'], p['digest']) for p in d['parents'])")" \
		"$(sjson show.dst "sorted((p['role'], p['digest']) for p in d['parents'])")"
done
rc=0
anneal -C "$OTHER" show student >show.txt 2>show.err || rc=$?
assert_rc "show (text) after import" 0 "$rc" show.txt show.err
assert_grep "show: imported" show.txt '^student@1  imported checkpoint'
assert_grep "show: the manifest" show.txt ' 644 value.txt$'

# The bytes are in the other store, under their digests.
anneal -C "$OTHER" show student --json >show.dst
sjson show.dst 'd["manifest"]' | while read -r sum size mode path; do
	[ -n "$sum" ] || continue
	obj=$OTHER/.anneal/store/objects/$(echo "$sum" | cut -c1-2)/$(echo "$sum" | cut -c3-)
	[ -f "$obj" ] || fail "object $sum of student is not in the other store"
	assert_eq "sha256sum of $path" "$sum" "$(sha256sum "$obj" | cut -d' ' -f1)"
done || exit 1
leftover=$(ls "$OTHER/.anneal/import" 2>/dev/null | wc -l | tr -d ' ')
assert_eq "staging directories left" 0 "$leftover"

rc=0
anneal -C "$OTHER" import "$T/b.tar.zst" >imp2.out 2>imp2.err || rc=$?
assert_rc "second import" 0 "$rc" imp2.out imp2.err
assert_grep "second import adds nothing" imp2.out "(0 new, 3 already here, 0 without bytes)"
anneal -C "$OTHER" ls --all --json >ls.json
assert_eq "artifacts after two imports" 3 "$(sjson ls.json 'len(d)')"
rc=0
anneal -C "$OTHER" audit --deep >audit.out 2>&1 || rc=$?
assert_rc "audit --deep of the importing workspace" 0 "$rc" audit.out
pass "import: same lineage, digests and bytes; a second import adds nothing; audit clean"

# ---- 3. without ancestors -----------------------------------------------------------------
rc=0
anneal export student -o "$T/s.tar.zst" >exp3.out 2>exp3.err || rc=$?
assert_rc "export without ancestors" 0 "$rc" exp3.out exp3.err
assert_grep "records for all, bytes for one" exp3.out ": 3 artifacts (1 with bytes), 1 object"
THIRD=$T/third
anneal init "$THIRD" >/dev/null 2>&1
rc=0
anneal -C "$THIRD" import "$T/s.tar.zst" >imp3.out 2>imp3.err || rc=$?
assert_rc "import without ancestors" 0 "$rc" imp3.out imp3.err
assert_grep "ancestors arrive without bytes" imp3.out "(3 new, 0 already here, 2 without bytes)"
anneal -C "$THIRD" ls --all --json >ls3.json
assert_eq "pruned flags" '[["data.o", true], ["student", false], ["teacher.model", true]]' \
	"$(sjson ls3.json 'sorted([a["name"], a["pruned"]] for a in d)')"
anneal -C "$THIRD" lineage student --format json >lin.third
assert_eq "lineage without ancestors' bytes" "$src" "$(lineage_norm lin.third)"
rc=0
anneal -C "$THIRD" audit --deep >audit3.out 2>&1 || rc=$?
assert_rc "audit --deep with pruned ancestors" 0 "$rc" audit3.out
pass "export without ancestors: records only for them, marked pruned; the chain intact"

# ---- 4. a flipped byte ----------------------------------------------------------------------
"$PY" -c '
import sys
d = bytearray(open(sys.argv[1], "rb").read())
d[len(d) // 2] ^= 0x10
open(sys.argv[2], "wb").write(d)
' "$T/b.tar.zst" "$T/flipped.tar.zst"
FOURTH=$T/fourth
anneal init "$FOURTH" >/dev/null 2>&1
rc=0
anneal -C "$FOURTH" import "$T/flipped.tar.zst" >imp4.out 2>imp4.err || rc=$?
assert_rc "import of a bundle with a flipped byte" 2 "$rc" imp4.out imp4.err
assert_eq "one line of error" 1 "$(wc -l <imp4.err | tr -d ' ')"
assert_grep "the error names the bundle" imp4.err "^anneal: bundle '$T/flipped.tar.zst': "
anneal -C "$FOURTH" ls >ls4.out 2>&1
assert_grep "nothing registered" ls4.out '^no artifacts yet'
anneal -C "$FOURTH" ls --all --json >ls4.json
assert_eq "nothing registered (json)" "[]" "$(tr -d ' \n' <ls4.json)"
objs=$(find "$FOURTH/.anneal/store/objects" -type f | wc -l | tr -d ' ')
assert_eq "objects stored by a refused import" 0 "$objs"
pass "a flipped byte: refused, nothing registered, nothing stored ($(cut -c1-120 imp4.err))"

# ---- 5. hostile archive -----------------------------------------------------------------------
if command -v zstd >/dev/null 2>&1; then
	mkdir -p "$T/evil/inner"
	"$PY" -c '
import io, tarfile, sys
t = tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT)
def add(name, data=b"", kind=tarfile.REGTYPE, link=""):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.size = len(data)
    i.linkname = link
    t.addfile(i, io.BytesIO(data))
add("../../escaped", b"gotcha")
add("anneal-bundle.json", b"{}")
t.close()
t = tarfile.open(sys.argv[2], "w", format=tarfile.PAX_FORMAT)
i = tarfile.TarInfo("objects/" + "a" * 64)
i.type = tarfile.SYMTYPE
i.linkname = "/etc/passwd"
t.addfile(i)
t.close()
' "$T/evil/dotdot.tar" "$T/evil/symlink.tar"
	zstd -q "$T/evil/dotdot.tar" -o "$T/evil/dotdot.tar.zst"
	zstd -q "$T/evil/symlink.tar" -o "$T/evil/symlink.tar.zst"
	FIFTH=$T/evil/inner/ws
	anneal init "$FIFTH" >/dev/null 2>&1
	rc=0
	(cd "$T/evil/inner" && "$ANNEAL_BIN" -C "$FIFTH" import "$T/evil/dotdot.tar.zst" </dev/null) \
		>imp5.out 2>imp5.err || rc=$?
	assert_rc "import of an archive with '..'" 2 "$rc" imp5.out imp5.err
	assert_grep "the entry is named" imp5.err "entry '../../escaped': a '..' component"
	[ ! -e "$T/evil/escaped" ] && [ ! -e "$T/escaped" ] && [ ! -e "$T/evil/inner/escaped" ] ||
		fail "an entry was written outside the workspace"
	rc=0
	anneal -C "$FIFTH" import "$T/evil/symlink.tar.zst" >imp6.out 2>imp6.err || rc=$?
	assert_rc "import of an archive with a symlink" 2 "$rc" imp6.out imp6.err
	assert_grep "the symlink is named" imp6.err "a symbolic link (a bundle holds regular files only)"
	anneal -C "$FIFTH" ls --all --json >ls5.json
	assert_eq "nothing registered from hostile archives" "[]" "$(tr -d ' \n' <ls5.json)"
	pass "hostile archives: refused, nothing written outside the workspace"
else
	echo "skip: zstd is not installed, hostile archives not built here (the unit tests build them)"
fi
