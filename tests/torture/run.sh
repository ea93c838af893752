#!/bin/sh
# tests/torture/run.sh — crash torture: recipes/pangu-embedded.json at a
# small size, kill -9'd at random instants and inside every interesting
# window, resumed after each kill, and checked: the run completes, no step
# that had finished runs again, no recorded checkpoint or output is
# missing or damaged (checked object by object, and by `anneal audit
# --deep`), and the final model's digest equals an uninterrupted run's.
#
#   make torture                      the long version: 50 kills a mode
#   make torture TORTURE=short        the CI version: 8 kills a mode, smaller
#                                     steps (about 2 minutes)
#   make torture SAN=1 TORTURE=short  the same under ASan+UBSan
#   sh tests/torture/run.sh           as make torture, with bin/anneal
#
# Modes (TORTURE_ONLY=anneal,engine,both,windows picks some):
#   anneal   kill -9 the driver (anneal run/resume) at TORTURE_KILLS instants
#            drawn uniformly over the first 85% of an uninterrupted run's
#            duration (seeded, printed); resume after each (an instant that
#            falls in a resumed driver's recovery kills it there)
#   engine   kill -9 a running step's process (anneal-engine, or anneal merge)
#            at as many instants; anneal retries it from its checkpoint (and
#            a run whose step ran out of retries is resumed). The instants'
#            clock stops from a kill until the step runs again, so the kills
#            spread over the whole pipeline
#   both     the driver and a step's process at the same instant
#   windows  ANNEAL_FAULT at each named point (base/fault.h): in the driver
#            between a step's exit and its recording, mid-ingest, inside a
#            commit; mid-export, mid-import, mid-merge-write, mid-gc and
#            inside each schema migration; after each, the next command
#            succeeds and nothing is half-registered or half-written
# Kills that find nothing alive do not count: a mode that ends its run
# before TORTURE_KILLS kills landed starts another run for the rest.
#
# Environment: ANNEAL_BIN (default bin/anneal; anneal-engine beside it),
# TORTURE=long|short, TORTURE_KILLS (50 long, 8 short), TORTURE_SEED (the
# instants; printed, default from the clock), TORTURE_ONLY, TORTURE_KEEP=1
# (keep the workspaces), SAN=1 (smaller steps for sanitizer builds).
# A failure prints what broke and the line that replays it
# (TORTURE_SEED=... TORTURE_ONLY=...); the workspaces are kept. Ends with
# the table of kills, resumes, re-executed steps, bytes lost and time to
# resume, with their definitions. Exit 0 only when every check held.
#
# The recipe is recipes/pangu-embedded.json with one line added: its
# engine runs through a tiny sh wrapper that logs each start and end of
# a step's engine (independent evidence of what ran when).
set -u
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" "$here/torture.py" "$@"
