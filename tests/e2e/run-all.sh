#!/bin/sh
# tests/e2e/run-all.sh — runs the end-to-end scripts tests/e2e/test_*.sh.
#
#   sh tests/e2e/run-all.sh [NAME...]     (NAME: e.g. cache for test_cache.sh)
#
# Each script runs in a subshell of its own, with its output captured: one
# line "PASS name (Ns)" or "FAIL name (Ns)" per script, the captured output
# of failed ones (indented), and at the end exactly one line "N passed, M
# failed". Exit status 1 when any failed. ANNEAL_BIN defaults to
# ./bin/anneal; `make e2e` sets it (and `make e2e SAN=1` to the sanitizer
# build). A script still running after E2E_TEST_TIMEOUT seconds (300) is
# stopped and counts as failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
: "${ANNEAL_BIN:=$(pwd)/bin/anneal}"
case $ANNEAL_BIN in
/*) ;;
*) ANNEAL_BIN=$(pwd)/$ANNEAL_BIN ;;
esac
export ANNEAL_BIN
limit=${E2E_TEST_TIMEOUT:-300}

if [ $# -gt 0 ]; then
	tests=
	for name in "$@"; do
		name=${name#test_}
		name=${name%.sh}
		[ -f "$here/test_$name.sh" ] || {
			echo "run-all: no test $here/test_$name.sh" >&2
			exit 2
		}
		tests="$tests $here/test_$name.sh"
	done
else
	tests=$(ls "$here"/test_*.sh)
fi

logdir=$(mktemp -d "${TMPDIR:-/tmp}/anneal-e2e-logs.XXXXXX")
trap 'rm -rf "$logdir"' EXIT
trap 'exit 130' INT TERM

if command -v timeout >/dev/null 2>&1; then
	run_limited() { timeout -k 10 "$limit" "$@"; }
else
	run_limited() { "$@"; }
fi

pass=0
fail=0
t_all=$(date +%s)
for t in $tests; do
	name=$(basename "$t" .sh)
	t0=$(date +%s)
	rc=0
	(run_limited sh "$t") </dev/null >"$logdir/$name.log" 2>&1 || rc=$?
	secs=$(($(date +%s) - t0))
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1))
		echo "PASS $name (${secs}s)"
	else
		fail=$((fail + 1))
		case $rc in
		124 | 137) why="timed out after ${limit}s" ;;
		*) why="exit $rc" ;;
		esac
		echo "FAIL $name (${secs}s, $why)"
		sed 's/^/    | /' "$logdir/$name.log"
	fi
done
echo "(e2e: $(($(date +%s) - t_all))s with $ANNEAL_BIN)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
