#!/bin/sh
# tests/e2e/test_status.sh — `anneal status` while a run goes and after.
#
# --json has the documented shape (run, state, driver_alive, steps[] with
# id, state, attempts, last_attempt, handle, outputs); a metric event shows
# up in status while the step still runs; the text output names each step
# and its state.
. "$(dirname "$0")/lib.sh"

recipe st.json st \
	"$(stage prep 'value=p' '"outputs": {"data": "dataset"}')" \
	"$(stage train 'ckpts=2 block_at=1 block=go metric=loss:1.5' '"inputs": {"data": "prep.data"}, "outputs": {"model": "checkpoint"}')" \
	"$(stage evaluate 'value=e' '"inputs": {"model": "train.model"}')"

rc=0
anneal status >none 2>noneerr || rc=$?
[ "$rc" -ne 0 ] || fail "status before any run exited 0: $(cat none)"
[ -s noneerr ] || fail "status before any run said nothing on stderr"

anneal_bg out1 err1 run st.json
drv=$apid
wait_for "train to block" has_line "$LOG" '^ckpt 1 train 1 1$'
wait_for "train's metric in status" \
	eval '[ "$(sj 1 "s[\"train\"].get(\"metric\")")" = "{\"name\": \"loss\", \"value\": 1.5}" ]'

rc=0
anneal status 1 --json >s1.json 2>s1err || rc=$?
assert_rc "status --json while running" 0 "$rc" s1.json s1err
"$PY" - s1.json "$drv" <<'PY' || fail "status --json while running: wrong shape (see above): $(cat s1.json)"
import json, sys
d = json.load(open(sys.argv[1]))
drv = int(sys.argv[2])
errs = []
def want(cond, what):
    if not cond:
        errs.append(what)
want(d.get("run") == 1, "run == 1, saw %r" % d.get("run"))
want(d.get("state") == "running", "state running, saw %r" % d.get("state"))
want(d.get("driver_alive") is True, "driver_alive true, saw %r" % d.get("driver_alive"))
want(d.get("driver_pid") == drv, "driver_pid %d, saw %r" % (drv, d.get("driver_pid")))
steps = d.get("steps")
want(isinstance(steps, list) and [s.get("id") for s in steps] == ["prep", "train", "evaluate"],
     "steps prep, train, evaluate in order, saw %r" % steps)
s = {x["id"]: x for x in steps or []}
want(s["prep"]["state"] == "succeeded", "prep succeeded")
want(s["prep"]["attempts"] == 1, "prep attempts 1")
want(s["prep"]["last_attempt"] == {"n": 1, "state": "succeeded"}, "prep last_attempt")
outs = s["prep"].get("outputs")
want(isinstance(outs, list) and len(outs) == 1 and outs[0].get("name") == "data"
     and outs[0].get("type") == "dataset" and len(outs[0].get("digest", "")) == 64,
     "prep outputs: one dataset 'data' with a sha-256 digest, saw %r" % outs)
t = s["train"]
want(t["state"] == "running", "train running, saw %r" % t["state"])
want(t["attempts"] == 1, "train attempts 1")
want(t["last_attempt"] == {"n": 1, "state": "running"}, "train last_attempt running, saw %r" % t.get("last_attempt"))
want(str(t.get("handle", "")).startswith("pid:"), "train handle pid:N, saw %r" % t.get("handle"))
want(t.get("metric") == {"name": "loss", "value": 1.5}, "train metric loss 1.5, saw %r" % t.get("metric"))
want(s["evaluate"]["state"] == "pending", "evaluate pending")
want(s["evaluate"]["attempts"] == 0, "evaluate attempts 0")
for x in steps:
    for k in ("id", "state", "attempts", "retries_used"):
        want(k in x, "step %s has %s" % (x.get("id"), k))
for e in errs:
    print("  status --json:", e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY

rc=0
anneal status >s1.txt 2>s1terr || rc=$?
assert_rc "status (text) while running" 0 "$rc" s1.txt s1terr
assert_grep "text: run and state" s1.txt '^run 1 .*running'
assert_grep "text: prep" s1.txt '^  *prep  *succeeded'
assert_grep "text: train" s1.txt '^  *train  *running'
assert_grep "text: train's metric" s1.txt 'loss=1.5'
assert_grep "text: evaluate" s1.txt '^  *evaluate  *pending'
pass "status while running: json shape, metric, text"

release go
wait_exit "$drv"
assert_rc "run" 0 "$rc" out1 err1
assert_eq "state" succeeded "$(sj 1 'd["state"]')"
assert_eq "driver_alive after the run" false "$(sj 1 'd["driver_alive"]')"
assert_eq "train metric after the run" '{"name": "loss", "value": 1.5}' "$(sj 1 "s['train'].get('metric')")"
assert_eq "step states" "succeeded succeeded succeeded" \
	"$(sj 1 "' '.join(x['state'] for x in d['steps'])")"
anneal status 1 >s2.txt 2>&1 || :
for s in prep train evaluate; do
	assert_grep "text after the run: $s" s2.txt "^  *$s  *succeeded"
done
rc=0
anneal status 7 --json >s7 2>s7err || rc=$?
[ "$rc" -ne 0 ] || fail "status of a run that does not exist exited 0"
assert_grep "status 7: message" s7err '^anneal: .*7'
pass "status after the run; unknown run refused"
