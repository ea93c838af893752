#!/usr/bin/env python3
# tests/torture/torture.py — the crash torture of anneal (run it through
# tests/torture/run.sh, which documents the knobs). Python rather than sh
# because the harness must time kills to the millisecond, draw seeded
# instants, poll the state database cheaply while a driver recovers and
# print a table of figures; it only ever talks to anneal through its CLI,
# its files and read-only SQL, like a user would.
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


ANNEAL = os.path.abspath(os.environ.get("ANNEAL_BIN") or os.path.join(ROOT, "bin", "anneal"))
ENGINE = os.path.join(os.path.dirname(ANNEAL), "anneal-engine")
LENGTH = os.environ.get("TORTURE", "long")
if LENGTH not in ("long", "short"):
    sys.exit("torture: TORTURE must be 'long' or 'short', not '%s'" % LENGTH)
SHORT = LENGTH == "short"
SAN = os.environ.get("SAN", "0") == "1"
KILLS = env_int("TORTURE_KILLS", 8 if SHORT else 50)
SEED = env_int("TORTURE_SEED", int(time.time() * 1000) % 1000000)
ONLY = [m for m in os.environ.get("TORTURE_ONLY", "anneal,engine,both,windows").split(",") if m]
KEEP = os.environ.get("TORTURE_KEEP", "0") == "1"
MODES = ("anneal", "engine", "both", "windows")
for m in ONLY:
    if m not in MODES:
        sys.exit("torture: TORTURE_ONLY: unknown mode '%s' (modes: %s)" % (m, ", ".join(MODES)))

# Sizes: one uninterrupted run takes ~10-15 s (long) or ~5 s (short) on
# a loaded 2-core machine; sanitizer builds run several times slower, so
# their steps are fewer. Checkpoints every ckpt_every updates keep the
# engines ingesting all the time (the windows the kills aim at).
if SAN:
    # (tests/e2e/test_pangu.sh's: a weaker teacher solves none of the
    # distill prompts, which fails the step)
    SIZES = dict(teacher_steps=500, pretrain_steps=300, distill_steps=120, distill_prompts=60,
                 rl_steps=10, dual_steps=200, eval_per_bucket=10, ckpt_every=40,
                 teacher_hidden="[64]", student_hidden="[32]")
elif SHORT:
    SIZES = dict(teacher_steps=1200, pretrain_steps=1200, distill_steps=400, distill_prompts=120,
                 rl_steps=40, dual_steps=1200, eval_per_bucket=10, ckpt_every=100,
                 teacher_hidden="[128]", student_hidden="[64]")
else:
    SIZES = dict(teacher_steps=2000, pretrain_steps=2500, distill_steps=1000, distill_prompts=200,
                 rl_steps=100, dual_steps=3000, eval_per_bucket=20, ckpt_every=100,
                 teacher_hidden="[128]", student_hidden="[64]")
SETS = []
for k, v in SIZES.items():
    SETS += ["--set", "%s=%s" % (k, v)]

T = None           # the temporary root
WS = None          # $T/ws: where each pipeline run's workspace lives while it runs
RECIPE = None      # the recipe under test (pangu-embedded with the logging engine wrapper)
T_REF = None       # the uninterrupted run's duration
REF = {}           # the uninterrupted run's facts
DEADLINE_S = 600 if SAN else 300   # for one run to finish after its last kill


class Fail(Exception):
    pass


def say(msg):
    print(msg, flush=True)


def now():
    return time.monotonic()


# ---- processes --------------------------------------------------------------

def base_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANNEAL_")}
    if extra:
        env.update(extra)
    return env


class Driver:
    """One anneal run/resume process (a 'life' of the driver)."""

    def __init__(self, ws, args, mdir, extra_env=None):
        self.ws = ws
        log = os.path.join(mdir, "driver.log")
        self.args = args
        self.log = log
        self.t0 = now()
        with open(log, "ab") as f:
            f.write(("$ anneal %s%s\n" % (" ".join(args),
                     " (ANNEAL_FAULT=%s)" % extra_env["ANNEAL_FAULT"]
                     if extra_env and "ANNEAL_FAULT" in extra_env else "")).encode())
            f.flush()
            self.p = subprocess.Popen([ANNEAL] + args, cwd=ws, stdin=subprocess.DEVNULL,
                                      stdout=f, stderr=subprocess.STDOUT,
                                      env=base_env(dict(extra_env or {},
                                                         TORTURE_LOG=os.path.join(mdir, "engine.log"))))
        self.pid = self.p.pid

    def poll(self):
        return self.p.poll()

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """kill -9; True if it landed on a live driver."""
        if self.p.poll() is not None:
            return False
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()
        return self.p.returncode == -signal.SIGKILL

    def tail(self, n=25):
        try:
            with open(self.log, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("  | " + l for l in lines[-n:])


def anneal(ws, *args, env=None, timeout=300):
    return subprocess.run([ANNEAL] + list(args), cwd=ws, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=base_env(env), timeout=timeout)


def anneal_ok(ws, *args, what=None):
    r = anneal(ws, *args)
    if r.returncode != 0:
        raise Fail("%s: 'anneal %s' exited %d:\n%s%s" % (
            what or ws, " ".join(args), r.returncode, r.stdout.decode(errors="replace")[-2000:],
            r.stderr.decode(errors="replace")[-2000:]))
    return r.stdout.decode()


def anneal_json(ws, *args, what=None):
    return json.loads(anneal_ok(ws, *args, what=what))


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return st not in ("Z", "X")


def step_procs(ws):
    """The processes running steps of workspace ws: [(pid, step, attempt)].
    A step's process is the program its argv names: anneal-engine (under
    the logging wrapper) or anneal itself (merge steps), never the shim."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            if os.readlink("/proc/%d/cwd" % pid) != ws:
                continue
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
            if os.path.basename(argv0) not in ("anneal-engine", "anneal"):
                continue
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
        except (OSError, ValueError):
            continue
        if b"ANNEAL_STEP_ID" not in env or not proc_alive(pid):
            continue
        out.append((pid, env[b"ANNEAL_STEP_ID"].decode(), int(env.get(b"ANNEAL_ATTEMPT", b"0"))))
    return sorted(out)


def procs_under(root):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                cwd = os.readlink("/proc/%s/cwd" % d)
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + "/"):
                pids.append(int(d))
    return pids


def kill_all_under(root):
    for _ in range(2):
        for pid in procs_under(root):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---- the state database (read only) -----------------------------------------

def db(ws):
    c = sqlite3.connect("file:%s/.anneal/state.db?mode=ro" % ws, uri=True, timeout=30)
    c.execute("PRAGMA query_only = 1")
    return c


def driver_pid(conn, run):
    try:
        r = conn.execute("SELECT driver_pid FROM runs WHERE id = ?", (run,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return r[0] if r else None


def wait_driver_gone(ws, run, deadline):
    """Until no process holds the run's driver lock (a step the killed
    driver had just spawned may hold a copy for a moment)."""
    while True:
        r = anneal(ws, "status", str(run), "--json")
        if r.returncode == 0 and not json.loads(r.stdout)["driver_alive"]:
            return
        if now() > deadline:
            raise Fail("%s: run %d's driver lock still held" % (ws, run))
        time.sleep(0.01)


# ---- the recipe and the reference run ---------------------------------------

WRAPPER = """#!/bin/sh
# The engine of the torture runs: records every start and end of a step's
# engine in $TORTURE_LOG (one O_APPEND line each), the evidence, outside
# anneal, that no finished step ran again and no step ran twice at once.
printf 'start %s %s %s %s\\n' "$ANNEAL_RUN_ID" "$ANNEAL_STEP_ID" "$ANNEAL_ATTEMPT" "$$" >>"$TORTURE_LOG"
"$@"
rc=$?
printf 'end %s %s %s %s\\n' "$ANNEAL_RUN_ID" "$ANNEAL_STEP_ID" "$ANNEAL_ATTEMPT" "$rc" >>"$TORTURE_LOG"
exit $rc
"""


def make_recipe():
    global RECIPE
    src = os.path.join(ROOT, "recipes", "pangu-embedded.json")
    with open(src) as f:
        text = f.read()
    wrapper = os.path.join(T, "engine.sh")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    anchor = '"name": "pangu-embedded",'
    if anchor not in text:
        raise Fail("%s: no line %s to put the engine after" % (src, anchor))
    text = text.replace(anchor, anchor + '\n  "engine": { "command": ["sh", %s, %s] },'
                        % (json.dumps(wrapper), json.dumps(ENGINE)), 1)
    RECIPE = os.path.join(T, "pangu-torture.json")
    with open(RECIPE, "w") as f:
        f.write(text)


def new_ws(name):
    """A fresh workspace at the one path every pipeline run uses ($T/ws:
    outputs embed their inputs' absolute paths, see the report), and its
    mode's folder for logs. park() moves it there once checked."""
    d = os.path.join(T, name)
    os.makedirs(d)
    os.makedirs(WS)
    anneal_ok(WS, "init", what=name)
    return WS, d


def park(mdir):
    kill_all_under(WS)
    if os.path.isdir(WS):
        os.rename(WS, os.path.join(mdir, "ws"))


def output_digests(ws, run):
    conn = db(ws)
    try:
        rows = conn.execute("SELECT name, digest FROM artifacts WHERE kind = 'output' AND run_id = ?",
                            (run,)).fetchall()
    finally:
        conn.close()
    return sorted(rows)


def reference():
    global T_REF
    ws, mdir = new_ws("ref")
    t0 = now()
    d = Driver(ws, ["run", RECIPE] + SETS + ["-j2"], mdir)
    rc = d.wait(DEADLINE_S)
    T_REF = now() - t0
    if rc != 0:
        raise Fail("reference run exited %s:\n%s" % (rc, d.tail()))
    REF["digest"] = anneal_json(ws, "show", "pangu-embedded", "--json")["digest"]
    REF["outputs"] = output_digests(ws, 1)
    verify(ws, mdir, "reference", runs=(1,))
    park(mdir)
    say("reference: uninterrupted run in %.1f s, final model %s, %d outputs" % (
        T_REF, REF["digest"][:16], len(REF["outputs"])))


# ---- checks -------------------------------------------------------------------

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reexecuted(ws, mdir, runs):
    """Steps that ran again after they had finished (exited 0), and steps
    that ran twice at once, from three independent records: the engine
    wrapper's log, the shim's status file of each attempt directory, and
    the attempts table. Returns (reexec: set of 'run/step', problems)."""
    bad, problems = set(), []
    # 1. the wrapper's log (engine steps)
    log = os.path.join(mdir, "engine.log")
    finished, open_ = {}, {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                w = line.split()
                if len(w) != 5 or int(w[1]) not in runs:
                    continue
                key = "%s/%s" % (w[1], w[2])
                if w[0] == "start":
                    if finished.get(key):
                        bad.add(key)
                        problems.append("%s: engine started (attempt %s) after it had exited 0"
                                        % (key, w[3]))
                    if open_.get(key):
                        problems.append("%s: attempt %s started while attempt %s still ran"
                                        % (key, w[3], open_[key]))
                    open_[key] = w[3]
                else:
                    open_[key] = None
                    if w[4] == "0":
                        finished[key] = True
    # 2. attempt directories
    for run in runs:
        rdir = os.path.join(ws, ".anneal", "runs", str(run))
        for step in sorted(os.listdir(rdir)) if os.path.isdir(rdir) else []:
            sdir = os.path.join(rdir, step)
            if not os.path.isdir(sdir):
                continue
            atts = sorted(int(a[1:]) for a in os.listdir(sdir) if re.fullmatch(r"a[0-9]+", a))
            done_at = None
            for n in atts:
                try:
                    with open(os.path.join(sdir, "a%d" % n, "status")) as f:
                        st = f.read()
                except OSError:
                    st = ""
                if done_at is not None:
                    bad.add("%d/%s" % (run, step))
                    problems.append("%d/%s: attempt directory a%d exists after a%d exited 0"
                                    % (run, step, n, done_at))
                if re.search(r"^exit 0$", st, re.M):
                    done_at = n
    # 3. the attempts table
    conn = db(ws)
    try:
        rows = conn.execute("SELECT run_id, step_id, n, state, exit_code FROM attempts "
                            "ORDER BY run_id, step_id, n").fetchall()
    finally:
        conn.close()
    seen = {}
    for run, step, n, state, code in rows:
        if run not in runs:
            continue
        key = "%d/%s" % (run, step)
        if seen.get(key) is not None:
            bad.add(key)
            problems.append("%s: attempt %d recorded after attempt %d succeeded" % (key, n, seen[key]))
        if state == "succeeded" or code == 0:
            seen[key] = n
    return bad, problems


def bytes_lost(ws):
    """Bytes of recorded artifacts (outputs and checkpoints, not pruned by
    gc) whose stored objects are missing or not what was recorded; checked
    here, independently of anneal audit. Returns (bytes, problems)."""
    conn = db(ws)
    try:
        arts = conn.execute("SELECT id, name, version, kind, digest, manifest, pruned FROM artifacts"
                            ).fetchall()
        ckpts = conn.execute("SELECT c.id, c.step_id, c.engine_step, c.digest, c.artifact, a.digest "
                             "FROM checkpoints c LEFT JOIN artifacts a ON a.id = c.artifact").fetchall()
        dups = conn.execute("SELECT run_id, step_id, attempt, engine_step, count(*) FROM checkpoints "
                            "GROUP BY run_id, step_id, attempt, engine_step HAVING count(*) > 1"
                            ).fetchall()
    finally:
        conn.close()
    objects = os.path.join(ws, ".anneal", "store", "objects")
    checked, lost, problems = {}, 0, []
    for aid, name, version, kind, digest, manifest, pruned in arts:
        if pruned:
            continue
        label = "%s@%s" % (name, version) if name else "%s #%d" % (kind, aid)
        for line in manifest.splitlines():
            w = line.split(" ", 3)
            if len(w) != 4:
                problems.append("%s: bad manifest line %r" % (label, line))
                continue
            od, size = w[0], int(w[1])
            if od not in checked:
                p = os.path.join(objects, od[:2], od[2:])
                try:
                    ok = os.path.getsize(p) == size and sha256_file(p) == od
                except OSError:
                    ok = False
                checked[od] = ok
            if not checked[od]:
                lost += size
                problems.append("%s: file '%s' (object %s, %d bytes) missing or damaged"
                                % (label, w[3], od[:12], size))
    for run, step, att, es, n in dups:
        problems.append("run %d: checkpoint of %s attempt %d at engine step %s recorded %d times"
                        % (run, step, att, es, n))
    for cid, step, es, cdig, art, adig in ckpts:
        if art is None or adig is None or (cdig and cdig != adig):
            problems.append("checkpoint %d of %s (engine step %s): recorded without its artifact"
                            % (cid, step, es))
    return lost, problems


def san_reports(ws, mdir):
    found = []
    for d, _, files in list(os.walk(mdir)) + list(os.walk(ws)):
        for f in files:
            if f.endswith(".log"):
                p = os.path.join(d, f)
                try:
                    with open(p, "rb") as fh:
                        t = fh.read()
                except OSError:
                    continue
                if b"Sanitizer" in t or b"runtime error:" in t:
                    found.append(p)
    return found


def verify(ws, mdir, label, runs=(1,), final=True):
    """Everything a crash must not break. Returns (reexecuted, bytes lost)."""
    problems = []
    for run in runs:
        st = anneal_json(ws, "status", str(run), "--json", what=label)
        if st["state"] != "succeeded":
            problems.append("run %d is %s" % (run, st["state"]))
        for s in st["steps"]:
            if s["state"] not in ("succeeded", "cached"):
                problems.append("run %d: step %s is %s" % (run, s["id"], s["state"]))
    if final:
        dig = anneal_json(ws, "show", "pangu-embedded", "--json", what=label)["digest"]
        if REF.get("digest") and dig != REF["digest"]:
            problems.append("final model digest %s, the uninterrupted run's %s" % (dig, REF["digest"]))
        if REF.get("outputs"):
            got = output_digests(ws, runs[0])
            if got != REF["outputs"]:
                want = dict(REF["outputs"])
                for name, d in got:
                    if want.get(name) != d:
                        problems.append("output %s: digest %s, the uninterrupted run's %s"
                                        % (name, d[:12], (want.get(name) or "none")[:12]))
                if len(got) != len(REF["outputs"]):
                    problems.append("%d output artifacts, the uninterrupted run %d"
                                    % (len(got), len(REF["outputs"])))
    r = anneal(ws, "audit", "--deep", "--json")
    try:
        a = json.loads(r.stdout)
    except ValueError:
        a = {"clean": False, "findings": [r.stderr.decode(errors="replace")]}
    if r.returncode != 0 or not a.get("clean"):
        problems.append("anneal audit --deep: exit %d, findings %s" % (
            r.returncode, json.dumps(a.get("findings"))[:1500]))
    bad, p2 = reexecuted(ws, mdir, runs)
    problems += p2
    lost, p3 = bytes_lost(ws)
    problems += p3
    san = san_reports(ws, mdir)
    problems += ["sanitizer report in %s" % p for p in san]
    if problems:
        raise Fail("%s: %d problem(s):\n%s" % (label, len(problems),
                                               "\n".join("  - " + p for p in problems[:40])))
    return len(bad), lost


# ---- timed kills ------------------------------------------------------------

def settle(ws, run, d, until):
    """Time to resume: from the resume command's start to the moment its
    driver has recovered the run (re-attached to live steps, recorded the
    ones that ended meanwhile) and scheduling resumes, i.e. the run's
    driver_pid is the new process. None if the next kill is due first."""
    conn = db(ws)
    try:
        while now() < until:
            if driver_pid(conn, run) == d.pid:
                return now() - d.t0
            if d.poll() is not None:
                return None
            time.sleep(0.005)
    finally:
        conn.close()
    return None


def step_recovered(ws, victim, ensure_driver, deadline):
    """Waits until the step whose process was killed runs a later attempt
    (or finished after all: the kill raced with its exit). Returns when."""
    _, step, att = victim
    conn = db(ws)
    try:
        while now() < deadline:
            if ensure_driver():
                return None
            if any(s == step and a > att for _, s, a in step_procs(ws)):
                return now()
            try:
                r = conn.execute("SELECT state FROM steps WHERE run_id = 1 AND id = ?",
                                 (step,)).fetchone()
            except sqlite3.OperationalError:
                r = None
            if r and r[0] in ("succeeded", "cached"):
                return None
            time.sleep(0.005)
    finally:
        conn.close()
    raise Fail("step %s never ran again after its engine was killed" % step)


def torture_round(ws, mdir, mode, instants, rng, st, label):
    run = 1
    t0 = now()
    deadline = t0 + max(instants[-1] if instants else 0, T_REF) * 6 + DEADLINE_S
    d = Driver(ws, ["run", RECIPE] + SETS + ["-j2"], mdir)
    landed = 0
    tc = t0          # the kill clock's origin: engine recoveries do not count
    killed = set()   # step processes already sent SIGKILL (dying ones linger a moment)

    def resume(why):
        nonlocal d
        wait_driver_gone(ws, run, deadline)
        d = Driver(ws, ["resume", str(run)], mdir)
        st["resumes"] += 1
        return d

    def ensure_driver():
        """A driver that ended with a failure (an engine killed more
        often than the step's retries allow) is resumed: a resumed run
        gives failed steps a fresh retry budget. True once the run is done."""
        rc = d.poll()
        if rc is None:
            return False
        if rc == 0:
            return True
        if rc != 1:
            raise Fail("%s: the driver exited %d on its own:\n%s" % (label, rc, d.tail()))
        resume("failed")
        return False

    for i, u in enumerate(instants):
        done = False
        while now() - tc < u:
            if ensure_driver():
                done = True
                break
            time.sleep(min(0.01, max(0.0, u - (now() - tc))))
        if done:
            break
        at = now() - tc
        if now() > deadline:
            raise Fail("%s: still running after %.0f s" % (label, now() - t0))
        victim = None
        if mode in ("engine", "both"):
            # The engine kill needs a step running: wait for one.
            while True:
                if ensure_driver():
                    done = True
                    break
                procs = [p for p in step_procs(ws) if p[0] not in killed]
                if procs:
                    victim = rng.choice(procs)
                    break
                if now() > deadline:
                    raise Fail("%s: no step process appeared" % label)
                time.sleep(0.005)
            if done:
                break
        what = []
        ok = True
        if victim:
            pid, step, att = victim
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
                what.append("engine %d (%s attempt %d)" % (pid, step, att))
            except ProcessLookupError:
                ok = False
        if mode in ("anneal", "both"):
            if d.kill():
                what.append("driver %d" % d.pid)
            else:
                ok = False
                if ensure_driver():
                    say("  kill %2d/%d at %6.3fs: the run had finished" % (i + 1, len(instants), at))
                    break
        if not ok or not what:
            say("  kill %2d/%d at %6.3fs: missed (%s)" % (i + 1, len(instants), at,
                                                        ", ".join(what) or "nothing alive"))
            continue
        landed += 1
        st["kills"] += 1
        msg = "  kill %2d/%d at %6.3fs: %s" % (i + 1, len(instants), at, " + ".join(what))
        if mode in ("anneal", "both"):
            resume("killed")
            nxt = tc + instants[i + 1] if i + 1 < len(instants) else deadline
            ttr = settle(ws, run, d, nxt)
            if ttr is None:
                st["recovery_kills"] += 1
                msg += "; resumed (next kill lands during its recovery)"
            else:
                st["resume_s"].append(ttr)
                msg += "; resumed in %.3f s" % ttr
        if victim and ok:
            # Until the killed step runs again (its retry, after the
            # recipe's backoff; or the driver's, when it ran out of
            # retries and the run was resumed): the clock stops, so that
            # kills spread over the whole pipeline, not its first step.
            tk = now()
            r = step_recovered(ws, victim, ensure_driver, deadline)
            if r is not None:
                st["retry_s"].append(r - tk)
                msg += "; running again in %.3f s" % (r - tk)
            tc += now() - tk
        say(msg)
    # To the end: resume while it fails.
    for _ in range(50):
        left = deadline - now()
        rc = d.wait(max(1.0, left))
        if rc is None:
            raise Fail("%s: the run did not finish within %.0f s of its start:\n%s"
                       % (label, now() - t0, d.tail()))
        if rc == 0:
            break
        if rc != 1:
            raise Fail("%s: the driver exited %d on its own:\n%s" % (label, rc, d.tail()))
        resume("failed")
    else:
        raise Fail("%s: the run kept failing after 50 resumes:\n%s" % (label, d.tail()))
    st["wall_s"] += now() - t0
    return landed


def torture_mode(mode):
    st = dict(kills=0, resumes=0, rounds=0, reexec=0, lost=0, resume_s=[], retry_s=[],
              recovery_kills=0, wall_s=0.0)
    remaining = KILLS
    rnd = 0
    while remaining > 0:
        rnd += 1
        if rnd > 4:
            raise Fail("%s: only %d of %d kills landed in 4 runs" % (mode, KILLS - remaining, KILLS))
        rng = random.Random("%d:%s:%d" % (SEED, mode, rnd))
        # Kills that find the run over do not land: later runs (for the
        # rest) draw them over the first half only.
        span = (0.85 if rnd == 1 else 0.5) * T_REF
        instants = sorted(rng.uniform(0, span) for _ in range(remaining))
        label = "mode %s, run %d (TORTURE_SEED=%d TORTURE_ONLY=%s TORTURE_KILLS=%d)" % (
            mode, rnd, SEED, mode, KILLS)
        say("%s: %d kills at %s" % (label, remaining, " ".join("%.3f" % u for u in instants)))
        ws, mdir = new_ws("%s%d" % (mode, rnd))
        landed = torture_round(ws, mdir, mode, instants, rng, st, label)
        st["rounds"] = rnd
        reexec, lost = verify(ws, mdir, label)
        park(mdir)
        st["reexec"] += reexec
        st["lost"] += lost
        say("  %s: %d kill(s) landed; complete, audit clean, same final model" % (label, landed))
        remaining -= landed
    return st


# ---- windows: fault points ----------------------------------------------------

def fault_life(ws, mdir, args, point, label, st, expect_kill=True):
    """One life of anneal with ANNEAL_FAULT=point: returns its exit status."""
    d = Driver(ws, args, mdir, {"ANNEAL_FAULT": point})
    rc = d.wait(DEADLINE_S)
    if rc is None:
        d.kill()
        raise Fail("%s: 'anneal %s' with ANNEAL_FAULT=%s did not end" % (label, " ".join(args), point))
    if rc == -signal.SIGKILL:
        st["kills"] += 1
    elif expect_kill:
        raise Fail("%s: ANNEAL_FAULT=%s was never reached by 'anneal %s' (exit %d):\n%s"
                   % (label, point, " ".join(args), rc, d.tail()))
    return rc


def no_partial(dirpath, final_names, label):
    for n in final_names:
        if os.path.exists(os.path.join(dirpath, n)):
            raise Fail("%s: '%s' is visible under its final name after the kill" % (label, n))


def schema_of(path):
    c = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        v = c.execute("PRAGMA user_version").fetchone()[0]
        rows = c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    finally:
        c.close()
    return v, rows


def windows(st):
    rng = random.Random("%d:windows" % SEED)
    label0 = "mode windows (TORTURE_SEED=%d TORTURE_ONLY=windows)" % SEED
    # 1. The pipeline, killed at each window of the driver in turn, each
    # life resumed by the next. Points hit once a step end are aimed at
    # the first hits; points hit per stored object or transaction at a
    # random one of the next several.
    lives = [("run-created", 1), ("attempt-begun", 1), ("submitted", 1), ("handle-recorded", 1),
             ("job-ended", 1), ("checkpoint-recorded", rng.randint(1, 6)),
             ("store.object", rng.randint(1, 40)),
             ("store.ingested", rng.randint(1, 8)), ("ingested", rng.randint(1, 8)),
             ("registered", rng.randint(1, 8)), ("state.tx-commit", rng.randint(1, 60)),
             ("attempt-ended", 1), ("job-ended", 2), ("state.tx-commit", rng.randint(1, 100)),
             ("attempt-ended", 2), ("checkpoint-recorded", rng.randint(1, 12)),
             ("store.object", rng.randint(1, 100)),
             ("job-ended", 1), ("attempt-ended", 1)]
    pending = list(lives)
    rnd = 0
    while True:
        rnd += 1
        if rnd > 3:
            raise Fail("%s: windows %s never reached in 3 runs" % (label0, pending))
        ws, mdir = new_ws("windows%d" % rnd)
        label = "%s, run %d" % (label0, rnd)
        first = True
        rc = None
        while pending:
            point, nth = pending[0]
            args = ["run", RECIPE] + SETS + ["-j2"] if first else ["resume", "1"]
            rc = fault_life(ws, mdir, args, "%s:%d" % (point, nth), label, st, expect_kill=False)
            if rc == -signal.SIGKILL:
                say("  killed at %s:%d (%s)" % (point, nth, "run" if first else "resume"))
                pending.pop(0)
                if not first:
                    st["resumes"] += 1
                first = False
                wait_driver_gone(ws, 1, now() + 60)
                continue
            if rc == 0:
                say("  %s:%d not reached before the run finished; the rest in a new run"
                    % (point, nth))
                break
            raise Fail("%s: 'anneal %s' with ANNEAL_FAULT=%s:%d exited %d" % (
                label, " ".join(args), point, nth, rc))
        if rc != 0:
            d = Driver(ws, ["resume", "1"], mdir)
            st["resumes"] += 1
            if d.wait(DEADLINE_S) != 0:
                raise Fail("%s: the last resume failed:\n%s" % (label, d.tail()))
        reexec, lost = verify(ws, mdir, label)
        st["reexec"] += reexec
        st["lost"] += lost
        st["rounds"] = rnd
        if not pending:
            break
        park(mdir)
    say("  pipeline windows: every kill resumed; complete, audit clean, outputs identical")

    # 2. The same recipe again: every step cached, killed between two.
    fault_life(ws, mdir, ["run", RECIPE] + SETS + ["-j2"], "cached:%d" % rng.randint(1, 15),
               label0 + ": cached", st)
    wait_driver_gone(ws, 2, now() + 60)
    d = Driver(ws, ["resume", "2"], mdir)
    st["resumes"] += 1
    if d.wait(DEADLINE_S) != 0:
        raise Fail("%s: resume after the cached kill failed:\n%s" % (label0, d.tail()))
    s2 = anneal_json(ws, "status", "2", "--json")
    if not all(s["state"] == "cached" for s in s2["steps"]):
        raise Fail("%s: run 2 after a kill between cache hits: not every step cached: %s"
                   % (label0, [(s["id"], s["state"]) for s in s2["steps"] if s["state"] != "cached"]))
    verify(ws, mdir, label0 + ": cached", runs=(1, 2))
    say("  killed between cache hits: resumed, every step cached")

    # 3. Export: killed mid-archive, before the rename, and in the
    # first transaction (export writes none: not reached is fine).
    bundle = os.path.join(mdir, "model.tar.zst")
    for point in ("bundle.export-object:%d" % rng.randint(1, 6), "bundle.export-before-rename"):
        fault_life(ws, mdir, ["export", "pangu-embedded", "--with-ancestors", "-o", bundle], point,
                   label0 + ": export", st)
        no_partial(mdir, ["model.tar.zst"], "%s: export killed at %s" % (label0, point))
        say("  export killed at %s: no bundle under its name" % point)
    anneal_ok(ws, "export", "pangu-embedded", "--with-ancestors", "-o", bundle, what=label0)
    leftovers = [f for f in os.listdir(mdir) if f.startswith("model.tar.zst.")]
    if leftovers:
        raise Fail("%s: the export after the kills left %s beside the bundle" % (label0, leftovers))

    # 4. Import into a fresh workspace: killed while staging, while storing
    # objects, before the rows commit, inside the commit.
    iws = os.path.join(mdir, "import")
    os.makedirs(iws)
    anneal_ok(iws, "init", what=label0)
    for point in ("bundle.import-staged", "store.object:%d" % rng.randint(1, 8),
                  "bundle.import-stored", "state.tx-commit:1"):
        fault_life(iws, mdir, ["import", bundle], point, label0 + ": import", st)
        arts = anneal_json(iws, "ls", "--all", "--json")
        if arts:
            raise Fail("%s: import killed at %s left %d artifact(s) registered: %s" % (
                label0, point, len(arts), [a["ref"] for a in arts][:5]))
        a = anneal(iws, "audit", "--deep", "--json")
        if a.returncode != 0:
            raise Fail("%s: audit after an import killed at %s: %s" % (label0, point, a.stdout[:1500]))
        say("  import killed at %s: nothing registered, audit clean" % point)
    anneal_ok(iws, "import", bundle, what=label0)
    if anneal_json(iws, "show", "pangu-embedded", "--json")["digest"] != REF["digest"]:
        raise Fail("%s: the imported model's digest differs" % label0)
    a = anneal(iws, "audit", "--deep", "--json")
    if a.returncode != 0:
        raise Fail("%s: audit after the import: %s" % (label0, a.stdout[:1500]))
    anneal_ok(iws, "import", bundle, what=label0 + ": importing again")
    say("  import: completes after the kills, same model, audit clean")

    # 5. Merge (what the distill.merge steps run), killed mid-write: one
    # output file, then several shards. Compared with the same merge
    # uninterrupted.
    margs = ["merge", "--method", "linear", "--model", "distill.3.student:0.7",
             "--model", "distill.2.model:0.3", "--threads", "2"]
    anneal_ok(ws, *(margs + ["-o", os.path.join(mdir, "merged-ref")]), what=label0)
    want = sha256_file(os.path.join(mdir, "merged-ref", "model.safetensors"))
    mout = os.path.join(mdir, "merged")
    for point in ("merge.tensor:%d" % rng.randint(1, 3), "merge.written",
                  "safetensors-before-rename"):
        fault_life(ws, mdir, margs + ["-o", mout], point, label0 + ": merge", st)
        no_partial(mout, ["model.safetensors"], "%s: merge killed at %s" % (label0, point))
        say("  merge killed at %s: no model.safetensors" % point)
    anneal_ok(ws, *(margs + ["-o", mout]), what=label0 + ": merge after kills")
    if sha256_file(os.path.join(mout, "model.safetensors")) != want:
        raise Fail("%s: the merge rerun after kills differs from the uninterrupted merge" % label0)
    sargs = margs + ["--max-shard-size", "50000"]
    anneal_ok(ws, *(sargs + ["-o", os.path.join(mdir, "shards-ref")]), what=label0)
    sout = os.path.join(mdir, "shards")
    # A reader of the directory (another merge taking it as a model)
    # accepts the finished set and must refuse a partial one.
    anneal_ok(ws, "merge", "--method", "linear", "--model", os.path.join(mdir, "shards-ref") + ":1",
              "-o", os.path.join(mdir, "probe-ref"), what=label0 + ": reading a sharded merge")
    for point in ("ckpt.shard-committed:1", "ckpt.shard-committed:2"):
        fault_life(ws, mdir, sargs + ["-o", sout], point, label0 + ": sharded merge", st)
        r = anneal(ws, "merge", "--method", "linear", "--model", sout + ":1", "-o",
                   os.path.join(mdir, "probe-%s" % point[-1]))
        if r.returncode == 0 or b"no model.safetensors.index.json" not in r.stderr:
            raise Fail("%s: a sharded merge killed at %s: reading what it left: exit %d, %s"
                       % (label0, point, r.returncode, r.stderr.decode(errors="replace")[:500]))
        say("  sharded merge killed at %s: the partial set is refused by readers" % point)
    anneal_ok(ws, *(sargs + ["-o", sout]), what=label0 + ": sharded merge after kills")
    for f in sorted(os.listdir(os.path.join(mdir, "shards-ref"))):
        if sha256_file(os.path.join(sout, f)) != sha256_file(os.path.join(mdir, "shards-ref", f)):
            raise Fail("%s: shard %s of the rerun differs from the uninterrupted merge" % (label0, f))
    say("  merge: reruns cleanly after the kills, same bytes as an uninterrupted merge")

    # 6. gc --prune-intermediate: killed after deciding, after marking,
    # mid-removal, inside its commit; then completed.
    for point in ("gc-decided", "gc-marked", "gc-removed-one:%d" % rng.randint(1, 8),
                  "state.tx-commit:1"):
        fault_life(ws, mdir, ["gc", "--prune-intermediate"], point, label0 + ": gc", st)
        a = anneal(ws, "audit", "--deep", "--json")
        if a.returncode != 0:
            raise Fail("%s: audit after gc killed at %s: %s" % (label0, point, a.stdout[:1500]))
        say("  gc killed at %s: audit clean" % point)
    anneal_ok(ws, "gc", "--prune-intermediate", what=label0)
    reexec, lost = verify(ws, mdir, label0 + ": after gc", runs=(1, 2))
    st["lost"] += lost
    anneal_ok(ws, "export", "pangu-embedded", "-o", os.path.join(mdir, "after-gc.tar.zst"),
              what=label0 + ": export after gc")
    say("  gc: completes after the kills; audit clean; the final model still exports")
    ref_schema = schema_of(os.path.join(ws, ".anneal", "state.db"))
    park(mdir)

    # 7. Migrations: a fresh workspace killed inside each migration.
    nmig = ref_schema[0]
    for k in range(1, nmig + 1):
        mws = os.path.join(mdir, "migrate%d" % k)
        os.makedirs(mws)
        fault_life(mws, mdir, ["init"], "state.migrated:%d" % k, label0 + ": migration", st)
        v, _ = schema_of(os.path.join(mws, ".anneal", "state.db"))
        if v != k - 1:
            raise Fail("%s: killed inside migration %d: user_version %d (want %d)"
                       % (label0, k, v, k - 1))
        anneal_ok(mws, "ls", what="%s: open after migration %d was killed" % (label0, k))
        if schema_of(os.path.join(mws, ".anneal", "state.db")) != ref_schema:
            raise Fail("%s: after migration %d was killed, the next open left a schema "
                       "unlike a fresh one" % (label0, k))
    say("  migrations: killed inside each of %d, the next open completes the schema" % nmig)


# ---- main ------------------------------------------------------------------------

def fmt_s(v):
    return "%.3f" % v if v is not None else "-"


def table(results):
    say("")
    say("torture (%s, seed %d, %d kills a mode, %s build; reference run %.1f s)" % (
        LENGTH, SEED, KILLS, "sanitizer" if SAN else "normal", T_REF))
    hdr = "%-8s %6s %7s %6s %9s %10s %8s %8s %8s" % (
        "mode", "kills", "resumes", "runs", "re-exec", "bytes-lost", "ttr-med", "ttr-max", "wall-s")
    say(hdr)
    say("-" * len(hdr))
    for mode, st in results:
        ttr = st["resume_s"] if st["resume_s"] else st["retry_s"]
        say("%-8s %6d %7d %6d %9d %10d %8s %8s %8.1f" % (
            mode, st["kills"], st["resumes"], st.get("rounds", 1), st["reexec"], st["lost"],
            fmt_s(statistics.median(ttr)) if ttr else "-", fmt_s(max(ttr)) if ttr else "-",
            st["wall_s"]))
    say("")
    say("kills: kill -9s that landed on a live process (driver, step process or both;")
    say("  windows: ANNEAL_FAULT points reached). re-exec: steps run again after they had")
    say("  exited 0 (engine wrapper log, attempt dirs, attempts table): must be 0.")
    say("  bytes-lost: bytes of recorded artifacts (outputs and checkpoints) whose stored")
    say("  objects are missing or differ after the run: must be 0.")
    say("ttr (time to resume, s): anneal/both: from 'anneal resume' starting to its driver")
    say("  having recovered the run (re-attached live steps, recorded those that ended) and")
    say("  scheduling again (runs.driver_pid is the new process); resumes whose recovery was")
    say("  itself killed are left out. engine: from the kill to the step's next attempt")
    say("  running (includes the recipe's retry backoff, 1 s doubling, and the resume of a")
    say("  run whose step ran out of retries); the kill clock stops meanwhile.")
    for mode, st in results:
        if st.get("recovery_kills"):
            say("%s: %d kill(s) landed while a resumed driver was still recovering" % (
                mode, st["recovery_kills"]))
        for n in st.get("notes", []):
            say("%s: note: %s" % (mode, n))


def main():
    global T
    for b in (ANNEAL, ENGINE):
        if not os.access(b, os.X_OK):
            sys.exit("torture: '%s' is not executable (run make)" % b)
    global WS
    T = tempfile.mkdtemp(prefix="anneal-torture.", dir=os.environ.get("TMPDIR", "/tmp"))
    WS = os.path.join(T, "ws")
    say("torture: %s, seed %d (replay: TORTURE_SEED=%d), %d kills a mode, modes %s, in %s"
        % (LENGTH, SEED, SEED, KILLS, ",".join(ONLY), T))
    rc = 0
    results = []
    t_all = now()
    try:
        make_recipe()
        reference()
        for mode in ONLY:
            t = now()
            if mode == "windows":
                st = dict(kills=0, resumes=0, reexec=0, lost=0, resume_s=[], retry_s=[], wall_s=0.0)
                windows(st)
                st["wall_s"] = now() - t
            else:
                st = torture_mode(mode)
            results.append((mode, st))
        table(results)
        bad = [m for m, st in results if st["reexec"] or st["lost"]]
        if bad:
            raise Fail("modes %s re-executed finished steps or lost bytes" % bad)
        say("torture: passed in %.0f s" % (now() - t_all))
    except Fail as e:
        say("FAIL torture: %s" % e)
        say("  replay: TORTURE_SEED=%d TORTURE=%s TORTURE_KILLS=%d (workspaces kept in %s)"
            % (SEED, LENGTH, KILLS, T))
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    finally:
        kill_all_under(T)
        if rc == 0 and not KEEP:
            shutil.rmtree(T, ignore_errors=True)
        elif rc != 0 or KEEP:
            say("  (kept: %s)" % T)
    return rc


if __name__ == "__main__":
    sys.exit(main())
