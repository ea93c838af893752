/* bench/lineage/lineage_bench.c — lineage queries on a catalog of
 * 1,000,000 artifacts (issue 3: "<= 50 ms for a depth-50 ancestry in a
 * store of 1,000,000 artifacts"). Driven by bench/lineage/run.sh.
 *
 *   lineage_bench DB [ARTIFACTS] [REPS]
 *
 * Builds the catalog in DB (which must not exist) through anneal's own API
 * (catalog_register_many: the same versions, deduplication and lineage
 * digests as every registration), then times catalog_lineage, the function
 * `anneal lineage` calls.
 *
 * The history is shaped like real training histories. It is made of
 * projects of 1,000 artifacts each: a dataset (a root) and 9 runs of 111
 * steps. Each run is a chain of intra-step checkpoints, each resumed from
 * the one before, ending in a named output (model-P@1..9). A run starts
 * from the project's dataset (role data) and the previous run's model
 * (init); every tenth checkpoint of a run after the first is a merge: two
 * parents with weights (merge-input 0.5 each), the chain's own previous
 * checkpoint and one of the previous run's, 1 to 3 steps further back (so
 * an ancestor can be reached by paths of different lengths, as with real
 * merges). Measured:
 *   ancestry  of the last-but-five checkpoint of a project's last run,
 *             to depth 50 (the target), and whole (informative);
 *   descent   of a project's dataset, whole: its blast radius, every
 *             checkpoint and model of the project (~1,000 artifacts).
 * Each timing is the median of REPS runs (20) after one warm-up, on a
 * project in the middle of the catalog. Prints a small report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

#define PER_PROJECT 1000
#define RUNS 9
#define STEPS 111                 /* RUNS * STEPS + 1 == PER_PROJECT */
#define HEX (DIGEST_HEX_LEN + 1)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Batch index of run r's step i (0-based) within a project. */
static long at(int r, int i)
{
	return 1 + (long)r * STEPS + i;
}

struct slot {
	char digest[HEX];
	char manifest[128];
	char name[32];
	struct lineage_parent p[2];
};

/* Fills the batch of project pj: items[0..PER_PROJECT). Parents within the
 * batch are negative (catalog_register_many: -1 is items[0]). */
static void project(long pj, struct artifact_new *items, struct slot *sl, unsigned *seed)
{
	for (long k = 0; k < PER_PROJECT; k++) {
		struct artifact_new *a = &items[k];
		struct slot *s = &sl[k];
		struct digest d;
		char word[64], fhex[HEX];
		int r = k == 0 ? -1 : (int)((k - 1) / STEPS), i = k == 0 ? -1 : (int)((k - 1) % STEPS);
		size_t np = 0;

		snprintf(word, sizeof(word), "project %ld item %ld", pj, k);
		sha256_buf(word, strlen(word), &d);
		digest_hex(&d, fhex);
		snprintf(s->manifest, sizeof(s->manifest), "%s %zu 644 weights.bin\n", fhex,
			 strlen(word));
		sha256_buf(s->manifest, strlen(s->manifest), &d);
		digest_hex(&d, s->digest);
		memset(a, 0, sizeof(*a));
		a->digest = s->digest;
		a->manifest = s->manifest;
		a->bytes = strlen(word);
		a->files = 1;
		a->engine_step = -1;
		a->recipe_digest = "bench-recipe";
		a->git_commit = "bench-commit";
		if (k == 0) {
			snprintf(s->name, sizeof(s->name), "data-%ld", pj);
			a->kind = AK_ROOT;
			a->name = s->name;
			a->type = ART_DATASET;
			a->origin = "bench";
			continue;
		}
		a->step = "train";
		a->attempt = 1;
		a->step_key = "bench-key";
		a->type = ART_CHECKPOINT;
		if (i == STEPS - 1) {
			snprintf(s->name, sizeof(s->name), "model-%ld", pj);
			a->kind = AK_OUTPUT;
			a->name = s->name;
		} else {
			a->kind = AK_INTERMEDIATE;
			a->engine_step = (i + 1) * 100;
		}
		if (i == 0) {
			s->p[np++] = (struct lineage_parent){ .id = -1, .role = "data" };
			if (r > 0)
				s->p[np++] = (struct lineage_parent){
					.id = -(at(r - 1, STEPS - 1) + 1), .role = "init" };
		} else if (i % 10 == 5 && r > 0) {
			int back = 1 + (int)(rand_r(seed) % 3);
			s->p[np++] = (struct lineage_parent){
				.id = -(at(r, i - 1) + 1), .role = "merge-input",
				.has_weight = 1, .weight = 0.5 };
			s->p[np++] = (struct lineage_parent){
				.id = -(at(r - 1, i - back) + 1), .role = "merge-input",
				.has_weight = 1, .weight = 0.5 };
		} else {
			s->p[np++] = (struct lineage_parent){
				.id = -(at(r, i - 1) + 1), .role = "resumed-from" };
		}
		a->parents = s->p;
		a->nparents = np;
	}
}

/* Median ms of reps walks; *edges: the answer's size. */
static int time_walk(struct state *st, int64_t id, int desc, int depth, int reps,
		     double *ms, size_t *edges, int *maxdepth, struct err *err)
{
	double *t = calloc((size_t)reps, sizeof(*t));
	int ret = 0;

	for (int k = -1; k < reps && !ret; k++) {
		struct lineage_edge *e = NULL;
		size_t n = 0;
		double t0 = now_s();
		ret = catalog_lineage(st, id, desc, depth, &e, &n, err);
		if (k >= 0)
			t[k] = (now_s() - t0) * 1e3;
		*edges = n;
		*maxdepth = 0;
		for (size_t i = 0; i < n; i++) {
			if (e[i].depth > *maxdepth)
				*maxdepth = e[i].depth;
			lineage_edge_clear(&e[i]);
		}
		free(e);
	}
	qsort(t, (size_t)reps, sizeof(*t), cmp_double);
	*ms = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
	free(t);
	return ret;
}

static long long file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

int main(int argc, char **argv)
{
	const char *db;
	long total = 1000000, projects;
	int reps = 20, ret = 0, dmax;
	struct artifact_new *items = NULL;
	struct slot *slots = NULL;
	int64_t *ids = NULL, anc_id, data_id;
	struct state *st = NULL;
	struct err err;
	double t0, build_s, ms;
	size_t n;
	unsigned seed = 42;
	long mid;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: lineage_bench DB [ARTIFACTS] [REPS]\n");
		return 2;
	}
	db = argv[1];
	if (argc > 2)
		total = atol(argv[2]);
	if (argc > 3)
		reps = atoi(argv[3]);
	projects = total / PER_PROJECT;
	if (projects < 1 || reps < 1) {
		fprintf(stderr, "lineage_bench: ARTIFACTS must be >= %d, REPS >= 1\n", PER_PROJECT);
		return 2;
	}
	err_clear(&err);
	if (state_open(db, &st, &err)) {
		fprintf(stderr, "lineage_bench: %s\n", err.msg);
		return 3;
	}
	items = calloc(PER_PROJECT, sizeof(*items));
	slots = calloc(PER_PROJECT, sizeof(*slots));
	ids = calloc(PER_PROJECT, sizeof(*ids));
	mid = projects / 2;
	anc_id = data_id = 0;

	t0 = now_s();
	for (long pj = 0; pj < projects && !ret; pj++) {
		project(pj, items, slots, &seed);
		ret = catalog_register_many(st, items, PER_PROJECT, ids, &err);
		if (pj == mid) {
			data_id = ids[0];
			anc_id = ids[at(RUNS - 1, STEPS - 6)];
		}
		if (pj % 100 == 99)
			fprintf(stderr, "lineage_bench: %ld artifacts (%.0f s)\n",
				(pj + 1) * PER_PROJECT, now_s() - t0);
	}
	build_s = now_s() - t0;
	if (ret) {
		fprintf(stderr, "lineage_bench: build: %s\n", err.msg);
		goto done;
	}
	printf("catalog:   %ld artifacts (%ld projects x (1 dataset + %d runs x %d steps)),"
	       " built in %.1f s (%.0f artifacts/s)\n", projects * PER_PROJECT, projects, RUNS,
	       STEPS, build_s, projects * PER_PROJECT / build_s);
	{
		char wal[4096];
		snprintf(wal, sizeof(wal), "%s-wal", db);
		printf("database:  %.1f MiB (state.db %lld + WAL %lld bytes)\n",
		       (file_size(db) + file_size(wal)) / 1048576.0, file_size(db),
		       file_size(wal));
	}

	if ((ret = time_walk(st, anc_id, 0, 50, reps, &ms, &n, &dmax, &err)))
		goto fail;
	printf("ancestry:  depth 50 of artifact %lld: %zu edges (deepest %d), median %.2f ms"
	       " of %d -> %s (target <= 50 ms)\n", (long long)anc_id, n, dmax, ms, reps,
	       ms <= 50 ? "MET" : "MISSED");
	if ((ret = time_walk(st, anc_id, 0, 0, reps, &ms, &n, &dmax, &err)))
		goto fail;
	printf("ancestry:  whole, of the same: %zu edges (deepest %d), median %.2f ms\n",
	       n, dmax, ms);
	if ((ret = time_walk(st, data_id, 1, 0, reps, &ms, &n, &dmax, &err)))
		goto fail;
	printf("descent:   whole, of dataset %lld: %zu edges (deepest %d), median %.2f ms\n",
	       (long long)data_id, n, dmax, ms);
	printf("ids:       ancestry %lld, dataset %lld\n", (long long)anc_id, (long long)data_id);
	goto done;
fail:
	fprintf(stderr, "lineage_bench: %s\n", err.msg);
done:
	state_close(st);
	free(items);
	free(slots);
	free(ids);
	return ret ? 3 : 0;
}
