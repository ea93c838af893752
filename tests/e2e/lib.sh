# tests/e2e/lib.sh — shared helpers for the end-to-end scripts (sourced).
#
# Each test script does
#     . "$(dirname "$0")/lib.sh"
# and then gets:
#   $ANNEAL_BIN  the binary under test (absolute; default ./bin/anneal)
#   $STEP        tests/e2e/step.sh, the fake engine (see its header)
#   $T           a fresh temporary dir, removed at exit (kept with E2E_KEEP=1)
#   $WS          $T/ws, the workspace root and the cwd of the test; $WS/e2e
#                is step.sh's shared state (starts.log, pids/, locks/)
# At exit, every process still running with its cwd under $T (anneal
# drivers, shims, steps and their children: everything the test started)
# is killed by pid, then $T is removed.
#
# Synchronisation is by polling (wait_for) with a deadline (E2E_TIMEOUT,
# 60 s), never by fixed sleeps. assert_* failures print what was expected
# and what was seen, and exit 1; expect_eq prints the same but lets the test
# go on (for checks nothing later depends on) and fails it at exit. A
# sanitizer report in anneal's stderr or a step's output.log fails it too.
set -u

: "${ANNEAL_BIN:=$(pwd)/bin/anneal}"
case $ANNEAL_BIN in
/*) ;;
*) ANNEAL_BIN=$(pwd)/$ANNEAL_BIN ;;
esac
export ANNEAL_BIN
if [ ! -x "$ANNEAL_BIN" ]; then
	echo "FAIL: ANNEAL_BIN '$ANNEAL_BIN' is not executable (run make)" >&2
	exit 1
fi
# Only the test that asks for a fault gets one.
unset ANNEAL_FAULT ANNEAL_DEBUG 2>/dev/null || :

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
STEP=$E2E_DIR/step.sh
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
E2E_TIMEOUT=${E2E_TIMEOUT:-60}
TEST_NAME=$(basename "$0" .sh)

T=$(mktemp -d "${TMPDIR:-/tmp}/anneal-e2e-$TEST_NAME.XXXXXX")
WS=$T/ws
mkdir -p "$WS/e2e"
cd "$WS" || exit 1

# ---- cleanup ---------------------------------------------------------------

# Pids (numeric) of processes whose cwd is under $T, except this shell.
e2e_procs() {
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" != $$ ] || continue
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		case $cwd in
		"$T" | "$T"/*) echo "$pid" ;;
		esac
	done
}

e2e_cleanup() {
	status=$?
	trap - EXIT INT TERM
	cd /
	# A sanitizer build reports into anneal's stderr (the test's files at
	# the workspace root) or, for the shim, the step's output.log.
	san=$(grep -l -e 'Sanitizer' -e 'runtime error:' "$WS"/* \
		"$WS"/.anneal/runs/*/*/a*/output.log 2>/dev/null | head -n 5)
	if [ -n "$san" ]; then
		for f in $san; do
			echo "FAIL [$TEST_NAME]: sanitizer report in $f:" >&2
			grep -A 12 -e 'Sanitizer' -e 'runtime error:' "$f" | head -n 30 | sed 's/^/  | /' >&2
		done
		[ "$status" -ne 0 ] || status=1
	fi
	if [ -s "$T/deferred" ]; then
		echo "FAIL [$TEST_NAME]: $(wc -l <"$T/deferred") failed check(s) above" >&2
		[ "$status" -ne 0 ] || status=1
	fi
	# Twice: a shim may start something between the scan and the kill.
	for round in 1 2; do
		for pid in $(e2e_procs); do
			kill -9 "$pid" 2>/dev/null || :
		done
	done
	# What on_tmpfs mounted, innermost first, before $T goes.
	for m in $E2E_MOUNTS; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || :
	done
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		echo "  (workspace kept: $T)" >&2
	else
		rm -rf "$T"
		[ "$status" -eq 0 ] || echo "  (E2E_KEEP=1 keeps the workspace)" >&2
	fi
	exit "$status"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- small file systems ---------------------------------------------------------

# on_tmpfs DIR SIZE [MODE]: DIR (its contents kept) becomes a tmpfs of SIZE
# (mode 0700 unless given), unmounted at exit. Needs root: where a tmpfs
# cannot be mounted the test prints SKIP and exits 0.
E2E_MOUNTS=
on_tmpfs() {
	mkdir -p "$1"
	rm -rf "$1.keep"
	cp -a "$1" "$1.keep"
	if ! mount -t tmpfs -o "size=$2,mode=${3:-0700}" tmpfs "$1" 2>"$T/mount.err"; then
		echo "SKIP [$TEST_NAME]: cannot mount a tmpfs ($(cat "$T/mount.err")); needs root"
		rm -rf "$1.keep"
		exit 0
	fi
	E2E_MOUNTS="$1 $E2E_MOUNTS"
	cp -a "$1.keep/." "$1/"
	rm -rf "$1.keep"
}

# ---- failing and asserting --------------------------------------------------

fail() {
	printf 'FAIL [%s]: %s\n' "$TEST_NAME" "$*" >&2
	if [ -s "$WS/e2e/starts.log" ]; then
		echo "  --- e2e/starts.log:" >&2
		tail -n 40 "$WS/e2e/starts.log" | sed 's/^/  | /' >&2
	fi
	exit 1
}

# assert_eq WHAT EXPECTED SEEN
assert_eq() {
	[ "$2" = "$3" ] || fail "$1: expected '$2', saw '$3'"
}

# expect_eq WHAT EXPECTED SEEN: as assert_eq, but the test goes on; the
# failure is reported, and fails the test, at exit. For checks that later
# ones do not depend on.
expect_eq() {
	if [ "$2" != "$3" ]; then
		echo "$1" >>"$T/deferred"
		printf 'FAIL (going on) [%s]: %s: expected '"'"'%s'"'"', saw '"'"'%s'"'"'\n' "$TEST_NAME" "$1" "$2" "$3" >&2
	fi
}

# assert_rc WHAT EXPECTED SEEN [FILE...]: an exit status; FILEs shown on failure.
assert_rc() {
	what=$1 want=$2 got=$3
	shift 3
	if [ "$want" != "$got" ]; then
		msg="$what: expected exit status $want, saw $got"
		for f in "$@"; do
			msg="$msg
  --- $f:
$(tail -n 30 "$f" 2>/dev/null | sed 's/^/  | /')"
		done
		fail "$msg"
	fi
}

# assert_grep WHAT FILE PATTERN: FILE has a line matching the basic regex.
assert_grep() {
	grep -q -e "$3" "$2" 2>/dev/null ||
		fail "$1: expected a line matching '$3' in $2, saw:
$(sed 's/^/  | /' "$2" 2>/dev/null | tail -n 30)"
}

# assert_no_grep WHAT FILE PATTERN
assert_no_grep() {
	if grep -q -e "$3" "$2" 2>/dev/null; then
		fail "$1: expected no line matching '$3' in $2, saw:
$(grep -e "$3" "$2" | sed 's/^/  | /' | head -n 10)"
	fi
}

# ---- waiting ----------------------------------------------------------------

# wait_for WHAT COMMAND [ARGS...]: polls COMMAND until it succeeds, or fails
# the test after $E2E_TIMEOUT seconds saying what it was waiting for.
wait_for() {
	what=$1
	shift
	deadline=$(($(date +%s) + E2E_TIMEOUT))
	while ! "$@" >/dev/null; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			fail "timed out after ${E2E_TIMEOUT}s waiting for: $what ($*)"
		fi
		sleep 0.05
	done
}

# wait_exit PID: waits (polling, with the deadline) for a background child
# to end, then reaps it; sets $rc to its exit status.
wait_exit() {
	wait_for "process $1 to exit" proc_gone "$1"
	rc=0
	wait "$1" || rc=$?
}

# ---- conditions (usable with wait_for) ----------------------------------------

# proc_alive PID: exists and is not a zombie (a dead child not yet reaped).
proc_alive() {
	[ -r "/proc/$1/stat" ] || return 1
	s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
proc_gone() { ! proc_alive "$1"; }

# pgroup_gone PGID: no live process is left in process group PGID.
pgroup_gone() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v pg="$1" '
		{ sub(/^.*\) /, ""); if ($3 == pg && $1 != "Z" && $1 != "X") live = 1 }
		END { exit live }'
}

has_line() { grep -q -e "$2" "$1" 2>/dev/null; }
file_exists() { [ -e "$1" ]; }

# ---- anneal and its state -------------------------------------------------------

# anneal ARGS...: the binary under test, stdin from /dev/null.
anneal() { "$ANNEAL_BIN" "$@" </dev/null; }

# anneal_bg OUT ERR ARGS...: starts anneal ARGS in the background, stdout to
# OUT, stderr to ERR; sets $apid to the pid of anneal itself (not of a
# subshell: kill -9 $apid kills anneal).
anneal_bg() {
	_o=$1 _e=$2
	shift 2
	"$ANNEAL_BIN" "$@" </dev/null >"$_o" 2>"$_e" &
	apid=$!
}

# sj RUN EXPR: evaluates the Python expression EXPR on `anneal status RUN
# --json`, with d = the document and s = {step id: step}; prints the result
# (strings bare, the rest as JSON). Fails (status 1) when status fails.
sj() {
	_out=$("$ANNEAL_BIN" status "$1" --json </dev/null 2>/dev/null) || return 1
	printf '%s' "$_out" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
s = {x["id"]: x for x in d.get("steps", [])}
v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))
' "$2"
}

# Conditions on status --json.
run_state_is() { [ "$(sj "$1" 'd["state"]')" = "$2" ]; }
step_state_is() { [ "$(sj "$1" "s['$2']['state']")" = "$3" ]; }
driver_alive_is() { [ "$(sj "$1" 'd["driver_alive"]')" = "$2" ]; }

# driver_gone RUN: waits until no process holds RUN's driver lock. Right
# after anneal is kill -9'd, a step it had just spawned may still hold a
# copy for a moment (the vfork'd child lets its parent go before it closes
# its close-on-exec descriptors), so a resume must wait for this first.
driver_gone() {
	wait_for "run $1's driver lock to be released" driver_alive_is "$1" false
}

# ---- step.sh's records -------------------------------------------------------------

LOG=$WS/e2e/starts.log
touch "$LOG"

# starts RUN STEP: how many copies of STEP were started in RUN.
starts() { grep -c "^start $1 $2 " "$LOG" || :; }
# successes RUN STEP: how many copies of STEP ended with 0.
successes() { grep -c "^end $1 $2 [0-9]* 0\$" "$LOG" || :; }
# started RUN STEP [N]: at least N (1) copies of STEP started (for wait_for).
started() { [ "$(starts "$1" "$2")" -ge "${3:-1}" ]; }
# step_pid RUN STEP: the pid of the latest copy of STEP.
step_pid() { cat "$WS/e2e/pids/$1.$2"; }
# step_pgid RUN STEP: the process group of the latest copy of STEP.
step_pgid() { cat "$WS/e2e/pids/$1.$2.pgid"; }
# step_gone RUN STEP: the latest copy of STEP and its whole process group
# (the job: shim, step, children) are gone.
step_gone() {
	_pg=$(step_pgid "$1" "$2")
	_mine=$(sed 's/.*) //' /proc/$$/stat | cut -d' ' -f3)
	[ "$_pg" != "$_mine" ] || fail "step $2 runs in the test's own process group $_pg"
	proc_gone "$(step_pid "$1" "$2")" && pgroup_gone "$_pg"
}
# release NAME: creates e2e/NAME, which step.sh block=NAME waits for.
release() { : >"$WS/e2e/$1"; }

# no_concurrent: no step ever saw another live copy of itself.
assert_no_concurrent() {
	assert_no_grep "two copies of one step at once" "$LOG" '^CONCURRENT'
	assert_no_grep "step.sh errors" "$LOG" '^ERROR'
}

# ---- recipes ------------------------------------------------------------------------

# stage ID 'OPTIONS' [EXTRA_JSON]: one exec stage running step.sh with
# OPTIONS (words, split on spaces, no quotes); EXTRA_JSON is appended to the
# stage object (e.g. '"after": ["a"], "retries": 1').
stage() {
	id=$1 opts=$2 extra=${3:-}
	args="\"sh\", \"$STEP\""
	for o in $opts; do
		args="$args, \"$o\""
	done
	printf '{"id": "%s", "kind": "exec", "command": [%s]%s}' \
		"$id" "$args" "${extra:+, $extra}"
}

# recipe FILE NAME STAGE_JSON... [-- PARAMS_JSON]: writes a recipe.
recipe() {
	file=$1 name=$2
	shift 2
	params='{}'
	body=
	while [ $# -gt 0 ]; do
		if [ "$1" = -- ]; then
			params=$2
			break
		fi
		body="$body${body:+,
    }$1"
		shift
	done
	printf '{\n  "name": "%s",\n  "params": %s,\n  "stages": [\n    %s\n  ]\n}\n' \
		"$name" "$params" "$body" >"$file"
}

pass() { echo "ok: $*"; }
