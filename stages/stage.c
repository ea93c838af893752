/* stages/stage.c — the registry of stage kinds, and the field checks every
 * kind shares (resources, retries, timeouts, integers with limits), so that
 * the same mistake reads the same whatever the kind.
 *
 * A new kind is one file in stages/ plus one line in `kinds` below. */
#include "stages/stage.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/catalog.h"
#include "stages/exec.h"
#include "stages/merge.h"
#include "stages/train.h"

static const struct stage_kind kinds[] = {
	{ "exec", exec_expand },
	{ "data", data_expand },
	{ "pretrain", pretrain_expand },
	{ "sft", sft_expand },
	{ "distill", distill_expand },
	{ "merge", merge_expand },
	{ "rl", rl_expand },
	{ "dual_sft", dual_sft_expand },
	{ "eval", eval_expand },
};
static const char *const kind_names[] = {
	"exec", "data", "pretrain", "sft", "distill", "merge", "rl", "dual_sft", "eval",
};
#define NKINDS (sizeof(kinds) / sizeof(*kinds))
_Static_assert(sizeof(kinds) / sizeof(*kinds) ==
	       sizeof(kind_names) / sizeof(*kind_names),
	       "kinds and kind_names must list the same kinds");

const struct stage_kind *stage_kind_find(const char *name)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (!strcmp(kinds[i].name, name))
			return &kinds[i];
	return NULL;
}

const char *const *stage_kind_names(size_t *n)
{
	*n = NKINDS;
	return kind_names;
}

void stage_out_clear(struct stage_out *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->nsteps; i++)
		step_clear(&o->steps[i]);
	free(o->steps);
	for (size_t i = 0; i < o->nexports; i++) {
		free(o->exports[i].name);
		free(o->exports[i].step);
		free(o->exports[i].output);
	}
	free(o->exports);
	for (size_t i = 0; i < o->nrefs; i++)
		free(o->refs[i].where);
	free(o->refs);
	memset(o, 0, sizeof(*o));
}

void stage_out_add_ref(struct stage_out *o, size_t step, int is_after,
		       size_t index, const char *where)
{
	o->refs = xrealloc(o->refs, (o->nrefs + 1) * sizeof(*o->refs));
	o->refs[o->nrefs].step = step;
	o->refs[o->nrefs].is_after = is_after;
	o->refs[o->nrefs].index = index;
	o->refs[o->nrefs].where = xstrdup(where);
	o->nrefs++;
}

/* ---- field checks ---- */

int stage_err(struct err *err, const char *where, const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (where && *where)
		return err_set(err, ERR_INVALID, "%s: %s", where, msg);
	return err_set(err, ERR_INVALID, "%s", msg);
}

char *stage_path(const char *where, const char *field)
{
	if (!where || !*where)
		return xstrdup(field);
	return xasprintf("%s.%s", where, field);
}

int stage_check_fields(const struct jnode *obj, const char *where,
		       const char *const *allowed, size_t n, struct err *err)
{
	for (size_t i = 0; i < obj->nkids; i++) {
		const char *key = obj->kids[i].key, *dym;
		char show[JSON_SHOW_MAX];
		struct buf list = BUF_INIT;
		size_t k;
		int rc;

		for (k = 0; k < n; k++)
			if (!strcmp(key, allowed[k]))
				break;
		if (k < n)
			continue;
		json_show(key, show, sizeof(show));
		dym = stage_suggest(key, allowed, n);
		if (dym)
			return stage_err(err, where, "unknown field '%s' (did you mean '%s'?)",
					 show, dym);
		for (k = 0; k < n; k++)
			buf_printf(&list, "%s%s", k ? ", " : "", allowed[k]);
		rc = stage_err(err, where, "unknown field '%s' (expected one of: %s)",
			       show, buf_str(&list));
		buf_free(&list);
		return rc;
	}
	return 0;
}

static int one_swap(const char *a, const char *b)
{
	size_t n = strlen(a), i = 0;

	if (n != strlen(b) || n < 2)
		return 0;
	while (i < n && a[i] == b[i])
		i++;
	return i + 1 < n && a[i] == b[i + 1] && a[i + 1] == b[i] &&
	       !strcmp(a + i + 2, b + i + 2);
}

const char *stage_suggest(const char *word, const char *const *cands,
			  size_t n)
{
	const char *dym = did_you_mean(word, cands, n);

	for (size_t i = 0; !dym && i < n; i++)
		if (one_swap(word, cands[i]))
			dym = cands[i];
	return dym;
}

int stage_want_type(const struct jnode *v, enum jtype t, const char *where,
		    struct err *err)
{
	if (v->type == t)
		return 0;
	return stage_err(err, where, "must be %s, not %s", json_type_article(t),
			 json_type_name(v->type));
}

int stage_get_int(const struct jnode *v, const char *where, long long min,
		  long long max, long long *out, struct err *err)
{
	char num[64];
	long long x;

	if (v->type != J_NUMBER)
		return stage_err(err, where, "must be an integer, not %s",
				 json_type_name(v->type));
	json_format_number(v, num, sizeof(num));
	if (v->is_int) {
		x = v->inum;
	} else {
		/* 2.0 and 1e3 are integers written another way; 1.5 is not.
		 * The range comes first: the cast is only defined inside it. */
		if (v->num < (double)min)
			return stage_err(err, where, "must be an integer >= %lld, not %s",
					 min, num);
		if (v->num > (double)max)
			return stage_err(err, where, "must be an integer <= %lld, not %s",
					 max, num);
		x = (long long)v->num;
		if ((double)x != v->num)
			return stage_err(err, where, "must be an integer, not %s", num);
	}
	if (x < min)
		return stage_err(err, where, "must be an integer >= %lld, not %s", min, num);
	if (x > max)
		return stage_err(err, where, "must be an integer <= %lld, not %s", max, num);
	*out = x;
	return 0;
}

int stage_id_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789_-") == n;
}

int stage_name_valid(const char *s)
{
	size_t n = strlen(s);

	/* At most 63: "STAGE.OUTPUT", an artifact name, stays within 128,
	 * and a path component within NAME_MAX. */
	return n > 0 && n <= 63 && strspn(s, "abcdefghijklmnopqrstuvwxyz"
					  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

int stage_get_resources(const struct jnode *v, const char *where,
			struct resources *res, struct err *err)
{
	static const char *const fields[] = {
		"cpus", "gpus", "npus", "mem_mb", "nodes", "tasks_per_node",
	};
	char *path = NULL;
	int rc;

	rc = stage_want_type(v, J_OBJECT, where, err);
	if (!rc)
		rc = stage_check_fields(v, where, fields, 6, err);
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *f = &v->kids[i];
		long long x = 0;

		free(path);
		path = stage_path(where, f->key);
		if (!strcmp(f->key, "mem_mb")) {
			rc = stage_get_int(f, path, 0, STAGE_MAX_MEM_MB, &x, err);
			res->mem_mb = (long)x;
			continue;
		}
		if (!strcmp(f->key, "nodes") || !strcmp(f->key, "tasks_per_node")) {
			rc = stage_get_int(f, path, 1, !strcmp(f->key, "nodes") ? STAGE_MAX_NODES
						    : STAGE_MAX_CPUS, &x, err);
			*(!strcmp(f->key, "nodes") ? &res->nodes : &res->tasks_per_node) = (int)x;
			continue;
		}
		rc = stage_get_int(f, path, !strcmp(f->key, "cpus"), STAGE_MAX_CPUS,
				   &x, err);
		if (!strcmp(f->key, "cpus"))
			res->cpus = (int)x;
		else if (!strcmp(f->key, "gpus"))
			res->gpus = (int)x;
		else
			res->npus = (int)x;
	}
	free(path);
	return rc;
}

static int get_backoff(const struct jnode *v, const char *where, double *out,
		       struct err *err)
{
	char num[64];
	long long s;

	if (v->type == J_NUMBER) {
		json_format_number(v, num, sizeof(num));
		if (v->num < 0 || v->num > (double)STAGE_MAX_BACKOFF_S)
			return stage_err(err, where,
					 "must be between 0 and %lld seconds, not %s",
					 STAGE_MAX_BACKOFF_S, num);
		*out = v->num;
		return 0;
	}
	if (v->type != J_STRING)
		return stage_err(err, where,
				 "must be a number of seconds or a duration string, not %s",
				 json_type_name(v->type));
	if (parse_duration(v->str, STAGE_MAX_BACKOFF_S, &s)) {
		char show[JSON_SHOW_MAX];
		json_show(v->str, show, sizeof(show));
		return stage_err(err, where,
				 "invalid duration '%s' (e.g. \"10s\", \"1m30s\"; at most 1 day)",
				 show);
	}
	*out = (double)s;
	return 0;
}

int stage_get_retries(const struct jnode *v, const char *where,
		      struct retry_policy *out, struct err *err)
{
	static const char *const fields[] = { "max", "backoff" };
	const struct jnode *f;
	char *path = NULL;
	long long x = 0;
	int rc = 0;

	out->max = 0;
	out->backoff_s = 1.0;
	if (v->type == J_NUMBER) {
		rc = stage_get_int(v, where, 0, STAGE_MAX_RETRIES, &x, err);
		out->max = (int)x;
		return rc;
	}
	if (v->type != J_OBJECT)
		return stage_err(err, where, "must be an integer or an object, not %s",
				 json_type_name(v->type));
	rc = stage_check_fields(v, where, fields, 2, err);
	if (!rc && (f = json_get(v, "max"))) {
		path = stage_path(where, "max");
		rc = stage_get_int(f, path, 0, STAGE_MAX_RETRIES, &x, err);
		out->max = (int)x;
		free(path);
	}
	if (!rc && (f = json_get(v, "backoff"))) {
		path = stage_path(where, "backoff");
		rc = get_backoff(f, path, &out->backoff_s, err);
		free(path);
	}
	return rc;
}

int stage_get_timeout(const struct jnode *v, const char *where,
		      long long *out, struct err *err)
{
	char show[JSON_SHOW_MAX];
	long long s;

	if (v->type == J_NUMBER) {
		json_format_number(v, show, sizeof(show));
		if (v->num <= 0)
			return stage_err(err, where, "must be > 0 seconds, not %s", show);
		if (v->num > (double)STAGE_MAX_TIMEOUT_S)
			return stage_err(err, where,
					 "must be at most 30 days (%lld seconds), not %s",
					 STAGE_MAX_TIMEOUT_S, show);
		if ((double)(long long)v->num != v->num)
			return stage_err(err, where,
					 "must be a whole number of seconds, not %s", show);
		*out = (long long)v->num;
		return 0;
	}
	if (v->type != J_STRING)
		return stage_err(err, where,
				 "must be a number of seconds or a duration string, not %s",
				 json_type_name(v->type));
	json_show(v->str, show, sizeof(show));
	if (parse_duration(v->str, 1LL << 62, &s))
		return stage_err(err, where,
				 "invalid duration '%s' (e.g. \"90s\", \"1h30m\", \"2d\")",
				 show);
	if (s == 0)
		return stage_err(err, where, "must be > 0 seconds, not '%s'", show);
	if (s > STAGE_MAX_TIMEOUT_S)
		return stage_err(err, where, "must be at most 30 days, not '%s'", show);
	*out = s;
	return 0;
}

const struct jnode *stage_param_find(const struct jnode *params,
				     const char *path, char *hint,
				     size_t hint_size)
{
	const struct jnode *node = params;
	const char *p = path;

	if (hint_size)
		hint[0] = '\0';
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		const struct jnode *kid = NULL;
		char *comp = xstrndup(p, n);

		if (node->type == J_OBJECT)
			kid = json_get(node, comp);
		if (!kid && node->type == J_OBJECT && node->nkids && hint_size) {
			const char **keys = xcalloc(node->nkids, sizeof(*keys));
			const char *dym;

			for (size_t i = 0; i < node->nkids; i++)
				keys[i] = node->kids[i].key;
			dym = stage_suggest(comp, keys, node->nkids);
			if (dym)
				snprintf(hint, hint_size, "%.*s%s", (int)(p - path), path, dym);
			free(keys);
		}
		free(comp);
		if (!kid)
			return NULL;
		if (!dot)
			return kid;
		node = kid;
		p = dot + 1;
	}
}

void stage_param_text(const struct jnode *v, struct buf *out)
{
	if (v->type == J_STRING)
		buf_adds(out, v->str);
	else
		json_write(out, v);
}

void stage_param_use(struct strv *used, const char *path)
{
	const char *dot = strchr(path, '.');
	char *top = dot ? xstrndup(path, (size_t)(dot - path)) : xstrdup(path);

	if (strv_find(used, top) < 0)
		strv_push_owned(used, top);
	else
		free(top);
}

int stage_get_param_names(const struct jnode *v, const char *where,
			  const struct jnode *params, struct strv *used,
			  struct err *err)
{
	int rc = stage_want_type(v, J_ARRAY, where, err);

	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *k = &v->kids[i];
		char *path = xasprintf("%s[%zu]", where, i);
		char hint[128], show[JSON_SHOW_MAX];

		if (k->type != J_STRING) {
			rc = stage_err(err, path, "must be a param name, not %s",
				       json_type_name(k->type));
		} else if (!stage_param_find(params, k->str, hint, sizeof(hint))) {
			if (hint[0])
				rc = stage_err(err, path, "no param '%s' (did you mean '%s'?)",
					       json_show(k->str, show, sizeof(show)), hint);
			else
				rc = stage_err(err, path, "no param '%s'",
					       json_show(k->str, show, sizeof(show)));
		} else {
			stage_param_use(used, k->str);
		}
		free(path);
	}
	return rc;
}

char *stage_params_subset(const struct jnode *params, const struct strv *used)
{
	struct buf b = BUF_INIT;
	int first = 1;

	buf_init(&b);
	buf_addc(&b, '{');
	/* In the recipe's order, so that the text (and the cache key) does not
	 * depend on the order of references. */
	for (size_t i = 0; params && i < params->nkids; i++) {
		const struct jnode *k = &params->kids[i];
		if (strv_find(used, k->key) < 0)
			continue;
		if (!first)
			buf_addc(&b, ',');
		first = 0;
		buf_add_json_str(&b, k->key);
		buf_addc(&b, ':');
		json_write(&b, k);
	}
	buf_addc(&b, '}');
	return buf_detach(&b);
}

int stage_get_common(const struct jnode *obj, const char *where,
		     struct step *st, struct stage_out *out, struct err *err)
{
	const struct jnode *v;
	char *path = NULL;
	int rc = 0;

	if ((v = json_get(obj, "after"))) {
		path = stage_path(where, "after");
		rc = stage_want_type(v, J_ARRAY, path, err);
		if (!rc) {
			st->after = xcalloc(v->nkids + 1, sizeof(char *));
			for (size_t i = 0; !rc && i < v->nkids; i++) {
				char *apath = xasprintf("%s[%zu]", path, i);
				rc = stage_want_type(&v->kids[i], J_STRING, apath, err);
				if (!rc) {
					st->after[st->nafter] = xstrdup(v->kids[i].str);
					stage_out_add_ref(out, out->nsteps, 1, st->nafter, apath);
					st->nafter++;
				}
				free(apath);
			}
		}
		free(path);
		path = NULL;
	}
	if (!rc && (v = json_get(obj, "resources"))) {
		path = stage_path(where, "resources");
		rc = stage_get_resources(v, path, &st->res, err);
		free(path);
		path = NULL;
	}
	if (!rc && (v = json_get(obj, "retries"))) {
		path = stage_path(where, "retries");
		rc = stage_get_retries(v, path, &st->retry, err);
		free(path);
		path = NULL;
	}
	if (!rc && (v = json_get(obj, "timeout"))) {
		path = stage_path(where, "timeout");
		rc = stage_get_timeout(v, path, &st->timeout_s, err);
		free(path);
	}
	return rc;
}

int stage_get_weight(const struct jnode *v, const char *where, double *out,
		     struct err *err)
{
	if (v->type != J_NUMBER || !isfinite(v->num) || fabs(v->num) > 1e6)
		return stage_err(err, where, "must be a finite number, not %s",
				 v->type == J_NUMBER ? "that" : json_type_name(v->type));
	*out = v->num;
	return 0;
}

int stage_check_ref(const char *text, const char *where, struct err *err)
{
	char show[JSON_SHOW_MAX];
	struct catalog_ref r;
	struct err perr;

	if (!text[1] || strchr(text + 1, '/') || strlen(text) > 200 ||
	    catalog_ref_parse(text + 1, &r, &perr))
		return stage_err(err, where,
				 "must be '@NAME', '@NAME@N', '@ALIAS' or '@DIGEST', not '%s'",
				 json_show(text, show, sizeof(show)));
	catalog_ref_clear(&r);
	return 0;
}

int stage_get_artifact_name(const struct jnode *v, const char *where,
			    char **out, struct err *err)
{
	char show[JSON_SHOW_MAX];
	int rc = stage_want_type(v, J_STRING, where, err);

	if (rc)
		return rc;
	if (!artifact_name_valid(v->str))
		return stage_err(err, where,
				 "invalid artifact name '%s' (1 to 128 letters, digits, '_', '-' or '.'; no '@' or '/')",
				 json_show(v->str, show, sizeof(show)));
	*out = xstrdup(v->str);
	return 0;
}

void stage_out_export(struct stage_out *o, const char *name, const char *step,
		      const char *output, enum artifact_type type)
{
	o->exports = xrealloc(o->exports, (o->nexports + 1) * sizeof(*o->exports));
	o->exports[o->nexports].name = xstrdup(name);
	o->exports[o->nexports].step = xstrdup(step);
	o->exports[o->nexports].output = xstrdup(output);
	o->exports[o->nexports].type = type;
	o->nexports++;
}

int stage_env_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789_") == n;
}
