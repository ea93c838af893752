#!/bin/sh
# tests/e2e/test_hostile_events.sh — a step's events file cannot exhaust
# anneal's memory, starve the other steps, or delay recording a result.
#
# One run, four steps in parallel:
#   big    makes its events file a 10 GB sparse file (NUL bytes, no
#          newline: one 10 GB line), then waits to be released;
#   flood  appends valid metric lines as fast as it can (FLOOD_MB, 24 MB:
#          ~400,000 events; 8 MB under SAN=1), then exits 0;
#   quick  does nothing much: it must finish while the others run;
#   keep   waits to be released, so the driver stays up to be measured.
# Checks: quick and flood succeed while big holds its 10 GB line; once big
# exits, its result is recorded within 30 s (anneal reads at most
# EVENTS_FILE_MAX of an events file, then warns once); the over-long line
# and the cap are warnings; flood's last metric is the last one it wrote
# (its whole file is read at the end, not just one poll's worth); and the
# driver's peak RSS (VmHWM) stays under 100 MB (a larger bound under
# SAN=1: ASan's allocator quarantine and shadow memory).
#
# Also: an events file replaced by a FIFO, a directory or a symlink to
# /dev/zero is a warning, never a hang or a driver error.
. "$(dirname "$0")/lib.sh"

anneal init >/dev/null
FLOOD_MB=${FLOOD_MB:-24}
RSS_MAX_KB=102400
[ "${SAN:-0}" != 1 ] || { RSS_MAX_KB=716800; FLOOD_MB=${FLOOD_MB_SAN:-8}; }

"$PY" -c '
import json, sys
flood = ("import os\n"
         "f = open(os.environ[\"ANNEAL_EVENTS\"], \"a\")\n"
         "n = 0; size = 0; lim = %d << 20\n"
         "while size < lim:\n"
         "    line = \"{\\\"event\\\":\\\"metric\\\",\\\"name\\\":\\\"loss\\\",\\\"value\\\":%%d,\\\"step\\\":%%d}\\n\" %% (n, n)\n"
         "    f.write(line); size += len(line); n += 1\n"
         "f.close()\n"
         "open(os.environ[\"ANNEAL_OUTPUT_OUT\"] + \"/n\", \"w\").write(str(n - 1))\n") % int(sys.argv[2])
def st(i, cmd, **kw):
    d = {"id": i, "kind": "exec", "command": cmd}
    d.update(kw)
    return d
w = "while [ ! -e e2e/%s ]; do sleep 0.05; done"
json.dump({"name": "ev", "stages": [
  st("big", ["sh", "-c", "truncate -s 10G \"$ANNEAL_EVENTS\" && : >e2e/big-ready && " + (w % "go-big") +
             " && echo done >\"$ANNEAL_OUTPUT_OUT/v\""], outputs={"out": {"type": "dataset"}}),
  st("flood", [sys.argv[1], "-c", flood], outputs={"out": {"type": "dataset"}}),
  st("quick", ["sh", "-c", (w % "big-ready") + " && echo q >\"$ANNEAL_OUTPUT_OUT/v\""],
     outputs={"out": {"type": "dataset"}}),
  st("keep", ["sh", "-c", w % "go-keep"]),
]}, open("ev.json", "w"))
' "$PY" "$FLOOD_MB"

db=$WS/.anneal/state.db
q() { "$PY" -c '
import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=30)
for r in c.execute(sys.argv[2]): print("|".join(str(x) for x in r))
' "$db" "$1"; }

t0=$(date +%s)
anneal_bg run.out run.err run ev.json --jobs 4
wait_for "quick to succeed while big holds a 10 GB line" step_state_is 1 quick succeeded
wait_for "flood to succeed" step_state_is 1 flood succeeded
t_quick=$(($(date +%s) - t0))
assert_eq "big is still running" running "$(sj 1 "s['big']['state']")"
pass "quick and flood ($FLOOD_MB MB of events) finished in ${t_quick}s while big held a 10 GB events line"

release go-big
t1=$(date +%s)
E2E_TIMEOUT=30 wait_for "big's result to be recorded within 30 s of its exit" step_state_is 1 big succeeded
t_big=$(($(date +%s) - t1))
hwm=$(sed -n 's/^VmHWM:[^0-9]*\([0-9]*\) kB/\1/p' "/proc/$apid/status")
[ -n "$hwm" ] || fail "no VmHWM for the driver $apid"
[ "$hwm" -le "$RSS_MAX_KB" ] || fail "driver peak RSS ${hwm} kB, over ${RSS_MAX_KB} kB"
release go-keep
wait_exit "$apid"
assert_rc "the run" 0 "$rc" run.out run.err
pass "big recorded ${t_big}s after release; driver peak RSS ${hwm} kB (bound ${RSS_MAX_KB} kB)"

q "SELECT text FROM events WHERE step_id = 'big' AND kind = 'warning'" >big.warn
assert_grep "the 10 GB line is a warning" big.warn 'events line 1: line too long (over 64 KiB), skipped'
assert_grep "the cap is a warning" big.warn 'events file over 1024 MiB: the rest of it is not read'
assert_eq "each said once" 2 "$(wc -l <big.warn | tr -d ' ')"
last=$(cat "$WS/.anneal/runs/1/flood/out/out/n")
assert_eq "flood's last metric recorded" "$last" \
	"$(q "SELECT CAST(value AS INTEGER) FROM events WHERE step_id = 'flood' AND kind = 'metric' ORDER BY id DESC LIMIT 1")"
assert_eq "every flood metric recorded" "$((last + 1))" \
	"$(q "SELECT count(*) FROM events WHERE step_id = 'flood' AND kind = 'metric'")"
pass "warnings for the long line and the cap, once each; all $((last + 1)) flood metrics recorded"

# ---- events files that are not files ---------------------------------------------------
"$PY" -c '
import json
def st(i, cmd):
    return {"id": i, "kind": "exec", "command": ["sh", "-c", "rm -f \"$ANNEAL_EVENTS\"; " + cmd]}
json.dump({"name": "odd", "stages": [
  st("fifo", "mkfifo \"$ANNEAL_EVENTS\"; sleep 0.5"),
  st("dir", "mkdir \"$ANNEAL_EVENTS\"; sleep 0.5"),
  st("zero", "ln -s /dev/zero \"$ANNEAL_EVENTS\"; sleep 0.5"),
  st("passwd", "ln -s /etc/passwd \"$ANNEAL_EVENTS\"; sleep 0.5"),
]}, open("odd.json", "w"))
'
rc=0
E2E_TIMEOUT=30 anneal run odd.json --jobs 4 >odd.out 2>odd.err || rc=$?
assert_rc "steps with odd events files" 0 "$rc" odd.out odd.err
q "SELECT step_id, text FROM events WHERE run_id = 2 AND kind = 'warning' ORDER BY step_id" >odd.warn
assert_grep "a FIFO: warned" odd.warn '^fifo|the events file is not a regular file: not read$'
assert_grep "a directory: warned" odd.warn '^dir|the events file is not a regular file: not read$'
assert_grep "a symlink to /dev/zero: warned" odd.warn '^zero|the events file is a symbolic link: not read$'
assert_grep "a symlink to /etc/passwd: warned" odd.warn '^passwd|the events file is a symbolic link: not read$'
assert_no_grep "nothing of /etc/passwd read" odd.warn 'root:'
pass "events files that are FIFOs, directories or symlinks: one warning each, no hang, no error"
