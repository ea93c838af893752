#!/bin/sh
# tests/e2e/test_logs.sh — `anneal logs RUN STEP` prints a step's output;
# -f follows it until the step ends, then exits by itself.
. "$(dirname "$0")/lib.sh"

recipe logs.json logs \
	"$(stage talk 'ckpts=1 block_at=1 block=go')" \
	"$(stage flaky 'fail_attempts=1' '"retries": {"max": 1, "backoff": "0s"}')"
anneal_bg out1 err1 run logs.json
drv=$apid
wait_for "talk to block" has_line "$LOG" '^ckpt 1 talk 1 1$'

# Snapshot while running.
rc=0
anneal logs 1 talk >snap 2>snaperr || rc=$?
assert_rc "logs of a running step" 0 "$rc" snap snaperr
assert_grep "stdout so far" snap '^hello from talk attempt 1 (resume=-)$'

# Follow: must not end while talk runs, must end by itself after.
"$ANNEAL_BIN" logs 1 talk -f </dev/null >follow 2>followerr &
fpid=$!
wait_for "logs -f to print the first line" has_line follow '^hello from talk attempt 1'
proc_alive "$fpid" || fail "logs -f exited while the step still runs: $(cat follow followerr)"
assert_no_grep "nothing past the block yet" follow 'bye from talk'
release go
wait_exit "$fpid"
assert_rc "logs -f after the step ended" 0 "$rc" follow followerr
assert_grep "logs -f saw the last line" follow '^bye from talk attempt 1$'
assert_eq "logs -f printed each line once" 1 "$(grep -c '^hello from talk' follow)"
wait_exit "$drv"
assert_rc "run" 0 "$rc" out1 err1
pass "logs -f follows a step until it ends"

rc=0
anneal logs 1 talk >full 2>fullerr || rc=$?
assert_rc "logs of a finished step" 0 "$rc" full fullerr
assert_grep "stdout" full '^hello from talk attempt 1 (resume=-)$'
assert_grep "stdout" full '^bye from talk attempt 1$'
assert_grep "stderr after stdout" full '^step talk attempt 1 on stderr$'
[ "$(grep -n 'bye from talk' full | cut -d: -f1)" -lt "$(grep -n 'on stderr' full | cut -d: -f1)" ] ||
	fail "logs: expected stdout then stderr, saw: $(cat full)"
rc=0
anneal logs 1 talk --stdout >so 2>/dev/null || rc=$?
assert_rc "logs --stdout" 0 "$rc"
assert_no_grep "--stdout leaves out stderr" so 'on stderr'
rc=0
anneal logs 1 talk -f >f2 2>f2err || rc=$?
assert_rc "logs -f of a finished step returns at once" 0 "$rc" f2 f2err
assert_grep "logs -f of a finished step" f2 '^bye from talk attempt 1$'
pass "logs prints stdout then stderr; -f of a finished step returns"

# --attempt: the failed first attempt of flaky, and its latest (second).
anneal logs 1 flaky --attempt 1 >a1 2>&1 || :
assert_grep "attempt 1 output" a1 '^hello from flaky attempt 1 '
assert_grep "attempt 1's error" a1 'failing attempt 1 of 1 on purpose'
anneal logs 1 flaky >latest 2>&1 || :
assert_grep "latest attempt" latest '^hello from flaky attempt 2 '
assert_no_grep "latest attempt only" latest 'attempt 1 '
pass "logs --attempt N picks the attempt; the default is the latest"

rc=0
anneal logs 1 nosuch >ns 2>nserr || rc=$?
[ "$rc" -ne 0 ] || fail "logs of an unknown step exited 0"
assert_grep "error names the step" nserr "^anneal: .*nosuch"
pass "logs of an unknown step fails with a message"
