/* pipeline/recipe.h — a recipe file, parsed, validated and expanded.
 *
 * recipe_load() does everything a recipe must pass before anything is
 * written: JSON syntax (line and column), types, unknown and missing fields,
 * stage kinds (did you mean), duplicate ids, dangling references, cycles
 * (naming the cycle), unknown ${...} names, absurd numbers, --set overrides.
 * Every error is ERR_INVALID with one line naming file and JSON path:
 *   recipes/x.json: stages[2] ("distill").inputs.teacher: no stage 'teachr' (did you mean 'teacher'?)
 * The result holds expanded steps (pipeline/step.h) in a topological-stable
 * order (recipe order), with ${params.*} already substituted. */
#ifndef ANNEAL_RECIPE_H
#define ANNEAL_RECIPE_H

#include <stddef.h>

#include "base/hash.h"
#include "pipeline/step.h"

struct err;
struct jnode;
struct strv;

#define RECIPE_MAX_BYTES (4u << 20)   /* a recipe over 4 MiB is refused */

struct recipe {
	char *path;             /* as given by the user (for messages) */
	char *name;             /* top-level "name" */
	char *text;             /* the file's bytes, verbatim */
	size_t text_len;
	char digest[DIGEST_HEX_LEN + 1];  /* SHA-256 of text */
	struct jnode *params;   /* object, with --set applied; never NULL */
	char *params_json;      /* json_write(params): what ANNEAL_PARAMS holds */
	struct jnode *engine;   /* top-level "engine" or NULL (training kinds) */
	struct jnode *runner;   /* top-level "runner" (checked) or NULL */
	struct resources defaults;  /* top-level "resources": per-step defaults */
	struct step *steps;
	size_t nsteps;
};

/* Reads path (regular file, <= RECIPE_MAX_BYTES) and parses it. sets holds
 * "KEY=VALUE" overrides (may be NULL): KEY must exist in params and VALUE is
 * parsed as the existing value's type (number, bool, string; JSON for
 * arrays/objects). *out is the caller's (recipe_free). */
int recipe_load(const char *path, const struct strv *sets,
		struct recipe **out, struct err *err);

/* Same from memory; path is used for messages only. */
int recipe_parse(const char *path, const char *text, size_t len,
		 const struct strv *sets, struct recipe **out, struct err *err);

void recipe_free(struct recipe *r);  /* NULL-safe */

/* Index of the step with this id, or -1. */
long recipe_find_step(const struct recipe *r, const char *id);

#endif
