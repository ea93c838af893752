/* pipeline/recipe.c — see recipe.h.
 *
 * The order of checks is the order a user fixes things in: the file, JSON
 * syntax, duplicate keys anywhere, the top level, --set, stage ids (all of
 * them, so that a later stage's duplicate id is reported at the
 * duplicate), each stage through its kind, references between stages
 * (through each stage's exports), and last the DAG, for cycles. Messages
 * are built without the file name and get it prepended once, at the end.
 *
 * Stage ids are looked up through a sorted index, so that a recipe with
 * tens of thousands of generated stages costs n log n, not n^2. */
#include "pipeline/recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/util.h"
#include "pipeline/dag.h"
#include "pipeline/json.h"
#include "stages/stage.h"

#define PATH_SHOW_MAX 512

static const char *const top_fields[] = {
	"name", "params", "stages", "engine", "resources", "runner",
};
#define NTOP (sizeof(top_fields) / sizeof(*top_fields))

/* An array of strings (sbatch words). */
static int want_strings(const struct jnode *f, const char *path, struct err *err)
{
	int rc = stage_want_type(f, J_ARRAY, path, err);

	for (size_t k = 0; !rc && k < f->nkids; k++) {
		char *ipath = xasprintf("%s[%zu]", path, k);
		rc = stage_want_type(&f->kids[k], J_STRING, ipath, err);
		free(ipath);
	}
	return rc;
}

/* "runner": "local" | "slurm" | {"type": "slurm", "partition": ..., ...}:
 * where steps run (runners/). Checked here; the CLI's --runner wins. */
static int check_runner(const struct jnode *v, struct err *err)
{
	static const char *const types[] = { "local", "slurm" };
	static const char *const slurm_fields[] = {
		"type", "partition", "account", "qos", "gres", "sbatch", "requeue",
		"signal_grace",
	};
	const struct jnode *t = v, *f;
	int rc;

	if (v->type == J_OBJECT) {
		if ((rc = stage_check_fields(v, "runner", slurm_fields,
					     sizeof(slurm_fields) / sizeof(*slurm_fields), err)))
			return rc;
		if (!(t = json_get(v, "type")))
			return stage_err(err, "runner", "missing field 'type' (local or slurm)");
	} else if (v->type != J_STRING) {
		return stage_err(err, "runner", "must be \"local\", \"slurm\" or an object, not %s",
				 json_type_name(v->type));
	}
	if (t->type != J_STRING || (strcmp(t->str, "local") && strcmp(t->str, "slurm"))) {
		char show[JSON_SHOW_MAX];
		const char *dym = t->type == J_STRING ? stage_suggest(t->str, types, 2) : NULL;
		const char *w = t == v ? "runner" : "runner.type";

		if (t->type != J_STRING)
			return stage_want_type(t, J_STRING, w, err);
		json_show(t->str, show, sizeof(show));
		return dym ? stage_err(err, w, "unknown runner '%s' (did you mean '%s'?)", show, dym)
			   : stage_err(err, w, "unknown runner '%s' (local or slurm)", show);
	}
	if (v->type != J_OBJECT)
		return 0;
	for (size_t i = 0; i < v->nkids; i++) {
		char *path;

		f = &v->kids[i];
		path = stage_path("runner", f->key);
		if (!strcmp(f->key, "sbatch")) {
			rc = want_strings(f, path, err);
		} else if (!strcmp(f->key, "requeue")) {
			rc = stage_want_type(f, J_BOOL, path, err);
		} else if (!strcmp(f->key, "signal_grace")) {
			long long s;
			rc = stage_get_timeout(f, path, &s, err);
		} else {
			rc = stage_want_type(f, J_STRING, path, err);
		}
		free(path);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- duplicate keys ---- */

struct keyidx {
	const char *key;
	size_t i;
};

static int keyidx_cmp(const void *a, const void *b)
{
	const struct keyidx *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Index of the first member of obj whose key appeared before, or -1. */
static long first_dup(const struct jnode *obj)
{
	struct keyidx *ks;
	long best = -1;

	if (obj->nkids < 2)
		return -1;
	ks = xcalloc(obj->nkids, sizeof(*ks));
	for (size_t i = 0; i < obj->nkids; i++) {
		ks[i].key = obj->kids[i].key;
		ks[i].i = i;
	}
	qsort(ks, obj->nkids, sizeof(*ks), keyidx_cmp);
	for (size_t i = 1; i < obj->nkids; i++)
		if (!strcmp(ks[i].key, ks[i - 1].key) &&
		    (best < 0 || ks[i].i < (size_t)best))
			best = (long)ks[i].i;
	free(ks);
	return best;
}

/* What follows "stages" in the path of stages[i]: `[2] ("train")` once
 * the id is known to be valid, else `[2]`. */
static char *stage_suffix(const struct jnode *stage, size_t i)
{
	const struct jnode *id = json_get(stage, "id");

	if (stage->type == J_OBJECT && id && id->type == J_STRING &&
	    stage_id_valid(id->str))
		return xasprintf("[%zu] (\"%s\")", i, id->str);
	return xasprintf("[%zu]", i);
}

/* Rejects duplicate keys in n and below; path holds n's JSON path. */
static int check_dups(const struct jnode *n, struct buf *path, int top,
		      struct err *err)
{
	char show[JSON_SHOW_MAX];
	size_t len = path->len;
	long d;
	int rc = 0;

	if (n->type == J_OBJECT && (d = first_dup(n)) >= 0)
		return stage_err(err, buf_str(path), "duplicate key '%s'",
				 json_show(n->kids[d].key, show, sizeof(show)));
	for (size_t i = 0; !rc && i < n->nkids; i++) {
		const struct jnode *k = &n->kids[i];

		if (k->type != J_OBJECT && k->type != J_ARRAY)
			continue;
		if (n->type == J_OBJECT) {
			if (len)
				buf_addc(path, '.');
			buf_adds(path, json_show(k->key, show, sizeof(show)));
		} else if (top == 2) {
			char *suffix = stage_suffix(k, i);
			buf_adds(path, suffix);
			free(suffix);
		} else {
			buf_printf(path, "[%zu]", i);
		}
		rc = check_dups(k, path, top == 1 && k->key && !strcmp(k->key, "stages")
				? 2 : 0, err);
		path->len = len;
		path->ptr[len] = '\0';
	}
	return rc;
}

/* Param names: not empty, no '.' (it separates nested names). */
static int check_param_names(const struct jnode *n, const char *where,
			     struct err *err)
{
	char show[JSON_SHOW_MAX];
	int rc = 0;

	if (n->type != J_OBJECT)
		return 0;
	for (size_t i = 0; !rc && i < n->nkids; i++) {
		const char *key = n->kids[i].key;
		char *path;

		if (!*key || strchr(key, '.'))
			return stage_err(err, where,
					 "invalid param name '%s' (names cannot be empty or contain '.')",
					 json_show(key, show, sizeof(show)));
		path = stage_path(where, json_show(key, show, sizeof(show)));
		rc = check_param_names(&n->kids[i], path, err);
		free(path);
	}
	return rc;
}

/* ---- --set ---- */

static int set_value(const struct jnode *old, const char *value,
		     const char *show, struct jnode **out, struct err *err)
{
	struct jnode *n = NULL;
	struct err perr;
	size_t bad;
	int rc = 0;

	*out = NULL;
	switch (old->type) {
	case J_STRING:
		if (json_utf8_check(value, strlen(value), &bad))
			return stage_err(err, "", "--set '%s': not valid UTF-8", show);
		n = xcalloc(1, sizeof(*n));
		n->type = J_STRING;
		n->str = xstrdup(value);
		break;
	case J_BOOL:
		if (strcmp(value, "true") && strcmp(value, "false"))
			return stage_err(err, "", "--set '%s': not a boolean (true or false)", show);
		n = xcalloc(1, sizeof(*n));
		n->type = J_BOOL;
		n->boolean = !strcmp(value, "true");
		break;
	case J_NUMBER:
		if (json_parse(value, strlen(value), 0, &n, &perr) ||
		    n->type != J_NUMBER) {
			rc = stage_err(err, "", "--set '%s': not %s", show,
				       old->is_int ? "an integer" : "a number");
			break;
		}
		if (old->is_int && !n->is_int)
			rc = stage_err(err, "", "--set '%s': not an integer", show);
		break;
	case J_ARRAY:
	case J_OBJECT: {
		const char *what = old->type == J_ARRAY ? "a JSON array" : "a JSON object";
		if (json_parse(value, strlen(value), 0, &n, &perr)) {
			rc = stage_err(err, "", "--set '%s': not %s (%s)", show, what,
				       perr.msg);
			break;
		}
		if (n->type != old->type)
			rc = stage_err(err, "", "--set '%s': not %s (got %s)", show, what,
				       json_type_name(n->type));
		break;
	}
	case J_NULL:
		/* No type to follow: JSON if it parses, else a string. */
		if (json_parse(value, strlen(value), 0, &n, &perr)) {
			if (json_utf8_check(value, strlen(value), &bad))
				return stage_err(err, "", "--set '%s': not valid UTF-8", show);
			n = xcalloc(1, sizeof(*n));
			n->type = J_STRING;
			n->str = xstrdup(value);
		}
		break;
	}
	if (rc) {
		json_free(n);
		return rc;
	}
	*out = n;
	return 0;
}

static int apply_set(struct jnode *params, const char *kv, struct err *err)
{
	char show[JSON_SHOW_MAX], kshow[JSON_SHOW_MAX], hint[256], hshow[JSON_SHOW_MAX];
	const char *eq = strchr(kv, '=');
	struct jnode *node, *n = NULL;
	struct buf path = BUF_INIT;
	char *key;
	int rc;

	json_show(kv, show, sizeof(show));
	if (!eq || eq == kv)
		return stage_err(err, "", "--set '%s': expected KEY=VALUE", show);
	key = xstrndup(kv, (size_t)(eq - kv));
	json_show(key, kshow, sizeof(kshow));
	/* The recipe owns params; the lookup's const is for readers. */
	node = (struct jnode *)stage_param_find(params, key, hint, sizeof(hint));
	if (!node) {
		if (hint[0])
			rc = stage_err(err, "", "--set '%s': no such param (did you mean '%s'?)",
				       kshow, json_show(hint, hshow, sizeof(hshow)));
		else
			rc = stage_err(err, "", "--set '%s': no such param", kshow);
		goto done;
	}
	rc = set_value(node, eq + 1, show, &n, err);
	if (rc)
		goto done;
	/* A new object must pass what the file's objects passed. */
	buf_printf(&path, "--set '%s'", show);
	rc = check_dups(n, &path, 0, err);
	if (!rc)
		rc = check_param_names(n, buf_str(&path), err);
	if (rc)
		goto done;
	json_replace(node, n);
	n = NULL;
done:
	json_free(n);
	buf_free(&path);
	free(key);
	return rc;
}

/* ---- stages ---- */

struct stage_idx {
	const char *id;
	size_t i;
};

static int stage_idx_cmp(const void *a, const void *b)
{
	const struct stage_idx *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

struct stages {
	size_t n;
	char **ids;             /* validated ids, by stage index */
	char **where;           /* `stages[i] ("id")` */
	struct stage_out *outs;
	struct stage_idx *idx;  /* sorted by id */
};

static void stages_free(struct stages *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->ids ? s->ids[i] : NULL);
		free(s->where ? s->where[i] : NULL);
		stage_out_clear(s->outs ? &s->outs[i] : NULL);
	}
	free(s->ids);
	free(s->where);
	free(s->outs);
	free(s->idx);
}

/* Index of the stage with this id, or -1. */
static long stage_lookup(const struct stages *s, const char *id)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->idx[mid].id, id);
		if (c == 0) {
			/* Ids are unique by now; any match is the one. */
			return (long)s->idx[mid].i;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Pass 1: every stage is an object with a valid, unique id. */
static int check_ids(const struct jnode *arr, struct stages *s, struct err *err)
{
	char show[JSON_SHOW_MAX];
	long dup = -1;
	size_t first = 0;

	for (size_t i = 0; i < arr->nkids; i++) {
		const struct jnode *st = &arr->kids[i], *id;
		char where[64], path[80];

		snprintf(where, sizeof(where), "stages[%zu]", i);
		snprintf(path, sizeof(path), "stages[%zu].id", i);
		if (stage_want_type(st, J_OBJECT, where, err))
			return ERR_INVALID;
		id = json_get(st, "id");
		if (!id)
			return stage_err(err, where, "missing field 'id'");
		if (stage_want_type(id, J_STRING, path, err))
			return ERR_INVALID;
		if (!stage_id_valid(id->str))
			return stage_err(err, path,
					 "invalid id '%s' (use 1 to 64 letters, digits, '_' or '-'; no dots)",
					 json_show(id->str, show, sizeof(show)));
		s->ids[i] = xstrdup(id->str);
		s->where[i] = xasprintf("stages[%zu] (\"%s\")", i, id->str);
		s->idx[i].id = s->ids[i];
		s->idx[i].i = i;
	}
	qsort(s->idx, s->n, sizeof(*s->idx), stage_idx_cmp);
	for (size_t k = 1; k < s->n; k++)
		if (!strcmp(s->idx[k].id, s->idx[k - 1].id) &&
		    (dup < 0 || s->idx[k].i < (size_t)dup)) {
			size_t f = k - 1;
			while (f > 0 && !strcmp(s->idx[f - 1].id, s->idx[k].id))
				f--;
			dup = (long)s->idx[k].i;
			first = s->idx[f].i;
		}
	if (dup >= 0)
		return stage_err(err, "", "stages[%ld]: duplicate id '%s' (first at stages[%zu])",
				 dup, s->ids[dup], first);
	return 0;
}

/* A stage's "slurm" object: its own partition, account, qos and extra
 * sbatch words, for every step it expands to (used by the Slurm runner). */
static int check_stage_slurm(const struct jnode *v, const char *where, struct err *err)
{
	static const char *const fields[] = { "partition", "account", "qos", "sbatch" };
	int rc = stage_want_type(v, J_OBJECT, where, err);

	if (!rc)
		rc = stage_check_fields(v, where, fields, 4, err);
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *f = &v->kids[i];
		char *path = stage_path(where, f->key);

		if (!strcmp(f->key, "sbatch")) {
			rc = want_strings(f, path, err);
		} else {
			rc = stage_want_type(f, J_STRING, path, err);
		}
		free(path);
	}
	return rc;
}

/* st without its "slurm" member (a kind does not know it). */
static struct jnode *without_slurm(const struct jnode *st)
{
	struct jnode *copy = xcalloc(1, sizeof(*copy));

	copy->type = J_OBJECT;
	copy->kids = xcalloc(st->nkids, sizeof(*copy->kids));
	for (size_t i = 0; i < st->nkids; i++) {
		struct jnode *c;

		if (!strcmp(st->kids[i].key, "slurm"))
			continue;
		c = json_clone(&st->kids[i]);
		copy->kids[copy->nkids++] = *c;
		free(c);
	}
	return copy;
}

/* Pass 2: each stage through its kind. */
static int expand_stages(const struct jnode *arr, const struct stage_ctx *ctx,
			 struct stages *s, struct err *err)
{
	size_t nnames;
	const char *const *names = stage_kind_names(&nnames);
	char show[JSON_SHOW_MAX];
	int rc = 0;

	for (size_t i = 0; !rc && i < s->n; i++) {
		const struct jnode *st = &arr->kids[i], *kind;
		const struct stage_kind *k = NULL;
		char *path;

		kind = json_get(st, "kind");
		if (!kind)
			return stage_err(err, s->where[i], "missing field 'kind'");
		path = stage_path(s->where[i], "kind");
		rc = stage_want_type(kind, J_STRING, path, err);
		if (!rc && !(k = stage_kind_find(kind->str))) {
			const char *dym = stage_suggest(kind->str, names, nnames);
			struct buf list = BUF_INIT;

			json_show(kind->str, show, sizeof(show));
			for (size_t j = 0; j < nnames; j++)
				buf_printf(&list, "%s%s", j ? ", " : "", names[j]);
			if (dym)
				rc = stage_err(err, path, "unknown kind '%s' (did you mean '%s'?)",
					       show, dym);
			else
				rc = stage_err(err, path, "unknown kind '%s' (known kinds: %s)",
					       show, buf_str(&list));
			buf_free(&list);
		}
		free(path);
		if (!rc && json_get(st, "slurm")) {
			const struct jnode *sl = json_get(st, "slurm");
			struct jnode *copy;
			struct buf b = BUF_INIT;

			path = stage_path(s->where[i], "slurm");
			rc = check_stage_slurm(sl, path, err);
			free(path);
			if (rc)
				break;
			copy = without_slurm(st);
			rc = k->expand(ctx, copy, s->ids[i], s->where[i], &s->outs[i], err);
			json_free(copy);
			json_write(&b, sl);
			for (size_t j = 0; !rc && j < s->outs[i].nsteps; j++) {
				free(s->outs[i].steps[j].runner_json);
				s->outs[i].steps[j].runner_json = xstrdup(buf_str(&b));
			}
			buf_free(&b);
		} else if (!rc) {
			rc = k->expand(ctx, st, s->ids[i], s->where[i], &s->outs[i], err);
		}
	}
	return rc;
}

static int no_stage(const struct stages *s, const char *where, const char *id,
		    struct err *err)
{
	char show[JSON_SHOW_MAX];
	const char *dym = stage_suggest(id, (const char *const *)s->ids, s->n);

	json_show(id, show, sizeof(show));
	if (dym)
		return stage_err(err, where, "no stage '%s' (did you mean '%s'?)", show, dym);
	return stage_err(err, where, "no stage '%s'", show);
}

static int resolve_input(const struct stages *s, struct step_input *in,
			 const char *where, struct err *err)
{
	char show[JSON_SHOW_MAX];
	const struct stage_out *o;
	const char **names;
	const char *dym;
	char *stage = NULL, *want = NULL;
	long t, k = 0;

	/* "STAGE[K].OUTPUT": iteration K's output, exported as "K.OUTPUT" */
	const char *br = strchr(in->from_step, '[');
	if (br) {
		size_t n = strlen(br);
		char *end;
		k = br[1] >= '1' && br[1] <= '9' ? strtol(br + 1, &end, 10) : 0;

		if (k <= 0 || n < 3 || end != br + n - 1 || *end != ']') {
			json_show(in->from_step, show, sizeof(show));
			return stage_err(err, where, "bad iteration in '%s' (write 'stage[N].output', N >= 1)",
					 show);
		}
		stage = xstrndup(in->from_step, (size_t)(br - in->from_step));
		want = xasprintf("%ld.%s", k, in->from_output);
	}
	t = stage_lookup(s, stage ? stage : in->from_step);
	if (t < 0) {
		int rc = no_stage(s, where, stage ? stage : in->from_step, err);
		free(stage);
		free(want);
		return rc;
	}
	if (want) {
		o = &s->outs[t];
		for (size_t i = 0; i < o->nexports; i++)
			if (!strcmp(o->exports[i].name, want)) {
				free(in->from_step);
				free(in->from_output);
				in->from_step = xstrdup(o->exports[i].step);
				in->from_output = xstrdup(o->exports[i].output);
				free(stage);
				free(want);
				return 0;
			}
		json_show(in->from_output, show, sizeof(show));
		int rc = stage_err(err, where, "stage '%s' has no output '%s' for iteration %ld",
				   s->ids[t], show, k);
		free(stage);
		free(want);
		return rc;
	}
	o = &s->outs[t];
	for (size_t i = 0; i < o->nexports; i++)
		if (!strcmp(o->exports[i].name, in->from_output)) {
			free(in->from_step);
			free(in->from_output);
			in->from_step = xstrdup(o->exports[i].step);
			in->from_output = xstrdup(o->exports[i].output);
			return 0;
		}
	json_show(in->from_output, show, sizeof(show));
	if (o->nexports == 0)
		return stage_err(err, where, "stage '%s' has no outputs (asked for '%s')",
				 s->ids[t], show);
	names = xcalloc(o->nexports, sizeof(*names));
	for (size_t i = 0; i < o->nexports; i++)
		names[i] = o->exports[i].name;
	dym = stage_suggest(in->from_output, names, o->nexports);
	free(names);
	if (dym)
		return stage_err(err, where, "stage '%s' has no output '%s' (did you mean '%s'?)",
				 s->ids[t], show, dym);
	return stage_err(err, where, "stage '%s' has no output '%s'", s->ids[t], show);
}

struct after_ref {
	long stage;
	size_t pos;
};

static int after_ref_cmp(const void *a, const void *b)
{
	const struct after_ref *x = a, *y = b;

	if (x->stage != y->stage)
		return x->stage < y->stage ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The user's after[] entries of steps[k] of stage i (stage ids) become
 * every step of those stages, each stage once; the kind's own entries
 * (step ids) stay. Repeats are found by sorting stage indexes, so that a
 * join after 30000 stages costs n log n. */
static int resolve_after(const struct stages *s, size_t i, size_t k,
			 struct err *err)
{
	const struct stage_out *o = &s->outs[i];
	struct step *st = &o->steps[k];
	struct after_ref *refs = NULL;
	const char **where = NULL;
	struct strv ids = STRV_INIT;
	size_t nrefs = 0;
	char *skip = NULL;
	int rc = 0;

	if (st->nafter == 0)
		return 0;
	where = xcalloc(st->nafter, sizeof(*where));
	for (size_t r = 0; r < o->nrefs; r++)
		if (o->refs[r].is_after && o->refs[r].step == k &&
		    o->refs[r].index < st->nafter)
			where[o->refs[r].index] = o->refs[r].where;
	refs = xcalloc(st->nafter, sizeof(*refs));
	skip = xcalloc(st->nafter, 1);
	for (size_t j = 0; j < st->nafter; j++) {
		long t;

		if (!where[j])
			continue;
		t = stage_lookup(s, st->after[j]);
		if (t < 0) {
			rc = no_stage(s, where[j], st->after[j], err);
			goto done;
		}
		refs[nrefs].stage = t;
		refs[nrefs].pos = j;
		nrefs++;
	}
	qsort(refs, nrefs, sizeof(*refs), after_ref_cmp);
	for (size_t j = 1; j < nrefs; j++)
		if (refs[j].stage == refs[j - 1].stage)
			skip[refs[j].pos] = 1;
	for (size_t j = 0; j < st->nafter; j++) {
		long t;

		if (skip[j])
			continue;
		if (!where[j]) {
			strv_push(&ids, st->after[j]);
			continue;
		}
		t = stage_lookup(s, st->after[j]);
		for (size_t m = 0; m < s->outs[t].nsteps; m++)
			strv_push(&ids, s->outs[t].steps[m].id);
	}
	for (size_t j = 0; j < st->nafter; j++)
		free(st->after[j]);
	free(st->after);
	st->after = ids.v;
	st->nafter = ids.n;
	ids.v = NULL;
	ids.n = 0;
done:
	strv_free(&ids);
	free(where);
	free(refs);
	free(skip);
	return rc;
}

static int resolve_refs(struct stages *s, struct err *err)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stage_out *o = &s->outs[i];

		for (size_t r = 0; r < o->nrefs; r++) {
			const struct stage_ref *ref = &o->refs[r];

			if (ref->is_after || ref->step >= o->nsteps ||
			    ref->index >= o->steps[ref->step].ninputs)
				continue;
			if (resolve_input(s, &o->steps[ref->step].inputs[ref->index],
					  ref->where, err))
				return ERR_INVALID;
		}
		for (size_t k = 0; k < o->nsteps; k++)
			if (resolve_after(s, i, k, err))
				return ERR_INVALID;
	}
	return 0;
}

static int build_steps(struct recipe *r, const struct jnode *arr,
		       struct err *err)
{
	struct stage_ctx ctx = { r->path, r->params, r->engine, r->defaults };
	struct stages s = {0};
	struct dag *dag = NULL;
	size_t total = 0, at = 0;
	int rc;

	s.n = arr->nkids;
	s.ids = xcalloc(s.n, sizeof(*s.ids));
	s.where = xcalloc(s.n, sizeof(*s.where));
	s.outs = xcalloc(s.n, sizeof(*s.outs));
	s.idx = xcalloc(s.n, sizeof(*s.idx));
	rc = check_ids(arr, &s, err);
	if (!rc)
		rc = expand_stages(arr, &ctx, &s, err);
	if (!rc)
		rc = resolve_refs(&s, err);
	if (rc)
		goto done;
	for (size_t i = 0; i < s.n; i++)
		total += s.outs[i].nsteps;
	r->steps = xcalloc(total, sizeof(*r->steps));
	for (size_t i = 0; i < s.n; i++) {
		for (size_t k = 0; k < s.outs[i].nsteps; k++)
			r->steps[at++] = s.outs[i].steps[k];
		s.outs[i].nsteps = 0;   /* moved */
	}
	r->nsteps = total;
	rc = dag_build(r->steps, r->nsteps, &dag, err);
	if (rc)
		err_prefix(err, "stages");
done:
	dag_free(dag);
	stages_free(&s);
	return rc ? ERR_INVALID : 0;
}

/* ---- top level ---- */

static int parse_top(struct recipe *r, const struct jnode *doc,
		     const struct strv *sets, struct err *err)
{
	const struct jnode *v, *stages;
	struct buf path = BUF_INIT;
	struct buf pj = BUF_INIT;
	int rc;

	if (doc->type != J_OBJECT)
		return stage_err(err, "", "must be a JSON object at the top level, not %s",
				 json_type_name(doc->type));
	rc = check_dups(doc, &path, 1, err);
	buf_free(&path);
	if (rc)
		return rc;
	if ((rc = stage_check_fields(doc, "", top_fields, NTOP, err)))
		return rc;

	if (!(v = json_get(doc, "name")))
		return stage_err(err, "", "missing field 'name'");
	if ((rc = stage_want_type(v, J_STRING, "name", err)))
		return rc;
	if (!v->str[0])
		return stage_err(err, "name", "must not be empty");
	r->name = xstrdup(v->str);

	if ((v = json_get(doc, "params"))) {
		if ((rc = stage_want_type(v, J_OBJECT, "params", err)) ||
		    (rc = check_param_names(v, "params", err)))
			return rc;
		r->params = json_clone(v);
		free(r->params->key);
		r->params->key = NULL;
	} else {
		r->params = xcalloc(1, sizeof(*r->params));
		r->params->type = J_OBJECT;
	}
	if ((v = json_get(doc, "engine"))) {
		r->engine = json_clone(v);
		free(r->engine->key);
		r->engine->key = NULL;
	}
	if ((v = json_get(doc, "runner"))) {
		if ((rc = check_runner(v, err)))
			return rc;
		r->runner = json_clone(v);
		free(r->runner->key);
		r->runner->key = NULL;
	}
	r->defaults.cpus = 1;
	if ((v = json_get(doc, "resources")) &&
	    (rc = stage_get_resources(v, "resources", &r->defaults, err)))
		return rc;

	if (!(stages = json_get(doc, "stages")))
		return stage_err(err, "", "missing field 'stages'");
	if (stages->type != J_ARRAY)
		return stage_err(err, "stages", "must be an array of stage objects, not %s",
				 json_type_name(stages->type));
	if (stages->nkids == 0)
		return stage_err(err, "stages", "must not be empty");

	for (size_t i = 0; sets && i < sets->n; i++)
		if ((rc = apply_set(r->params, sets->v[i], err)))
			return rc;
	json_write(&pj, r->params);
	r->params_json = buf_detach(&pj);

	return build_steps(r, stages, err);
}

int recipe_parse(const char *path, const char *text, size_t len,
		 const struct strv *sets, struct recipe **out, struct err *err)
{
	struct recipe *r = xcalloc(1, sizeof(*r));
	struct jnode *doc = NULL;
	struct digest d;
	char show[PATH_SHOW_MAX];
	int rc;

	*out = NULL;
	r->path = xstrdup(path);
	r->text = xmalloc(len + 1);
	memcpy(r->text, text, len);
	r->text[len] = '\0';
	r->text_len = len;
	sha256_buf(text, len, &d);
	digest_hex(&d, r->digest);
	if (len == 0) {
		rc = err_set(err, ERR_INVALID, "empty file");
		goto done;
	}
	rc = json_parse(text, len, JSON_COMMENTS, &doc, err);
	if (!rc)
		rc = parse_top(r, doc, sets, err);
	if (rc)
		goto done;
	*out = r;
	r = NULL;
done:
	if (rc && err) {
		err->code = ERR_INVALID;
		err_prefix(err, "%s", json_show(path, show, sizeof(show)));
	}
	json_free(doc);
	recipe_free(r);
	return rc ? ERR_INVALID : 0;
}

int recipe_load(const char *path, const struct strv *sets,
		struct recipe **out, struct err *err)
{
	char show[PATH_SHOW_MAX], msg[ERR_MSG_MAX], *quoted;
	const char *rest;
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	rc = fs_read_file(path, RECIPE_MAX_BYTES, &text, &len, err);
	if (!rc) {
		rc = recipe_parse(path, text, len, sets, out, err);
		free(text);
		return rc;
	}
	/* fs_read_file says "'PATH': what"; recipe errors say "PATH: what". */
	quoted = xasprintf("'%s': ", path);
	rest = err->msg;
	if (!strncmp(rest, quoted, strlen(quoted)))
		rest += strlen(quoted);
	free(quoted);
	if (rc == ERR_SYSTEM)
		snprintf(msg, sizeof(msg), "cannot read: %.900s", rest);
	else
		snprintf(msg, sizeof(msg), "%.900s", rest);
	if (!strcmp(msg, "not a regular file")) {
		struct stat st;
		if (stat(path, &st) == 0)
			snprintf(msg, sizeof(msg), "not a regular file (%s)",
				 S_ISDIR(st.st_mode) ? "a directory"
				 : S_ISFIFO(st.st_mode) ? "a FIFO"
				 : S_ISSOCK(st.st_mode) ? "a socket" : "a device");
	}
	return err_set(err, ERR_INVALID, "%s: %s", json_show(path, show, sizeof(show)), msg);
}

void recipe_free(struct recipe *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->name);
	free(r->text);
	json_free(r->params);
	free(r->params_json);
	json_free(r->engine);
	json_free(r->runner);
	for (size_t i = 0; i < r->nsteps; i++)
		step_clear(&r->steps[i]);
	free(r->steps);
	free(r);
}

long recipe_find_step(const struct recipe *r, const char *id)
{
	for (size_t i = 0; i < r->nsteps; i++)
		if (!strcmp(r->steps[i].id, id))
			return (long)i;
	return -1;
}
