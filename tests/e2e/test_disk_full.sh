#!/bin/sh
# tests/e2e/test_disk_full.sh — a full disk loses nothing and leaves the run
# resumable.
#
# Each case puts part of a workspace on a small tmpfs and fills it (a filler
# file sized from df) so that ENOSPC hits:
#   (a) the store, while a finished step's outputs are ingested: anneal
#       exits 3 naming the file it could not write and why; the step is not
#       failed (its work is done), nothing is registered, audit is clean;
#       once the filler is gone, resume stores the outputs without running
#       the step again;
#   (b) the runs' work dirs, while the engine writes a checkpoint: the step
#       fails (exit 1 from anneal), the checkpoints before are recorded and
#       intact; resume goes on from the latest one;
#   (c) the state database (state.db and its WAL on a tmpfs filled to the
#       last byte), while the end of a step is recorded: exit 3 naming the
#       database; resume records the step's exit without running it again.
# Every run's artifacts end with the digests of the same recipe run on a
# roomy disk. Needs root (mount); prints SKIP where tmpfs cannot be mounted.
. "$(dirname "$0")/lib.sh"

# fill DIR KIB: a filler file leaves about KIB KiB free on DIR's fs (0:
# none at all: written until ENOSPC).
fill() {
	rm -f "$1/.filler"
	if [ "$2" = 0 ]; then
		cat /dev/zero >"$1/.filler" 2>/dev/null || :
	else
		avail=$(df -Pk "$1" | awk 'NR == 2 { print $4 }')
		[ "$avail" -gt "$2" ] || fail "$1 has only $avail KiB free, wanted to leave $2"
		head -c "$(((avail - $2) * 1024))" /dev/zero >"$1/.filler"
	fi
}
unfill() { rm -f "$1/.filler"; }

# digests: "NAME@VERSION DIGEST" of every artifact of the workspace in cwd.
digests() {
	"$ANNEAL_BIN" ls --json </dev/null | "$PY" -c '
import json, sys
for a in sorted(json.load(sys.stdin), key=lambda a: (a["name"], a["version"])):
    print(a["name"], a["digest"])'
}

# clean_digests RECIPE [ARGS]: the digests of RECIPE run on a roomy disk.
clean_digests() {
	c=$T/clean.$$.$(date +%s%N)
	mkdir -p "$c/e2e"
	# What the test released there, so that nothing blocks here.
	for f in "$WS"/e2e/go-*; do
		[ ! -e "$f" ] || : >"$c/e2e/${f##*/}"
	done
	(
		cd "$c" || exit 1
		"$ANNEAL_BIN" init >/dev/null </dev/null &&
			"$ANNEAL_BIN" run "$@" >out 2>err </dev/null || {
			cat err >&2
			exit 1
		}
		digests
	) || fail "clean run of $1 failed"
}

one_line() { # WHAT FILE
	[ "$(wc -l <"$2")" = 1 ] || fail "$1: expected one line on stderr, saw:
$(sed 's/^/  | /' "$2")"
}

SMALL=512
[ "${SAN:-0}" = 1 ] && SMALL=256

# ---- (a) the store fills up during ingest --------------------------------------
anneal init >/dev/null
on_tmpfs "$WS/.anneal/store" 8m
recipe ingest.json ingest \
	"$(stage a "kb=$((SMALL * 2)) value=a" '"outputs": {"o": "dataset"}')" \
	"$(stage b 'value=b' '"inputs": {"i": "a.o"}, "outputs": {"o": "dataset"}')"
fill "$WS/.anneal/store" "$((SMALL / 2))"
rc=0
anneal run ingest.json >out1 2>err1 || rc=$?
assert_rc "run while the store is full" 3 "$rc" out1 err1
one_line "run while the store is full" err1
assert_grep "the error names what and why" err1 \
	"^anneal: step 'a': output 'o': .*'$WS/.anneal/store/[^']*'.*: No space left on device\$"
assert_eq "a starts" 1 "$(starts 1 a)"
assert_eq "b starts" 0 "$(starts 1 b)"
assert_eq "run 1 after the failed ingest" interrupted "$(sj 1 'd["state"]')"
assert_eq "a's attempt is not failed" running "$(sj 1 "s['a']['last_attempt']['state']")"
assert_eq "artifacts registered" "" "$(digests)"
rc=0
anneal audit --deep >aout 2>aerr || rc=$?
assert_rc "audit --deep after the failed ingest" 0 "$rc" aout aerr
# Objects stored before the disk filled are whole (named by their digest,
# for gc to collect); nothing partial sits under an object's name.
for f in $(find "$WS/.anneal/store/objects" -type f); do
	want=$(basename "$(dirname "$f")")$(basename "$f")
	assert_eq "object $f holds what its name says" "$want" "$(sha256sum <"$f" | cut -d' ' -f1)"
done
unfill "$WS/.anneal/store"
rc=0
anneal resume 1 >out1r 2>err1r || rc=$?
assert_rc "resume once the store has room" 0 "$rc" out1r err1r
assert_eq "a starts after resume (not run again)" 1 "$(starts 1 a)"
assert_eq "b starts" 1 "$(starts 1 b)"
assert_eq "a" succeeded "$(sj 1 "s['a']['state']")"
assert_eq "artifacts" "$(clean_digests "$WS/ingest.json")" "$(digests)"
rc=0
anneal audit --deep >aout 2>aerr || rc=$?
assert_rc "audit --deep after resume" 0 "$rc" aout aerr
pass "(a) ENOSPC during ingest: exit 3 naming the file, resume stores the outputs, no step ran twice"

# ---- (b) the work dirs fill up while the engine writes a checkpoint ---------------
WB=$T/wb
mkdir -p "$WB/e2e" "$T/runs-b"
cd "$WB"
WS=$WB LOG=$WB/e2e/starts.log
touch "$LOG"
anneal init >/dev/null
printf '{"runs_dir": "%s"}\n' "$T/runs-b" >.anneal/config.json
on_tmpfs "$T/runs-b" 8m
recipe ckpt.json ckpt \
	"$(stage a "ckpts=3 kb=$SMALL value=a" '"outputs": {"o": "dataset"}')"
fill "$T/runs-b" "$((SMALL * 2 + SMALL / 2))"
rc=0
anneal run ckpt.json >out2 2>err2 || rc=$?
assert_rc "run whose checkpoint hits a full disk" 1 "$rc" out2 err2
assert_grep "the error names the step" err2 "^anneal: step 'a' failed: exit 1"
assert_grep "the step said what it could not write" "$T/runs-b/1/a/a1/output.log" \
	'^step.sh: cannot write .*data.bin'
assert_grep "the checkpoint write failed" "$LOG" '^nospace 1 a 1 '
assert_grep "checkpoint 2 was written" "$LOG" '^ckpt 1 a 1 2$'
rc=0
anneal audit --deep >bout 2>berr || rc=$?
assert_rc "audit --deep after the failed checkpoint" 0 "$rc" bout berr
unfill "$T/runs-b"
rc=0
anneal resume 1 >out2r 2>err2r || rc=$?
assert_rc "resume once there is room" 0 "$rc" out2r err2r
assert_grep "the retry resumed from checkpoint 2" "$LOG" '^start 1 a 2 pid=[0-9]* resume=2$'
assert_eq "a's successes" 1 "$(successes 1 a)"
assert_eq "artifacts (outputs)" "$(clean_digests "$WB/ckpt.json" | grep '^a\.o ')" "$(digests | grep '^a\.o ')"
rc=0
anneal audit --deep >bout 2>berr || rc=$?
assert_rc "audit --deep after resume" 0 "$rc" bout berr
pass "(b) ENOSPC during a checkpoint: the step fails, resume continues from the last checkpoint"

# ---- (c) the state database cannot grow ------------------------------------------
WC=$T/wc
mkdir -p "$WC/e2e" "$WC/.anneal" "$T/runs-c"
cd "$WC"
WS=$WC LOG=$WC/e2e/starts.log
touch "$LOG"
on_tmpfs "$WC/.anneal" 8m
anneal init >/dev/null
printf '{"runs_dir": "%s"}\n' "$T/runs-c" >.anneal/config.json
recipe db.json db \
	"$(stage a 'value=a' '"outputs": {"o": "dataset"}')" \
	"$(stage b 'block=go-b' '"after": ["a"]')"
anneal_bg out3 err3 run db.json
drv=$apid
wait_for "b to start" started 1 b
fill "$WC/.anneal" 0
release go-b
wait_exit "$drv"
assert_rc "run whose state database cannot grow" 3 "$rc" out3 err3
assert_grep "the error names the database" err3 \
	"^anneal: state database '$WC/.anneal/state.db': .*\(full\|No space left on device\)"
assert_grep "b ended by itself" "$LOG" '^end 1 b 1 0$'
unfill "$WC/.anneal"
rc=0
anneal resume 1 >out3r 2>err3r || rc=$?
assert_rc "resume once the database can grow" 0 "$rc" out3r err3r
assert_eq "b starts (not run again)" 1 "$(starts 1 b)"
assert_eq "a starts" 1 "$(starts 1 a)"
assert_eq "b" succeeded "$(sj 1 "s['b']['state']")"
assert_eq "artifacts" "$(clean_digests "$WC/db.json" | grep -v '^b')" "$(digests)"
rc=0
anneal audit --deep >cout 2>cerr || rc=$?
assert_rc "audit --deep after resume" 0 "$rc" cout cerr
pass "(c) a full disk under state.db: exit 3 naming the database, resume records the step"
