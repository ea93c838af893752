/* stages/distill.c — model-aware iterative distillation with merging
 * between iterations.
 *
 *   {"id": "distill", "kind": "distill",
 *    "inputs": {"init": "pretrain.model", "teacher": "teacher.model",
 *               "data": "data.prompts"},
 *    "iterations": 3,
 *    "merge": {"method": "linear", "weights": [0.7, 0.3]},
 *    "config": {"steps": 800, "prompts": 2000}}
 *
 * expands to distill.1 -> distill.merge.1 -> distill.2 -> ... ->
 * distill.merge.3. Iteration k's student starts from the merged model of
 * k-1 (from init for k = 1) and its merge combines the fresh student
 * (first weight) with that predecessor (second weight); a method on task
 * vectors (ties, dare_*, task_arithmetic) takes init as its base. Without
 * a merge block, iteration k+1 starts from iteration k's student.
 *
 * Exports: "K.student", "K.data" (the data iteration K selected) and
 * "K.model" (its merged model) for each K, written "distill[K].model" by
 * other stages; "model", "student" and "data" are the last iteration's. */
#include "stages/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/merge.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/json.h"
#include "stages/merge.h"

#define MAX_ITERATIONS 100

static const char *const fields[] = {
	"id", "kind", "inputs", "iterations", "merge", "config", "engine", "env",
	"after", "resources", "retries", "timeout",
};
#define NFIELDS (sizeof(fields) / sizeof(*fields))

static const char *const merge_fields[] = {
	"method", "weights", "params", "rules", "seed",
};
#define NMERGE_FIELDS (sizeof(merge_fields) / sizeof(*merge_fields))

static const struct role_spec roles[] = {
	{ "init", 1 }, { "teacher", 1 }, { "data", 1 },
};
enum { R_INIT, R_TEACHER, R_DATA, NROLES };

static void append(struct stage_out *out, struct step *st)
{
	out->steps = xrealloc(out->steps, (out->nsteps + 1) * sizeof(*out->steps));
	out->steps[out->nsteps++] = *st;
	memset(st, 0, sizeof(*st));
}

/* The merge block: fields, the two weights, whether the method needs init
 * as its base. */
static int get_merge(const struct jnode *m, const char *where, double w[2],
		     int *needs_base, struct err *err)
{
	const struct jnode *v;
	enum merge_method method;
	int rc = stage_want_type(m, J_OBJECT, where, err);

	if (!rc)
		rc = stage_check_fields(m, where, merge_fields, NMERGE_FIELDS, err);
	if (rc)
		return rc;
	if (!(v = json_get(m, "method")))
		return stage_err(err, where, "missing field 'method'");
	if (v->type == J_STRING && !merge_method_parse(v->str, &method, NULL))
		*needs_base = merge_method_needs_base(method);
	w[0] = w[1] = 0.5;
	if ((v = json_get(m, "weights"))) {
		char *path = stage_path(where, "weights");

		if (v->type != J_ARRAY || v->nkids != 2)
			rc = stage_err(err, path, "must be two numbers: [the new student's weight, its predecessor's]");
		for (size_t i = 0; !rc && i < 2; i++) {
			char *ipath = xasprintf("%s[%zu]", path, i);
			rc = stage_get_weight(&v->kids[i], ipath, &w[i], err);
			free(ipath);
		}
		free(path);
	}
	return rc;
}

int distill_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		   const char *id, const char *where, struct stage_out *out,
		   struct err *err)
{
	struct engine_spec e = { 0 };
	struct step st = { 0 };
	char *texts[NROLES] = { 0 }, *wheres[NROLES] = { 0 }, *path = NULL;
	char *prev = NULL;     /* the step whose "model" iteration k starts from */
	const struct jnode *v;
	struct jnode *merge = NULL;
	long long iterations = 1;
	double w[2] = { 0.5, 0.5 };
	int rc, needs_base = 0;

	rc = stage_check_fields(obj, where, fields, NFIELDS, err);
	if (!rc)
		rc = engine_get_inputs(obj, where, roles, NROLES, texts, wheres, err);
	if (!rc && (v = json_get(obj, "iterations"))) {
		path = stage_path(where, "iterations");
		rc = engine_param_value(ctx, v, path, &v, err);
		if (!rc)
			rc = stage_get_int(v, path, 1, MAX_ITERATIONS, &iterations, err);
		free(path);
		path = NULL;
	}
	if (!rc && (v = json_get(obj, "merge"))) {
		path = stage_path(where, "merge");
		merge = json_clone(v);
		rc = engine_subst_params(ctx, merge, path, err);
		if (!rc)
			rc = get_merge(merge, path, w, &needs_base, err);
	}
	if (!rc)
		rc = engine_resolve(ctx, obj, where, &e, err);
	if (rc)
		goto done;

	for (long long k = 1; k <= iterations; k++) {
		char *did = xasprintf("%s.%lld", id, k);
		char *mid = xasprintf("%s.merge.%lld", id, k);
		char *art = NULL, *name = NULL;

		/* distill.k */
		engine_step_init(&st, &e, "distill", did, "distill", id, ctx);
		rc = engine_config(ctx, obj, where, "distill", &e, "iteration", k,
				   &st.params_json, err);
		if (!rc)
			rc = prev ? engine_add_input(&st, out, "init", NULL, NULL, prev, "model", err)
				  : engine_add_input(&st, out, "init", texts[R_INIT],
						     wheres[R_INIT], NULL, NULL, err);
		if (!rc)
			rc = engine_add_input(&st, out, "teacher", texts[R_TEACHER],
					      wheres[R_TEACHER], NULL, NULL, err);
		if (!rc)
			rc = engine_add_input(&st, out, "data", texts[R_DATA],
					      wheres[R_DATA], NULL, NULL, err);
		if (!rc)
			rc = stage_get_common(obj, where, &st, out, err);
		if (!rc) {
			art = xasprintf("%s.%lld.student", id, k);
			engine_add_output(&st, "model", ART_CHECKPOINT, art);
			free(art);
			art = xasprintf("%s.%lld.data", id, k);
			engine_add_output(&st, "data", ART_DATASET, art);
			free(art);
			name = xasprintf("%lld.student", k);
			stage_out_export(out, name, did, "model", ART_CHECKPOINT);
			free(name);
			name = xasprintf("%lld.data", k);
			stage_out_export(out, name, did, "data", ART_DATASET);
			free(name);
			append(out, &st);
		}

		/* distill.merge.k: the fresh student and its predecessor */
		if (!rc && merge) {
			struct merge_source base = { texts[R_INIT], wheres[R_INIT], NULL, NULL, 0 };
			struct merge_source models[2] = {
				{ NULL, NULL, did, "model", w[0] },
				{ prev ? NULL : texts[R_INIT], prev ? NULL : wheres[R_INIT],
				  prev, "model", w[1] },
			};

			memset(&st, 0, sizeof(st));
			st.id = xstrdup(mid);
			st.kind = xstrdup("merge");
			st.stage = xstrdup(id);
			st.res = ctx->defaults;
			st.retry.backoff_s = 1.0;
			rc = stage_get_common(obj, where, &st, out, err);
			if (!rc)
				rc = merge_build(ctx, merge, path, needs_base ? &base : NULL,
						 models, 2, &st, out, err);
			if (!rc) {
				st.outputs[0].artifact = xasprintf("%s.%lld.model", id, k);
				name = xasprintf("%lld.model", k);
				stage_out_export(out, name, mid, "model", ART_CHECKPOINT);
				free(name);
				append(out, &st);
			}
			free(prev);
			prev = xstrdup(mid);
		} else if (!rc) {
			name = xasprintf("%lld.model", k);
			stage_out_export(out, name, did, "model", ART_CHECKPOINT);
			free(name);
			free(prev);
			prev = xstrdup(did);
		}
		if (!rc && k == iterations) {
			stage_out_export(out, "model", prev, "model", ART_CHECKPOINT);
			stage_out_export(out, "student", did, "model", ART_CHECKPOINT);
			stage_out_export(out, "data", did, "data", ART_DATASET);
		}
		free(did);
		free(mid);
		if (rc)
			break;
	}
done:
	step_clear(&st);
	engine_spec_free(&e);
	for (size_t i = 0; i < NROLES; i++) {
		free(texts[i]);
		free(wheres[i]);
	}
	free(prev);
	free(path);
	json_free(merge);
	return rc;
}
