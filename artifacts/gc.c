/* artifacts/gc.c — see gc.h.
 *
 * Workload: a catalog of up to millions of artifacts (mostly intra-step
 * checkpoints of a few files each) and a store of up to some hundred
 * thousand objects. Everything is decided in memory: the kept set is a walk
 * of the lineage graph (child -> parents, as arrays indexed like the view)
 * from the roots; the objects are a hash table by digest; each manifest
 * that matters is parsed once per decision.
 *
 * The order of work, for crash safety and for runs that write meanwhile:
 *   1. list the checkouts folder (names only);
 *   2. one read transaction: the catalog view, and the list of objects;
 *   3. decide on that snapshot (a dry run stops here and reports);
 *   4. one write transaction: the catalog view again; decide again on it
 *      (only ever keeping more); mark the losers pruned; commit;
 *   5. remove the objects, each re-checked for a change since gc started;
 *   6. remove the checkouts whose artifacts are all pruned. */
#include "artifacts/gc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/util.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

/* Without a start stamped by the store's filesystem: how far its clock
 * may be behind ours (coarse kernel ticks, a file server's clock). */
#define CLOCK_SLACK_S 1.0

/* One object found in the store. */
struct obj {
	struct digest d;
	uint64_t size;
	unsigned long links;   /* st_nlink when listed */
	int young;             /* changed since gc started: stays */
	int needed;            /* named by an artifact whose bytes stay */
};

/* One checkout folder (store/checkouts/<digest>). */
struct checkout {
	char name[DIGEST_HEX_LEN + 1];
	int artifacts;         /* artifacts with that digest */
	int live;              /* of those, not pruned (after this gc's marks) */
};

struct gc {
	struct store *store;
	const struct gc_opts *o;
	double young_after;
	struct obj *objs;
	size_t nobjs, capobjs;
	size_t *slots;         /* open addressing: object index + 1; 0 empty */
	size_t nslots;         /* a power of two */
	struct checkout *cos;
	size_t ncos;
	struct catalog_gc_view snap;
	unsigned char *needed; /* per snapshot item */
	unsigned char *cand;   /* per snapshot item: would lose bytes */
	uint64_t kept;         /* artifacts kept, at the last decision */
};

/* ---- objects -------------------------------------------------------------- */

static size_t dhash(const struct digest *d)
{
	size_t h;
	memcpy(&h, d->b, sizeof(h));   /* SHA-256 bytes: uniform already */
	return h;
}

static void index_objects(struct gc *g)
{
	g->nslots = 16;
	while (g->nslots < g->nobjs * 2)
		g->nslots *= 2;
	g->slots = xcalloc(g->nslots, sizeof(*g->slots));
	for (size_t i = 0; i < g->nobjs; i++) {
		size_t k = dhash(&g->objs[i].d) & (g->nslots - 1);
		while (g->slots[k])
			k = (k + 1) & (g->nslots - 1);
		g->slots[k] = i + 1;
	}
}

static struct obj *find_obj(const struct gc *g, const struct digest *d)
{
	size_t k = dhash(d) & (g->nslots - 1);

	while (g->slots[k]) {
		struct obj *o = &g->objs[g->slots[k] - 1];
		if (!memcmp(o->d.b, d->b, DIGEST_LEN))
			return o;
		k = (k + 1) & (g->nslots - 1);
	}
	return NULL;
}

static int doomed(const struct obj *o)
{
	return !o->needed && !o->young;
}

static int changed_since(const struct gc *g, const struct stat *sb)
{
	double c = (double)sb->st_ctim.tv_sec + sb->st_ctim.tv_nsec / 1e9;
	double m = (double)sb->st_mtim.tv_sec + sb->st_mtim.tv_nsec / 1e9;
	return (c > m ? c : m) >= g->young_after;
}

static int list_one(void *ctx, const struct store_entry *e)
{
	struct gc *g = ctx;
	struct stat sb;
	struct obj *o;

	/* Strays (bad names, not files) are audit's to report, not gc's. */
	if (e->stray || lstat(e->path, &sb) < 0 || !S_ISREG(sb.st_mode))
		return 0;
	if (g->nobjs == g->capobjs) {
		g->capobjs = g->capobjs ? g->capobjs * 2 : 256;
		g->objs = xrealloc(g->objs, g->capobjs * sizeof(*g->objs));
	}
	o = &g->objs[g->nobjs++];
	memset(o, 0, sizeof(*o));
	o->d = e->digest;
	o->size = (uint64_t)sb.st_size;
	o->links = (unsigned long)sb.st_nlink;
	o->young = changed_since(g, &sb);
	return 0;
}

/* Inside the snapshot's read transaction. */
static int list_store(void *ctx, const struct catalog_gc_view *v, struct err *err)
{
	struct gc *g = ctx;

	/* A step still running may have stored objects it has not registered
	 * yet (a 100 GB checkpoint's first shard, long before the last):
	 * everything changed since the earliest running attempt began stays. */
	if (v->busy_since > 0 && v->busy_since - CLOCK_SLACK_S < g->young_after)
		g->young_after = v->busy_since - CLOCK_SLACK_S;
	return store_list(g->store, list_one, g, err);
}

/* ---- the policy ------------------------------------------------------------- */

static int unfinished(int run_state)
{
	return run_state == RUN_RUNNING || run_state == RUN_INTERRUPTED;
}

/* Kept on its own account, not for being someone's ancestor. */
static int is_root(const struct catalog_gc_item *a)
{
	unsigned live = (1u << RUN_RUNNING) | (1u << RUN_INTERRUPTED);

	if (a->latest || a->tagged || unfinished(a->run_state) || (a->used_by & live))
		return 1;
	/* 'anneal resume' also continues failed and cancelled runs, from
	 * each step's latest checkpoint. */
	return a->resume_point && a->run_state >= 0 && a->run_state != RUN_SUCCEEDED;
}

static size_t item_index(const struct catalog_gc_view *v, int64_t id)
{
	const struct catalog_gc_item *it = catalog_gc_find(v, id);
	return it ? (size_t)(it - v->items) : (size_t)-1;
}

/* 1 per item of v whose bytes stay (malloc'd); *nkept: those kept. */
static unsigned char *decide(const struct catalog_gc_view *v, int prune_intermediate,
			     uint64_t *nkept)
{
	unsigned char *root = xcalloc(v->n + 1, 1);
	unsigned char *kept = xcalloc(v->n + 1, 1);
	size_t *first = xcalloc(v->n + 2, sizeof(*first));
	size_t *par = xcalloc(v->nedges + 1, sizeof(*par));
	size_t *child = xcalloc(v->nedges + 1, sizeof(*child));
	size_t *stack = xcalloc(v->n + 1, sizeof(*stack));
	size_t sp = 0;

	/* Parents of each item, as one array sliced by first[]. */
	for (size_t e = 0; e < v->nedges; e++) {
		size_t c = item_index(v, v->edges[e].child);
		size_t p = item_index(v, v->edges[e].parent);
		child[e] = p == (size_t)-1 ? (size_t)-1 : c;
		par[e] = p;
		if (child[e] != (size_t)-1)
			first[c + 1]++;
	}
	for (size_t i = 0; i < v->n; i++)
		first[i + 1] += first[i];
	{
		size_t *fill = xcalloc(v->n + 1, sizeof(*fill));
		size_t *sorted = xcalloc(v->nedges + 1, sizeof(*sorted));
		for (size_t e = 0; e < v->nedges; e++)
			if (child[e] != (size_t)-1)
				sorted[first[child[e]] + fill[child[e]]++] = par[e];
		free(par);
		par = sorted;
		free(fill);
	}
	for (size_t i = 0; i < v->n; i++)
		if (is_root(&v->items[i])) {
			root[i] = kept[i] = 1;
			stack[sp++] = i;
		}
	while (sp) {
		size_t i = stack[--sp];
		for (size_t k = first[i]; k < first[i + 1]; k++)
			if (!kept[par[k]]) {
				kept[par[k]] = 1;
				stack[sp++] = par[k];
			}
	}
	*nkept = 0;
	for (size_t i = 0; i < v->n; i++) {
		if (prune_intermediate && !root[i] && v->items[i].kind == AK_INTERMEDIATE)
			kept[i] = 0;
		*nkept += kept[i];
	}
	free(root);
	free(first);
	free(par);
	free(child);
	free(stack);
	return kept;
}

/* Marks the objects a manifest names as needed. ERR_INVALID when it does
 * not parse: its objects cannot be told, so nothing may go. */
static int need_manifest(struct gc *g, int64_t id, const char *text, struct err *err)
{
	struct manifest m = { 0 };
	int ret;

	if (!text)
		return 0;
	ret = manifest_parse(text, &m, err);
	if (ret) {
		err_prefix(err, "artifact %lld: its manifest (run 'anneal audit')", (long long)id);
		return ret;
	}
	for (size_t i = 0; i < m.n; i++) {
		struct obj *o = find_obj(g, &m.v[i].digest);
		if (o)
			o->needed = 1;
	}
	manifest_free(&m);
	return 0;
}

/* 1 when an object the manifest names is to go. A manifest that does not
 * parse loses nothing here (audit reports it). */
static int loses_bytes(const struct gc *g, const char *text)
{
	struct manifest m = { 0 };
	struct err e;
	int lose = 0;

	if (!text || manifest_parse(text, &m, &e))
		return 0;
	for (size_t i = 0; i < m.n && !lose; i++) {
		const struct obj *o = find_obj(g, &m.v[i].digest);
		lose = o && doomed(o);
	}
	manifest_free(&m);
	return lose;
}

/* ---- checkouts ----------------------------------------------------------------- */

static int cmp_checkout(const void *a, const void *b)
{
	return strcmp(((const struct checkout *)a)->name, ((const struct checkout *)b)->name);
}

static int is_hex64(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == DIGEST_HEX_LEN;
}

static int list_checkouts(struct gc *g, const char *dir, struct err *err)
{
	DIR *d;
	struct dirent *de;
	size_t cap = 0;

	if (!dir)
		return 0;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : err_sys(err, errno, "cannot read '%s'", dir);
	while ((de = readdir(d))) {
		/* Only whole checkouts: a crashed one's "DIGEST.anneal-tmp.*"
		 * may belong to a checkout in progress. */
		if (!is_hex64(de->d_name))
			continue;
		if (g->ncos == cap) {
			cap = cap ? cap * 2 : 16;
			g->cos = xrealloc(g->cos, cap * sizeof(*g->cos));
		}
		memset(&g->cos[g->ncos], 0, sizeof(*g->cos));
		memcpy(g->cos[g->ncos].name, de->d_name, DIGEST_HEX_LEN);
		g->ncos++;
	}
	closedir(d);
	if (g->ncos)
		qsort(g->cos, g->ncos, sizeof(*g->cos), cmp_checkout);
	return 0;
}

/* Counts, per checkout, the artifacts of v with its digest and those that
 * stay unpruned when the items flagged in mark are pruned. */
static void judge_checkouts(struct gc *g, const struct catalog_gc_view *v,
			    const unsigned char *mark)
{
	for (size_t k = 0; k < g->ncos; k++)
		g->cos[k].artifacts = g->cos[k].live = 0;
	if (!g->ncos)
		return;
	for (size_t i = 0; i < v->n; i++) {
		struct checkout key, *c;
		memcpy(key.name, v->items[i].digest, sizeof(key.name));
		c = bsearch(&key, g->cos, g->ncos, sizeof(*g->cos), cmp_checkout);
		if (!c)
			continue;
		c->artifacts++;
		c->live += !v->items[i].pruned && !mark[i];
	}
}

static int stale(const struct checkout *c)
{
	return c->artifacts > 0 && c->live == 0;
}

/* ---- the write-transaction decision ------------------------------------------------ */

/* Inside catalog_gc_prune's transaction: decides again on now, the catalog
 * as it is at this instant. Only keeps more than the snapshot did. */
static int pick(void *ctx, const struct catalog_gc_view *now, int64_t **ids, size_t *n,
		struct err *err)
{
	struct gc *g = ctx;
	unsigned char *needed = decide(now, g->o->prune_intermediate, &g->kept);
	unsigned char *mark = xcalloc(now->n + 1, 1);
	size_t cap = 0;
	int ret = 0;

	*ids = NULL;
	*n = 0;
	/* First everything that must keep its bytes, then the marks: a mark
	 * is only right once no object it would lose is needed after all. */
	for (size_t i = 0; i < now->n && !ret; i++) {
		const struct catalog_gc_item *x = &now->items[i];
		const struct catalog_gc_item *old = catalog_gc_find(&g->snap, x->id);
		size_t oi;

		if (!old) {
			/* Registered since the snapshot: its objects stay. */
			ret = need_manifest(g, x->id, x->manifest, err);
			continue;
		}
		oi = (size_t)(old - g->snap.items);
		if ((needed[i] && !g->needed[oi]) || (!x->pruned && old->pruned))
			ret = need_manifest(g, x->id, old->manifest, err);
	}
	for (size_t i = 0; i < now->n && !ret; i++) {
		const struct catalog_gc_item *x = &now->items[i];
		const struct catalog_gc_item *old = catalog_gc_find(&g->snap, x->id);

		if (!old || !g->cand[old - g->snap.items] || x->pruned || needed[i] ||
		    !loses_bytes(g, old->manifest))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			*ids = xrealloc(*ids, cap * sizeof(**ids));
		}
		(*ids)[(*n)++] = x->id;
		mark[i] = 1;
	}
	if (!ret)
		judge_checkouts(g, now, mark);
	free(needed);
	free(mark);
	return ret;
}

/* ---- gc ------------------------------------------------------------------------------ */

static void free_gc(struct gc *g)
{
	free(g->objs);
	free(g->slots);
	free(g->cos);
	free(g->needed);
	free(g->cand);
	catalog_gc_view_free(&g->snap);
}

static void count_doomed(const struct gc *g, struct gc_report *r)
{
	for (size_t i = 0; i < g->nobjs; i++) {
		const struct obj *o = &g->objs[i];
		if (doomed(o)) {
			r->objects++;
			r->bytes += o->size;
			if (o->links <= 1)
				r->bytes_freed += o->size;
		} else {
			r->objects_kept++;
			r->bytes_kept += o->size;
			r->young += o->young;
		}
	}
}

/* Removes one doomed object unless it changed since it was listed (an
 * ingest linked it again): then it stays, as young. */
static int remove_obj(struct gc *g, struct obj *o, struct gc_report *r, struct err *err)
{
	char *path = store_object_path(g->store, &o->d);
	struct stat sb;
	int ret = 0;

	if (lstat(path, &sb) < 0)
		goto done;           /* gone already (another gc) */
	if (changed_since(g, &sb)) {
		o->young = 1;
		r->objects_kept++;
		r->bytes_kept += o->size;
		r->young++;
		goto done;
	}
	ret = store_remove_object(g->store, &o->d, err);
	if (ret == ERR_NOTFOUND) {
		ret = 0;
		goto done;
	}
	if (ret)
		goto done;
	r->objects++;
	r->bytes += o->size;
	if (sb.st_nlink <= 1)
		r->bytes_freed += o->size;
done:
	free(path);
	return ret;
}

int gc_fs_now(const char *dir, double *out, struct err *err)
{
	char *path = fs_join(dir, "gc-clock.XXXXXX");
	struct stat sb;
	int fd, ret = 0;

	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		ret = err_sys(err, errno, "cannot create a file in '%s'", dir);
		goto done;
	}
	if (fstat(fd, &sb) < 0)
		ret = err_sys(err, errno, "cannot stat '%s'", path);
	else
		*out = (double)sb.st_ctim.tv_sec + sb.st_ctim.tv_nsec / 1e9;
	unlink(path);
	close(fd);
done:
	free(path);
	return ret;
}

int gc_run(struct state *st, struct store *store, const char *checkouts,
	   const struct gc_opts *o, struct gc_report *out, struct err *err)
{
	struct gc g = { .store = store, .o = o };
	size_t marked = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	g.young_after = o->start > 0 ? o->start : now_wall() - CLOCK_SLACK_S;
	if ((ret = list_checkouts(&g, checkouts, err)))
		goto done;
	/* The listing compares with young_after as it goes: an attempt that
	 * was running before gc started is read, as part of the snapshot,
	 * first. */
	if ((ret = catalog_gc_snapshot(st, list_store, &g, &g.snap, err)))
		goto done;
	index_objects(&g);
	out->artifacts = g.snap.n;

	/* The decision on the snapshot: what a dry run reports. */
	g.needed = decide(&g.snap, o->prune_intermediate, &g.kept);
	g.cand = xcalloc(g.snap.n + 1, 1);
	for (size_t i = 0; i < g.snap.n && !ret; i++)
		if (g.needed[i])
			ret = need_manifest(&g, g.snap.items[i].id, g.snap.items[i].manifest, err);
	if (ret)
		goto done;
	for (size_t i = 0; i < g.snap.n; i++) {
		const struct catalog_gc_item *a = &g.snap.items[i];
		g.cand[i] = !g.needed[i] && !a->pruned && loses_bytes(&g, a->manifest);
		out->pruned += g.cand[i];
	}
	out->kept = g.kept;
	if (o->dry_run) {
		judge_checkouts(&g, &g.snap, g.cand);
		count_doomed(&g, out);
		for (size_t k = 0; k < g.ncos; k++)
			out->checkouts += stale(&g.cos[k]);
		goto done;
	}

	/* Rows first, in one transaction; bytes after. */
	if (o->between)
		o->between(o->between_ctx);
	fault_point("gc-decided");
	ret = catalog_gc_prune(st, g.snap.max_id, pick, &g, &marked, err);
	if (ret)
		goto done;
	fault_point("gc-marked");
	out->pruned = marked;
	out->kept = g.kept;
	for (size_t i = 0; i < g.nobjs && !ret; i++) {
		struct obj *ob = &g.objs[i];
		if (doomed(ob)) {
			ret = remove_obj(&g, ob, out, err);
			fault_point("gc-removed-one");
		} else {
			out->objects_kept++;
			out->bytes_kept += ob->size;
			out->young += ob->young;
		}
	}
	for (size_t k = 0; k < g.ncos && !ret; k++) {
		char *p;
		if (!stale(&g.cos[k]))
			continue;
		p = fs_join(checkouts, g.cos[k].name);
		ret = fs_remove_tree(p, err);
		free(p);
		out->checkouts += !ret;
	}
done:
	free_gc(&g);
	return ret;
}
