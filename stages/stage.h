/* stages/stage.h — stage kinds: how one kind of recipe stage validates its
 * fields and expands into steps.
 *
 * The recipe parser (pipeline/recipe.c) handles the top level and calls a
 * kind's expand() for each stage object. A kind validates every field it
 * accepts (unknown fields are errors), then appends one or more steps and
 * says which step produces each of the stage's outputs, so that other
 * stages can refer to "STAGE.OUTPUT" whatever the expansion looks like
 * (distill with iterations: 3 exports its last merge's model). */
#ifndef ANNEAL_STAGE_H
#define ANNEAL_STAGE_H

#include <stddef.h>

#include "pipeline/step.h"

struct err;
struct jnode;

/* What a kind sees of the recipe while expanding one stage. */
struct stage_ctx {
	const char *file;            /* recipe path, for messages */
	const struct jnode *params;  /* the params object (after --set) */
	const struct jnode *engine;  /* top-level engine or NULL */
	struct resources defaults;   /* top-level resources */
};

/* A stage output as seen by other stages: STAGE.NAME -> step.output */
struct stage_export {
	char *name;        /* the stage-level output name */
	char *step;        /* producing step id */
	char *output;      /* output name within that step */
	enum artifact_type type;
};

/* What expand() produces for one stage. Steps' inputs still name
 * "STAGE.OUTPUT" references in from_step/from_output as written; the
 * recipe parser resolves them through the exports of the referenced stage
 * once all stages are expanded. */
struct stage_out {
	struct step *steps;
	size_t nsteps;
	struct stage_export *exports;
	size_t nexports;
};
void stage_out_clear(struct stage_out *o);

struct stage_kind {
	const char *name;
	/* Validates obj (a JSON object; "id" and "kind" already checked) and
	 * appends steps. where is the JSON-path prefix for messages, e.g.
	 * `stages[2] ("train")`; errors are ERR_INVALID and start with it
	 * (the parser adds the file name). */
	int (*expand)(const struct stage_ctx *ctx, const struct jnode *obj,
		      const char *id, const char *where, struct stage_out *out,
		      struct err *err);
};

/* The kind named name, or NULL. */
const struct stage_kind *stage_kind_find(const char *name);
/* All kind names (for "did you mean"). */
const char *const *stage_kind_names(size_t *n);

#endif
