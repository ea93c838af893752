/* stages/train.c — what the engine-running kinds share (the engine, the
 * config, inputs by role), and the one-step kinds: data, pretrain, sft,
 * rl, dual_sft. distill.c and eval.c expand into several steps. */
#include "stages/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "engine/config.h"
#include "pipeline/json.h"
#include "pipeline/subst.h"

/* ---- the engine ---- */

/* Templates in engine values may name params only. */
static enum subst_result params_lookup(void *vctx, const char *ns, const char *name,
				       struct buf *out, char *hint, size_t hint_size)
{
	const struct jnode *params = vctx, *v;

	if (strcmp(ns, "params"))
		return SUBST_UNKNOWN;
	v = stage_param_find(params, name, hint, hint_size);
	if (!v)
		return SUBST_UNKNOWN;
	stage_param_text(v, out);
	return SUBST_OK;
}

static int expand_str(const struct stage_ctx *ctx, const char *tmpl,
		      const char *where, char **res, struct err *err)
{
	struct buf b = BUF_INIT;

	if (subst_expand_template(tmpl, params_lookup, (void *)ctx->params, &b, err)) {
		buf_free(&b);
		return err_prefix(err, "%s", where);
	}
	*res = buf_detach(&b);
	return 0;
}

static int get_env(const struct stage_ctx *ctx, const struct jnode *v,
		   const char *where, struct engine_spec *e, struct err *err)
{
	int rc = stage_want_type(v, J_OBJECT, where, err);

	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *f = &v->kids[i];
		char show[JSON_SHOW_MAX], *path = stage_path(where, f->key), *val = NULL;

		if (!stage_env_name_valid(f->key))
			rc = stage_err(err, where, "invalid variable name '%s'",
				       json_show(f->key, show, sizeof(show)));
		else if (!strncmp(f->key, "ANNEAL_", 7))
			rc = stage_err(err, path, "names starting with ANNEAL_ are anneal's own");
		else
			rc = stage_want_type(f, J_STRING, path, err);
		if (!rc)
			rc = expand_str(ctx, f->str, path, &val, err);
		if (!rc) {
			e->env = xrealloc(e->env, (e->nenv + 1) * sizeof(*e->env));
			e->env[e->nenv].key = xstrdup(f->key);
			e->env[e->nenv].value = val;
			e->nenv++;
		}
		free(path);
	}
	return rc;
}

/* "engine": {"command": [...], "env": {...}, "repo": "..."} or just the
 * command array. repo is the top level's only (provenance, cmd_run.c). */
static int get_engine(const struct stage_ctx *ctx, const struct jnode *v,
		      const char *where, int top, struct engine_spec *e,
		      struct err *err)
{
	static const char *const top_fields[] = { "command", "env", "repo" };
	static const char *const stage_fields[] = { "command", "env" };
	const struct jnode *cmd = v, *env = NULL;
	char *path = NULL;
	int rc = 0;

	if (v->type == J_OBJECT) {
		rc = stage_check_fields(v, where, top ? top_fields : stage_fields,
					top ? 3 : 2, err);
		if (rc)
			return rc;
		cmd = json_get(v, "command");
		env = json_get(v, "env");
		if (top && json_get(v, "repo") && json_get(v, "repo")->type != J_STRING) {
			path = stage_path(where, "repo");
			rc = stage_want_type(json_get(v, "repo"), J_STRING, path, err);
			free(path);
			return rc;
		}
	} else if (v->type != J_ARRAY) {
		return stage_err(err, where, "must be an object {\"command\": [...], \"env\": {...}} or a command array, not %s",
				 json_type_name(v->type));
	}
	if (cmd) {
		path = v->type == J_OBJECT ? stage_path(where, "command") : xstrdup(where);
		if (cmd->type != J_ARRAY || !cmd->nkids) {
			rc = stage_err(err, path, cmd->type == J_STRING
				       ? "must be an array of strings (argv), not a shell string"
				       : "must be a non-empty array of strings (argv)");
			free(path);
			return rc;
		}
		for (size_t i = 0; i < e->argc; i++)
			free(e->argv[i]);
		free(e->argv);
		e->argv = xcalloc(cmd->nkids + 1, sizeof(char *));
		e->argc = 0;
		for (size_t i = 0; !rc && i < cmd->nkids; i++) {
			char *ipath = xasprintf("%s[%zu]", path, i);
			rc = stage_want_type(&cmd->kids[i], J_STRING, ipath, err);
			if (!rc && !cmd->kids[i].str[0])
				rc = stage_err(err, ipath, "must not be empty");
			if (!rc)
				rc = expand_str(ctx, cmd->kids[i].str, ipath, &e->argv[e->argc], err);
			if (!rc)
				e->argc++;
			free(ipath);
		}
		free(path);
		if (rc)
			return rc;
	}
	if (env) {
		path = stage_path(where, "env");
		rc = get_env(ctx, env, path, e, err);
		free(path);
	}
	return rc;
}

static int is_reference(const char *argv0)
{
	const char *base = strrchr(argv0, '/');

	base = base ? base + 1 : argv0;
	return !strcmp(base, "anneal-engine");
}

int engine_resolve(const struct stage_ctx *ctx, const struct jnode *obj,
		   const char *where, struct engine_spec *e, struct err *err)
{
	const struct jnode *v;
	int rc = 0;

	memset(e, 0, sizeof(*e));
	if (ctx->engine)
		rc = get_engine(ctx, ctx->engine, "engine", 1, e, err);
	if (!rc && (v = json_get(obj, "engine"))) {
		char *path = stage_path(where, "engine");
		rc = get_engine(ctx, v, path, 0, e, err);
		free(path);
	}
	if (!rc && (v = json_get(obj, "env"))) {
		char *path = stage_path(where, "env");
		rc = get_env(ctx, v, path, e, err);
		free(path);
	}
	if (rc) {
		engine_spec_free(e);
		return rc;
	}
	if (!e->argv) {
		char *self = fs_self_dir();

		e->argv = xcalloc(2, sizeof(char *));
		e->argv[0] = self ? fs_join(self, "anneal-engine") : xstrdup("anneal-engine");
		e->argc = 1;
		free(self);
	}
	e->reference = is_reference(e->argv[0]);
	return 0;
}

void engine_spec_free(struct engine_spec *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->argc; i++)
		free(e->argv[i]);
	free(e->argv);
	for (size_t i = 0; i < e->nenv; i++) {
		free(e->env[i].key);
		free(e->env[i].value);
	}
	free(e->env);
	memset(e, 0, sizeof(*e));
}

/* ---- the config ---- */

int engine_param_value(const struct stage_ctx *ctx, const struct jnode *v,
		       const char *where, const struct jnode **out, struct err *err)
{
	const char *s = v->type == J_STRING ? v->str : NULL;
	size_t len = s ? strlen(s) : 0;
	char *name, hint[128] = "", show[JSON_SHOW_MAX];

	*out = v;
	if (!s || len <= 10 || strncmp(s, "${params.", 9) || s[len - 1] != '}' ||
	    memchr(s + 9, '}', len - 10) || strstr(s + 2, "${"))
		return 0;
	name = xstrndup(s + 9, len - 10);
	*out = stage_param_find(ctx->params, name, hint, sizeof(hint));
	json_show(name, show, sizeof(show));
	free(name);
	if (*out)
		return 0;
	if (hint[0])
		return stage_err(err, where, "unknown name '${params.%s}' (did you mean '%s'?)",
				 show, hint);
	return stage_err(err, where, "unknown name '${params.%s}'", show);
}

/* Substitutes params in a copy of the config: a string that is exactly
 * "${params.X}" becomes X's value (any type); other strings are
 * templates. */
int engine_subst_params(const struct stage_ctx *ctx, struct jnode *n,
			const char *where, struct err *err)
{
	if (n->type == J_STRING) {
		const char *s = n->str;
		const struct jnode *p;

		if (engine_param_value(ctx, n, where, &p, err))
			return ERR_INVALID;
		if (p != n) {
			json_replace(n, json_clone(p));
			return 0;
		}
		if (strstr(s, "${") || strstr(s, "$${")) {
			struct buf b = BUF_INIT;
			if (subst_expand(s, params_lookup, (void *)ctx->params, &b, err)) {
				buf_free(&b);
				return err_prefix(err, "%s", where);
			}
			free(n->str);
			n->str = buf_detach(&b);
		}
		return 0;
	}
	for (size_t i = 0; i < n->nkids; i++) {
		char *path = n->type == J_OBJECT ? stage_path(where, n->kids[i].key)
						 : xasprintf("%s[%zu]", where, i);
		int rc = engine_subst_params(ctx, &n->kids[i], path, err);
		free(path);
		if (rc)
			return rc;
	}
	return 0;
}

int engine_config(const struct stage_ctx *ctx, const struct jnode *obj,
		  const char *where, const char *cmd,
		  const struct engine_spec *e, const char *extra_key,
		  long long extra_val, char **json, struct err *err)
{
	const struct jnode *v = json_get(obj, "config");
	struct jnode *cfg = NULL;
	char *path = stage_path(where, "config");
	struct buf b = BUF_INIT;
	int rc = 0;

	if (v) {
		rc = stage_want_type(v, J_OBJECT, path, err);
		if (!rc) {
			cfg = json_clone(v);
			free(cfg->key);
			cfg->key = NULL;
			rc = engine_subst_params(ctx, cfg, path, err);
		}
	}
	if (!rc && extra_key && cfg && json_get(cfg, extra_key))
		rc = stage_err(err, path, "'%s' is set by the stage kind", extra_key);
	if (!rc && e->reference) {
		const struct ecfg_cmd *c = ecfg_find(cmd);
		if (c)
			rc = ecfg_check(c, cfg, path, err);
	}
	if (!rc) {
		/* The object, then extra_key, in compact JSON. */
		if (cfg)
			json_write(&b, cfg);
		else
			buf_adds(&b, "{}");
		if (extra_key) {
			b.len--;   /* the closing brace */
			buf_printf(&b, "%s\"%s\":%lld}", b.len > 1 ? "," : "",
				   extra_key, extra_val);
		}
		*json = buf_detach(&b);
	}
	buf_free(&b);
	json_free(cfg);
	free(path);
	return rc;
}

/* ---- steps ---- */

void engine_step_init(struct step *st, const struct engine_spec *e,
		      const char *cmd, const char *id, const char *kind,
		      const char *stage, const struct stage_ctx *ctx)
{
	memset(st, 0, sizeof(*st));
	st->id = xstrdup(id);
	st->kind = xstrdup(kind);
	st->stage = xstrdup(stage);
	st->res = ctx->defaults;
	st->retry.backoff_s = 1.0;
	st->argv = xcalloc(e->argc + 2, sizeof(char *));
	for (size_t i = 0; i < e->argc; i++)
		st->argv[i] = xstrdup(e->argv[i]);
	st->argv[e->argc] = xstrdup(cmd);
	st->argc = e->argc + 1;
	if (e->nenv) {
		st->env = xcalloc(e->nenv, sizeof(*st->env));
		for (size_t i = 0; i < e->nenv; i++) {
			st->env[i].key = xstrdup(e->env[i].key);
			st->env[i].value = xstrdup(e->env[i].value);
		}
		st->nenv = e->nenv;
	}
}

int engine_add_input(struct step *st, struct stage_out *out, const char *role,
		     const char *text, const char *where, const char *link_step,
		     const char *link_output, struct err *err)
{
	struct step_input in = { 0 };
	char show[JSON_SHOW_MAX];

	if (!text) {
		in.from_step = xstrdup(link_step);
		in.from_output = xstrdup(link_output);
	} else if (text[0] == '@') {
		if (stage_check_ref(text, where, err))
			return ERR_INVALID;
		in.ref = xstrdup(text + 1);
	} else {
		const char *dot = strchr(text, '.');

		if (!dot || dot == text || !stage_name_valid(dot + 1))
			return stage_err(err, where, "must be 'stage.output', 'stage[N].output' or '@ARTIFACT', not '%s'",
					 json_show(text, show, sizeof(show)));
		in.from_step = xstrndup(text, (size_t)(dot - text));
		in.from_output = xstrdup(dot + 1);
		stage_out_add_ref(out, out->nsteps, 0, st->ninputs, where);
	}
	in.role = xstrdup(role);
	st->inputs = xrealloc(st->inputs, (st->ninputs + 1) * sizeof(*st->inputs));
	st->inputs[st->ninputs++] = in;
	return 0;
}

void engine_add_output(struct step *st, const char *name,
		       enum artifact_type type, const char *artifact)
{
	st->outputs = xrealloc(st->outputs, (st->noutputs + 1) * sizeof(*st->outputs));
	memset(&st->outputs[st->noutputs], 0, sizeof(*st->outputs));
	st->outputs[st->noutputs].name = xstrdup(name);
	st->outputs[st->noutputs].type = type;
	st->outputs[st->noutputs].artifact = xstrdup(artifact);
	st->noutputs++;
}

int engine_get_inputs(const struct jnode *obj, const char *where,
		      const struct role_spec *roles, size_t n, char **texts,
		      char **wheres, struct err *err)
{
	const struct jnode *v = json_get(obj, "inputs");
	char *path = stage_path(where, "inputs");
	const char **names = xcalloc(n + 1, sizeof(*names));
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		texts[i] = wheres[i] = NULL;
		names[i] = roles[i].name;
	}
	if (v)
		rc = stage_want_type(v, J_OBJECT, path, err);
	for (size_t i = 0; v && !rc && i < v->nkids; i++) {
		const struct jnode *f = &v->kids[i];
		char show[JSON_SHOW_MAX];
		size_t k;

		for (k = 0; k < n; k++)
			if (!strcmp(f->key, roles[k].name))
				break;
		if (k == n) {
			const char *dym = stage_suggest(f->key, names, n);
			struct buf list = BUF_INIT;

			json_show(f->key, show, sizeof(show));
			for (size_t j = 0; j < n; j++)
				buf_printf(&list, "%s%s", j ? ", " : "", names[j]);
			rc = dym ? stage_err(err, path, "unknown role '%s' (did you mean '%s'?)", show, dym)
				 : stage_err(err, path, "unknown role '%s' (this kind takes: %s)",
					     show, n ? buf_str(&list) : "no inputs");
			buf_free(&list);
			break;
		}
		wheres[k] = stage_path(path, f->key);
		rc = stage_want_type(f, J_STRING, wheres[k], err);
		if (!rc)
			texts[k] = xstrdup(f->str);
	}
	for (size_t i = 0; !rc && i < n; i++)
		if (roles[i].required && !texts[i])
			rc = stage_err(err, path, "missing role '%s'", roles[i].name);
	if (rc)
		for (size_t i = 0; i < n; i++) {
			free(texts[i]);
			free(wheres[i]);
			texts[i] = wheres[i] = NULL;
		}
	free(names);
	free(path);
	return rc;
}

/* ---- the one-step kinds ---- */

struct output_spec {
	const char *name;
	enum artifact_type type;
};

struct simple_kind {
	const char *kind;
	const char *cmd;
	const struct role_spec *roles;
	size_t nroles;
	const struct output_spec *outputs;
	size_t noutputs;
};

static const char *const simple_fields[] = {
	"id", "kind", "inputs", "config", "engine", "env", "name", "after",
	"resources", "retries", "timeout",
};
#define NSIMPLE_FIELDS (sizeof(simple_fields) / sizeof(*simple_fields))

static int simple_expand(const struct simple_kind *k, const struct stage_ctx *ctx,
			 const struct jnode *obj, const char *id, const char *where,
			 struct stage_out *out, struct err *err)
{
	struct engine_spec e = { 0 };
	struct step st = { 0 };
	char *texts[8] = { 0 }, *wheres[8] = { 0 }, *name = NULL, *path = NULL;
	const struct jnode *v;
	int rc;

	rc = stage_check_fields(obj, where, simple_fields,
				/* data has one output per kind of data: no "name" */
				NSIMPLE_FIELDS, err);
	if (!rc && k->noutputs > 1 && json_get(obj, "name"))
		rc = stage_err(err, where, "'name' names a single model; a %s stage's outputs are versioned as '%s.%s', ...",
			       k->kind, id, k->outputs[0].name);
	if (!rc)
		rc = engine_get_inputs(obj, where, k->roles, k->nroles, texts, wheres, err);
	if (!rc)
		rc = engine_resolve(ctx, obj, where, &e, err);
	if (rc)
		goto done;
	engine_step_init(&st, &e, k->cmd, id, k->kind, id, ctx);
	if ((rc = engine_config(ctx, obj, where, k->cmd, &e, NULL, 0, &st.params_json, err)))
		goto done;
	for (size_t i = 0; i < k->nroles; i++)
		if (texts[i] && (rc = engine_add_input(&st, out, k->roles[i].name, texts[i],
						       wheres[i], NULL, NULL, err)))
			goto done;
	if ((v = json_get(obj, "name"))) {
		path = stage_path(where, "name");
		if ((rc = stage_get_artifact_name(v, path, &name, err)))
			goto done;
	}
	for (size_t i = 0; i < k->noutputs; i++) {
		char *art = name && i == 0 ? xstrdup(name)
					   : xasprintf("%s.%s", id, k->outputs[i].name);
		engine_add_output(&st, k->outputs[i].name, k->outputs[i].type, art);
		free(art);
		stage_out_export(out, k->outputs[i].name, id, k->outputs[i].name,
				 k->outputs[i].type);
	}
	if ((rc = stage_get_common(obj, where, &st, out, err)))
		goto done;
	out->steps = xrealloc(out->steps, (out->nsteps + 1) * sizeof(*out->steps));
	out->steps[out->nsteps++] = st;
	memset(&st, 0, sizeof(st));
done:
	step_clear(&st);
	engine_spec_free(&e);
	for (size_t i = 0; i < 8; i++) {
		free(texts[i]);
		free(wheres[i]);
	}
	free(name);
	free(path);
	return rc;
}

static const struct output_spec model_out[] = { { "model", ART_CHECKPOINT } };

static const struct output_spec data_outs[] = {
	{ "corpus", ART_DATASET }, { "reasoning", ART_DATASET },
	{ "prompts", ART_DATASET }, { "eval", ART_DATASET },
};
static const struct simple_kind data_kind = {
	"data", "gen-data", NULL, 0, data_outs, 4,
};

static const struct role_spec pretrain_roles[] = { { "data", 1 }, { "init", 0 } };
static const struct simple_kind pretrain_kind = {
	"pretrain", "pretrain", pretrain_roles, 2, model_out, 1,
};

static const struct role_spec sft_roles[] = { { "init", 1 }, { "data", 1 } };
static const struct simple_kind sft_kind = {
	"sft", "sft", sft_roles, 2, model_out, 1,
};
static const struct simple_kind dual_sft_kind = {
	"dual_sft", "dual-sft", sft_roles, 2, model_out, 1,
};

static const struct role_spec rl_roles[] = {
	{ "policy", 1 }, { "data", 1 }, { "reward", 0 },
};
static const struct simple_kind rl_kind = {
	"rl", "rl", rl_roles, 3, model_out, 1,
};

int data_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *id, const char *where, struct stage_out *out,
		struct err *err)
{
	return simple_expand(&data_kind, ctx, obj, id, where, out, err);
}

int pretrain_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		    const char *id, const char *where, struct stage_out *out,
		    struct err *err)
{
	return simple_expand(&pretrain_kind, ctx, obj, id, where, out, err);
}

int sft_expand(const struct stage_ctx *ctx, const struct jnode *obj,
	       const char *id, const char *where, struct stage_out *out,
	       struct err *err)
{
	return simple_expand(&sft_kind, ctx, obj, id, where, out, err);
}

int rl_expand(const struct stage_ctx *ctx, const struct jnode *obj,
	      const char *id, const char *where, struct stage_out *out,
	      struct err *err)
{
	return simple_expand(&rl_kind, ctx, obj, id, where, out, err);
}

int dual_sft_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		    const char *id, const char *where, struct stage_out *out,
		    struct err *err)
{
	return simple_expand(&dual_sft_kind, ctx, obj, id, where, out, err);
}
