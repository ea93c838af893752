/* pipeline/plan.h — cache keys: when a step's earlier result can be reused.
 *
 * A key is SHA-256 over a canonical text of everything that determines a
 * step's output: kind, argv and env (with ${params.*} resolved and
 * ${inputs.*}/${outputs.*} left symbolic, since paths differ per run), the
 * params it uses (step.params_json), the digests of its inputs (by role),
 * its declared outputs,
 * and the engine's identity: the content of the program argv[0] names and
 * of every other argv word that names an existing regular file (a script,
 * a config), so editing train.py invalidates the steps that run it. Files
 * over PLAN_HASH_LIMIT count by size and mtime instead of content. Content
 * on the command line, not mtimes elsewhere: like Nextflow's -resume, on
 * content. */
#ifndef ANNEAL_PLAN_H
#define ANNEAL_PLAN_H

#include <stddef.h>

#include "base/hash.h"
#include "pipeline/step.h"

struct err;

#define PLAN_HASH_LIMIT (64u << 20)

struct key_input {
	const char *role;
	const char *digest;   /* hex digest of the input artifact */
};

/* params_json: the step's own params object. cwd: where the step runs
 * (relative argv paths resolve there); path_env:
 * the PATH used to find argv[0] (NULL: this process's). out: hex key. */
int plan_cache_key(const struct step *s, const char *params_json,
		   const struct key_input *inputs, size_t ninputs,
		   const char *cwd, const char *path_env,
		   char out[DIGEST_HEX_LEN + 1], struct err *err);

/* Resolves a program name through path_env like execvp; malloc'd absolute
 * path or NULL when not found. */
char *plan_which(const char *prog, const char *cwd, const char *path_env);

#endif
