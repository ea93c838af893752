#!/bin/sh
# tests/e2e/test_provenance.sh — the git state of the recipe's repository
# (and of a named engine repository) is recorded with each run and shows
# with every artifact; --require-clean refuses a dirty tree; the workspace
# itself never makes the repository dirty.
. "$(dirname "$0")/lib.sh"

command -v git >/dev/null || { echo "skip: no git"; exit 0; }
g() { git -c user.name=e2e -c user.email=e2e@example.invalid -c init.defaultBranch=main "$@"; }

g init -q .
g init -q engine-repo
printf 'engine\n' >engine-repo/train.sh
(cd engine-repo && g add train.sh && g commit -qm "engine v1")
cat >p.json <<'EOF2'
{
  "name": "prov",
  "engine": {"repo": "engine-repo"},
  "stages": [
    {"id": "a", "kind": "exec",
     "command": ["sh", "-c", "cat engine-repo/train.sh > \"$1/a.txt\"", "sh", "${outputs.o}"],
     "outputs": {"o": "dataset"}}
  ]
}
EOF2
printf 'e2e/\nengine-repo/\n' >.gitignore
g add p.json .gitignore
g commit -qm "recipe v1"
commit=$(git rev-parse HEAD)
ecommit=$(cd engine-repo && git rev-parse HEAD)

rc=0
anneal run p.json --require-clean >e2e/out1 2>e2e/err1 || rc=$?
assert_rc "run on a clean tree with --require-clean" 0 "$rc" e2e/out1 e2e/err1
assert_eq "the workspace does not dirty the repository" "" "$(git status --porcelain)"
anneal show a.o --json >e2e/show.json
assert_eq "artifact's commit" "$commit" \
	"$($PY -c 'import json; print(json.load(open("e2e/show.json"))["producer"]["git_commit"])')"
assert_eq "engine repository's commit" "$ecommit" \
	"$($PY -c 'import json; print(json.load(open("e2e/show.json"))["producer"]["provenance"]["engine"]["commit"])')"
assert_eq "clean" "False" \
	"$($PY -c 'import json; print(json.load(open("e2e/show.json"))["producer"]["provenance"]["recipe"]["dirty"])')"

printf 'tweak\n' >>engine-repo/train.sh
rc=0
anneal run p.json --require-clean >e2e/out2 2>e2e/err2 || rc=$?
assert_rc "run with a dirty engine repository and --require-clean" 2 "$rc" e2e/out2 e2e/err2
assert_grep "names the dirty repository" e2e/err2 "(the engine's repository) has uncommitted changes (1 modified, 0 untracked)"
rc=0
anneal run p.json --no-cache >e2e/out3 2>e2e/err3 || rc=$?
assert_rc "the same run without --require-clean" 0 "$rc" e2e/out3 e2e/err3
anneal show a.o@2 --json >e2e/show3.json
assert_eq "a dirty tree is recorded with a digest of its changes" "True" \
	"$($PY -c 'import json; p=json.load(open("e2e/show3.json"))["producer"]["provenance"]["engine"]; print(p["dirty"] and len(p["dirty_digest"]) == 64)')"
pass "provenance recorded, --require-clean enforced"
