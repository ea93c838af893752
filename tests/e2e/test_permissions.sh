#!/bin/sh
# tests/e2e/test_permissions.sh — nobody else can change what a workspace
# records, and a bundle cannot write anywhere.
#
# 1. The modes anneal creates (docs/artifacts.md, "Permissions"): .anneal/,
#    its runs/ and store/ dirs 0700, state.db and locks not writable by
#    group or others, every object 0444 (nothing under objects/ writable).
# 2. A world-writable .anneal/, state.db or store/ is refused by every
#    command (exit 2, one line naming the path and the chmod that fixes
#    it); a group-writable one is a warning and works.
# 3. Crafted bundles (valid zstd, valid integrity trailer, so the entry
#    checks themselves are what refuses them): an entry '../escape', an
#    absolute path, a symlink entry pointing out followed by a file
#    through it, a hard link to /etc/passwd, a character device, a record
#    whose name is '../../x', a manifest path with '..': each import exits
#    2 with one line, writes nothing outside, registers nothing, stores
#    nothing, leaves no staging dir, and audit stays clean.
. "$(dirname "$0")/lib.sh"

anneal init >/dev/null
recipe r.json r "$(stage a 'value=x ckpts=1' '"outputs": {"out": "dataset"}')"
rc=0
anneal run r.json >run.out 2>run.err || rc=$?
assert_rc "the run" 0 "$rc" run.out run.err

# ---- 1. modes ------------------------------------------------------------------------
A=$WS/.anneal
for d in "$A" "$A/runs" "$A/store" "$A/store/objects" "$A/store/tmp"; do
	assert_eq "mode of ${d#$WS/}" 700 "$(stat -c %a "$d")"
done
for f in "$A/state.db" "$A/gc.lock" "$A/runs/1/lock"; do
	m=$(stat -c %a "$f")
	case $m in
	?[0145][0145]) ;;
	*) fail "${f#$WS/} is writable by group or others (mode $m)" ;;
	esac
done
nobj=$(find "$A/store/objects" -type f | wc -l | tr -d ' ')
[ "$nobj" -ge 2 ] || fail "expected objects in the store, found $nobj"
assert_eq "objects writable by anyone" "" "$(find "$A/store/objects" -type f -perm /222)"
assert_eq "objects not 0444" "" "$(find "$A/store/objects" -type f ! -perm 444)"
assert_eq "object dirs open to group or others" "" "$(find "$A/store/objects" -type d -perm /077)"
pass "modes: .anneal, runs, store 0700; state.db and locks not group/other-writable; $nobj objects 0444"

# ---- 2. writable by others ----------------------------------------------------------------
for p in "$A" "$A/state.db" "$A/store"; do
	orig=$(stat -c %a "$p")
	chmod o+w "$p"
	for cmd in status ls "audit" "run r.json"; do
		rc=0
		# shellcheck disable=SC2086
		anneal $cmd >perm.out 2>perm.err || rc=$?
		assert_rc "'$cmd' with ${p#$WS/} world-writable" 2 "$rc" perm.out perm.err
		assert_eq "'$cmd': one line" 1 "$(wc -l <perm.err | tr -d ' ')"
		assert_grep "'$cmd': names the path and the fix" perm.err \
			"'$p' is writable by every user (mode 0[0-7]*): run 'chmod o-w $p'"
	done
	chmod "$orig" "$p"
	chmod g+w "$p"
	rc=0
	anneal status >perm.out 2>perm.err || rc=$?
	assert_rc "status with ${p#$WS/} group-writable" 0 "$rc" perm.out perm.err
	assert_grep "group-writable: warned" perm.err "warning: '$p' is writable by its group"
	chmod "$orig" "$p"
done
[ ! -e "$A/runs/2" ] || fail "a refused 'run' started a run"
pass "world-writable .anneal, state.db or store: refused (exit 2, one line, the fix); group-writable: a warning"

# ---- 3. crafted bundles ----------------------------------------------------------------------
anneal export 'a.out@1' -o "$T/good.tar.zst" >exp.out 2>exp.err || fail "export: $(cat exp.err)"
mkdir -p "$T/evil" "$T/outside"
# craft NAME KIND: a bundle from good.tar.zst, altered, recompressed, with
# a correct integrity trailer (SHA-256 of all the bytes before it).
craft() {
	"$PY" - "$T/good.tar.zst" "$T/evil/$1.tar.zst" "$2" "$T" <<'EOF' || fail "crafting $1"
import hashlib, io, json, subprocess, sys, tarfile
src, dst, kind, T = sys.argv[1:5]
raw = open(src, "rb").read()
body = raw[:-44]                       # the trailer: 8 + 4 + 32 bytes
tar = subprocess.run(["zstd", "-dcq"], input=body, stdout=subprocess.PIPE, check=True).stdout
old = tarfile.open(fileobj=io.BytesIO(tar))
members = [(m, old.extractfile(m).read() if m.isfile() else b"") for m in old.getmembers()]
doc = json.loads(members[0][1])
objs = [m for m in members[1:]]
def reg(name, data):
    i = tarfile.TarInfo(name); i.size = len(data); return (i, data)
def special(name, typ, link=""):
    i = tarfile.TarInfo(name); i.type = typ; i.linkname = link
    if typ in (tarfile.CHRTYPE, tarfile.BLKTYPE): i.devmajor, i.devminor = 1, 3
    return (i, b"")
hexname = objs[0][0].name
out = [members[0]]
if kind == "dotdot":
    out += objs + [reg("../escape", b"escaped")]
elif kind == "absolute":
    out += objs + [reg(T + "/outside/abs", b"escaped")]
elif kind == "symlink":
    out += [special(hexname, tarfile.SYMTYPE, T + "/outside"), reg(hexname + "/through", b"escaped")] + objs[1:]
elif kind == "hardlink":
    out += [special(hexname, tarfile.LNKTYPE, "/etc/passwd")] + objs[1:]
elif kind == "device":
    out += objs + [special("objects/null", tarfile.CHRTYPE)]
elif kind in ("name", "manifest"):
    r = doc["artifacts"][-1]
    if kind == "name":
        r["name"] = "../../x"
    else:
        r["manifest"] = r["manifest"].replace(" 644 ", " 644 ../", 1)
        r["digest"] = hashlib.sha256(r["manifest"].encode()).hexdigest()
    data = json.dumps(doc).encode()
    out = [reg("anneal-bundle.json", data)] + objs
else:
    out += objs
buf = io.BytesIO()
t = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
for info, data in out:
    t.addfile(info, io.BytesIO(data) if info.isfile() else None)
t.close()
z = subprocess.run(["zstd", "-cq", "-3"], input=buf.getvalue(), stdout=subprocess.PIPE, check=True).stdout
trailer = b"\x5a\x2a\x4d\x18" + (36).to_bytes(4, "little") + b"ANB1" + hashlib.sha256(z).digest()
open(dst, "wb").write(z + trailer)
EOF
}

if ! command -v zstd >/dev/null 2>&1; then
	echo "skip: zstd is not installed; crafted bundles not built (tests/artifacts/test_bundle.c covers them)"
	exit 0
fi
# The untouched round trip first: the crafting keeps a good bundle good.
craft same none
anneal init "$T/ok" >/dev/null
rc=0
anneal -C "$T/ok" import "$T/evil/same.tar.zst" >imp.out 2>imp.err || rc=$?
assert_rc "a re-crafted but unaltered bundle imports" 0 "$rc" imp.out imp.err

for kind in dotdot absolute symlink hardlink device name manifest; do
	craft "$kind" "$kind"
	W=$T/in-$kind/ws
	mkdir -p "$T/in-$kind"
	anneal init "$W" >/dev/null
	rc=0
	(cd "$T/in-$kind" && "$ANNEAL_BIN" -C "$W" import "$T/evil/$kind.tar.zst" </dev/null) \
		>imp.out 2>imp.err || rc=$?
	assert_rc "import of the $kind bundle" 2 "$rc" imp.out imp.err
	assert_eq "$kind: one line" 1 "$(wc -l <imp.err | tr -d ' ')"
	assert_grep "$kind: names the bundle" imp.err "^anneal: bundle '$T/evil/$kind.tar.zst': "
	case $kind in
	dotdot) assert_grep "$kind: why" imp.err "entry '../escape': a '..' component" ;;
	absolute) assert_grep "$kind: why" imp.err "an absolute path" ;;
	symlink) assert_grep "$kind: why" imp.err "a symbolic link (a bundle holds regular files only)" ;;
	hardlink) assert_grep "$kind: why" imp.err "a hard link (a bundle holds regular files only)" ;;
	device) assert_grep "$kind: why" imp.err "entry 'objects/null': a character device" ;;
	name) assert_grep "$kind: why" imp.err "artifacts\[0\].name: invalid artifact name" ;;
	manifest) assert_grep "$kind: why" imp.err "path '../value.txt' is not allowed" ;;
	esac
	for x in "$T/escape" "$T/in-$kind/escape" "$W/escape" "$W/.anneal/escape" \
		"$T/outside/abs" "$T/outside/through"; do
		[ ! -e "$x" ] || fail "$kind: '$x' was written"
	done
	assert_eq "$kind: nothing registered" "[]" "$(anneal -C "$W" ls --all --json | tr -d ' \n')"
	assert_eq "$kind: nothing stored" 0 "$(find "$W/.anneal/store/objects" -type f | wc -l | tr -d ' ')"
	assert_eq "$kind: no staging left" "" "$(ls -A "$W/.anneal/import" 2>/dev/null)"
	rc=0
	anneal -C "$W" audit >audit.out 2>&1 || rc=$?
	assert_rc "$kind: audit after the refused import" 0 "$rc" audit.out
done
assert_eq "nothing outside" "" "$(ls -A "$T/outside")"
pass "crafted bundles ('..', absolute, symlink then a file through it, hard link, device, bad name, bad manifest path): exit 2, one line, nothing written, registered or stored"
