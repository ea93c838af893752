/* stages/merge.h — the `merge` stage kind (see merge.c). */
#ifndef ANNEAL_STAGES_MERGE_H
#define ANNEAL_STAGES_MERGE_H

#include "stages/stage.h"

int merge_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		 const char *id, const char *where, struct stage_out *out,
		 struct err *err);

#endif
