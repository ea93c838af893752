#!/usr/bin/python3
"""bench/slurm/report.py TMP N — the tables of bench/slurm/run.sh.

Reads, for each phase directory TMP/<tool> (sbatch, anneal, snakemake,
snakemake-dflt) that exists:
  cmds      the wrappers' log, a line a Slurm command, tab-separated:
            start end name in-job(SLURM_JOB_ID or '') rc sbatch-output args
            (start and end: Unix seconds with microseconds)
  wall      "t0 t1": the tool's process, start and exit (Unix seconds)
  marks/sI  "T JOBID": when step I's command began, in job JOBID
  capped    "t0 S RC": the tool was sent SIGINT S seconds after t0; RC is
            timeout(1)'s status (137: it had to be SIGKILLed 10 s later)
  failed    present when the tool exited non-zero
and TMP/ctld.log, slurmctld's log since the bench began ([ISO time with
ms] in local time): submit, start (sched: Allocate / backfill Started) and
completion of every job. See run.sh for what each column means.
"""
import math
import os
import re
import sys
import time

STATUS = ("squeue", "scontrol", "sacct")
TOOLS = ("sbatch", "anneal", "snakemake", "snakemake-dflt")


def ts(stamp):
    """'2026-11-29T06:25:43.201' (local time) -> Unix seconds."""
    whole, _, frac = stamp.partition(".")
    t = time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def ctld_events(path):
    start, done = {}, {}
    pat = re.compile(r"^\[([0-9T:.-]+)\] (.*)$")
    with open(path, errors="replace") as f:
        for line in f:
            m = pat.match(line)
            if not m:
                continue
            msg = m.group(2)
            j = re.search(r"(?:sched: Allocate|_start_job: Started) JobId=(\d+)", msg)
            if j and j.group(1) not in start:
                start[j.group(1)] = ts(m.group(1))
                continue
            j = re.search(r"_job_complete: JobId=(\d+) done", msg)
            if j:
                done[j.group(1)] = ts(m.group(1))
    return start, done


def read_cmds(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 7:
                continue
            out.append({"t0": float(p[0]), "t1": float(p[1]), "cmd": p[2],
                        "injob": p[3] != "", "rc": int(p[4] or 0),
                        "out": p[5], "args": p[6]})
    out.sort(key=lambda c: c["t0"])
    return out


def job_ids(c):
    """The job ids a status command asks about ([] when none in particular)."""
    a = c["args"].split()
    ids = []
    if c["cmd"] in ("squeue", "sacct"):
        for i, w in enumerate(a):
            if w == "-j" and i + 1 < len(a):
                ids += a[i + 1].split(",")
            elif w.startswith("--jobs="):
                ids += w[7:].split(",")
    elif c["cmd"] == "scontrol" and len(a) >= 2 and a[0] == "show" and a[1] in ("job", "jobid"):
        ids = [w for w in a[2:] if w.isdigit()]
    return [i for i in ids if i.isdigit()]


def pct(v, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(v)
    k = max(1, math.ceil(p / 100.0 * len(v)))
    return v[k - 1]


def med(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def polls(tool, st):
    """Status commands grouped by poll (see run.sh): a list of lists."""
    groups, cur, asked = [], None, set()
    for c in st:
        ids = job_ids(c)
        if tool == "anneal":
            if c["cmd"] == "squeue":
                cur = [c]
                groups.append(cur)
            elif cur is not None:
                cur.append(c)
        else:  # Snakemake: a pass ends when a job is asked about again
            if not ids:
                continue
            if c["cmd"] == "sacct" and (cur is None or set(ids) & asked):
                cur, asked = [], set()
                groups.append(cur)
            if cur is None:
                cur = []
                groups.append(cur)
            cur.append(c)
            if c["cmd"] == "sacct":
                asked |= set(ids)
    return groups


def max_in_window(times, w):
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - w + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def analyze(tmp, tool, n, start, done):
    d = os.path.join(tmp, tool)
    if not os.path.isdir(d):
        return None
    cmds = read_cmds(os.path.join(d, "cmds"))
    w0, w1 = map(float, open(os.path.join(d, "wall")).read().split())
    capped, r_killed = None, False
    if os.path.exists(os.path.join(d, "capped")):
        c0, s, krc = open(os.path.join(d, "capped")).read().split()
        capped = float(c0) + float(s)
        r_killed = krc == "137"
    r = {"tool": tool, "failed": os.path.exists(os.path.join(d, "failed")), "capped": capped,
         "killed": capped is not None and r_killed}
    drv = [c for c in cmds if not c["injob"]]
    injob = [c for c in cmds if c["injob"] and c["t0"] < (capped or float("inf"))]
    limit = capped if capped else float("inf")
    after_cap = [c for c in drv if c["t0"] >= limit]
    drv = [c for c in drv if c["t0"] < limit]
    subs = {}
    for c in drv:
        m = re.search(r"\d+", c["out"]) if c["cmd"] == "sbatch" and c["rc"] == 0 else None
        if m:  # "123", "123;cluster" or "Submitted batch job 123"
            subs[m.group(0)] = c
    ids = list(subs)
    marks = {}
    md = os.path.join(d, "marks")
    for f in os.listdir(md) if os.path.isdir(md) else []:
        p = open(os.path.join(md, f)).read().split()
        if len(p) == 2:
            marks[p[1]] = float(p[0])
    r["submitted"] = len(ids)
    r["completed"] = sum(1 for i in ids if i in done and done[i] < limit)
    if tool == "sbatch" and ids:
        # The floor's wall: first submit to last completion (not its log polling).
        w0 = min(c["t0"] for c in subs.values())
        w1 = max(done[i] for i in ids if i in done) if r["completed"] else w1
    r["wall"] = (limit - w0) if capped else (w1 - w0)
    began = [i for i in ids if start.get(i, limit) < limit]   # before a SIGINT
    r["sub2start"] = [start[i] - subs[i]["t0"] for i in began]
    r["start2cmd"] = [marks[i] - start[i] for i in began if i in marks]
    r["sbatch_call"] = [c["t1"] - c["t0"] for c in subs.values()]
    st = [c for c in drv if c["cmd"] in STATUS]
    last_ask = {}
    for c in st:
        for i in job_ids(c):
            last_ask[i] = c["t0"]
    noticed = [last_ask[i] - done[i] for i in ids if i in done and last_ask.get(i, -1) >= done[i]]
    r["noticed"] = noticed if tool != "sbatch" else None
    r["n_noticed"] = len(noticed)
    # The tool's own time outside Slurm's span: before its first sbatch
    # call, and from the last job's completion to its exit.
    r["head"] = r["tail"] = None
    if ids and tool != "sbatch":
        r["head"] = min(c["t0"] for c in subs.values()) - w0
        if not capped and all(i in done for i in ids):
            r["tail"] = w1 - max(done[i] for i in ids)
    counts = {}
    for c in drv:
        counts[c["cmd"]] = counts.get(c["cmd"], 0) + 1
    r["counts"] = counts
    r["ncmds"] = len(drv)
    r["per_min"] = len(drv) / r["wall"] * 60 if r["wall"] > 0 else 0
    r["injob"] = len(injob)
    r["after_cap"] = len(after_cap)
    r["after_cap_counts"] = {}
    for c in after_cap:
        r["after_cap_counts"][c["cmd"]] = r["after_cap_counts"].get(c["cmd"], 0) + 1
    g = polls(tool, st) if tool != "sbatch" else []
    r["polls"] = len(g)
    r["per_poll_max"] = max((len(x) for x in g), default=0)
    r["per_poll_mean"] = sum(len(x) for x in g) / len(g) if g else 0
    r["per_poll_by"] = {}
    for x in g:
        for k in STATUS:
            m = sum(1 for c in x if c["cmd"] == k)
            r["per_poll_by"][k] = max(r["per_poll_by"].get(k, 0), m)
    starts = [x[0]["t0"] for x in g if x]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    r["poll_gap"] = med(gaps) if gaps else None
    r["status_1s"] = max_in_window([c["t0"] for c in st], 1.0)
    r["nstatus"] = len(st)
    r["sacct_failed"] = sum(1 for c in st if c["cmd"] == "sacct" and c["rc"] != 0)
    r["sacct"] = sum(1 for c in st if c["cmd"] == "sacct")
    return r


def fmt_pair(v, scale=1.0, f="%.2f"):
    if not v:
        return "-"
    return (f + "/" + f) % (med(v) * scale, pct(v, 95) * scale)


def main():
    tmp, n = sys.argv[1], int(sys.argv[2])
    start, done = ctld_events(os.path.join(tmp, "ctld.log"))
    rows = [r for r in (analyze(tmp, t, n, start, done) for t in TOOLS) if r]
    floor = next((r for r in rows if r["tool"] == "sbatch"), None)

    print()
    print("per job (median/p95; s unless ms):")
    h = "%-15s %9s %8s %9s %15s %14s %15s %9s %7s %7s"
    print(h % ("tool", "completed", "wall s", "ovh/job s", "submit->start s",
               "start->cmd ms", "end->noticed s", "sbatch ms", "head s", "tail s"))
    for r in rows:
        ovh = "-"
        if floor and r is not floor and not r["capped"]:
            ovh = "%.3f" % ((r["wall"] - floor["wall"]) / n)
        wall = "%.1f" % r["wall"] + ("*" if r["capped"] else "")
        comp = "%d/%d" % (r["completed"], n)
        if r["failed"]:
            comp += "!"
        print(h % (r["tool"], comp, wall, ovh, fmt_pair(r["sub2start"]),
                   fmt_pair(r["start2cmd"], 1000, "%.0f"),
                   fmt_pair(r["noticed"]) if r["noticed"] is not None else "-",
                   fmt_pair(r["sbatch_call"], 1000, "%.0f"),
                   "%.2f" % r["head"] if r["head"] is not None else "-",
                   "%.2f" % r["tail"] if r["tail"] is not None else "-"))
    print("  ovh/job: (wall - the sbatch row's wall) / %d; head: start to first sbatch call;"
          " tail: last job's completion to exit" % n)

    print()
    print("Slurm command load (commands run by the tool itself, not inside jobs):")
    h = "%-15s %6s %8s %-44s %6s %9s %13s %9s %7s"
    print(h % ("tool", "cmds", "per min", "by command", "polls", "poll gap", "status/poll", "status/1s", "in-job"))
    for r in rows:
        by = " ".join("%s %d" % (k, r["counts"][k]) for k in
                      ("sbatch", "squeue", "scontrol", "sacct", "scancel", "sinfo", "srun", "sacctmgr")
                      if r["counts"].get(k))
        gap = "%.2f s" % r["poll_gap"] if r["poll_gap"] is not None else "-"
        spp = "%d (%.1f)" % (r["per_poll_max"], r["per_poll_mean"]) if r["polls"] else "-"
        print(h % (r["tool"], r["ncmds"], "%.0f" % r["per_min"], by, r["polls"] or "-", gap, spp,
                   r["status_1s"], r["injob"]))
    print("  status/poll: most (mean) status commands in one poll; status/1s: most begun in any 1 s window")

    notes = []
    for r in rows:
        if r["sacct"] and r["sacct_failed"]:
            notes.append("%s: %d of its %d sacct calls failed (no slurmdbd; it fell back to scontrol)"
                         % (r["tool"], r["sacct_failed"], r["sacct"]))
        if r["capped"]:
            extra = ""
            if r["after_cap"]:
                extra = "; after SIGINT it ran %d more (%s)" % (
                    r["after_cap"], ", ".join("%s %d" % kv for kv in sorted(r["after_cap_counts"].items())))
            notes.append("%s: *SIGINT after %.0f s: by then %d/%d submitted, %d completed in Slurm, %d noticed "
                         "by it as ended%s%s" % (r["tool"], r["wall"], r["submitted"], n, r["completed"],
                                                 r["n_noticed"], extra,
                                                 "; it had not exited 10 s after SIGINT: SIGKILLed"
                                                 if r["killed"] else ""))
        if r["failed"]:
            notes.append("%s: exited non-zero (!)" % r["tool"])
    if notes:
        print()
        for x in notes:
            print(x)

    a = next((r for r in rows if r["tool"] == "anneal"), None)
    s = next((r for r in rows if r["tool"] == "snakemake"), None)
    print()
    if a and s and not s["failed"]:
        def ratio(x, y):
            return "%.2fx" % (x / y) if y else "-"
        print("anneal vs snakemake (snakemake / anneal; >1: anneal better):")
        print("  wall                 %s" % ratio(s["wall"], a["wall"]))
        if floor:
            so, ao = (s["wall"] - floor["wall"]) / n, (a["wall"] - floor["wall"]) / n
            print("  overhead per job     %s  (%.3f s vs %.3f s over the sbatch loop)" % (
                ratio(so, ao) if ao > 0.005 else "n/a: anneal's is within the noise of the loop", so, ao))
        if a["sub2start"] and s["sub2start"]:
            print("  submit->start med    %s" % ratio(med(s["sub2start"]), med(a["sub2start"])))
        if a["noticed"] and s["noticed"]:
            print("  end->noticed med     %s" % ratio(med(s["noticed"]), med(a["noticed"])))
        print("  Slurm cmds per min   %s" % ratio(s["per_min"], a["per_min"]))
        print("  Slurm cmds in all    %s  (%d vs %d: %.2f vs %.2f a job)" % (
            ratio(s["ncmds"], a["ncmds"]), s["ncmds"], a["ncmds"], s["ncmds"] / n, a["ncmds"] / n))
        print("  status cmds per poll %s (max)" % ratio(s["per_poll_max"], a["per_poll_max"]))
        print("  status cmds in 1 s   %s (max)" % ratio(s["status_1s"], a["status_1s"]))
    if a and floor:
        print("anneal vs the sbatch loop: wall %.2fx, submit->start median %.2fx" % (
            a["wall"] / floor["wall"] if floor["wall"] else 0,
            med(a["sub2start"]) / med(floor["sub2start"]) if floor["sub2start"] and med(floor["sub2start"]) else 0))
    if a:
        ok = a["per_poll_max"] <= 1
        print("target: at most 1 status command per poll interval, whatever the number of jobs: "
              "anneal max %d (mean %.2f) over %d polls  %s" % (
                  a["per_poll_max"], a["per_poll_mean"], a["polls"], "met" if ok else "MISSED"))
        print("  most in one poll, by command: %s (anneal: one squeue -O for all jobs, ended ones"
              " with their exit status; scontrol/sacct -c only for a job squeue has forgotten)" % ", ".join(
                  "%s %d" % (k, a["per_poll_by"][k]) for k in STATUS if a["per_poll_by"].get(k)))


if __name__ == "__main__":
    main()
