/* stages/eval.c — evaluation of one or more checkpoints on a dataset.
 *
 *   {"id": "eval", "kind": "eval",
 *    "models": ["pretrain.model", "distill[1].model", "@base@3"],
 *    "inputs": {"data": "data.eval"}}
 *
 * becomes one step per model, named after it: eval.pretrain,
 * eval.distill-1, eval.base-3 (".model" and brackets dropped, other
 * characters that cannot be in an id become '-'). Each writes a report
 * (artifact "eval.pretrain", ...) whose lineage parents are the model
 * (role "model") and the data; `anneal report` tabulates them. */
#include "stages/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/json.h"

#define MAX_MODELS 1000

static const char *const fields[] = {
	"id", "kind", "models", "inputs", "config", "engine", "env", "after",
	"resources", "retries", "timeout",
};
#define NFIELDS (sizeof(fields) / sizeof(*fields))

static const struct role_spec roles[] = { { "data", 1 } };

/* "distill[2].model" -> "distill-2"; "rl.model" -> "rl";
 * "@student@3" -> "student-3"; "x.student" -> "x-student". */
static char *slug(const char *ref)
{
	struct buf b = BUF_INIT;
	size_t n = strlen(ref);
	int dash = 0;

	if (*ref == '@')
		ref++, n--;
	if (n > 6 && !strcmp(ref + n - 6, ".model"))
		n -= 6;
	buf_init(&b);
	for (size_t i = 0; i < n && b.len < 48; i++) {
		char c = ref[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_';

		if (ok) {
			if (dash && b.len)
				buf_addc(&b, '-');
			buf_addc(&b, c);
			dash = 0;
		} else {
			dash = 1;
		}
	}
	if (!b.len)
		buf_adds(&b, "model");
	return buf_detach(&b);
}

int eval_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *id, const char *where, struct stage_out *out,
		struct err *err)
{
	struct engine_spec e = { 0 };
	struct step st = { 0 };
	struct strv ids = STRV_INIT;
	char *texts[1] = { 0 }, *wheres[1] = { 0 }, *path = NULL;
	const struct jnode *models;
	int rc;

	rc = stage_check_fields(obj, where, fields, NFIELDS, err);
	if (!rc)
		rc = engine_get_inputs(obj, where, roles, 1, texts, wheres, err);
	if (!rc && !(models = json_get(obj, "models")))
		rc = stage_err(err, where, "missing field 'models' (the checkpoints to evaluate)");
	if (!rc) {
		path = stage_path(where, "models");
		if (models->type != J_ARRAY || !models->nkids)
			rc = stage_err(err, path, "must be a non-empty array of 'stage.output' or '@ARTIFACT'");
		else if (models->nkids > MAX_MODELS)
			rc = stage_err(err, path, "at most %d models", MAX_MODELS);
	}
	if (!rc)
		rc = engine_resolve(ctx, obj, where, &e, err);
	for (size_t i = 0; !rc && i < models->nkids; i++) {
		char *mpath = xasprintf("%s[%zu]", path, i), *s, *sid, *art;

		rc = stage_want_type(&models->kids[i], J_STRING, mpath, err);
		if (rc) {
			free(mpath);
			break;
		}
		s = slug(models->kids[i].str);
		sid = xasprintf("%s.%s", id, s);
		if (strv_find(&ids, sid) >= 0) {
			free(sid);
			sid = xasprintf("%s.%s-%zu", id, s, i + 1);
		}
		strv_push(&ids, sid);
		engine_step_init(&st, &e, "eval", sid, "eval", id, ctx);
		rc = engine_config(ctx, obj, where, "eval", &e, NULL, 0, &st.params_json, err);
		if (!rc)
			rc = engine_add_input(&st, out, "model", models->kids[i].str, mpath,
					      NULL, NULL, err);
		if (!rc)
			rc = engine_add_input(&st, out, "data", texts[0], wheres[0], NULL, NULL, err);
		if (!rc)
			rc = stage_get_common(obj, where, &st, out, err);
		if (!rc) {
			art = xstrdup(sid);
			engine_add_output(&st, "report", ART_REPORT, art);
			free(art);
			/* other stages may take one report: "eval.report" is the
			 * first, "eval[N].report" the N-th (1-based) */
			art = xasprintf("%zu.report", i + 1);
			stage_out_export(out, art, sid, "report", ART_REPORT);
			free(art);
			if (i == 0)
				stage_out_export(out, "report", sid, "report", ART_REPORT);
			out->steps = xrealloc(out->steps, (out->nsteps + 1) * sizeof(*out->steps));
			out->steps[out->nsteps++] = st;
			memset(&st, 0, sizeof(st));
		}
		free(s);
		free(sid);
		free(mpath);
	}
	step_clear(&st);
	engine_spec_free(&e);
	strv_free(&ids);
	free(texts[0]);
	free(wheres[0]);
	free(path);
	return rc;
}
