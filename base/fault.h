/* base/fault.h — fault injection at named points (SQLite's discipline).
 *
 * ANNEAL_FAULT="point[:N][,point[:N]...]" makes the process kill itself
 * with SIGKILL the Nth time (default 1st) it reaches that point, so tests
 * can kill anneal inside exact windows (between a step's exit and its
 * recording, mid-ingest, ...) instead of hoping a timed kill lands there.
 * Unset, a fault point costs one branch. Safe to reach from several
 * threads at once (ingest and merge workers): the Nth hit is counted
 * over all of them.
 *
 * The points (tests/torture/run.sh kills anneal at each; steps never
 * inherit ANNEAL_FAULT, so a point in `anneal merge` fires only when that
 * command is run by hand):
 *   run-created            cli/cmd_run.c   the run and its steps committed
 *   attempt-begun          pipeline/sched.c an attempt recorded, no process yet
 *   submitted              pipeline/sched.c the process started, handle unrecorded
 *   handle-recorded        pipeline/sched.c the handle recorded
 *   job-ended              pipeline/sched.c a step exited, nothing recorded
 *   attempt-ended          pipeline/sched.c its outcome and outputs committed
 *   cached                 pipeline/sched.c a step marked cached
 *   ingested, registered   pipeline/sched.c a tree stored / its artifact row committed
 *   checkpoint-recorded    pipeline/sched.c a checkpoint's row committed, its events
 *                          offset not yet (the next driver reads its line again)
 *   store.object           artifacts/store.c one object of a tree stored
 *   store.ingested         artifacts/store.c every object stored, dirs not fsynced
 *   store.checkout_rename  artifacts/store.c a checkout built, not renamed
 *   state.tx-commit        pipeline/state.c a transaction's writes done, before COMMIT
 *   state.migrated         pipeline/state.c a schema migration ran, before its COMMIT
 *   merge.tensor           artifacts/merge_run.c one output tensor written (temp file)
 *   merge.written          artifacts/merge_run.c every tensor written, nothing renamed
 *   safetensors-before-rename artifacts/safetensors.c a shard complete, before its rename
 *   ckpt.shard-committed   artifacts/checkpoint.c one shard of several renamed
 *   bundle.export-object   artifacts/bundle.c one object written into the temp archive
 *   bundle.export-before-rename artifacts/bundle.c the archive complete, not renamed
 *   bundle.import-staged   artifacts/bundle.c the archive read and staged
 *   bundle.import-stored   artifacts/bundle.c objects in the store, rows not committed
 *   gc-decided, gc-marked, gc-removed-one   artifacts/gc.c */
#ifndef ANNEAL_FAULT_H
#define ANNEAL_FAULT_H

void fault_point(const char *name);

#endif
