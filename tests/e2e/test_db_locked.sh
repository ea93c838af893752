#!/bin/sh
# tests/e2e/test_db_locked.sh — another process holding the state
# database's write lock (BEGIN IMMEDIATE from Python's sqlite3).
#
# Held for a couple of seconds while a run records a step's end: the driver
# waits (busy timeout, 10 s by default) and goes on; the run completes with
# every step run once. Held longer than ANNEAL_BUSY_TIMEOUT_MS: `run`,
# a driver mid-run, `add` and `gc` each exit 3 with one line naming the
# database and saying it is locked; nothing is half-done (no run created,
# no artifact registered, audit clean); once the lock is gone, resume
# finishes the run without running a finished step again.
. "$(dirname "$0")/lib.sh"

DB=$WS/.anneal/state.db

# hold_lock NAME: a process holding the write lock until e2e/NAME.release
# exists (or, with a second argument SECS, that long after e2e/NAME.after
# exists); e2e/NAME.held appears once the lock is taken. Sets $hpid.
hold_lock() {
	"$PY" - "$DB" "$WS/e2e/$1" "${2:-}" <<'PY' &
import os, sqlite3, sys, time
db, base, secs = sys.argv[1], sys.argv[2], sys.argv[3]
c = sqlite3.connect(db, timeout=30, isolation_level=None)
c.execute("BEGIN IMMEDIATE")
open(base + ".held", "w").close()
if secs:
    while not os.path.exists(base + ".after"):
        time.sleep(0.02)
    time.sleep(float(secs))
else:
    while not os.path.exists(base + ".release"):
        time.sleep(0.02)
c.execute("ROLLBACK")
c.close()
open(base + ".released", "w").close()
PY
	hpid=$!
	wait_for "the lock $1 to be held" file_exists "$WS/e2e/$1.held"
}
unlock() { : >"$WS/e2e/$1.release"; wait_exit "$hpid"; }

one_line() { # WHAT FILE
	[ "$(wc -l <"$2")" = 1 ] || fail "$1: expected one line on stderr, saw:
$(sed 's/^/  | /' "$2")"
}

anneal init >/dev/null

# ---- a lock held for 2 s while the driver records a step's end -------------------
recipe brief.json brief \
	"$(stage a 'block=go-a value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'value=b' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')"
anneal_bg out1 err1 run brief.json
drv=$apid
wait_for "a to start" started 1 a
hold_lock brief 2
release go-a
wait_for "a to end" has_line "$LOG" '^end 1 a 1 0$'
: >"$WS/e2e/brief.after"
# While the lock is held the driver cannot record a's end.
assert_eq "a while the database is locked" running "$(sj 1 "s['a']['state']")"
wait_exit "$hpid"
wait_exit "$drv"
assert_rc "run while another process held the lock for 2 s" 0 "$rc" out1 err1
assert_eq "a starts" 1 "$(starts 1 a)"
assert_eq "b starts" 1 "$(starts 1 b)"
assert_no_grep "no complaint" err1 'locked'
pass "a driver waits out a lock held for 2 s and goes on"

export ANNEAL_BUSY_TIMEOUT_MS=700

# ---- run: refused before it records anything ------------------------------------
hold_lock run
rc=0
anneal run brief.json >out2 2>err2 || rc=$?
assert_rc "run while the database stays locked" 3 "$rc" out2 err2
one_line "run while locked" err2
assert_grep "the error names the database" err2 \
	"^anneal: state database '$DB' is locked by another process (waited 700 ms"
unlock run
assert_eq "runs after the refused run" 1 "$("$PY" -c '
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM runs").fetchone()[0])' "$DB")"
pass "run exits 3 naming the locked database, and creates nothing"

# ---- a driver mid-run ------------------------------------------------------------
recipe mid.json mid \
	"$(stage a 'block=go-m value=m' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'value=n' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')"
anneal_bg out3 err3 run mid.json
drv=$apid
wait_for "a of run 2 to start" started 2 a
hold_lock mid
release go-m
wait_exit "$drv"
assert_rc "driver while the database stays locked" 3 "$rc" out3 err3
assert_grep "the driver's error names the database" err3 \
	"^anneal: state database '$DB' is locked by another process (waited 700 ms"
assert_eq "error lines" 1 "$(grep -c '^anneal: ' err3)"
assert_grep "a ended by itself" "$LOG" '^end 2 a 1 0$'
assert_eq "a of run 2 (its end not recorded yet)" running "$(sj 2 "s['a']['state']")"
unlock mid
unset ANNEAL_BUSY_TIMEOUT_MS
rc=0
anneal resume 2 >out3r 2>err3r || rc=$?
assert_rc "resume once the lock is gone" 0 "$rc" out3r err3r
assert_eq "a of run 2 starts (not run again)" 1 "$(starts 2 a)"
assert_eq "b of run 2 starts" 1 "$(starts 2 b)"
assert_eq "run 2" succeeded "$(sj 2 'd["state"]')"
pass "a driver that outwaits its busy timeout exits 3; resume finishes the run"
export ANNEAL_BUSY_TIMEOUT_MS=700

# ---- add and gc ------------------------------------------------------------------
mkdir -p "$T/ext"
echo "made outside" >"$T/ext/data.txt"
before=$(anneal ls --json)
hold_lock reg
rc=0
anneal add "$T/ext" --name ext --type dataset --copy >out4 2>err4 || rc=$?
assert_rc "add while the database stays locked" 3 "$rc" out4 err4
one_line "add while locked" err4
assert_grep "add's error names the database" err4 "^anneal: .*state database '$DB' is locked"
rc=0
anneal gc >out5 2>err5 || rc=$?
assert_rc "gc while the database stays locked" 3 "$rc" out5 err5
one_line "gc while locked" err5
assert_grep "gc's error names the database" err5 "^anneal: .*state database '$DB' is locked"
unlock reg
assert_eq "artifacts after the refused add" "$before" "$(anneal ls --json)"
rc=0
anneal audit --deep >aout 2>aerr || rc=$?
assert_rc "audit --deep after the refused add and gc" 0 "$rc" aout aerr
rc=0
anneal add "$T/ext" --name ext --type dataset --copy >out6 2>err6 || rc=$?
assert_rc "add once the lock is gone" 0 "$rc" out6 err6
rc=0
anneal gc >out7 2>err7 || rc=$?
assert_rc "gc once the lock is gone" 0 "$rc" out7 err7
rc=0
anneal audit --deep >aout 2>aerr || rc=$?
assert_rc "audit --deep at the end" 0 "$rc" aout aerr
pass "add and gc exit 3 naming the locked database and change nothing"
