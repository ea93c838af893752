#!/bin/sh
# tests/e2e/test_clock_jump.sh — a wall clock that jumps by hours changes
# no timeout, no backoff and no recorded duration's sign.
#
# anneal runs under tests/e2e/clockjump.c (LD_PRELOAD), which adds the
# seconds in $E2E_CLOCK_JUMP_FILE to every wall-clock reading; the system
# clock is not touched. While a step runs:
#   - the clock jumps 5 hours ahead: a step with "timeout": 8 that takes
#     about 2 s still succeeds (a wall-clock deadline would fire at once);
#   - the clock jumps 5 hours back: a 30 s step with "timeout": 2 is still
#     stopped in seconds (a wall-clock deadline would wait 5 hours);
#   - during a retry's 2 s backoff the clock jumps 5 hours back: the retry
#     starts within seconds.
# Every recorded duration (attempts, steps, runs) is >= 0.
. "$(dirname "$0")/lib.sh"

CC=${CC:-cc}
if ! "$CC" -shared -fPIC -O2 -o "$T/clockjump.so" "$E2E_DIR/clockjump.c" -ldl 2>"$T/cc.err"; then
	echo "SKIP [$TEST_NAME]: cannot build the LD_PRELOAD clock shim: $(cat "$T/cc.err")"
	exit 0
fi
JUMP=$T/jump
echo 0 >"$JUMP"
# A sanitizer runtime must come first; the shim goes after it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}verify_asan_link_order=0"
jumped() { # ARGS: anneal ARGS with the moved clock
	E2E_CLOCK_JUMP_FILE=$JUMP LD_PRELOAD=$T/clockjump.so "$ANNEAL_BIN" "$@" </dev/null
}
jumped_bg() { # OUT ERR ARGS
	_o=$1 _e=$2
	shift 2
	E2E_CLOCK_JUMP_FILE=$JUMP LD_PRELOAD=$T/clockjump.so "$ANNEAL_BIN" "$@" </dev/null >"$_o" 2>"$_e" &
	apid=$!
}
# The shim really moves the clock.
[ "$(E2E_CLOCK_JUMP_FILE=$JUMP LD_PRELOAD=$T/clockjump.so sh -c 'echo 36000 >"$E2E_CLOCK_JUMP_FILE"; date +%s')" -gt $(($(date +%s) + 30000)) ] ||
	fail "clockjump.so does not move date(1)'s clock"
echo 0 >"$JUMP"

anneal init >/dev/null

# ---- forward: no early timeout --------------------------------------------------
recipe fwd.json fwd "$(stage f 'block=go-f sleep=2 value=f' '"timeout": 8, "outputs": {"o": "dataset"}')"
jumped_bg out1 err1 run fwd.json
wait_for "f to start" started 1 f
echo 18000 >"$JUMP"
release go-f
wait_exit "$apid"
assert_rc "run across a 5 h forward jump" 0 "$rc" out1 err1
assert_eq "f" succeeded "$(sj 1 "s['f']['state']")"
assert_grep "f ended by itself" "$LOG" '^end 1 f 1 0$'
pass "a forward jump of 5 h fires no timeout early"

# ---- backward: no missed timeout ----------------------------------------------------
echo 0 >"$JUMP"
recipe back.json back "$(stage g 'block=go-g sleep=30 term=default' '"timeout": 2')"
jumped_bg out2 err2 run back.json
wait_for "g to start" started 2 g
echo -18000 >"$JUMP"
t0=$(date +%s)
release go-g
wait_exit "$apid"
t1=$(date +%s)
assert_rc "run across a 5 h backward jump" 1 "$rc" out2 err2
assert_eq "g's attempt" timeout "$(sj 2 "s['g']['last_attempt']['state']")"
[ $((t1 - t0)) -lt 20 ] || fail "timeout 2 took $((t1 - t0)) s after the clock went back"
pass "a backward jump of 5 h does not delay a timeout"

# ---- backward during a backoff -----------------------------------------------------------
echo 0 >"$JUMP"
recipe retry.json retry "$(stage r 'fail_attempts=1 value=r' '"retries": {"max": 1, "backoff": "2s"}, "outputs": {"o": "dataset"}')"
jumped_bg out3 err3 run retry.json
wait_for "r's first attempt to fail" has_line "$LOG" '^end 3 r 1 1$'
echo -18000 >"$JUMP"
wait_exit "$apid"
assert_rc "run whose retry waits across a backward jump" 0 "$rc" out3 err3
assert_eq "r's attempts" 2 "$(sj 3 "s['r']['attempts']")"
pass "a backward jump during a backoff does not delay the retry"

# ---- no negative durations -------------------------------------------------------------
neg=$("$PY" - "$WS/.anneal/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for q in ("SELECT 'attempt ' || run_id || ' ' || step_id || ' ' || n, finished - started FROM attempts WHERE finished IS NOT NULL",
          "SELECT 'step ' || run_id || ' ' || id, finished - started FROM steps WHERE finished IS NOT NULL AND started IS NOT NULL",
          "SELECT 'run ' || id, finished - created FROM runs WHERE finished IS NOT NULL"):
    for what, d in db.execute(q):
        if d < 0:
            print("%s: %.0f s" % (what, d))
PY
)
assert_eq "negative durations recorded" "" "$neg"
rc=0
jumped status 2 >sout 2>serr || rc=$?
assert_rc "status after the jumps" 0 "$rc" sout serr
assert_no_grep "status shows no negative time" sout ' -[0-9]'
pass "no duration recorded across the jumps is negative"
