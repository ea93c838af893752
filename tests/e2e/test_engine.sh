#!/bin/sh
# tests/e2e/test_engine.sh — the reference engine (bin/anneal-engine) on
# its own, driven the way a runner drives it: hand-set ANNEAL_* variables
# in a temporary directory, no anneal in between.
#
# gen-data is deterministic (same seed, same bytes; another seed, other
# bytes); a tiny pretrain completes with progress, metric and checkpoint
# events and keeps two checkpoints; SIGTERM mid-training exits 75 after
# announcing a complete checkpoint, and resuming from it ends with a
# model byte-identical to an uninterrupted run; sft, distill, rl and
# dual-sft resumed from an intermediate checkpoint end identical too;
# bad configs and inputs exit 2 naming the key or input; the eval report
# has its shape and the same bytes twice.
. "$(dirname "$0")/lib.sh"

ENGINE=$(dirname "$ANNEAL_BIN")/anneal-engine
[ -x "$ENGINE" ] || fail "no engine at $ENGINE (run make)"
unset ANNEAL_PARAMS ANNEAL_EVENTS ANNEAL_CKPT_DIR ANNEAL_RESUME_FROM \
	ANNEAL_OUTPUT_DIR ANNEAL_STEP_ID 2>/dev/null || :

# eng NAME SUBCOMMAND [VAR=VALUE...]: runs the engine with exactly these
# ANNEAL_* variables; stdout+stderr in NAME.log; sets $rc.
eng() {
	_n=$1 _c=$2
	shift 2
	rc=0
	env "$@" "$ENGINE" "$_c" </dev/null >"$_n.log" 2>&1 || rc=$?
}

# jq_py FILE EXPR: a Python expression on the JSON document d of FILE.
jq_py() {
	"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))
' "$1" "$2"
}

# last_ckpt EVENTS: the dir of the last checkpoint event.
last_ckpt() {
	"$PY" -c '
import json, sys
dirs = [e["dir"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "checkpoint"]
print(dirs[-1] if dirs else "")
' "$1"
}

# ---- help and usage -------------------------------------------------------------

"$ENGINE" --help >help.out 2>&1 || fail "--help failed"
for c in gen-data pretrain sft distill rl dual-sft eval; do
	assert_grep "--help lists $c" help.out "^  $c "
done
"$ENGINE" help rl >help-rl.out 2>&1 || fail "help rl failed"
assert_grep "help rl lists rewards" help-rl.out '^  rewards '
eng typo pretrian
assert_rc "unknown subcommand" 2 "$rc" typo.log
assert_grep "did you mean" typo.log "unknown subcommand 'pretrian' (did you mean 'pretrain'?)"
pass "help, usage, did-you-mean"

# ---- gen-data ----------------------------------------------------------------------

printf '{"seed": 5, "max_digits": 2, "corpus": 3000, "reasoning": 3000, "prompts": 400, "eval_per_bucket": 20}\n' >gd.json
printf '{"seed": 6, "max_digits": 2, "corpus": 3000, "reasoning": 3000, "prompts": 400, "eval_per_bucket": 20}\n' >gd6.json
eng gd1 gen-data ANNEAL_PARAMS=gd.json ANNEAL_OUTPUT_DIR=d1 ANNEAL_EVENTS=gd1.ev
assert_rc "gen-data" 0 "$rc" gd1.log
eng gd2 gen-data ANNEAL_PARAMS=gd.json ANNEAL_OUTPUT_CORPUS=d2/corpus \
	ANNEAL_OUTPUT_REASONING=d2/reasoning ANNEAL_OUTPUT_PROMPTS=d2/prompts ANNEAL_OUTPUT_EVAL=d2/eval
assert_rc "gen-data again" 0 "$rc" gd2.log
eng gd3 gen-data ANNEAL_PARAMS=gd6.json ANNEAL_OUTPUT_DIR=d3
assert_rc "gen-data seed 6" 0 "$rc" gd3.log
for o in corpus reasoning prompts eval; do
	cmp -s "d1/$o/data.txt" "d2/$o/data.txt" || fail "gen-data $o: same seed, different bytes"
	if cmp -s "d1/$o/data.txt" "d3/$o/data.txt"; then
		fail "gen-data $o: seeds 5 and 6 gave the same bytes"
	fi
done
assert_eq "corpus lines" 3000 "$(wc -l <d1/corpus/data.txt | tr -d ' ')"
assert_eq "eval lines (20 per bucket, 2 buckets)" 40 "$(wc -l <d1/eval/data.txt | tr -d ' ')"
assert_grep "prompts are bare problems" d1/prompts/data.txt '^[0-9]*+[0-9]*$'
assert_no_grep "prompts are only bare problems" d1/prompts/data.txt '[:;]'
assert_grep "reasoning has slow traces" d1/reasoning/data.txt '^S:[0-9]*+[0-9]*|'
assert_grep "corpus has fast answers" d1/corpus/data.txt '^F:[0-9]*+[0-9]*=[0-9]*;$'
assert_grep "gen-data progress" gd1.ev '^{"event":"progress","done":4,"total":4}$'
pass "gen-data: deterministic from the seed, four datasets"

# ---- bad configs and inputs ------------------------------------------------------------

printf '{"stpes": 10}\n' >bad1.json
eng bad1 pretrain ANNEAL_PARAMS=bad1.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=mb
assert_rc "unknown key" 2 "$rc" bad1.log
assert_grep "unknown key named" bad1.log "stpes: unknown key (did you mean 'steps'?)"
assert_grep "params file named" bad1.log "bad1.json"
assert_eq "one line on stderr" 1 "$(wc -l <bad1.log | tr -d ' ')"
printf '{"lr": "fast"}\n' >bad2.json
eng bad2 pretrain ANNEAL_PARAMS=bad2.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=mb
assert_rc "wrong type" 2 "$rc" bad2.log
assert_grep "wrong type named" bad2.log 'lr: must be a number, not a string'
printf '{"rewards": {"hard": {"teachr": 1}}}\n' >bad3.json
eng bad3 rl ANNEAL_PARAMS=bad3.json
assert_rc "rewards typo" 2 "$rc" bad3.log
assert_grep "rewards typo named" bad3.log "rewards.hard.teachr: unknown reward source (did you mean 'teacher'?)"
printf '{"steps": 5' >bad4.json
eng bad4 pretrain ANNEAL_PARAMS=bad4.json
assert_rc "bad JSON" 2 "$rc" bad4.log
eng bad5 pretrain ANNEAL_OUTPUT_MODEL=mb
assert_rc "missing input" 2 "$rc" bad5.log
assert_grep "missing input named" bad5.log "input 'data' is missing (ANNEAL_INPUT_DATA is not set)"
mkdir -p notdata
eng bad6 pretrain ANNEAL_INPUT_DATA=notdata ANNEAL_OUTPUT_MODEL=mb
assert_rc "input without data.txt" 2 "$rc" bad6.log
assert_grep "data.txt named" bad6.log "notdata/data.txt"
eng bad7 sft ANNEAL_INPUT_DATA=d1/prompts ANNEAL_INPUT_INIT=notdata ANNEAL_OUTPUT_MODEL=mb
assert_rc "init without a model" 2 "$rc" bad7.log
assert_grep "init named" bad7.log "input 'init'"
pass "bad configs and inputs: exit 2 naming the key, file or input"

# ---- a tiny pretrain -----------------------------------------------------------------------

printf '{"hidden": [32], "window": 16, "steps": 40, "batch": 8, "ckpt_every": 10, "log_every": 10, "seed": 3}\n' >tiny.json
eng tiny pretrain ANNEAL_PARAMS=tiny.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=m0 \
	ANNEAL_CKPT_DIR=ck0 ANNEAL_EVENTS=ev0
assert_rc "tiny pretrain" 0 "$rc" tiny.log
[ -s m0/model.safetensors ] || fail "no m0/model.safetensors"
assert_grep "progress events" ev0 '^{"event":"progress","done":40,"total":40}$'
assert_grep "metric events" ev0 '^{"event":"metric","step":10,"loss":[0-9.e-]*,"lr":[0-9.e-]*}$'
assert_grep "checkpoint events" ev0 '^{"event":"checkpoint","step":30,"dir":"step-30"}$'
assert_eq "the newest two checkpoints are kept" "step-20 step-30" "$(ls ck0 | tr '\n' ' ' | sed 's/ $//')"
assert_eq "a checkpoint's files" "model.safetensors optim.safetensors state.json" \
	"$(ls ck0/step-30 | tr '\n' ' ' | sed 's/ $//')"
pass "tiny pretrain: events, checkpoints, model"

# ---- SIGTERM and resume ----------------------------------------------------------------------

# Long enough (seconds) for the signal to land mid-run; a sanitizer build
# runs ~4x slower, so fewer updates take as long.
long=6000
[ "${SAN:-0}" != 1 ] || long=1500
printf '{"hidden": [64], "window": 24, "steps": %d, "batch": 32, "ckpt_every": 200, "log_every": 200, "seed": 3}\n' "$long" >long.json
eng ref pretrain ANNEAL_PARAMS=long.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=mref \
	ANNEAL_CKPT_DIR=ckref
assert_rc "uninterrupted run" 0 "$rc" ref.log

env ANNEAL_PARAMS=long.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=m1 \
	ANNEAL_CKPT_DIR=ck1 ANNEAL_EVENTS=ev1 "$ENGINE" pretrain </dev/null >term.log 2>&1 &
epid=$!
wait_for "the first checkpoint event" has_line ev1 '"event":"checkpoint"'
kill -TERM "$epid"
wait_exit "$epid"
assert_rc "engine after SIGTERM" 75 "$rc" term.log ev1
assert_grep "interrupted message" term.log "interrupted at update [0-9]* of $long"
dir=$(last_ckpt ev1)
n=${dir#step-}
[ -n "$dir" ] && [ "$n" -gt 200 ] || fail "no checkpoint written on SIGTERM (last: '$dir'):
$(cat ev1)"
assert_grep "checkpoint at the interrupted update" term.log "interrupted at update $n of $long"
for f in model.safetensors optim.safetensors state.json; do
	[ -s "ck1/$dir/$f" ] || fail "checkpoint $dir lacks $f"
done
[ ! -e "ck1/$dir.tmp" ] || fail "checkpoint $dir.tmp left behind"
[ ! -e m1/model.safetensors ] || fail "an interrupted run wrote its output"
pass "SIGTERM at update $n: checkpoint announced, exit 75"
cp -R ck1 ck1copy   # the resumed runs prune ck1 as they go

eng resume pretrain ANNEAL_PARAMS=long.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=m1 \
	ANNEAL_CKPT_DIR=ck1 ANNEAL_EVENTS=ev1b ANNEAL_RESUME_FROM="$PWD/ck1/$dir"
assert_rc "resumed run" 0 "$rc" resume.log
assert_grep "resumed where it stopped" resume.log "resumed at update $n"
cmp -s m1/model.safetensors mref/model.safetensors ||
	fail "resumed model differs from the uninterrupted one"
# A relative ANNEAL_RESUME_FROM is taken under ANNEAL_CKPT_DIR.
eng resume2 pretrain ANNEAL_PARAMS=long.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=m1b \
	ANNEAL_CKPT_DIR=ck1copy ANNEAL_RESUME_FROM="$dir"
assert_rc "resumed run (relative)" 0 "$rc" resume2.log
cmp -s m1b/model.safetensors mref/model.safetensors ||
	fail "resumed model (relative path) differs from the uninterrupted one"
eng resume3 pretrain ANNEAL_PARAMS=long.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=m1c \
	ANNEAL_CKPT_DIR=ck1 ANNEAL_RESUME_FROM=step-nope
assert_rc "resume from a missing checkpoint" 2 "$rc" resume3.log
pass "resume after SIGTERM: byte-identical model"

# ---- the other training subcommands resume exactly too ---------------------------------------

# A teacher that solves 1-2 digit problems slowly, often enough.
printf '{"hidden": [64], "window": 24, "steps": 1500, "batch": 16, "lr": 0.01, "ckpt_every": 0, "seed": 3}\n' >teach.json
eng teach pretrain ANNEAL_PARAMS=teach.json ANNEAL_INPUT_DATA=d1/reasoning ANNEAL_OUTPUT_MODEL=teacher
assert_rc "teacher" 0 "$rc" teach.log

# resumes NAME SUBCOMMAND PARAMS STEP OUTPUT_FILES VAR=VALUE...: a full run
# with checkpoints, then a run resumed from step-STEP: OUTPUT_FILES equal.
resumes() {
	_rn=$1 _rc=$2 _rp=$3 _rs=$4 _rfiles=$5
	shift 5
	eng "$_rn-full" "$_rc" ANNEAL_PARAMS="$_rp" ANNEAL_CKPT_DIR="ck-$_rn" ANNEAL_EVENTS="ev-$_rn" \
		ANNEAL_OUTPUT_DIR="out-$_rn" "$@"
	assert_rc "$_rn" 0 "$rc" "$_rn-full.log"
	[ -d "ck-$_rn/step-$_rs" ] || fail "$_rn: no checkpoint step-$_rs: $(ls "ck-$_rn")"
	eng "$_rn-res" "$_rc" ANNEAL_PARAMS="$_rp" ANNEAL_CKPT_DIR="ck-$_rn" \
		ANNEAL_OUTPUT_DIR="out-$_rn-res" ANNEAL_RESUME_FROM="ck-$_rn/step-$_rs" "$@"
	assert_rc "$_rn resumed" 0 "$rc" "$_rn-res.log"
	for f in $_rfiles; do
		cmp -s "out-$_rn/$f" "out-$_rn-res/$f" || fail "$_rn: $f differs after resume"
	done
}

printf '{"steps": 30, "batch": 8, "ckpt_every": 10, "log_every": 10}\n' >sft.json
resumes sft sft sft.json 20 model/model.safetensors \
	ANNEAL_INPUT_INIT=m0 ANNEAL_INPUT_DATA=d1/reasoning

printf '{"iteration": 2, "prompts": 100, "samples": 4, "temperature": 0.5, "select_low": 0.1, "select_high": 0.9, "steps": 30, "batch": 8, "ckpt_every": 10, "log_every": 10}\n' >distill.json
resumes distill distill distill.json 20 "model/model.safetensors data/data.txt data/scores.tsv" \
	ANNEAL_INPUT_INIT=m0 ANNEAL_INPUT_TEACHER=teacher ANNEAL_INPUT_DATA=d1/prompts
assert_grep "distill metrics" ev-distill '"teacher_accuracy":[0-9.]*,"prompts":100,"kept":[0-9]*,"selected":[0-9]*'
assert_grep "distill keeps verified slow traces" out-distill/data/data.txt '^S:[0-9]*+[0-9]*|'
[ -s ck-distill/step-20/data.txt ] || fail "distill checkpoint lacks its selected data"

printf '{"steps": 12, "prompts_per_step": 4, "group": 4, "ckpt_every": 4, "log_every": 4, "lr": 0.001}\n' >rl.json
resumes rl rl rl.json 8 model/model.safetensors \
	ANNEAL_INPUT_POLICY=m0 ANNEAL_INPUT_REWARD=teacher ANNEAL_INPUT_DATA=d1/prompts
assert_grep "rl metrics" ev-rl '"reward":[0-9.e-]*,"accuracy":[0-9.e-]*,"length":[0-9.e-]*'

printf '{"steps": 30, "batch": 8, "ckpt_every": 10, "log_every": 10}\n' >dual.json
resumes dual dual-sft dual.json 20 model/model.safetensors \
	ANNEAL_INPUT_INIT=m0 ANNEAL_INPUT_DATA=d1/prompts
pass "sft, distill, rl, dual-sft: resumed runs give the same bytes"

# ---- eval -----------------------------------------------------------------------------------

eng ev1 eval ANNEAL_INPUT_MODEL=teacher ANNEAL_INPUT_DATA=d1/eval ANNEAL_OUTPUT_REPORT=rep1 ANNEAL_EVENTS=evev
assert_rc "eval" 0 "$rc" ev1.log
eng ev2 eval ANNEAL_INPUT_MODEL=teacher ANNEAL_INPUT_DATA=d1/eval ANNEAL_OUTPUT_REPORT=rep2
assert_rc "eval again" 0 "$rc" ev2.log
cmp -s rep1/report.json rep2/report.json || fail "eval: two reports differ"
assert_eq "report: problems" 40 "$(jq_py rep1/report.json 'd["problems"]')"
assert_eq "report: modes" '["fast", "slow", "auto"]' "$(jq_py rep1/report.json 'list(d["modes"])')"
assert_eq "report: mode fields" '["accuracy", "mean_length", "well_formed", "buckets", "buckets_length"]' \
	"$(jq_py rep1/report.json 'list(d["modes"]["fast"])')"
assert_eq "report: buckets" '["1", "2"]' "$(jq_py rep1/report.json 'list(d["modes"]["slow"]["buckets"])')"
assert_eq "report: auto's slow rate" true \
	"$(jq_py rep1/report.json '0 <= d["modes"]["auto"]["slow_rate"] <= 1 and 0 <= d["modes"]["auto"]["rule_agreement"] <= 1 and list(d["modes"]["auto"]["buckets_slow_rate"]) == ["1", "2"]')"
assert_eq "report: the teacher's slow mode works" true \
	"$(jq_py rep1/report.json 'd["modes"]["slow"]["accuracy"] > 0.3')"
assert_eq "report: model digest" "$(sha256sum teacher/model.safetensors | cut -d' ' -f1)" \
	"$(jq_py rep1/report.json 'd["model"]["sha256"]')"
assert_grep "eval metric event" evev '^{"event":"metric","fast.accuracy":[0-9.]*,"slow.accuracy":[0-9.]*,"auto.accuracy":[0-9.]*,"auto.slow_rate":[0-9.]*'
pass "eval: report shape, same bytes twice, metric event"
