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
assert_grep "stderr too" full '^step talk attempt 1 on stderr$'
# One log, interleaved as written: hello (stdout), stderr line, bye (stdout).
assert_eq "interleaved order" "hello from talk attempt 1 (resume=-)
step talk attempt 1 on stderr
bye from talk attempt 1" "$(grep -e '^hello' -e 'on stderr$' -e '^bye' full)"
rc=0
anneal logs 1 talk -f >f2 2>f2err || rc=$?
assert_rc "logs -f of a finished step returns at once" 0 "$rc" f2 f2err
assert_grep "logs -f of a finished step" f2 '^bye from talk attempt 1$'
pass "logs prints stdout and stderr as written; -f of a finished step returns"

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

# -f on a step whose driver was kill -9'd: the step ends while no anneal
# records it; logs -f must still notice the end (the shim's status file and
# lock say so) and exit by itself.
recipe orphan.json orphan "$(stage lone 'ckpts=1 block_at=1 block=go3')"
anneal_bg out3 err3 run orphan.json
wait_for "lone to block" has_line "$LOG" '^ckpt 2 lone 1 1$'
kill -9 "$apid"
wait_exit "$apid"
driver_gone 2
"$ANNEAL_BIN" logs 2 lone -f </dev/null >follow2 2>follow2err &
fpid=$!
wait_for "logs -f of the orphan to print its first line" has_line follow2 '^hello from lone'
release go3
wait_for "lone to end" has_line "$LOG" '^end 2 lone 1 0$'
wait_for "lone's process group to be gone" step_gone 2 lone
saved=$E2E_TIMEOUT
E2E_TIMEOUT=10
deadline=$(($(date +%s) + E2E_TIMEOUT))
while proc_alive "$fpid" && [ "$(date +%s)" -lt "$deadline" ]; do
	sleep 0.05
done
E2E_TIMEOUT=$saved
if proc_alive "$fpid"; then
	expect_eq "logs -f of an orphaned step, 10 s after the step ended" "exited" "still following"
	# Recording the end (resume) must release it.
	rc=0
	anneal resume 2 >out4 2>err4 || rc=$?
	assert_rc "resume of the orphaned run" 0 "$rc" out4 err4
fi
wait_exit "$fpid"
assert_rc "logs -f of the orphan" 0 "$rc" follow2 follow2err
assert_grep "logs -f of the orphan saw the last line" follow2 '^bye from lone attempt 1$'
pass "logs -f of an orphaned step checked"
