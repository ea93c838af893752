#!/bin/sh
# tests/e2e/test_parallel.sh — independent steps run at once up to -j, and
# never more than -j at once.
#
# With -j 4, four independent steps each check in at a barrier and wait
# until all four have: it only fills if the four really run at the same
# time (a step gives up after 20 s and fails). With -j 1, the four steps
# (each holding for a moment) never overlap: starts.log alternates
# start/end.
. "$(dirname "$0")/lib.sh"

# max_overlap RUN: the most steps of RUN running at once, from starts.log.
max_overlap() {
	awk -v run="$1" '
		$2 != run { next }
		$1 == "start" { cur++; if (cur > max) max = cur }
		$1 == "end" { cur-- }
		END { print max + 0 }' "$LOG"
}

recipe fan.json fan \
	"$(stage s1 'barrier=fan:4')" "$(stage s2 'barrier=fan:4')" \
	"$(stage s3 'barrier=fan:4')" "$(stage s4 'barrier=fan:4')" \
	"$(stage join 'value=joined' '"after": ["s1", "s2", "s3", "s4"]')"
rc=0
anneal run fan.json -j 4 --cpus 4 >out1 2>err1 || rc=$?
assert_rc "run -j 4 of a 4-wide fan waiting on a barrier" 0 "$rc" out1 err1
for s in s1 s2 s3 s4 join; do
	assert_eq "state of $s" succeeded "$(sj 1 "s['$s']['state']")"
	assert_eq "starts of $s" 1 "$(starts 1 "$s")"
done
assert_eq "steps running at once with -j 4" 4 "$(max_overlap 1)"
# join only starts after all four ended.
last_fan_end=$(grep -n '^end 1 s[1-4] ' "$LOG" | tail -n 1 | cut -d: -f1)
join_start=$(grep -n '^start 1 join ' "$LOG" | cut -d: -f1)
[ "$join_start" -gt "$last_fan_end" ] ||
	fail "join started (line $join_start) before the fan ended (line $last_fan_end)"
assert_grep "final line" out1 '^run 1 succeeded in [0-9:]* (5 ran, 0 cached)$'
pass "-j 4 runs four steps at once"

# -j 1: one at a time, even with CPUs to spare. --no-cache: the same
# argv would otherwise be reused.
recipe one.json one \
	"$(stage t1 'hold=0.2')" "$(stage t2 'hold=0.2')" \
	"$(stage t3 'hold=0.2')" "$(stage t4 'hold=0.2')"
rc=0
anneal run one.json -j 1 --cpus 4 >out2 2>err2 || rc=$?
assert_rc "run -j 1" 0 "$rc" out2 err2
assert_eq "run 2 state" succeeded "$(sj 2 'd["state"]')"
for s in t1 t2 t3 t4; do
	assert_eq "starts of $s" 1 "$(starts 2 "$s")"
done
assert_eq "steps running at once with -j 1" 1 "$(max_overlap 2)"
pass "-j 1 runs one step at a time"

# Default -j with --cpus 2: capacity 2 (each step needs 1 CPU).
recipe two.json two \
	"$(stage u1 'hold=0.2 value=2')" "$(stage u2 'hold=0.2 value=2')" \
	"$(stage u3 'hold=0.2 value=2')" "$(stage u4 'hold=0.2 value=2')"
rc=0
anneal run two.json --cpus 2 >out3 2>err3 || rc=$?
assert_rc "run --cpus 2" 0 "$rc" out3 err3
m=$(max_overlap 3)
[ "$m" -le 2 ] || fail "--cpus 2 with 1-CPU steps: expected at most 2 at once, saw $m"
pass "--cpus 2 caps 1-CPU steps at 2 at once"
assert_no_concurrent
