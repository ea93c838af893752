#!/bin/sh
# tests/e2e/test_hostile_outputs.sh — what a step leaves in its outputs and
# announces as checkpoints can never make anneal read, link, chmod or store
# anything outside the run's work dir, nor hang it.
#
# 1. An output holding a symlink (to /etc/passwd, to a directory outside,
#    dangling, a loop), a FIFO, a socket or a device node; an output dir
#    that is itself a symlink to a dir outside; the out/ dir above it
#    replaced by one: the step fails at once with a message naming the
#    path and what it is; the files outside keep their mode and link
#    count, and nothing of theirs reaches the store.
# 2. A hard link to a file outside (`ln /outside/secret out/`): the bytes
#    are the step's output and are stored, but as a copy: the outside file
#    keeps its 0600 mode, its inode is not an object.
# 3. Checkpoints announced outside ANNEAL_CKPT_DIR (absolute, "../..", a
#    symlink inside it pointing out): ignored with a warning, never stored,
#    never made read-only, never offered as ANNEAL_RESUME_FROM.
# 4. A step writing into another step's recorded output (as root the
#    read-only bit does not stop it): `anneal audit --deep` reports the
#    damaged object.
. "$(dirname "$0")/lib.sh"

anneal init >/dev/null
OUT=$T/outside
mkdir -p "$OUT/dir"
secret="outside-secret-$$-$(date +%s%N)"
printf '%s\n' "$secret" >"$OUT/secret"
chmod 600 "$OUT/secret"
printf '%s\n' "$secret" >"$OUT/dir/f"
chmod 644 "$OUT/dir/f"

# mode_links FILE: "MODE LINKS"
mode_links() { stat -c '%a %h' "$1"; }

# one_stage FILE SCRIPT: a recipe whose stage s runs SCRIPT (sh -c) with
# its output dir in $O.
one_stage() {
	"$PY" -c '
import json, sys
json.dump({"name": "o", "stages": [{"id": "s", "kind": "exec",
  "command": ["sh", "-c", "O=$ANNEAL_OUTPUT_OUT; " + sys.argv[2]],
  "outputs": {"out": {"type": "dataset"}}}]}, open(sys.argv[1], "w"))
' "$1" "$2"
}

no_secret_stored() {
	if grep -rlF "$secret" "$WS/.anneal/store" >/dev/null 2>&1; then
		fail "$1: the outside file's bytes are in the store"
	fi
	assert_eq "$1: outside secret untouched" "600 1" "$(mode_links "$OUT/secret")"
	assert_eq "$1: outside dir file untouched" "644 1" "$(mode_links "$OUT/dir/f")"
}

# ---- 1. what an output may not be ------------------------------------------------------
run=0
check_refused() { # CASE SCRIPT PATTERN
	one_stage "$1.json" "$2"
	run=$((run + 1))
	rc=0
	E2E_TIMEOUT=20 anneal run "$1.json" >"$1.out" 2>"$1.err" || rc=$?
	assert_rc "$1: the run fails" 1 "$rc" "$1.out" "$1.err"
	assert_grep "$1: says which file and what it is" "$1.err" "$3"
	assert_eq "$1: step state" failed "$(sj "$run" "s['s']['state']")"
	no_secret_stored "$1"
}
check_refused passwd 'echo x >"$O/a"; ln -s /etc/passwd "$O/passwd"' \
	"out/out/passwd': a symbolic link is not allowed in an output"
check_refused dirlink "mkdir \"\$O/sub\"; ln -s '$OUT/dir' \"\$O/sub/d\"" \
	"out/out/sub/d': a symbolic link is not allowed in an output"
check_refused dangling 'ln -s /nonexistent/x "$O/gone"' \
	"out/out/gone': a symbolic link is not allowed in an output"
check_refused loop 'ln -s l2 "$O/l1"; ln -s l1 "$O/l2"' \
	"a symbolic link is not allowed in an output"
check_refused fifo 'mkfifo "$O/fifo"' "out/out/fifo': a FIFO is not allowed in an output"
check_refused socket "cd \"\$O\" && $PY -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")'" \
	"out/out/sock': a socket is not allowed in an output"
if mknod "$T/probe-dev" c 1 3 2>/dev/null; then
	rm -f "$T/probe-dev"
	check_refused device 'mknod "$O/null" c 1 3' "out/out/null': a device file is not allowed in an output"
else
	echo "skip: mknod not permitted here (not root)"
fi
check_refused outlink "rmdir \"\$O\"; ln -s '$OUT/dir' \"\$O\"" \
	"out/out': a symbolic link is not allowed in an output"
# The directory above the output: reached without following symlinks.
check_refused parentlink "mkdir -p '$OUT/fake/out'; cp '$OUT/dir/f' '$OUT/fake/out/f';
	chmod 644 '$OUT/fake/out/f'; mv \"\$(dirname \"\$O\")\" \"\$(dirname \"\$O\").gone\";
	ln -s '$OUT/fake' \"\$(dirname \"\$O\")\"" \
	"a symbolic link or a file on the way from"
assert_eq "the file behind a symlinked out/ keeps its mode" "644 1" "$(mode_links "$OUT/fake/out/f")"
pass "symlinks (file, dir, dangling, loop, the output dir, its parent), FIFO, socket, device: refused, named, nothing outside touched"

# ---- 2. a hard link to a file outside -------------------------------------------------------
echo linked >"$OUT/linked"
chmod 600 "$OUT/linked"
one_stage hard.json "ln '$OUT/linked' \"\$O/h\"; echo mine >\"\$O/own\""
run=$((run + 1))
rc=0
anneal run hard.json >hard.out 2>hard.err || rc=$?
assert_rc "hard link: the run" 0 "$rc" hard.out hard.err
assert_eq "the outside file keeps its mode, and loses the step's link" "600 1" "$(mode_links "$OUT/linked")"
oino=$(stat -c %i "$OUT/linked")
find "$WS/.anneal/store/objects" -type f -inum "$oino" | grep -q . &&
	fail "the outside file's inode became a store object"
h=$WS/.anneal/runs/$run/s/out/out/h
assert_eq "the output's name now shares the object's inode (read-only)" "444 2" "$(mode_links "$h")"
rc=0
anneal audit --deep >audit.out 2>&1 || rc=$?
assert_rc "audit after the hard link" 0 "$rc" audit.out
pass "a hard link to a file outside: stored as a copy; the outside file keeps 0600 and its own inode"

# ---- 3. checkpoints outside ANNEAL_CKPT_DIR ------------------------------------------------------
chmod 644 "$OUT/dir/f"
ck='ev() { printf "{\"event\":\"checkpoint\",\"step\":%s,\"dir\":\"%s\"}\n" "$1" "$2" >>"$ANNEAL_EVENTS"; }'
one_stage ckpt.json "$ck
	ev 1 '$OUT/dir'
	ev 2 '../../../../../../../../../../..$OUT/dir'
	ev 3 '$WS/.anneal/runs/'\$ANNEAL_RUN_ID'/s/ckpt/../../../../../..$OUT/dir'
	ln -s '$OUT/dir' \"\$ANNEAL_CKPT_DIR/link\"; ev 4 link
	mkdir \"\$ANNEAL_CKPT_DIR/real\"; ln -s '$OUT/dir' \"\$ANNEAL_CKPT_DIR/real/sub\"; ev 5 real
	mkdir -p \"\$ANNEAL_CKPT_DIR/good\"; echo ok >\"\$ANNEAL_CKPT_DIR/good/w\"; ev 6 good
	[ \"\$ANNEAL_ATTEMPT\" = 2 ] || exit 1
	printf '%s' \"\$ANNEAL_RESUME_FROM\" >\"\$O/resumed-from\""
sed -i 's/"kind": "exec"/"kind": "exec", "retries": {"max": 1, "backoff": "0s"}/' ckpt.json
run=$((run + 1))
rc=0
anneal run ckpt.json >ckpt.out 2>ckpt.err || rc=$?
assert_rc "checkpoints outside: the run" 0 "$rc" ckpt.out ckpt.err
assert_eq "the dir outside keeps its file writable" "644 1" "$(mode_links "$OUT/dir/f")"
no_secret_stored "checkpoints outside"
assert_eq "the second attempt resumed from the good checkpoint only" \
	"$WS/.anneal/runs/$run/s/ckpt/good" "$(cat "$WS/.anneal/runs/$run/s/out/out/resumed-from")"
assert_eq "warnings for the three outside dirs, in each of two attempts" 6 "$(grep -c "is not inside ANNEAL_CKPT_DIR; ignored" ckpt.out)"
assert_grep "the symlinked checkpoint is named" ckpt.err "ckpt/link': a symbolic link is not allowed"
assert_grep "the checkpoint holding a symlink is named" ckpt.err "ckpt/real/sub': a symbolic link is not allowed"
assert_eq "only the good checkpoint stored (once per attempt)" 1 "$(anneal ls --all --json | "$PY" -c '
import json, sys; print(len({a["digest"] for a in json.load(sys.stdin) if a["kind"] == "intermediate"}))')"
pass "checkpoints announced outside ANNEAL_CKPT_DIR or through symlinks: ignored with a warning, never stored, never resumed from"

# ---- 4. a step writing into another step's output ------------------------------------------------------
"$PY" -c '
import json
json.dump({"name": "w", "stages": [
  {"id": "a", "kind": "exec", "command": ["sh", "-c", "echo a-output >$ANNEAL_OUTPUT_OUT/v"],
   "outputs": {"out": {"type": "dataset"}}},
  {"id": "b", "kind": "exec", "after": ["a"],
   "command": ["sh", "-c", "echo CLOBBERED >>\"$ANNEAL_WORK_DIR/../a/out/out/v\" || true"]}]},
  open("w.json", "w"))
'
run=$((run + 1))
rc=0
anneal run w.json >w.out 2>w.err || rc=$?
assert_rc "the clobbering run" 0 "$rc" w.out w.err
if grep -q CLOBBERED "$WS/.anneal/runs/$run/a/out/out/v"; then
	rc=0
	anneal audit --deep >audit2.out 2>&1 || rc=$?
	assert_rc "audit --deep after a step wrote into a stored output" 1 "$rc" audit2.out
	assert_grep "audit names the damaged artifact" audit2.out "^FAIL a.out@1: v (object [0-9a-f]*): "
	pass "a step writing into another's stored output (root ignores 0444): audit --deep reports it"
else
	assert_eq "the stored output stayed read-only" "444" "$(stat -c %a "$WS/.anneal/runs/$run/a/out/out/v")"
	pass "a step writing into another's stored output: refused by the read-only object"
fi
