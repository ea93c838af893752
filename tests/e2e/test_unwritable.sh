#!/bin/sh
# tests/e2e/test_unwritable.sh — a workspace anneal may not write.
#
#   - As another user (setpriv to nobody; root ignores mode bits) on a
#     workspace whose .anneal/ is root's: `run` exits 3 with one line
#     naming state.db and "Permission denied", and records nothing.
#   - As nobody, with the store root's and read-only to nobody: a step's
#     outputs cannot be stored. anneal exits 3 naming the store path (the
#     step is not failed: its work is done); once the store is nobody's
#     again, resume stores them without running the step again.
#   - .anneal/ on a tmpfs remounted read-only: `run` exits 3 naming the
#     database and "Read-only file system"; remounted read-write, it runs.
. "$(dirname "$0")/lib.sh"

one_line() { # WHAT FILE
	[ "$(wc -l <"$2")" = 1 ] || fail "$1: expected one line on stderr, saw:
$(sed 's/^/  | /' "$2")"
}
runs_in() { # DB: how many runs it records
	"$PY" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM runs").fetchone()[0])' "$1"
}

anneal init >/dev/null
DB=$WS/.anneal/state.db

# ---- as another user ------------------------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
	echo "SKIP [$TEST_NAME]: other-user cases need root and setpriv"
else
	as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$ANNEAL_BIN" "$@" </dev/null; }
	chmod 755 "$T" "$WS"
	chmod 777 "$WS/e2e"
	chmod 666 "$LOG"
	recipe a.json a "$(stage a 'value=a' '"outputs": {"o": "dataset"}')"
	recipe b.json b "$(stage b 'value=b' '"outputs": {"o": "dataset"}')"
	rc=0
	as_nobody run a.json >out1 2>err1 || rc=$?
	assert_rc "run by nobody in root's workspace" 3 "$rc" out1 err1
	one_line "run by nobody in root's workspace" err1
	assert_grep "the error names the database" err1 \
		"^anneal: state database '$DB': .*(Permission denied)\$"
	assert_eq "runs recorded" 0 "$(runs_in "$DB")"
	pass "nobody in root's workspace: exit 3 naming state.db"

	chown -R nobody "$WS/.anneal"
	rc=0
	as_nobody run a.json >out2 2>err2 || rc=$?
	assert_rc "run by nobody in nobody's workspace" 0 "$rc" out2 err2
	chown -R root "$WS/.anneal/store"
	chmod -R go-w "$WS/.anneal/store"
	chmod -R go+rX "$WS/.anneal/store"
	rc=0
	as_nobody run b.json >out3 2>err3 || rc=$?
	assert_rc "run by nobody with root's store" 3 "$rc" out3 err3
	one_line "run by nobody with root's store" err3
	assert_grep "the error names the store" err3 \
		"^anneal: step 'b': output 'o': .*'$WS/.anneal/store[^']*'.*: Permission denied\$"
	assert_eq "b starts" 1 "$(starts 2 b)"
	assert_eq "b's attempt is not failed" running "$(sj 2 "s['b']['last_attempt']['state']")"
	chown -R nobody "$WS/.anneal/store"
	rc=0
	as_nobody resume 2 >out4 2>err4 || rc=$?
	assert_rc "resume once the store is nobody's" 0 "$rc" out4 err4
	assert_eq "b starts (not run again)" 1 "$(starts 2 b)"
	assert_eq "run 2" succeeded "$(sj 2 'd["state"]')"
	rc=0
	anneal audit --deep >aout 2>aerr || rc=$?
	assert_rc "audit --deep" 0 "$rc" aout aerr
	pass "a store anneal may not write: exit 3 naming it; resume stores the outputs"
fi

# ---- a read-only file system ---------------------------------------------------------
RO=$T/ro
mkdir -p "$RO/e2e" "$RO/.anneal"
on_tmpfs "$RO/.anneal" 8m
cd "$RO"
WS=$RO LOG=$RO/e2e/starts.log
touch "$LOG"
anneal init >/dev/null
recipe r.json r "$(stage r 'value=r' '"outputs": {"o": "dataset"}')"
mount -o remount,ro "$RO/.anneal"
rc=0
anneal run r.json >out5 2>err5 || rc=$?
assert_rc "run on a read-only workspace" 3 "$rc" out5 err5
one_line "run on a read-only workspace" err5
assert_grep "the error names the database and why" err5 \
	"^anneal: state database '$RO/.anneal/state.db': .*\(Read-only file system\|readonly\)"
assert_eq "r starts" 0 "$(starts 1 r)"
mount -o remount,rw "$RO/.anneal"
rc=0
anneal run r.json >out6 2>err6 || rc=$?
assert_rc "run once the workspace is writable again" 0 "$rc" out6 err6
pass "a read-only workspace: exit 3 naming the database"
