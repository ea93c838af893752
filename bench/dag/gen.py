#!/usr/bin/python3
"""Generate one no-op DAG for anneal, ninja and Snakemake.

usage: gen.py SHAPE N DIR

SHAPE is 'chain' (step i depends on step i-1, N steps) or 'fan' (N independent
steps, then one join step that depends on all of them: N+1 steps).  Every step,
in every tool, runs the same program: `touch` of one small file.

Writes into DIR:
  recipe.json   anneal exec recipe (output o, command touch ${outputs.o}/s<i>)
  build.ninja   one build edge per step (rule: touch $out)
  Snakefile     one wildcard rule for the steps (+ one join rule for 'fan')
"""
import json
import os
import sys


def main(argv):
    if len(argv) != 4 or argv[1] not in ("chain", "fan"):
        sys.stderr.write("usage: gen.py chain|fan N DIR\n")
        return 2
    shape, n, out = argv[1], int(argv[2]), argv[3]
    if n < 1:
        sys.stderr.write("gen.py: N must be >= 1\n")
        return 2
    os.makedirs(out, exist_ok=True)

    # anneal
    stages = []
    for i in range(n):
        # Each step touches its own file name (as ninja's and Snakemake's do),
        # so every step has its own cache key, as steps of real recipes do.
        st = {"id": "s%d" % i, "kind": "exec",
              "command": ["touch", "${outputs.o}/s%d" % i],
              "outputs": {"o": "dataset"}}
        if shape == "chain" and i > 0:
            st["after"] = ["s%d" % (i - 1)]
        stages.append(st)
    if shape == "fan":
        stages.append({"id": "join", "kind": "exec",
                       "command": ["touch", "${outputs.o}/join"],
                       "outputs": {"o": "dataset"},
                       "after": ["s%d" % i for i in range(n)]})
    with open(os.path.join(out, "recipe.json"), "w") as f:
        json.dump({"name": "bench-dag-%s-%d" % (shape, n), "stages": stages},
                  f, indent=None, separators=(",", ":"))
        f.write("\n")

    # ninja
    with open(os.path.join(out, "build.ninja"), "w") as f:
        f.write("rule t\n  command = touch $out\n\n")
        for i in range(n):
            dep = " o/s%d" % (i - 1) if shape == "chain" and i > 0 else ""
            f.write("build o/s%d: t%s\n" % (i, dep))
        if shape == "fan":
            f.write("build o/join: t %s\n" % " ".join("o/s%d" % i for i in range(n)))
            f.write("default o/join\n")
        else:
            f.write("default o/s%d\n" % (n - 1))

    # Snakemake: one wildcard rule; the target drives the DAG
    with open(os.path.join(out, "Snakefile"), "w") as f:
        if shape == "chain":
            # Snakemake builds the DAG recursively: a deep chain needs a higher
            # Python recursion limit (the default fails near 500 steps).
            f.write(
                "import sys\n"
                "sys.setrecursionlimit(max(sys.getrecursionlimit(), %d))\n\n"
                "rule all:\n"
                "    input: 'o/s%d'\n\n"
                "rule step:\n"
                "    input: lambda wc: ['o/s%%d' %% (int(wc.i) - 1)] if int(wc.i) > 0 else []\n"
                "    output: 'o/s{i,[0-9]+}'\n"
                "    shell: 'touch {output}'\n" % (20 * n + 1000, n - 1))
        else:
            f.write(
                "N = %d\n\n"
                "rule all:\n"
                "    input: 'o/join'\n\n"
                "rule join:\n"
                "    input: expand('o/s{i}', i=range(N))\n"
                "    output: 'o/join'\n"
                "    shell: 'touch {output}'\n\n"
                "rule step:\n"
                "    output: 'o/s{i,[0-9]+}'\n"
                "    shell: 'touch {output}'\n" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
