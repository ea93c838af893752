/* stages/exec.h — the `exec` stage kind: one step running an argv.
 *
 *   {"id": "train", "kind": "exec",
 *    "command": ["python", "train.py", "--lr", "${params.lr}",
 *                "--data", "${inputs.data}", "--out", "${outputs.model}"],
 *    "inputs": {"data": "prep.tokens"}, "outputs": {"model": "checkpoint"},
 *    "env": {"OMP_NUM_THREADS": "8"}, "after": ["lint"],
 *    "resources": {"cpus": 8, "gpus": 1}, "retries": {"max": 2, "backoff": "30s"},
 *    "timeout": "12h"}
 *
 * The step's id is the stage id; each output is exported under its name. */
#ifndef ANNEAL_EXEC_H
#define ANNEAL_EXEC_H

#include "stages/stage.h"

/* struct stage_kind's expand() for "exec". */
int exec_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *id, const char *where, struct stage_out *out,
		struct err *err);

#endif
