/* pipeline/dag.c — see dag.h.
 *
 * Step ids are looked up through a small open-addressing hash so that a
 * 10,000-step DAG builds in linear time. The topological order is Kahn's
 * algorithm with a min-heap on the step index: among ready steps the one
 * declared first goes first, which keeps plans and logs in recipe order. */
#include "pipeline/dag.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"

struct idmap {
	size_t cap;       /* power of two */
	const char **key;
	size_t *val;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void idmap_init(struct idmap *m, size_t n)
{
	m->cap = 16;
	while (m->cap < n * 2)
		m->cap *= 2;
	m->key = xcalloc(m->cap, sizeof(*m->key));
	m->val = xcalloc(m->cap, sizeof(*m->val));
}

/* Returns 0, or 1 if the key was already there (val untouched). */
static int idmap_put(struct idmap *m, const char *k, size_t v)
{
	size_t i = hash_str(k) & (m->cap - 1);

	while (m->key[i]) {
		if (!strcmp(m->key[i], k))
			return 1;
		i = (i + 1) & (m->cap - 1);
	}
	m->key[i] = k;
	m->val[i] = v;
	return 0;
}

static long idmap_get(const struct idmap *m, const char *k)
{
	size_t i = hash_str(k) & (m->cap - 1);

	while (m->key[i]) {
		if (!strcmp(m->key[i], k))
			return (long)m->val[i];
		i = (i + 1) & (m->cap - 1);
	}
	return -1;
}

static void idmap_free(struct idmap *m)
{
	free(m->key);
	free(m->val);
}

static void add_edge(struct dag *d, size_t from, size_t dep, size_t *cap)
{
	for (size_t k = 0; k < d->ndeps[from]; k++)
		if (d->deps[from][k] == dep)
			return;
	if (d->ndeps[from] == cap[from]) {
		cap[from] = cap[from] ? cap[from] * 2 : 4;
		d->deps[from] = xrealloc(d->deps[from], cap[from] * sizeof(size_t));
	}
	d->deps[from][d->ndeps[from]++] = dep;
}

/* Min-heap of indexes. */
static void heap_push(size_t *h, size_t *n, size_t v)
{
	size_t i = (*n)++;
	h[i] = v;
	while (i > 0 && h[(i - 1) / 2] > h[i]) {
		size_t p = (i - 1) / 2, t = h[p];
		h[p] = h[i];
		h[i] = t;
		i = p;
	}
}

static size_t heap_pop(size_t *h, size_t *n)
{
	size_t top = h[0], i = 0;

	h[0] = h[--*n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < *n && h[l] < h[m])
			m = l;
		if (r < *n && h[r] < h[m])
			m = r;
		if (m == i)
			break;
		size_t t = h[m];
		h[m] = h[i];
		h[i] = t;
		i = m;
	}
	return top;
}

/* Finds and names one cycle among the nodes left with unmet deps. */
static void name_cycle(const struct dag *d, const struct step *steps,
		       const size_t *indeg, struct err *err)
{
	size_t *color = xcalloc(d->n, sizeof(size_t)); /* 0 new, 1 on path, 2 done */
	size_t *path = xcalloc(d->n + 1, sizeof(size_t));
	size_t *iter = xcalloc(d->n, sizeof(size_t));
	struct buf b = BUF_INIT;

	for (size_t s = 0; s < d->n; s++) {
		size_t depth = 0;
		if (indeg[s] == 0 || color[s])
			continue;
		path[depth++] = s;
		color[s] = 1;
		while (depth) {
			size_t v = path[depth - 1];
			if (iter[v] < d->ndeps[v]) {
				size_t w = d->deps[v][iter[v]++];
				if (color[w] == 1) {
					/* The cycle is path[k..depth-1] back to w. Edges go
					 * from a step to what it waits for; name it in
					 * execution order: w runs before ... */
					size_t k = 0, len, start = 0;
					while (path[k] != w)
						k++;
					/* cyc[] in execution order, named from the step
					 * the recipe declares first. */
					len = depth - k;
					size_t *cyc = xcalloc(len, sizeof(size_t));
					for (size_t j = 0; j < len; j++)
						cyc[j] = path[depth - 1 - j];
					for (size_t j = 1; j < len; j++)
						if (cyc[j] < cyc[start])
							start = j;
					buf_adds(&b, "dependency cycle: ");
					for (size_t j = 0; j < len; j++)
						buf_printf(&b, "%s -> ", steps[cyc[(start + j) % len]].id);
					buf_adds(&b, steps[cyc[start]].id);
					free(cyc);
					err_set(err, ERR_INVALID, "%s", buf_str(&b));
					goto done;
				}
				if (color[w] == 0) {
					color[w] = 1;
					path[depth++] = w;
				}
			} else {
				color[v] = 2;
				depth--;
			}
		}
	}
	err_set(err, ERR_INVALID, "dependency cycle");
done:
	buf_free(&b);
	free(color);
	free(path);
	free(iter);
}

int dag_build(const struct step *steps, size_t n, struct dag **out,
	      struct err *err)
{
	struct dag *d = xcalloc(1, sizeof(*d));
	struct idmap ids;
	size_t *cap = NULL, *dcap = NULL, *indeg = NULL, *heap = NULL;
	size_t nheap = 0, norder = 0;
	int rc = 0;

	*out = NULL;
	d->n = n;
	d->deps = xcalloc(n, sizeof(*d->deps));
	d->ndeps = xcalloc(n, sizeof(*d->ndeps));
	d->dependents = xcalloc(n, sizeof(*d->dependents));
	d->ndependents = xcalloc(n, sizeof(*d->ndependents));
	d->order = xcalloc(n, sizeof(*d->order));
	cap = xcalloc(n, sizeof(*cap));
	idmap_init(&ids, n);

	for (size_t i = 0; i < n; i++)
		if (idmap_put(&ids, steps[i].id, i)) {
			rc = err_set(err, ERR_INVALID, "duplicate step id '%s'", steps[i].id);
			goto done;
		}
	for (size_t i = 0; i < n; i++) {
		const struct step *s = &steps[i];
		for (size_t k = 0; k < s->ninputs + s->nafter; k++) {
			const char *dep = k < s->ninputs ? s->inputs[k].from_step
							 : s->after[k - s->ninputs];
			long j;
			if (!dep)   /* an input from outside the run (a registered artifact) */
				continue;
			j = idmap_get(&ids, dep);
			if (j < 0) {
				rc = err_set(err, ERR_INVALID,
					     "step '%s': depends on unknown step '%s'", s->id, dep);
				goto done;
			}
			if ((size_t)j == i) {
				rc = err_set(err, ERR_INVALID,
					     "dependency cycle: %s -> %s", s->id, s->id);
				goto done;
			}
			add_edge(d, i, (size_t)j, cap);
		}
	}
	dcap = xcalloc(n, sizeof(*dcap));
	indeg = xcalloc(n, sizeof(*indeg));
	for (size_t i = 0; i < n; i++) {
		indeg[i] = d->ndeps[i];
		for (size_t k = 0; k < d->ndeps[i]; k++) {
			size_t j = d->deps[i][k];
			if (d->ndependents[j] == dcap[j]) {
				dcap[j] = dcap[j] ? dcap[j] * 2 : 4;
				d->dependents[j] = xrealloc(d->dependents[j], dcap[j] * sizeof(size_t));
			}
			d->dependents[j][d->ndependents[j]++] = i;
		}
	}
	heap = xcalloc(n + 1, sizeof(*heap));
	for (size_t i = 0; i < n; i++)
		if (indeg[i] == 0)
			heap_push(heap, &nheap, i);
	while (nheap) {
		size_t v = heap_pop(heap, &nheap);
		d->order[norder++] = v;
		for (size_t k = 0; k < d->ndependents[v]; k++) {
			size_t w = d->dependents[v][k];
			if (--indeg[w] == 0)
				heap_push(heap, &nheap, w);
		}
	}
	if (norder != n) {
		name_cycle(d, steps, indeg, err);
		rc = ERR_INVALID;
		goto done;
	}
	*out = d;
	d = NULL;
done:
	idmap_free(&ids);
	free(cap);
	free(dcap);
	free(indeg);
	free(heap);
	dag_free(d);
	return rc;
}

void dag_free(struct dag *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free(d->deps[i]);
		free(d->dependents[i]);
	}
	free(d->deps);
	free(d->ndeps);
	free(d->dependents);
	free(d->ndependents);
	free(d->order);
	free(d);
}
