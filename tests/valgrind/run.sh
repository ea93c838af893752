#!/bin/sh
# tests/valgrind/run.sh — the end-to-end subset under valgrind memcheck.
#
#   sh tests/valgrind/run.sh [NAME...]    (default: the subset below)
#
# Every anneal process the scripts start runs under memcheck (through
# tests/valgrind/anneal, which run-all.sh gets as ANNEAL_BIN); each writes
# its report to a log of its own. The subset passes when every script passes
# and no log holds an error: an invalid read or write, a conditional jump on
# uninitialised memory, a bad free or a block definitely or indirectly lost
# at exit. Processes the scripts kill -9 on purpose leave empty logs (no
# leak check runs), which is correct.
#
# The subset: scripts that drive most of anneal's commands (run, resume,
# cache, add/ls/show/tag, lineage, export/import, audit, merge, logs,
# status, and the refusals of hostile names, params and bundles) without
# long waits: memcheck runs anneal 20-50x slower (a step's
# own time is unchanged: the engine and the shim are not traced), so the
# rest (gc, retries, crash_resume, the Pangu recipe) would take too long for
# CI; `sh tests/valgrind/run.sh NAME...` runs any of them by hand.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SUBSET="cache artifacts bundles provenance status events logs merge_stage env
	hostile permissions"
command -v valgrind >/dev/null 2>&1 || {
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			-o DPkg::Lock::Timeout=300 valgrind >/dev/null
	fi
	command -v valgrind >/dev/null 2>&1 || {
		echo "valgrind: not installed (Debian: apt-get install valgrind)" >&2
		exit 3
	}
}
: "${ANNEAL_REAL_BIN:=$root/bin/anneal}"
[ -x "$ANNEAL_REAL_BIN" ] || { echo "valgrind: $ANNEAL_REAL_BIN not built (run make)" >&2; exit 3; }

VG_LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/anneal-valgrind.XXXXXX")
trap 'rm -rf "$VG_LOGDIR"' EXIT
export ANNEAL_REAL_BIN VG_LOGDIR
# memcheck is slow: conditions get longer deadlines, scripts longer limits.
export E2E_TIMEOUT=${E2E_TIMEOUT:-240} E2E_TEST_TIMEOUT=${E2E_TEST_TIMEOUT:-900}

rc=0
# shellcheck disable=SC2086
ANNEAL_BIN=$here/anneal sh "$root/tests/e2e/run-all.sh" ${*:-$SUBSET} || rc=1

n=0 bad=0
for log in "$VG_LOGDIR"/vg.*.log; do
	[ -e "$log" ] || continue
	n=$((n + 1))
	# --quiet: a log holds something only when memcheck found something.
	if [ -s "$log" ]; then
		bad=$((bad + 1))
		echo "FAIL valgrind: $(basename "$log"):" >&2
		head -n 40 "$log" | sed 's/^/  | /' >&2
	fi
done
echo "valgrind: $n anneal processes checked, $bad with errors"
[ "$n" -gt 0 ] || { echo "valgrind: no anneal process ran under memcheck" >&2; rc=1; }
[ "$bad" -eq 0 ] || rc=1
exit $rc
