/* artifacts/audit.c — see audit.h.
 *
 * Workload: every artifact of a workspace (thousands), each naming a few to
 * thousands of objects; deep audits re-read every stored byte once per
 * object (objects shared by several artifacts are hashed once). */
#include "artifacts/audit.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "pipeline/catalog.h"
#include "pipeline/catalog_audit.h"

/* A set of digests (open addressing), with a flag per entry. */
struct dset {
	struct digest *k;
	unsigned char *used, *flag;
	size_t cap, n;
};

static size_t dslot(const struct dset *s, const struct digest *d)
{
	uint64_t h;
	memcpy(&h, d->b, sizeof(h));   /* SHA-256 bytes are uniform already */
	size_t i = (size_t)h & (s->cap - 1);
	while (s->used[i] && memcmp(s->k[i].b, d->b, DIGEST_LEN))
		i = (i + 1) & (s->cap - 1);
	return i;
}

static void dset_grow(struct dset *s)
{
	struct dset t = { 0 };
	t.cap = s->cap ? s->cap * 2 : 1024;
	t.k = xcalloc(t.cap, sizeof(*t.k));
	t.used = xcalloc(t.cap, 1);
	t.flag = xcalloc(t.cap, 1);
	for (size_t i = 0; i < s->cap; i++)
		if (s->used[i]) {
			size_t j = dslot(&t, &s->k[i]);
			t.k[j] = s->k[i];
			t.used[j] = 1;
			t.flag[j] = s->flag[i];
			t.n++;
		}
	free(s->k);
	free(s->used);
	free(s->flag);
	*s = t;
}

/* Adds d; returns its slot. */
static size_t dset_add(struct dset *s, const struct digest *d)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap)
		dset_grow(s);
	i = dslot(s, d);
	if (!s->used[i]) {
		s->used[i] = 1;
		s->k[i] = *d;
		s->n++;
	}
	return i;
}

static int dset_has(const struct dset *s, const struct digest *d)
{
	return s->cap && s->used[dslot(s, d)];
}

static void dset_free(struct dset *s)
{
	free(s->k);
	free(s->used);
	free(s->flag);
}

struct ctx {
	struct state *st;
	struct store *store;
	int deep;
	struct audit_report *r;
	struct dset referenced;   /* flag: verified already */
	struct err *err;
};

static void add_item(struct audit_item **v, size_t *n, int64_t id, const char *ref,
		     const char *what)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[*n].artifact = id;
	(*v)[*n].ref = xstrdup(ref ? ref : "");
	(*v)[*n].what = xstrdup(what);
	(*n)++;
}

static char *label_of(const struct artifact_info *a)
{
	if (a->name)
		return xasprintf("%s@%d", a->name, a->version);
	return xasprintf("(%s %.12s)", artifact_kind_name(a->kind), a->digest);
}

static void finding(struct ctx *c, const struct artifact_info *a, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finding(struct ctx *c, const struct artifact_info *a, const char *fmt, ...)
{
	char what[1024];
	va_list ap;
	char *ref = a ? label_of(a) : NULL;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	add_item(&c->r->findings, &c->r->nfindings, a ? a->id : 0, ref, what);
	free(ref);
}

static int check_artifact(void *vctx, const struct artifact_info *a)
{
	struct ctx *c = vctx;
	struct manifest m = { 0 };
	char *text = NULL, hex[DIGEST_HEX_LEN + 1], lineage[DIGEST_HEX_LEN + 1];
	struct err e;
	int rc;

	c->r->artifacts++;
	rc = catalog_manifest(c->st, a->id, &text, c->err);
	if (rc)
		return rc;
	if (manifest_parse(text, &m, &e)) {
		finding(c, a, "manifest: %s", e.msg);
	} else {
		digest_hex(&m.digest, hex);
		if (strcmp(hex, a->digest))
			finding(c, a, "manifest hashes to %.12s, not to its digest %.12s", hex,
				a->digest);
		for (size_t i = 0; i < m.n; i++) {
			const struct manifest_entry *me = &m.v[i];
			size_t slot = dset_add(&c->referenced, &me->digest);
			if (a->pruned || c->referenced.flag[slot])
				continue;
			c->referenced.flag[slot] = 1;
			c->r->objects++;
			digest_hex(&me->digest, hex);
			if (store_verify(c->store, &me->digest, me->size, c->deep, &e))
				finding(c, a, "%s (object %.12s): %s", me->path, hex, e.msg);
			else if (c->deep)
				c->r->bytes_hashed += me->size;
		}
	}
	rc = catalog_lineage_digest(c->st, a->id, lineage, c->err);
	if (rc)
		goto done;
	if (strcmp(lineage, a->lineage))
		finding(c, a, "lineage digest does not recompute (recorded %.12s, facts give %.12s):"
			" a recorded fact of it or of an ancestor was changed", a->lineage, lineage);
done:
	manifest_free(&m);
	free(text);
	return rc;
}

static int on_row(void *vctx, int64_t id, const char *what)
{
	struct ctx *c = vctx;
	struct artifact_info a;
	struct err e;

	if (id && catalog_get(c->st, id, &a, &e) == 0) {
		finding(c, &a, "%s", what);
		artifact_info_clear(&a);
	} else {
		char ref[32] = "";
		if (id)
			snprintf(ref, sizeof(ref), "(artifact %lld)", (long long)id);
		add_item(&c->r->findings, &c->r->nfindings, id, ref, what);
	}
	return 0;
}

static int on_object(void *vctx, const struct store_entry *se)
{
	struct ctx *c = vctx;
	char what[512], hex[DIGEST_HEX_LEN + 1];

	if (se->stray) {
		snprintf(what, sizeof(what), "stray file in the store: '%s'", se->path);
		add_item(&c->r->findings, &c->r->nfindings, 0, "", what);
		return 0;
	}
	if (!dset_has(&c->referenced, &se->digest)) {
		digest_hex(&se->digest, hex);
		snprintf(what, sizeof(what), "object %.12s (%" PRIu64 " bytes) is referenced by"
			 " no artifact; 'anneal gc' removes it", hex, se->size);
		add_item(&c->r->notes, &c->r->nnotes, 0, "", what);
	}
	return 0;
}

int audit_run(struct state *st, struct store *store, int64_t only, int deep,
	      struct audit_report *out, struct err *err)
{
	struct ctx c = { st, store, deep, out, { 0 }, err };
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (only) {
		struct lineage_edge *e = NULL;
		size_t ne = 0;
		int64_t *ids;
		size_t nids = 0;

		rc = catalog_lineage(st, only, 0, 0, &e, &ne, err);
		if (rc)
			goto done;
		ids = xcalloc(ne + 1, sizeof(*ids));
		ids[nids++] = only;
		for (size_t i = 0; i < ne; i++) {
			int seen = 0;
			for (size_t k = 0; k < nids; k++)
				seen |= ids[k] == e[i].parent;
			if (!seen)
				ids[nids++] = e[i].parent;
			lineage_edge_clear(&e[i]);
		}
		free(e);
		for (size_t i = 0; i < nids && !rc; i++) {
			struct artifact_info a;
			rc = catalog_get(st, ids[i], &a, err);
			if (!rc)
				rc = check_artifact(&c, &a);
			artifact_info_clear(&a);
		}
		free(ids);
		goto done;
	}
	rc = catalog_each(st, check_artifact, &c, err);
	if (!rc)
		rc = catalog_audit_rows(st, on_row, &c, err);
	if (!rc)
		rc = store_list(store, on_object, &c, err);
done:
	dset_free(&c.referenced);
	return rc;
}

void audit_report_clear(struct audit_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nfindings; i++) {
		free(r->findings[i].ref);
		free(r->findings[i].what);
	}
	free(r->findings);
	for (size_t i = 0; i < r->nnotes; i++) {
		free(r->notes[i].ref);
		free(r->notes[i].what);
	}
	free(r->notes);
	memset(r, 0, sizeof(*r));
}

static void scan_temps(const char *path, int depth, struct audit_report *r)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *sub;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		sub = xasprintf("%s/%s", path, de->d_name);
		if (strstr(de->d_name, ".anneal-tmp.") || strstr(de->d_name, ".anneal-link.")) {
			char *what = xasprintf("'%s' was left by a writer that died; it is safe to remove",
					       sub);
			add_item(&r->notes, &r->nnotes, 0, "", what);
			free(what);
		} else if (depth > 0 && de->d_type == DT_DIR) {
			scan_temps(sub, depth - 1, r);
		}
		free(sub);
	}
	closedir(d);
}

void audit_temp_files(const char *dir, struct audit_report *r)
{
	char *p = xasprintf("%s/store/checkouts", dir);
	DIR *d;
	struct dirent *de;

	scan_temps(p, 0, r);
	free(p);
	p = xasprintf("%s/import", dir);
	if ((d = opendir(p))) {
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
				char *what = xasprintf("import staging '%s/%s' is left over; the next"
						       " import removes it", p, de->d_name);
				add_item(&r->notes, &r->nnotes, 0, "", what);
				free(what);
			}
		closedir(d);
	}
	free(p);
	/* runs/<run>/<step>/{out/<name>,ckpt/<dir>}/...: bounded depth */
	p = xasprintf("%s/runs", dir);
	scan_temps(p, 6, r);
	free(p);
}
