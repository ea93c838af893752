#!/bin/sh
# tests/e2e/test_env.sh — what a step is given: cwd, ANNEAL_* variables,
# substitutions, the params file, devices, and its directories.
#
# A producer and a consumer dump their environment (step.sh dumpenv=1):
# cwd is the workspace root; ANNEAL_RUN_ID/STEP_ID/ATTEMPT/WORK_DIR/
# OUTPUT_DIR/OUTPUT_<NAME>/INPUT_<ROLE>/PARAMS/EVENTS/CKPT_DIR/RESUME_FROM/
# CPUS are set and agree with ${inputs.*}, ${outputs.*} and ${params.*}
# substituted into argv and env; an attempt starts with its output dirs
# empty but finds ckpt/ as the previous attempt left it; with --gpus 2 two
# 1-GPU steps run at once on different devices; -C DIR works from anywhere.
. "$(dirname "$0")/lib.sh"

recipe env.json env \
	"$(stage prod 'dumpenv=1 fail_attempts=1 value=${params.tag} arg=out=${outputs.model}' \
		'"outputs": {"model": "checkpoint", "extra_data": "dataset"}, "retries": {"max": 1, "backoff": "0s"}, "env": {"E2E_TAG": "${params.tag}", "E2E_OUT": "${outputs.model}"}, "resources": {"cpus": 2}')" \
	"$(stage cons 'dumpenv=1 arg=in=${inputs.base}' \
		'"inputs": {"base": "prod.model", "more": "prod.extra_data"}, "env": {"E2E_IN": "${inputs.base}"}')" \
	-- '{"tag": "v1", "lr": 0.001}'
rc=0
anneal run env.json >out1 2>err1 || rc=$?
assert_rc "run" 0 "$rc" out1 err1

# v FILE NAME: the value of NAME in a dump.
v() { sed -n "s/^$2=//p" "$1"; }
p2=e2e/env.1.prod.2
c1=e2e/env.1.cons.1
[ -f "$p2" ] && [ -f "$c1" ] || fail "no env dumps: $(ls e2e)"
assert_eq "cwd of a step" "cwd: $WS" "$(grep '^cwd: ' "$p2")"
assert_eq "ANNEAL_RUN_ID" 1 "$(v "$p2" ANNEAL_RUN_ID)"
assert_eq "ANNEAL_STEP_ID" prod "$(v "$p2" ANNEAL_STEP_ID)"
assert_eq "ANNEAL_ATTEMPT" 2 "$(v "$p2" ANNEAL_ATTEMPT)"
assert_eq "ANNEAL_CPUS (resources.cpus 2)" 2 "$(v "$p2" ANNEAL_CPUS)"
assert_eq "ANNEAL_RESUME_FROM on a fresh start" "" "$(v "$p2" ANNEAL_RESUME_FROM)"
wd=$(v "$p2" ANNEAL_WORK_DIR)
assert_eq "ANNEAL_WORK_DIR" "$WS/.anneal/runs/1/prod" "$wd"
assert_eq "ANNEAL_OUTPUT_DIR" "$wd/out" "$(v "$p2" ANNEAL_OUTPUT_DIR)"
assert_eq "ANNEAL_OUTPUT_MODEL" "$wd/out/model" "$(v "$p2" ANNEAL_OUTPUT_MODEL)"
assert_eq "ANNEAL_OUTPUT_EXTRA_DATA (upper-cased)" "$wd/out/extra_data" "$(v "$p2" ANNEAL_OUTPUT_EXTRA_DATA)"
assert_eq "ANNEAL_CKPT_DIR" "$wd/ckpt" "$(v "$p2" ANNEAL_CKPT_DIR)"
assert_eq "ANNEAL_EVENTS" "$wd/a2/events.jsonl" "$(v "$p2" ANNEAL_EVENTS)"
assert_eq "\${outputs.model} in argv" "argv: dumpenv=1 fail_attempts=1 value=v1 arg=out=$wd/out/model" "$(grep '^argv:' "$p2")"
assert_eq "\${params.tag} in env" v1 "$(v "$p2" E2E_TAG)"
assert_eq "\${outputs.model} in env" "$wd/out/model" "$(v "$p2" E2E_OUT)"
params=$(v "$p2" ANNEAL_PARAMS)
[ -f "$params" ] || fail "ANNEAL_PARAMS '$params' is not a file"
# Only the params the step uses (tag, in its command and env), after --set.
assert_eq "ANNEAL_PARAMS content" '{"tag": "v1"}' \
	"$("$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$params")"
base=$(v "$c1" ANNEAL_INPUT_BASE)
assert_eq "ANNEAL_INPUT_BASE is prod's output" "$(sj 1 "[o['path'] for o in s['prod']['outputs'] if o['name'] == 'model'][0]")" "$base"
[ -n "$(v "$c1" ANNEAL_INPUT_MORE)" ] || fail "no ANNEAL_INPUT_MORE for the consumer: $(cat "$c1")"
assert_eq "\${inputs.base} in argv" "argv: dumpenv=1 arg=in=$base" "$(grep '^argv:' "$c1")"
assert_eq "\${inputs.base} in env" "$base" "$(v "$c1" E2E_IN)"
assert_eq "consumer reads producer's output" "prod v1" "$(cat "$base/value.txt")"
pass "ANNEAL_* variables and substitutions agree"

# Attempt 1 left stray-1 in its output dirs and kept-1 in ckpt/.
assert_eq "attempt 1 found empty output dirs" "ANNEAL_OUTPUT_EXTRA_DATA: 
ANNEAL_OUTPUT_MODEL: 
ckpt: " "$(cat e2e/outdirs.1.prod.1)"
assert_eq "attempt 2: outputs emptied, ckpt/ kept" "ANNEAL_OUTPUT_EXTRA_DATA: 
ANNEAL_OUTPUT_MODEL: 
ckpt: kept-1 " "$(cat e2e/outdirs.1.prod.2)"
pass "each attempt starts with empty output dirs and the same ckpt/"

# Devices: two 1-GPU steps at once (barrier) on different devices.
recipe gpu.json gpu \
	"$(stage g1 'dumpenv=1 barrier=gpu:2' '"resources": {"gpus": 1}')" \
	"$(stage g2 'dumpenv=1 barrier=gpu:2' '"resources": {"gpus": 1}')"
rc=0
anneal run gpu.json --gpus 2 --cpus 4 >out2 2>err2 || rc=$?
assert_rc "run with --gpus 2" 0 "$rc" out2 err2
d1=$(v e2e/env.2.g1.1 CUDA_VISIBLE_DEVICES)
d2=$(v e2e/env.2.g2.1 CUDA_VISIBLE_DEVICES)
case "$d1 $d2" in
"0 1" | "1 0") ;;
*) fail "CUDA_VISIBLE_DEVICES of two 1-GPU steps on --gpus 2: expected 0 and 1, saw '$d1' and '$d2'" ;;
esac
pass "1-GPU steps get distinct CUDA_VISIBLE_DEVICES"

# -C DIR from elsewhere.
cd /
rc=0
"$ANNEAL_BIN" -C "$WS" status 2 --json </dev/null >"$WS/c.json" 2>"$WS/c.err" || rc=$?
cd "$WS" || exit 1
assert_rc "status -C DIR from /" 0 "$rc" c.json c.err
assert_eq "status -C" succeeded "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' c.json)"
mkdir -p sub/deeper
cd sub/deeper || exit 1
rc=0
anneal status 2 >../../sub.txt 2>&1 || rc=$?
cd "$WS" || exit 1
assert_rc "status from a subdirectory of the workspace" 0 "$rc" sub.txt
pass "-C DIR and a subdirectory find the workspace"
