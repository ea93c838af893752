#!/bin/sh
# tests/e2e/test_hostile.sh — hostile strings in recipes and on the command
# line: never run by a shell, never a path out of the workspace, never a
# crash, never silently cut.
#
# 1. A param holding shell metacharacters ($(…), backticks, ;, |, &,
#    quotes, globs, newlines, \x01, \x7f, "../..", "/etc/passwd",
#    "${outputs.out}"), and a 100 KB one, substituted into argv, env and
#    the params file: each reaches the step byte for byte, as one argv
#    word; none of the commands in them ran (no PWNED file anywhere).
#    --set with the same text does the same; --set with invalid UTF-8 is
#    refused (exit 2).
# 2. Stage ids, output names, roles and artifact names with '..', '/',
#    newlines, metacharacters, or too long (65, 64, 129, 100 KB): refused
#    by validate with exit 2, one line naming the field, no .anneal/
#    made. The longest valid ones (64-char stage, 63-char output: a
#    128-char artifact name) run and register.
# 3. anneal add --name and anneal tag with the same names: exit 2, nothing
#    registered; export to and import from a path full of metacharacters
#    works (no shell between anneal and the file).
. "$(dirname "$0")/lib.sh"

anneal init >/dev/null
PW=$T/pwned
mkdir "$PW"

# ---- 1. params ----------------------------------------------------------------
cat >"$T/argv.sh" <<'EOF'
#!/bin/sh
# Each argv word, NUL-terminated; $X as it came; the params file.
out=$ANNEAL_OUTPUT_OUT
for a in "$@"; do printf '%s\000' "$a"; done >"$out/argv"
printf '%s' "$X" >"$out/env"
cp "$ANNEAL_PARAMS" "$out/params.json"
EOF

# The hostile text, shared with the checks through the environment.
export HOSTILE_PW="$PW"
hostile_py='
import os
pw = os.environ["HOSTILE_PW"]
H = ("$(touch %s/P1)" % pw + "`touch %s/P2`" % pw + "; touch %s/P3 #" % pw + "\n"
     + "| touch %s/P4 & touch %s/P5 &" % (pw, pw) + " \"'"'"' * ? [a] ~ \\ \r\t\n"
     + "../../../../etc/passwd /etc/passwd \x01\x7f ${HOME} $$ $0 $${params.p} %s%n")
LONG = "L" * 100000 + "$(touch %s/P6)" % pw
'
"$PY" -c "$hostile_py"'
import json, sys
json.dump({"name": "hostile",
           "params": {"p": H, "long": LONG},
           "stages": [{"id": "a", "kind": "exec",
                       "command": ["sh", sys.argv[1], "pre-${params.p}-post", "${params.p}",
                                   "${params.long}"],
                       "env": {"X": "${params.p}"},
                       "outputs": {"out": {"type": "dataset"}}}]},
          open("hostile.json", "w"))
' "$T/argv.sh"

# check_step RUN VALUE_EXPR: argv, env and params of step a in RUN.
check_step() {
	"$PY" -c "$hostile_py"'
import json, sys
d = sys.argv[1]
v = eval(sys.argv[2])
argv = open(d + "/argv", "rb").read().split(b"\0")[:-1]
want = [("pre-" + v + "-post").encode(), v.encode(), LONG.encode()]
assert argv == want, "argv: %r" % [a[:80] for a in argv]
assert open(d + "/env", "rb").read() == v.encode(), "env differs"
p = json.load(open(d + "/params.json"))
assert p == {"p": v, "long": LONG}, "params file: %r" % {k: x[:80] for k, x in p.items()}
' "$WS/.anneal/runs/$1/a/out/out" "$2" || fail "run $1: step a did not get the text byte for byte"
}

rc=0
anneal run hostile.json >run1.out 2>run1.err || rc=$?
assert_rc "run with hostile params" 0 "$rc" run1.out run1.err
check_step 1 H
assert_eq "commands inside params never ran" "" "$(ls -A "$PW")"
pass "params with metacharacters, control bytes and 100 KB reach argv, env and the params file verbatim, unexecuted"

# The same through --set (a command-line word), with the text reversed.
rev=$("$PY" -c "$hostile_py"'
import sys; sys.stdout.write(H[::-1])')
rc=0
anneal run hostile.json --set "p=$rev" >run2.out 2>run2.err || rc=$?
assert_rc "run with a hostile --set" 0 "$rc" run2.out run2.err
check_step 2 'H[::-1].rstrip("\n")'
assert_eq "commands inside --set never ran" "" "$(ls -A "$PW")"
rc=0
anneal run hostile.json --set "p=$(printf 'a\377\376b')" >run3.out 2>run3.err || rc=$?
assert_rc "--set with invalid UTF-8" 2 "$rc" run3.out run3.err
assert_grep "--set invalid UTF-8 says why" run3.err 'not valid UTF-8'
pass "--set: verbatim, unexecuted; invalid UTF-8 refused (exit 2)"

# ---- 2. names in recipes ---------------------------------------------------------
mkdir names
"$PY" -c '
import json, sys
L65, L64, L63 = "s" * 65, "s" * 64, "o" * 63
def stage(**kw):
    s = {"id": "a", "kind": "exec", "command": ["true"],
         "outputs": {"out": {"type": "dataset"}}}
    s.update(kw)
    return s
cases = {
  "id-dotdot":    [stage(id="..")],
  "id-slash":     [stage(id="a/../../b")],
  "id-abs":       [stage(id="/etc")],
  "id-newline":   [stage(id="a\nb")],
  "id-meta":      [stage(id="a;rm -rf x")],
  "id-ctl":       [stage(id="a\u0001\u007f")],
  "id-65":        [stage(id=L65)],
  "id-100k":      [stage(id="s" * 100000)],
  "out-dotdot":   [stage(outputs={"..": {"type": "dataset"}})],
  "out-slash":    [stage(outputs={"a/b": {"type": "dataset"}})],
  "out-newline":  [stage(outputs={"a\nb": {"type": "dataset"}})],
  "out-64":       [stage(outputs={"o" * 64: {"type": "dataset"}})],
  "out-100k":     [stage(outputs={"o" * 100000: {"type": "dataset"}})],
  "name-dotdot":  [stage(outputs={"out": {"type": "dataset", "name": "../../x"}})],
  "name-abs":     [stage(outputs={"out": {"type": "dataset", "name": "/etc/passwd"}})],
  "name-at":      [stage(outputs={"out": {"type": "dataset", "name": "a@1"}})],
  "name-newline": [stage(outputs={"out": {"type": "dataset", "name": "a\nb"}})],
  "name-meta":    [stage(outputs={"out": {"type": "dataset", "name": "$(id)"}})],
  "name-129":     [stage(outputs={"out": {"type": "dataset", "name": "n" * 129}})],
  "role-slash":   [stage(), stage(id="b", inputs={"a/b": "a.out"})],
  "role-64":      [stage(), stage(id="b", inputs={"r" * 64: "a.out"})],
  "env-meta":     [stage(env={"A;B": "x"})],
}
for k, st in cases.items():
    json.dump({"name": "n", "stages": st}, open("names/%s.json" % k, "w"))
json.dump({"name": "longest", "stages": [
    {"id": L64, "kind": "exec",
     "command": ["sh", "-c", "echo hi > \"$ANNEAL_OUTPUT_" + L63.upper() + "/f\""],
     "outputs": {L63: {"type": "dataset"}}}]}, open("longest.json", "w"))
'
V=$T/validate
mkdir "$V"
for f in names/*.json; do
	case=$(basename "$f" .json)
	rc=0
	(cd "$V" && "$ANNEAL_BIN" validate "$WS/$f" </dev/null) >"$T/v.out" 2>"$T/v.err" || rc=$?
	assert_rc "validate $case" 2 "$rc" "$T/v.out" "$T/v.err"
	assert_eq "validate $case: one line of error" 1 "$(wc -l <"$T/v.err" | tr -d ' ')"
	assert_grep "validate $case: names the stage field" "$T/v.err" \
		"^anneal: $WS/$f: stages\[[01]\]"
	# Messages stay readable: the 100 KB name is not echoed whole.
	[ "$(wc -c <"$T/v.err")" -lt 2000 ] || fail "validate $case: a $(wc -c <"$T/v.err")-byte message"
	[ ! -e "$V/.anneal" ] || fail "validate $case made a workspace"
done
rc=0
anneal run longest.json >run4.out 2>run4.err || rc=$?
assert_rc "the longest valid stage and output names" 0 "$rc" run4.out run4.err
anneal ls --json >ls4.json
long_name=$("$PY" -c 'print("s" * 64 + "." + "o" * 63)')
assert_eq "the 128-character artifact is registered whole" "$long_name@1" \
	"$("$PY" -c 'import json, sys; print(" ".join("%s@%d" % (a["name"], a["version"]) for a in json.load(open(sys.argv[1])) if a["name"].startswith("sss")))' ls4.json)"
pass "hostile stage ids, output names, roles and artifact names: exit 2 naming the field; the longest valid names work"

# ---- 3. the command line -----------------------------------------------------------
echo data >"$T/data.txt"
before=$(anneal ls --all --json | tr -d ' \n')
for name in '../x' '/etc/passwd' 'a/b' '..' '.hidden' '-rf' 'a@1' "$(printf 'a\nb')" \
	'$(touch '"$PW"'/P7)' "$(printf 'a\001b')" "$(printf 'a\377b')" \
	"$(head -c 129 /dev/zero | tr '\000' n)" "$(head -c 100000 /dev/zero | tr '\000' n)"; do
	rc=0
	anneal add "$T/data.txt" --name "$name" >add.out 2>add.err || rc=$?
	assert_rc "add --name '$(printf '%.40s' "$name")'" 2 "$rc" add.out add.err
	assert_grep "add names the problem" add.err "invalid name"
	rc=0
	anneal tag 'a.out@1' "$name" >tag.out 2>tag.err || rc=$?
	assert_rc "tag '$(printf '%.40s' "$name")'" 2 "$rc" tag.out tag.err
	assert_grep "tag names the problem" tag.err "invalid alias"
	[ "$(wc -l <tag.err | tr -d ' ')" = 1 ] || fail "tag: a message over several lines: $(cat tag.err)"
done
assert_eq "nothing registered by refused adds" "$before" "$(anneal ls --all --json | tr -d ' \n')"
assert_eq "commands inside names never ran" "" "$(ls -A "$PW")"
[ ! -e "$T/x" ] && [ ! -e "$WS/x" ] || fail "a name became a path"

# A bundle path full of metacharacters: no shell between anneal and it.
weird="$T/b \$(touch P8);\`touch P9\` 'q' *.tar.zst"
rc=0
anneal export 'a.out@1' -o "$weird" >exp.out 2>exp.err || rc=$?
assert_rc "export to a path with metacharacters" 0 "$rc" exp.out exp.err
[ -f "$weird" ] || fail "export did not write '$weird'"
anneal init "$T/ws2" >/dev/null
rc=0
anneal -C "$T/ws2" import "$weird" >imp.out 2>imp.err || rc=$?
assert_rc "import from a path with metacharacters" 0 "$rc" imp.out imp.err
[ ! -e P8 ] && [ ! -e P9 ] && [ ! -e "$T/P8" ] && [ ! -e "$T/P9" ] ||
	fail "a command inside a bundle path ran"
pass "add/tag refuse hostile names (exit 2, one line, nothing registered); export/import take any path literally"
