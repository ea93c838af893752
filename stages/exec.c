/* stages/exec.c — the `exec` stage kind (see exec.h): validates every field
 * and builds one step. Inputs and outputs are read before command and env
 * so that ${inputs.X} and ${outputs.X} can be checked against them. */
#include "stages/exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/subst.h"

static const char *const fields[] = {
	"id", "kind", "command", "after", "inputs", "outputs", "env",
	"resources", "retries", "timeout", "params",
};
#define NFIELDS (sizeof(fields) / sizeof(*fields))

static const char *const type_names[] = { "checkpoint", "dataset", "report" };

struct lookup {
	const struct jnode *params;
	const struct step *st;
	struct strv *used;     /* top-level names of the params referenced */
};

static enum subst_result lookup(void *vctx, const char *ns, const char *name,
				struct buf *out, char *hint, size_t hint_size)
{
	const struct lookup *l = vctx;
	const struct step *st = l->st;
	const char **names = NULL;
	size_t n = 0;
	enum subst_result r = SUBST_UNKNOWN;

	if (!strcmp(ns, "params")) {
		const struct jnode *v = stage_param_find(l->params, name, hint,
							 hint_size);
		if (!v)
			return SUBST_UNKNOWN;
		stage_param_text(v, out);
		stage_param_use(l->used, name);
		return SUBST_OK;
	}
	if (!strcmp(ns, "inputs")) {
		names = xcalloc(st->ninputs, sizeof(*names));
		for (size_t i = 0; i < st->ninputs; i++)
			names[n++] = st->inputs[i].role;
	} else {
		names = xcalloc(st->noutputs, sizeof(*names));
		for (size_t i = 0; i < st->noutputs; i++)
			names[n++] = st->outputs[i].name;
	}
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			r = SUBST_KEEP;
	if (r == SUBST_UNKNOWN && n) {
		const char *dym = stage_suggest(name, names, n);
		if (dym)
			snprintf(hint, hint_size, "%s", dym);
	}
	free(names);
	return r;
}

/* Expands one template at path; *res is malloc'd. */
static int expand_one(const struct lookup *l, const char *tmpl,
		      const char *path, char **res, struct err *err)
{
	struct buf b = BUF_INIT;
	int rc;

	rc = subst_expand_template(tmpl, lookup, (void *)l, &b, err);
	if (rc) {
		buf_free(&b);
		return err_prefix(err, "%s", path);
	}
	*res = buf_detach(&b);
	return 0;
}

/* Roles and output names become $ANNEAL_INPUT_<ROLE> and
 * $ANNEAL_OUTPUT_<NAME>, upper-cased: two that differ only in case would
 * be one variable. Member i (a valid name) against those before it. */
static int one_variable(const struct jnode *obj, size_t i, const char *where,
			const char *what, const char *prefix, struct err *err)
{
	const char *key = obj->kids[i].key;

	for (size_t j = 0; j < i; j++)
		if (!strcasecmp(obj->kids[j].key, key)) {
			char *var = xasprintf("%s%s", prefix, key);
			int rc;

			for (char *p = var + strlen(prefix); *p; p++)
				if (*p >= 'a' && *p <= 'z')
					*p = (char)(*p - 'a' + 'A');
			rc = stage_err(err, where, "%s '%s' and '%s' would both be $%s", what,
				       obj->kids[j].key, key, var);
			free(var);
			return rc;
		}
	return 0;
}

static int get_inputs(const struct jnode *v, const char *where,
		      struct step *st, struct stage_out *out, struct err *err)
{
	char *path = NULL;
	int rc = stage_want_type(v, J_OBJECT, where, err);

	st->inputs = xcalloc(v->nkids, sizeof(*st->inputs));
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *f = &v->kids[i];
		char show[JSON_SHOW_MAX];
		const char *dot;

		if (!stage_name_valid(f->key)) {
			rc = stage_err(err, where,
				       "invalid role '%s' (1 to 63 letters, digits and '_')",
				       json_show(f->key, show, sizeof(show)));
			break;
		}
		if ((rc = one_variable(v, i, where, "roles", "ANNEAL_INPUT_", err)))
			break;
		free(path);
		path = stage_path(where, f->key);
		rc = stage_want_type(f, J_STRING, path, err);
		if (rc)
			break;
		if (f->str[0] == '@') {
			/* An artifact of the workspace (anneal add, an earlier
			 * run): "@NAME", "@NAME@N", "@ALIAS" or "@DIGEST-PREFIX",
			 * resolved and pinned when the run is recorded. */
			if ((rc = stage_check_ref(f->str, path, err)))
				break;
			st->inputs[st->ninputs].role = xstrdup(f->key);
			st->inputs[st->ninputs].ref = xstrdup(f->str + 1);
			st->ninputs++;
			continue;
		}
		dot = strchr(f->str, '.');
		if (!dot || dot == f->str || !stage_name_valid(dot + 1)) {
			rc = stage_err(err, path, "must be 'stage.output' or '@ARTIFACT', not '%s'",
				       json_show(f->str, show, sizeof(show)));
			break;
		}
		st->inputs[st->ninputs].role = xstrdup(f->key);
		st->inputs[st->ninputs].from_step = xstrndup(f->str, (size_t)(dot - f->str));
		st->inputs[st->ninputs].from_output = xstrdup(dot + 1);
		stage_out_add_ref(out, out->nsteps, 0, st->ninputs, path);
		st->ninputs++;
	}
	free(path);
	return rc;
}

static int get_outputs(const struct jnode *v, const char *where,
		       struct step *st, struct err *err)
{
	char *path = NULL;
	int rc = stage_want_type(v, J_OBJECT, where, err);

	st->outputs = xcalloc(v->nkids, sizeof(*st->outputs));
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *f = &v->kids[i];
		char show[JSON_SHOW_MAX];
		enum artifact_type t;

		if (!stage_name_valid(f->key)) {
			rc = stage_err(err, where,
				       "invalid output name '%s' (1 to 63 letters, digits and '_')",
				       json_show(f->key, show, sizeof(show)));
			break;
		}
		if ((rc = one_variable(v, i, where, "outputs", "ANNEAL_OUTPUT_", err)))
			break;
		free(path);
		path = stage_path(where, f->key);
		/* "model": "checkpoint", or "model": {"type": "checkpoint",
		 * "name": "student"} to version it under a name of its own. */
		const struct jnode *tn = f, *nm = NULL;
		if (f->type == J_OBJECT) {
			static const char *const ofields[] = { "type", "name" };
			rc = stage_check_fields(f, path, ofields, 2, err);
			if (rc)
				break;
			tn = json_get(f, "type");
			nm = json_get(f, "name");
			if (!tn) {
				rc = stage_err(err, path, "missing field 'type'");
				break;
			}
			char *tpath = stage_path(path, "type");
			rc = stage_want_type(tn, J_STRING, tpath, err);
			free(tpath);
			if (rc)
				break;
			if (nm) {
				char *npath = stage_path(path, "name");
				rc = stage_want_type(nm, J_STRING, npath, err);
				if (!rc && !artifact_name_valid(nm->str))
					rc = stage_err(err, npath,
						       "invalid artifact name '%s' (1 to 128 letters, digits, '_', '-' or '.'; no '@' or '/')",
						       json_show(nm->str, show, sizeof(show)));
				free(npath);
				if (rc)
					break;
			}
		} else {
			rc = stage_want_type(f, J_STRING, path, err);
			if (rc)
				break;
		}
		if (artifact_type_parse(tn->str, &t)) {
			const char *dym = stage_suggest(tn->str, type_names, 3);
			json_show(tn->str, show, sizeof(show));
			if (dym)
				rc = stage_err(err, path,
					       "unknown artifact type '%s' (did you mean '%s'?)",
					       show, dym);
			else
				rc = stage_err(err, path,
					       "unknown artifact type '%s' (expected checkpoint, dataset or report)",
					       show);
			break;
		}
		st->outputs[st->noutputs].name = xstrdup(f->key);
		st->outputs[st->noutputs].type = t;
		st->outputs[st->noutputs].artifact = nm ? xstrdup(nm->str)
			: xasprintf("%s.%s", st->stage ? st->stage : st->id, f->key);
		st->noutputs++;
	}
	free(path);
	return rc;
}

static int get_command(const struct jnode *v, const char *where,
		       const struct lookup *l, struct step *st,
		       struct err *err)
{
	char *path = NULL;
	int rc = 0;

	if (v->type == J_STRING)
		return stage_err(err, where,
				 "must be an array of strings (argv), not a shell string");
	if (v->type != J_ARRAY)
		return stage_err(err, where, "must be an array of strings, not %s",
				 json_type_name(v->type));
	if (v->nkids == 0)
		return stage_err(err, where, "must not be empty (argv needs a program)");
	st->argv = xcalloc(v->nkids + 1, sizeof(*st->argv));
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *a = &v->kids[i];

		free(path);
		path = xasprintf("%s[%zu]", where, i);
		rc = stage_want_type(a, J_STRING, path, err);
		if (!rc && i == 0 && !a->str[0])
			rc = stage_err(err, path, "must not be empty (the program to run)");
		if (!rc)
			rc = expand_one(l, a->str, path, &st->argv[i], err);
		if (!rc)
			st->argc++;
	}
	free(path);
	return rc;
}

static int get_env(const struct jnode *v, const char *where,
		   const struct lookup *l, struct step *st, struct err *err)
{
	char *path = NULL;
	int rc = stage_want_type(v, J_OBJECT, where, err);

	st->env = xcalloc(v->nkids, sizeof(*st->env));
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *f = &v->kids[i];
		char show[JSON_SHOW_MAX];
		char *value = NULL;

		json_show(f->key, show, sizeof(show));
		if (!stage_env_name_valid(f->key)) {
			rc = stage_err(err, where,
				       "invalid variable name '%s' (use letters, digits and '_', not starting with a digit)",
				       show);
			break;
		}
		free(path);
		path = stage_path(where, f->key);
		if (!strncmp(f->key, "ANNEAL_", 7)) {
			rc = stage_err(err, path, "names starting with ANNEAL_ are reserved for anneal");
			break;
		}
		rc = stage_want_type(f, J_STRING, path, err);
		if (!rc)
			rc = expand_one(l, f->str, path, &value, err);
		if (rc)
			break;
		st->env[st->nenv].key = xstrdup(f->key);
		st->env[st->nenv].value = value;
		st->nenv++;
	}
	free(path);
	return rc;
}

static int get_after(const struct jnode *v, const char *where,
		     struct step *st, struct stage_out *out, struct err *err)
{
	char *path = NULL;
	int rc = 0;

	if (v->type != J_ARRAY)
		return stage_err(err, where, "must be an array of stage ids, not %s",
				 json_type_name(v->type));
	st->after = xcalloc(v->nkids, sizeof(*st->after));
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		free(path);
		path = xasprintf("%s[%zu]", where, i);
		rc = stage_want_type(&v->kids[i], J_STRING, path, err);
		if (rc)
			break;
		st->after[st->nafter] = xstrdup(v->kids[i].str);
		stage_out_add_ref(out, out->nsteps, 1, st->nafter, path);
		st->nafter++;
	}
	free(path);
	return rc;
}

/* obj's member name, or NULL; *path becomes its JSON path. */
static const struct jnode *field(const struct jnode *obj, const char *where,
				 const char *name, char **path)
{
	free(*path);
	*path = stage_path(where, name);
	return json_get(obj, name);
}

int exec_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *id, const char *where, struct stage_out *out,
		struct err *err)
{
	struct step st = {0};
	struct strv used = STRV_INIT;
	struct lookup l = { ctx->params, &st, &used };
	const struct jnode *v;
	char *path = NULL;
	int rc;

	rc = stage_check_fields(obj, where, fields, NFIELDS, err);
	if (rc)
		goto done;
	if (!json_get(obj, "command")) {
		rc = stage_err(err, where, "missing field 'command'");
		goto done;
	}
	st.id = xstrdup(id);
	st.kind = xstrdup("exec");
	st.stage = xstrdup(id);
	st.res = ctx->defaults;
	st.retry.max = 0;
	st.retry.backoff_s = 1.0;

	if ((v = field(obj, where, "inputs", &path)) &&
	    (rc = get_inputs(v, path, &st, out, err)))
		goto done;
	if ((v = field(obj, where, "outputs", &path)) &&
	    (rc = get_outputs(v, path, &st, err)))
		goto done;
	if ((v = field(obj, where, "command", &path)) &&
	    (rc = get_command(v, path, &l, &st, err)))
		goto done;
	if ((v = field(obj, where, "env", &path)) &&
	    (rc = get_env(v, path, &l, &st, err)))
		goto done;
	if ((v = field(obj, where, "after", &path)) &&
	    (rc = get_after(v, path, &st, out, err)))
		goto done;
	if ((v = field(obj, where, "resources", &path)) &&
	    (rc = stage_get_resources(v, path, &st.res, err)))
		goto done;
	if ((v = field(obj, where, "retries", &path)) &&
	    (rc = stage_get_retries(v, path, &st.retry, err)))
		goto done;
	if ((v = field(obj, where, "timeout", &path)) &&
	    (rc = stage_get_timeout(v, path, &st.timeout_s, err)))
		goto done;
	if ((v = field(obj, where, "params", &path)) &&
	    (rc = stage_get_param_names(v, path, ctx->params, &used, err)))
		goto done;
	st.params_json = stage_params_subset(ctx->params, &used);

	out->exports = xrealloc(out->exports,
				(out->nexports + st.noutputs) * sizeof(*out->exports));
	for (size_t i = 0; i < st.noutputs; i++) {
		struct stage_export *e = &out->exports[out->nexports++];
		e->name = xstrdup(st.outputs[i].name);
		e->step = xstrdup(id);
		e->output = xstrdup(st.outputs[i].name);
		e->type = st.outputs[i].type;
	}
	out->steps = xrealloc(out->steps, (out->nsteps + 1) * sizeof(*out->steps));
	out->steps[out->nsteps++] = st;
	memset(&st, 0, sizeof(st));
done:
	step_clear(&st);
	strv_free(&used);
	free(path);
	return rc;
}
