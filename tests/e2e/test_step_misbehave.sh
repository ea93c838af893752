#!/bin/sh
# tests/e2e/test_step_misbehave.sh — steps that do what engines should not.
#
# A step that forks a daemon (double fork, setsid: out of its process
# group) and exits: the run does not wait for the daemon, the step is
# recorded succeeded, and the daemon does not outlive the attempt (the shim,
# a child subreaper, SIGTERMs it and says so in the step's log). A step that
# closes stdout and stderr and goes on: recorded when it exits, not at EOF.
# A step that ignores SIGTERM: `anneal cancel` escalates to SIGKILL after the
# grace period, with a driver (run --grace 1s) and without one (the default
# 10 s of cancel's own driver).
. "$(dirname "$0")/lib.sh"

# ---- a daemon left behind ---------------------------------------------------
recipe daemon.json daemon \
	"$(stage d 'daemon=d1 value=x' '"outputs": {"o": "dataset"}')" \
	"$(stage e 'value=y' '"inputs": {"i": "d.o"}, "outputs": {"o": "dataset"}')"
rc=0
anneal run daemon.json >out1 2>err1 || rc=$?
assert_rc "run with a step that leaves a daemon" 0 "$rc" out1 err1
dpid=$(cat e2e/d1.pid)
[ -n "$dpid" ] || fail "the daemon never wrote its pid"
# The shim reaps it before it records the step's end: gone already.
proc_gone "$dpid" || fail "daemon $dpid of step d outlived its attempt: $(cat /proc/$dpid/cmdline 2>/dev/null | tr '\0' ' ')"
assert_grep "the daemon got SIGTERM" "$LOG" '^daemon-term 1 d 1 d1$'
assert_grep "the step's log says what was left" .anneal/runs/1/d/a1/output.log \
	"^anneal-shim: the step left 1 process running (pid $dpid); sending SIGTERM"
assert_eq "d" succeeded "$(sj 1 "s['d']['state']")"
assert_eq "e" succeeded "$(sj 1 "s['e']['state']")"
assert_eq "d starts" 1 "$(starts 1 d)"
pass "a daemon that left the step's process group is stopped when the step ends"

# ---- stdout and stderr closed early ------------------------------------------
recipe closed.json closed \
	"$(stage c 'close_out=1 block=go-c value=c' '"outputs": {"o": "dataset"}')"
anneal_bg out2 err2 run closed.json
wait_for "c to start" started 2 c
cpid=$(step_pid 2 c)
# Its output is closed; it still runs, and anneal must still see it running.
wait_for "c to close its stdout" sh -c "[ \"\$(readlink /proc/$cpid/fd/1 2>/dev/null)\" = '' ]"
assert_eq "c while it runs with stdout closed" running "$(sj 2 "s['c']['state']")"
proc_alive "$apid" || fail "anneal ended while c was still running"
release go-c
wait_exit "$apid"
assert_rc "run of a step that closed stdout" 0 "$rc" out2 err2
assert_eq "c" succeeded "$(sj 2 "s['c']['state']")"
assert_grep "c wrote its output after closing stdout" .anneal/runs/2/c/out/o/value.txt '^c c$'
assert_grep "c ended by itself" "$LOG" '^end 2 c 1 0$'
assert_no_grep "nothing after the close reached the log" .anneal/runs/2/c/a1/output.log 'bye from'
pass "a step that closes stdout and stderr is recorded when it exits"

# ---- SIGTERM ignored: cancel escalates ----------------------------------------
recipe deaf.json deaf "$(stage deaf 'block=never term=ignore')"
anneal_bg out3 err3 run deaf.json --grace 1s
drv=$apid
wait_for "deaf to start" started 3 deaf
t0=$(date +%s)
rc=0
anneal cancel 3 >cout 2>cerr || rc=$?
assert_rc "anneal cancel 3 (driver alive, step ignores SIGTERM)" 0 "$rc" cout cerr
t1=$(date +%s)
[ $((t1 - t0)) -lt 9 ] || fail "cancel with --grace 1s took $((t1 - t0)) s"
wait_exit "$drv"
assert_rc "driver of run 3 after cancel" 1 "$rc" out3 err3
wait_for "deaf and its group to be gone" step_gone 3 deaf
assert_eq "run 3" cancelled "$(sj 3 'd["state"]')"
assert_eq "deaf's attempt" cancelled "$(sj 3 "s['deaf']['last_attempt']['state']")"
pass "cancel SIGKILLs a step ignoring SIGTERM after the driver's --grace"

anneal_bg out4 err4 run deaf.json
wait_for "deaf to start in run 4" started 4 deaf
kill -9 "$apid"
wait_exit "$apid"
driver_gone 4
proc_alive "$(step_pid 4 deaf)" || fail "deaf died with its driver"
t0=$(date +%s)
rc=0
anneal cancel 4 >cout4 2>cerr4 || rc=$?
t1=$(date +%s)
assert_rc "anneal cancel 4 (no driver, step ignores SIGTERM)" 0 "$rc" cout4 cerr4
wait_for "deaf of run 4 and its group to be gone" step_gone 4 deaf
[ $((t1 - t0)) -ge 9 ] || fail "cancel without a driver gave a step that ignores SIGTERM only $((t1 - t0)) s (grace is 10 s)"
[ $((t1 - t0)) -lt 30 ] || fail "cancel without a driver took $((t1 - t0)) s"
assert_eq "run 4" cancelled "$(sj 4 'd["state"]')"
assert_no_grep "deaf never ended by itself" "$LOG" '^end 4 deaf'
pass "cancel without a driver SIGKILLs a step ignoring SIGTERM after the 10 s grace"
