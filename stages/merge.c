/* stages/merge.c — the `merge` stage kind: one step running anneal's own
 * native merge (`anneal merge`, artifacts/merge_run) over checkpoints made
 * by other stages or registered artifacts.
 *
 *   {"id": "merge", "kind": "merge", "method": "ties",
 *    "base": "pretrain.model",
 *    "models": [{"from": "tune_a.model", "weight": 0.6},
 *               {"from": "@student@3", "weight": 0.4}],
 *    "params": {"density": 0.5}, "rules": [{"match": "*.mlp.*", "params": {"density": 0.7}}],
 *    "seed": 7, "name": "merged"}
 *
 * The method and its parameters are checked here, through the same code the
 * merge runs (artifacts/merge.h), so a typo fails validation, not the run.
 * In the output's lineage the base is the parent "base" and each model a
 * parent "merge-input" carrying its weight; the method and parameters are
 * in the step's argv, hence in its cache key and lineage digest. */
#include "stages/merge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/merge.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "pipeline/json.h"

static const char *const fields[] = {
	"id", "kind", "method", "base", "models", "params", "rules", "seed", "name",
	"after", "resources", "retries", "timeout",
};
#define NFIELDS (sizeof(fields) / sizeof(*fields))

/* The text of a param value as `anneal merge --param` takes it. */
static int value_text(const struct jnode *v, const char *where, struct buf *out,
		      struct err *err)
{
	switch (v->type) {
	case J_NUMBER:
		json_write(out, v);
		return 0;
	case J_BOOL:
		buf_adds(out, v->boolean ? "true" : "false");
		return 0;
	case J_STRING:
		buf_adds(out, v->str);
		return 0;
	default:
		return stage_err(err, where, "must be a number, a boolean or a string, not %s",
				 json_type_name(v->type));
	}
}

/* "k=v,k=v" from a params object; checks each against spec when given. */
static int params_text(const struct jnode *obj, const char *where, struct buf *out,
		       struct strv *each, struct err *err)
{
	int rc = stage_want_type(obj, J_OBJECT, where, err);

	for (size_t i = 0; !rc && i < obj->nkids; i++) {
		struct buf b = BUF_INIT;
		char *path = stage_path(where, obj->kids[i].key);
		buf_init(&b);
		buf_printf(&b, "%s=", obj->kids[i].key);
		rc = value_text(&obj->kids[i], path, &b, err);
		free(path);
		if (!rc) {
			if (out)
				buf_printf(out, "%s%s", i ? "," : "", buf_str(&b));
			if (each)
				strv_push(each, buf_str(&b));
		}
		buf_free(&b);
	}
	return rc;
}

/* An input: the user's "STAGE.OUTPUT" or "@REF", or a link to a step of
 * the same stage (distill's merges). */
static int add_input(struct step *st, struct stage_out *out,
		     const struct merge_source *src, const char *role,
		     const char *edge_role, int has_weight, double weight,
		     struct err *err)
{
	struct step_input *in;
	const char *dot;
	int rc = 0;

	st->inputs = xrealloc(st->inputs, (st->ninputs + 1) * sizeof(*st->inputs));
	in = &st->inputs[st->ninputs];
	memset(in, 0, sizeof(*in));
	if (!src->text) {
		in->from_step = xstrdup(src->link_step);
		in->from_output = xstrdup(src->link_output ? src->link_output : "model");
	} else if (src->text[0] == '@') {
		if (stage_check_ref(src->text, src->where, err))
			return ERR_INVALID;
		in->ref = xstrdup(src->text + 1);
	} else {
		dot = strchr(src->text, '.');
		if (!dot || dot == src->text || !dot[1]) {
			char show[JSON_SHOW_MAX];
			return stage_err(err, src->where, "must be 'stage.output' or '@ARTIFACT', not '%s'",
					 json_show(src->text, show, sizeof(show)));
		}
		in->from_step = xstrndup(src->text, (size_t)(dot - src->text));
		in->from_output = xstrdup(dot + 1);
		stage_out_add_ref(out, out->nsteps, 0, st->ninputs, src->where);
	}
	in->role = xstrdup(role);
	in->edge_role = xstrdup(edge_role);
	in->has_weight = has_weight;
	in->weight = weight;
	st->ninputs++;
	return rc;
}

static void push(struct strv *argv, const char *s)
{
	strv_push(argv, s);
}

int merge_build(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *where, const struct merge_source *base,
		const struct merge_source *models, size_t nmodels,
		struct step *st, struct stage_out *out, struct err *err)
{
	struct strv argv = STRV_INIT, params = STRV_INIT;
	struct merge_spec *spec = NULL;
	enum merge_method method;
	const struct jnode *v;
	char *path = NULL, *self = NULL;
	struct buf b = BUF_INIT;
	long long seed = 0;
	int rc;

	(void)ctx;
	buf_init(&b);
	if (!(v = json_get(obj, "method"))) {
		rc = stage_err(err, where, "missing field 'method'");
		goto done;
	}
	path = stage_path(where, "method");
	if ((rc = stage_want_type(v, J_STRING, path, err)))
		goto done;
	if (merge_method_parse(v->str, &method, err)) {
		rc = err_prefix(err, "%s", path);
		goto done;
	}
	spec = merge_spec_new(method);
	self = fs_self_dir();
	push(&argv, "");   /* argv[0], set below */
	push(&argv, "merge");
	push(&argv, "--method");
	push(&argv, v->str);

	if (base) {
		if ((rc = add_input(st, out, base, "base", "base", 0, 0, err)))
			goto done;
		push(&argv, "--base");
		push(&argv, "${inputs.base}");
	} else if (merge_method_needs_base(method)) {
		rc = stage_err(err, where, "missing field 'base' (method '%s' merges task vectors against a base)",
			       merge_method_name(method));
		goto done;
	}
	for (size_t i = 0; i < nmodels; i++) {
		char role[32];

		snprintf(role, sizeof(role), "model_%zu", i + 1);
		rc = add_input(st, out, &models[i], role, "merge-input", 1,
			       models[i].weight, err);
		if (rc)
			goto done;
		buf_reset(&b);
		buf_printf(&b, "${inputs.%s}:", role);
		buf_add_num(&b, models[i].weight);
		push(&argv, "--model");
		push(&argv, buf_str(&b));
	}
	if ((v = json_get(obj, "params"))) {
		free(path);
		path = stage_path(where, "params");
		if ((rc = params_text(v, path, NULL, &params, err)))
			goto done;
		for (size_t i = 0; i < params.n; i++) {
			if (merge_spec_set(spec, params.v[i], err)) {
				char *kpath = stage_path(path, v->kids[i].key);
				rc = err_prefix(err, "%s", kpath);
				free(kpath);
				goto done;
			}
			push(&argv, "--param");
			push(&argv, params.v[i]);
		}
	}
	if ((v = json_get(obj, "rules"))) {
		free(path);
		path = stage_path(where, "rules");
		if ((rc = stage_want_type(v, J_ARRAY, path, err)))
			goto done;
		for (size_t i = 0; i < v->nkids; i++) {
			static const char *const rf[] = { "match", "params" };
			const struct jnode *r = &v->kids[i], *match, *rp;
			char *rpath = xasprintf("%s[%zu]", path, i);
			rc = stage_want_type(r, J_OBJECT, rpath, err);
			if (!rc)
				rc = stage_check_fields(r, rpath, rf, 2, err);
			match = rc ? NULL : json_get(r, "match");
			rp = rc ? NULL : json_get(r, "params");
			if (!rc && (!match || match->type != J_STRING || !*match->str))
				rc = stage_err(err, rpath, "needs 'match', a tensor-name pattern (e.g. \"*.mlp.*\")");
			if (!rc && !rp)
				rc = stage_err(err, rpath, "missing field 'params'");
			if (!rc) {
				char *ppath = stage_path(rpath, "params");
				buf_reset(&b);
				rc = params_text(rp, ppath, &b, NULL, err);
				if (!rc && merge_spec_add_rule(spec, match->str, buf_str(&b), err))
					rc = err_prefix(err, "%s", ppath);
				free(ppath);
			}
			if (!rc) {
				char *arg = xasprintf("%s:%s", match->str, buf_str(&b));
				push(&argv, "--rule");
				strv_push_owned(&argv, arg);
			}
			free(rpath);
			if (rc)
				goto done;
		}
	}
	if ((v = json_get(obj, "seed"))) {
		free(path);
		path = stage_path(where, "seed");
		if ((rc = stage_get_int(v, path, 0, (long long)1 << 62, &seed, err)))
			goto done;
		merge_spec_set_seed(spec, (uint64_t)seed);
		push(&argv, "--seed");
		strv_push_owned(&argv, xasprintf("%lld", seed));
	}
	if (merge_spec_check(spec, err)) {
		rc = err_prefix(err, "%s", where);
		goto done;
	}
	st->outputs = xrealloc(st->outputs, (st->noutputs + 1) * sizeof(*st->outputs));
	memset(&st->outputs[st->noutputs], 0, sizeof(*st->outputs));
	st->outputs[st->noutputs].name = xstrdup("model");
	st->outputs[st->noutputs].type = ART_CHECKPOINT;
	st->noutputs++;
	push(&argv, "--threads");
	strv_push_owned(&argv, xasprintf("%d", st->res.cpus > 0 ? st->res.cpus : 1));
	push(&argv, "-o");
	push(&argv, "${outputs.model}");
	/* The merge runs as anneal itself: its binary is the engine whose
	 * content the cache key covers. */
	free(argv.v[0]);
	argv.v[0] = self ? fs_join(self, "anneal") : xstrdup("anneal");
	st->argc = argv.n;
	st->argv = argv.v;
	argv.v = NULL;
	argv.n = argv.cap = 0;
	free(st->params_json);
	st->params_json = xstrdup("{}");
done:
	strv_free(&argv);
	strv_free(&params);
	merge_spec_free(spec);
	buf_free(&b);
	free(path);
	free(self);
	return rc;
}

int merge_expand(const struct stage_ctx *ctx, const struct jnode *obj, const char *id,
		 const char *where, struct stage_out *out, struct err *err)
{
	struct step st = { 0 };
	struct merge_source base = { 0 }, *models = NULL;
	struct strv paths = STRV_INIT;
	const struct jnode *v, *list;
	char *path = NULL;
	size_t nmodels = 0;
	int rc;

	rc = stage_check_fields(obj, where, fields, NFIELDS, err);
	if (rc)
		goto done;
	st.id = xstrdup(id);
	st.kind = xstrdup("merge");
	st.stage = xstrdup(id);
	st.res = ctx->defaults;
	st.retry.backoff_s = 1.0;
	if ((rc = stage_get_common(obj, where, &st, out, err)))
		goto done;
	if ((v = json_get(obj, "base"))) {
		path = stage_path(where, "base");
		if ((rc = stage_want_type(v, J_STRING, path, err)))
			goto done;
		strv_push(&paths, path);
		base.text = v->str;
		base.where = paths.v[paths.n - 1];
	}
	if (!json_get(obj, "method")) {
		rc = stage_err(err, where, "missing field 'method'");
		goto done;
	}
	if (!(list = json_get(obj, "models"))) {
		rc = stage_err(err, where, "missing field 'models'");
		goto done;
	}
	free(path);
	path = stage_path(where, "models");
	if ((rc = stage_want_type(list, J_ARRAY, path, err)))
		goto done;
	if (!list->nkids) {
		rc = stage_err(err, path, "must name at least one model");
		goto done;
	}
	models = xcalloc(list->nkids, sizeof(*models));
	for (size_t i = 0; i < list->nkids; i++) {
		const struct jnode *m = &list->kids[i], *from = m, *w = NULL;
		char *mpath = xasprintf("%s[%zu]", path, i);
		double weight = 1.0;

		if (m->type == J_OBJECT) {
			static const char *const mf[] = { "from", "weight" };
			rc = stage_check_fields(m, mpath, mf, 2, err);
			from = json_get(m, "from");
			w = json_get(m, "weight");
			if (!rc && !from)
				rc = stage_err(err, mpath, "missing field 'from'");
			if (!rc && w) {
				char *wpath = stage_path(mpath, "weight");
				rc = stage_get_weight(w, wpath, &weight, err);
				free(wpath);
			}
			if (!rc) {
				char *fpath = stage_path(mpath, "from");
				free(mpath);
				mpath = fpath;
			}
		}
		if (!rc)
			rc = stage_want_type(from, J_STRING, mpath, err);
		strv_push_owned(&paths, mpath);
		if (rc)
			goto done;
		models[i].text = from->str;
		models[i].where = paths.v[paths.n - 1];
		models[i].weight = weight;
		nmodels++;
	}
	rc = merge_build(ctx, obj, where, base.text ? &base : NULL, models, nmodels,
			 &st, out, err);
	if (rc)
		goto done;
	if ((v = json_get(obj, "name"))) {
		free(path);
		path = stage_path(where, "name");
		if ((rc = stage_get_artifact_name(v, path, &st.outputs[0].artifact, err)))
			goto done;
	} else {
		st.outputs[0].artifact = xasprintf("%s.model", id);
	}
	stage_out_export(out, "model", id, "model", ART_CHECKPOINT);
	out->steps = xrealloc(out->steps, (out->nsteps + 1) * sizeof(*out->steps));
	out->steps[out->nsteps++] = st;
	memset(&st, 0, sizeof(st));
done:
	step_clear(&st);
	strv_free(&paths);
	free(models);
	free(path);
	return rc;
}
