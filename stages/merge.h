/* stages/merge.h — the `merge` stage kind (see merge.c). */
#ifndef ANNEAL_STAGES_MERGE_H
#define ANNEAL_STAGES_MERGE_H

#include "stages/stage.h"

/* Where a merge's base or model comes from: what the user wrote
 * ("STAGE.OUTPUT" or "@REF", at JSON path where), or, when text is NULL,
 * a step of the same stage (link_step's output link_output, "model" when
 * NULL). */
struct merge_source {
	const char *text;
	const char *where;
	const char *link_step;
	const char *link_output;
	double weight;
};

/* Fills st (id, kind, stage and res already set by the caller, which then
 * appends it as out->steps[out->nsteps]) with the argv of `anneal merge`,
 * its inputs (base: role and lineage role "base"; models: roles model_N,
 * lineage role "merge-input" with their weights) and one output "model"
 * (artifact name left to the caller). obj gives "method", "params",
 * "rules" and "seed", checked here against the merge library itself;
 * the caller has checked obj's other fields. */
int merge_build(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *where, const struct merge_source *base,
		const struct merge_source *models, size_t nmodels,
		struct step *st, struct stage_out *out, struct err *err);

int merge_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		 const char *id, const char *where, struct stage_out *out,
		 struct err *err);

#endif
