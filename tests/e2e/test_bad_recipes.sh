#!/bin/sh
# tests/e2e/test_bad_recipes.sh — `anneal validate` refuses every recipe in
# bad-recipes/ with exit status 2, exactly one stderr line
# "anneal: <expected>" (expected.txt: NAME<TAB>message), nothing on stdout,
# and no .anneal/ created; and accepts every recipe in recipes/ (exit 0,
# "<path>: ok (N steps)").
#
# Runs in a temporary directory holding copies of bad-recipes/ and
# recipes/, so that paths in messages are exactly "bad-recipes/NAME" and a
# stray .anneal/ would be seen. NAME.args, when present, holds extra
# arguments for validate, one per line, put before the file ("--set",
# "lr=abc"). Cases that cannot be committed are made here: a file over the
# 4 MiB limit, a directory, a FIFO, an unreadable file (skipped as root,
# who can read anything) and a missing file.
#
#   ANNEAL_BIN=bin/anneal sh tests/e2e/test_bad_recipes.sh
set -eu

: "${ANNEAL_BIN:?set ANNEAL_BIN to the anneal binary}"
case $ANNEAL_BIN in
/*) ;;
*) ANNEAL_BIN=$(pwd)/$ANNEAL_BIN ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anneal-bad-recipes.XXXXXX")
trap 'chmod -R u+rwx "$tmp" 2>/dev/null || :; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

mkdir "$tmp/cwd"
cp -R "$here/bad-recipes" "$tmp/cwd/bad-recipes"
cp -R "$here/recipes" "$tmp/cwd/recipes"
cd "$tmp/cwd"

# Generated cases (see expected.txt for their messages).
dd if=/dev/zero bs=1024 count=4097 2>/dev/null | tr '\000' ' ' >bad-recipes/90-too-large.json
mkdir bad-recipes/91-directory.json
mkfifo bad-recipes/92-fifo.json
printf '{"name": "x", "stages": []}\n' >bad-recipes/93-unreadable.json
chmod 000 bad-recipes/93-unreadable.json
# bad-recipes/94-missing.json is deliberately not created.

pass=0
fail=0
skip=0
out=$tmp/stdout
errf=$tmp/stderr

failed() {
	fail=$((fail + 1))
	printf 'FAIL %s: %s\n' "$1" "$2"
}

# Runs validate on bad-recipes/$1 and checks it against message $2.
check_bad() {
	name=$1
	expected=$2
	base=${name%.json}
	set -- validate
	if [ -f "bad-recipes/$base.args" ]; then
		while IFS= read -r arg; do
			set -- "$@" "$arg"
		done <"bad-recipes/$base.args"
	fi
	status=0
	"$ANNEAL_BIN" "$@" "bad-recipes/$name" >"$out" 2>"$errf" </dev/null || status=$?
	if [ "$status" -ne 2 ]; then
		failed "$name" "exit status $status, expected 2 (stderr: $(cat "$errf"))"
	elif [ "$(wc -l <"$errf" | tr -d ' ')" != 1 ] ||
	     [ "$(cat "$errf")" != "anneal: $expected" ]; then
		failed "$name" "stderr was:
    $(cat "$errf")
  expected:
    anneal: $expected"
	elif [ -s "$out" ]; then
		failed "$name" "printed to stdout: $(cat "$out")"
	elif [ -e .anneal ]; then
		failed "$name" "created .anneal/"
		rm -rf .anneal
	else
		pass=$((pass + 1))
	fi
}

tab=$(printf '\t')
while IFS="$tab" read -r name expected; do
	case $name in
	'' | '#'*) continue ;;
	esac
	if [ "$name" = 93-unreadable.json ] && [ "$(id -u)" = 0 ]; then
		skip=$((skip + 1))
		continue
	fi
	check_bad "$name" "$expected"
done <"$here/bad-recipes/expected.txt"

# Every committed bad recipe has an expected line.
for f in "$here"/bad-recipes/*.json; do
	name=${f##*/}
	if ! grep -q "^$name$tab" "$here/bad-recipes/expected.txt"; then
		failed "$name" "no line in expected.txt"
	fi
done

# Good recipes pass, with and without --set.
for f in recipes/*.json; do
	status=0
	"$ANNEAL_BIN" validate "$f" >"$out" 2>"$errf" </dev/null || status=$?
	case $status:$(cat "$out") in
	"0:$f: ok ("*) pass=$((pass + 1)) ;;
	*) failed "$f" "exit status $status, stdout: $(cat "$out"), stderr: $(cat "$errf")" ;;
	esac
done
status=0
"$ANNEAL_BIN" validate --set lr=0.5 --set opt.warmup=false recipes/ok-basic.json \
	>"$out" 2>"$errf" </dev/null || status=$?
case $status:$(cat "$out") in
"0:recipes/ok-basic.json: ok (3 steps)") pass=$((pass + 1)) ;;
*) failed "ok-basic --set" "exit status $status, stdout: $(cat "$out"), stderr: $(cat "$errf")" ;;
esac
if [ -e .anneal ]; then
	failed "recipes" "validate created .anneal/"
fi

[ "$skip" -eq 0 ] || echo "$skip skipped (running as root: every file is readable)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
