/* tests/artifacts/test_gc.c — garbage collection: what stays (latest,
 * tagged, ancestors, unfinished runs, resume points, shared objects, new
 * objects), what goes, dry runs, --prune-intermediate, crash order,
 * checkouts. A real store and state database in a temp dir; after every
 * gc, each artifact that is not pruned must still have all its bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "artifacts/gc.h"
#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/util.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

struct fx {
	char *dir;        /* the test's temp dir */
	char *root;       /* dir/store */
	char *checkouts;  /* dir/store/checkouts */
	struct store *s;
	struct state *st;
	int nsrc;
};

static int setup(void **state)
{
	char tmpl[] = "/tmp/anneal-gc-XXXXXX";
	struct fx *f = xcalloc(1, sizeof(*f));
	struct err e;
	char *db;

	f->dir = xstrdup(mkdtemp(tmpl));
	f->root = fs_join(f->dir, "store");
	f->checkouts = fs_join(f->root, "checkouts");
	assert_int_equal(store_open(&f->s, f->root, &e), 0);
	db = fs_join(f->dir, "state.db");
	assert_int_equal(state_open(db, &f->st, &e), 0);
	free(db);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct err e;

	state_close(f->st);
	store_free(f->s);
	assert_int_equal(fs_remove_tree(f->dir, &e), 0);
	free(f->checkouts);
	free(f->root);
	free(f->dir);
	free(f);
	return 0;
}

/* A source tree with one file per word (file i holds word i), ingested by
 * copy; the manifest is the caller's. */
static void ingest(struct fx *f, const char *const *words, struct manifest *m)
{
	char *src = xasprintf("%s/src%d", f->dir, f->nsrc++);
	struct err e;

	assert_int_equal(fs_mkdir_p(src, 0755, &e), 0);
	for (int i = 0; words[i]; i++) {
		char *p = xasprintf("%s/f%d.bin", src, i);
		assert_int_equal(fs_write_atomic(p, words[i], strlen(words[i]), 0644, &e), 0);
		free(p);
	}
	assert_int_equal(store_ingest_tree(f->s, src, STORE_COPY, 1, m, &e), 0);
	free(src);
}

struct spec {
	const char *name;                  /* NULL: an intermediate */
	int64_t run;                       /* producing run, 0 none */
	const struct lineage_parent *p;
	size_t np;
};

static int64_t reg(struct fx *f, const struct spec *sp, const char *const *words)
{
	struct manifest m = { 0 };
	struct artifact_new a = { 0 };
	char digest[DIGEST_HEX_LEN + 1];
	int64_t id = 0;
	int v, c;
	struct err e;

	ingest(f, words, &m);
	digest_hex(&m.digest, digest);
	a.kind = sp->name ? (sp->run ? AK_OUTPUT : AK_ROOT) : AK_INTERMEDIATE;
	a.name = sp->name;
	a.type = ART_CHECKPOINT;
	a.digest = digest;
	a.manifest = m.text;
	a.bytes = m.bytes;
	a.files = m.n;
	a.run_id = sp->run;
	a.step = sp->run ? "train" : NULL;
	a.attempt = sp->run ? 1 : 0;
	a.engine_step = -1;
	a.step_key = "key";
	a.parents = sp->p;
	a.nparents = sp->np;
	err_clear(&e);
	assert_int_equal(catalog_register(f->st, &a, &id, &v, &c, &e), 0);
	assert_int_equal(c, 1);
	manifest_free(&m);
	return id;
}

#define W(...) ((const char *const[]){ __VA_ARGS__, NULL })

static int64_t named(struct fx *f, const char *name, const char *const *words)
{
	struct spec sp = { .name = name };
	return reg(f, &sp, words);
}

static int has_word(struct fx *f, const char *word)
{
	struct digest d;
	sha256_buf(word, strlen(word), &d);
	return store_has(f->s, &d, NULL);
}

static int pruned(struct fx *f, int64_t id)
{
	struct artifact_info a;
	struct err e;
	int p;

	assert_int_equal(catalog_get(f->st, id, &a, &e), 0);
	p = a.pruned;
	artifact_info_clear(&a);
	return p;
}

/* What audit demands of gc: every artifact that is not pruned has all the
 * objects of its manifest. */
static int check_one(void *ctx, const struct artifact_info *a)
{
	struct fx *f = ctx;
	struct manifest m = { 0 };
	char *text = NULL;
	struct err e;

	if (a->pruned)
		return 0;
	assert_int_equal(catalog_manifest(f->st, a->id, &text, &e), 0);
	assert_int_equal(manifest_parse(text, &m, &e), 0);
	for (size_t i = 0; i < m.n; i++)
		if (!store_has(f->s, &m.v[i].digest, NULL))
			fail_msg("artifact %lld is not pruned but misses %s", (long long)a->id,
				 m.v[i].path);
	manifest_free(&m);
	free(text);
	return 0;
}

static void assert_whole(struct fx *f)
{
	struct err e;
	assert_int_equal(catalog_each(f->st, check_one, f, &e), 0);
}

static struct gc_report gc(struct fx *f, int dry, int prune_intermediate, double start)
{
	/* start 0: a gc that starts a little after the test made everything
	 * (objects changed within a second of gc's start are left alone). */
	struct gc_opts o = { .dry_run = dry, .prune_intermediate = prune_intermediate,
			     .start = start ? start : now_wall() + 5 };
	struct gc_report r;
	struct err e;

	err_clear(&e);
	if (gc_run(f->st, f->s, f->checkouts, &o, &r, &e))
		fail_msg("gc: %s", e.msg);
	assert_whole(f);
	return r;
}

/* A run of one step "train" in the given state. */
static int64_t make_run(struct fx *f, enum run_state s)
{
	char *argv[] = { "engine", NULL };
	struct step step = { .id = "train", .kind = "exec", .argv = argv, .argc = 1,
			     .res = { .cpus = 1 }, .retry = { .max = 0, .backoff_s = 1 } };
	struct run_new rn = { .recipe_name = "r", .runner = "local", .steps = &step,
			      .nsteps = 1 };
	struct err e;
	int64_t id = 0;

	assert_int_equal(state_run_create(f->st, &rn, &id, &e), 0);
	if (s != RUN_RUNNING)
		assert_int_equal(state_run_set_state(f->st, id, s, &e), 0);
	return id;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_gc__old_version_goes_latest_stays(void **state)
{
	struct fx *f = *state;
	int64_t m1 = named(f, "model", W("old-weights", "shared-config"));
	int64_t m2 = named(f, "model", W("new-weights", "shared-config"));
	struct gc_report r = gc(f, 0, 0, 0);

	assert_false(has_word(f, "old-weights"));
	assert_true(has_word(f, "new-weights"));
	/* An object that a kept artifact also names survives its pruned one. */
	assert_true(has_word(f, "shared-config"));
	assert_int_equal(r.objects, 1);
	assert_int_equal(r.bytes, strlen("old-weights"));
	assert_int_equal(r.pruned, 1);
	assert_int_equal(r.artifacts, 2);
	assert_int_equal(r.kept, 1);
	assert_int_equal(r.objects_kept, 2);
	assert_true(pruned(f, m1));
	assert_false(pruned(f, m2));

	/* Nothing more to do the second time. */
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 0);
	assert_int_equal(r.pruned, 0);
}

static void test_gc__tagged_old_version_stays(void **state)
{
	struct fx *f = *state;
	int64_t m1 = named(f, "model", W("champion"));
	struct gc_report r;
	struct err e;

	named(f, "model", W("challenger"));
	named(f, "model", W("latest"));
	assert_int_equal(catalog_tag(f->st, "best", m1, &e), 0);
	r = gc(f, 0, 0, 0);
	assert_true(has_word(f, "champion"));
	assert_false(has_word(f, "challenger"));
	assert_true(has_word(f, "latest"));
	assert_int_equal(r.objects, 1);
	assert_false(pruned(f, m1));
}

static void test_gc__ancestors_of_latest_stay(void **state)
{
	struct fx *f = *state;
	int64_t d1 = named(f, "data", W("data-v1"));
	struct lineage_parent p1[] = { { .id = d1, .role = "data" } };
	struct spec base = { .name = "base", .p = p1, .np = 1 };
	int64_t b1 = reg(f, &base, W("base-v1"));
	struct lineage_parent p2[] = { { .id = b1, .role = "init" } };
	struct spec student = { .name = "student", .p = p2, .np = 1 };
	int64_t s1 = reg(f, &student, W("student-v1"));
	struct gc_report r;

	/* Newer data and a newer base: d1 and b1 are old versions now, but
	 * the latest student descends from them. */
	named(f, "data", W("data-v2"));
	named(f, "base", W("base-v2"));
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 0);
	assert_true(has_word(f, "data-v1"));
	assert_true(has_word(f, "base-v1"));
	assert_false(pruned(f, d1));

	/* A newer student that does not descend from them: now they go. */
	named(f, "student", W("student-v2"));
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 3);
	assert_int_equal(r.pruned, 3);
	assert_false(has_word(f, "data-v1"));
	assert_false(has_word(f, "base-v1"));
	assert_false(has_word(f, "student-v1"));
	assert_true(pruned(f, s1));
}

static void test_gc__dry_run_changes_nothing_and_agrees(void **state)
{
	struct fx *f = *state;
	struct gc_report dry, real;
	int64_t m1, c1;

	m1 = named(f, "model", W("a1", "a2", "shared"));
	named(f, "model", W("b1", "shared"));
	c1 = named(f, "corpus", W("c1"));
	named(f, "corpus", W("c2"));
	(void)c1;
	dry = gc(f, 1, 0, 0);
	assert_true(has_word(f, "a1") && has_word(f, "a2") && has_word(f, "c1"));
	assert_false(pruned(f, m1));
	real = gc(f, 0, 0, 0);
	assert_int_equal(dry.objects, 3);
	assert_int_equal(dry.objects, real.objects);
	assert_int_equal(dry.bytes, real.bytes);
	assert_int_equal(dry.bytes_freed, real.bytes_freed);
	assert_int_equal(dry.pruned, real.pruned);
	assert_int_equal(dry.objects_kept, real.objects_kept);
	assert_int_equal(dry.kept, real.kept);
	assert_false(has_word(f, "a1"));
	assert_true(pruned(f, m1));
}

/* A finished run: checkpoints ck1 <- ck2 (resumed-from), and its output
 * whose parents are the data and ck2. */
struct history {
	int64_t run, data, ck1, ck2, model;
};

static void train(struct fx *f, enum run_state s, struct history *h)
{
	struct lineage_parent pc1[1], pc2[2], pm[2];
	struct spec sp = { 0 };
	struct err e;

	h->run = make_run(f, RUN_RUNNING);
	h->data = named(f, "data", W("tokens"));
	pc1[0] = (struct lineage_parent){ .id = h->data, .role = "data" };
	sp = (struct spec){ .run = h->run, .p = pc1, .np = 1 };
	h->ck1 = reg(f, &sp, W("step-100", "optimizer-100"));
	assert_int_equal(state_checkpoint_add(f->st, h->run, "train", 1, 100, "/ck1", NULL,
					      h->ck1, &e), 0);
	pc2[0] = pc1[0];
	pc2[1] = (struct lineage_parent){ .id = h->ck1, .role = "resumed-from" };
	sp = (struct spec){ .run = h->run, .p = pc2, .np = 2 };
	h->ck2 = reg(f, &sp, W("step-200", "optimizer-200"));
	assert_int_equal(state_checkpoint_add(f->st, h->run, "train", 2, 200, "/ck2", NULL,
					      h->ck2, &e), 0);
	if (s == RUN_SUCCEEDED) {
		pm[0] = pc1[0];
		pm[1] = (struct lineage_parent){ .id = h->ck2, .role = "resumed-from" };
		sp = (struct spec){ .name = "model", .run = h->run, .p = pm, .np = 2 };
		h->model = reg(f, &sp, W("final-weights"));
	}
	if (s != RUN_RUNNING)
		assert_int_equal(state_run_set_state(f->st, h->run, s, &e), 0);
}

static void test_gc__prune_intermediate_keeps_lineage(void **state)
{
	struct fx *f = *state;
	struct history h;
	struct lineage_edge *edges = NULL;
	struct gc_report r;
	size_t n = 0;
	struct err e;
	int seen_ck1 = 0, seen_ck2 = 0;

	train(f, RUN_SUCCEEDED, &h);
	/* Plain gc: the checkpoints are ancestors of the latest model. */
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 0);
	assert_true(has_word(f, "step-100"));

	r = gc(f, 1, 1, 0);
	assert_int_equal(r.objects, 4);
	assert_int_equal(r.pruned, 2);
	assert_true(has_word(f, "step-100"));
	r = gc(f, 0, 1, 0);
	assert_int_equal(r.objects, 4);
	assert_int_equal(r.pruned, 2);
	assert_false(has_word(f, "step-100"));
	assert_false(has_word(f, "optimizer-200"));
	assert_true(has_word(f, "final-weights"));
	assert_true(has_word(f, "tokens"));
	assert_true(pruned(f, h.ck1));
	assert_true(pruned(f, h.ck2));
	assert_false(pruned(f, h.model));

	/* The rows and the lineage stay. */
	assert_int_equal(catalog_lineage(f->st, h.model, 0, 0, &edges, &n, &e), 0);
	for (size_t i = 0; i < n; i++) {
		seen_ck1 |= edges[i].parent == h.ck1;
		seen_ck2 |= edges[i].parent == h.ck2;
		lineage_edge_clear(&edges[i]);
	}
	free(edges);
	assert_true(seen_ck1 && seen_ck2);
	assert_int_equal(n, 5);   /* model<-data, model<-ck2, ck2<-data, ck2<-ck1, ck1<-data */
	{
		char lin[DIGEST_HEX_LEN + 1];
		struct artifact_info a;
		assert_int_equal(catalog_lineage_digest(f->st, h.ck2, lin, &e), 0);
		assert_int_equal(catalog_get(f->st, h.ck2, &a, &e), 0);
		assert_string_equal(lin, a.lineage);
		artifact_info_clear(&a);
	}
}

static void test_gc__unfinished_run_keeps_everything(void **state)
{
	struct fx *f = *state;
	struct history h;
	struct gc_report r;
	struct err e;

	/* Interrupted: no output yet, its checkpoints are nobody's ancestors. */
	train(f, RUN_INTERRUPTED, &h);
	named(f, "data", W("tokens-v2"));   /* the run's input is an old version now */
	r = gc(f, 0, 1, 0);
	assert_int_equal(r.objects, 0);
	assert_true(has_word(f, "step-100"));
	assert_true(has_word(f, "step-200"));
	assert_true(has_word(f, "tokens"));

	/* Running again (resumed): the same. */
	assert_int_equal(state_run_set_state(f->st, h.run, RUN_RUNNING, &e), 0);
	r = gc(f, 0, 1, 0);
	assert_int_equal(r.objects, 0);

	/* Cancelled: only the resume point (and its ancestors) stay. */
	assert_int_equal(state_run_set_state(f->st, h.run, RUN_CANCELLED, &e), 0);
	r = gc(f, 0, 1, 0);
	assert_int_equal(r.objects, 2);
	assert_false(has_word(f, "step-100"));
	assert_true(has_word(f, "step-200"));
	assert_true(has_word(f, "tokens"));
	assert_true(pruned(f, h.ck1));
	assert_false(pruned(f, h.ck2));
}

static void test_gc__succeeded_run_leaves_dead_checkpoints(void **state)
{
	struct fx *f = *state;
	struct history h;
	struct gc_report r;

	/* A run that succeeded without registering an output from them:
	 * checkpoints are nobody's ancestors, nothing resumes them. */
	train(f, RUN_RUNNING, &h);
	{
		struct err e;
		assert_int_equal(state_run_set_state(f->st, h.run, RUN_SUCCEEDED, &e), 0);
	}
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 4);
	assert_int_equal(r.pruned, 2);
	assert_true(has_word(f, "tokens"));
}

static void test_gc__new_objects_stay(void **state)
{
	struct fx *f = *state;
	struct manifest m = { 0 };
	struct gc_report r;
	int64_t m1;

	m1 = named(f, "model", W("v1"));
	named(f, "model", W("v2"));
	/* Objects a run is storing right now: no artifact names them yet. */
	ingest(f, W("in-flight"), &m);
	manifest_free(&m);

	/* A gc that started before these objects were made leaves them. */
	r = gc(f, 0, 0, now_wall() - 3600);
	assert_int_equal(r.objects, 0);
	assert_int_equal(r.young, 3);
	assert_true(has_word(f, "in-flight"));
	assert_true(has_word(f, "v1"));
	assert_false(pruned(f, m1));

	/* Objects whose time lies ahead of gc's start (a clock step, or a
	 * file touched into the future) stay too. */
	{
		struct digest d;
		struct timespec ts[2];
		char *p;
		sha256_buf("in-flight", 9, &d);
		p = store_object_path(f->s, &d);
		clock_gettime(CLOCK_REALTIME, &ts[0]);
		ts[0].tv_sec += 3600;
		ts[1] = ts[0];
		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
		free(p);
	}
	r = gc(f, 0, 0, now_wall() + 60);
	assert_int_equal(r.objects, 1);   /* v1 */
	assert_int_equal(r.young, 1);
	assert_true(has_word(f, "in-flight"));
	assert_false(has_word(f, "v1"));
	assert_true(pruned(f, m1));
}

static int pick_one(void *ctx, const struct catalog_gc_view *now, int64_t **ids, size_t *n,
		    struct err *err)
{
	(void)now;
	(void)err;
	*ids = xcalloc(1, sizeof(**ids));
	(*ids)[0] = *(int64_t *)ctx;
	*n = 1;
	return 0;
}

static void test_gc__marked_before_removed(void **state)
{
	struct fx *f = *state;
	int64_t m1 = named(f, "model", W("v1"));
	struct gc_report r;
	size_t marked = 0;
	struct err e;

	named(f, "model", W("v2"));
	/* A gc that died between its transaction and the removals: the rows
	 * say pruned, the objects are still there. Audit is content (pruned
	 * rows need no bytes); the next gc removes them. */
	assert_int_equal(catalog_gc_prune(f->st, 0, pick_one, &m1, &marked, &e), 0);
	assert_int_equal(marked, 1);
	assert_true(has_word(f, "v1"));
	assert_whole(f);
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 1);
	assert_int_equal(r.pruned, 0);
	assert_false(has_word(f, "v1"));
}

static void test_gc__stale_checkouts_go(void **state)
{
	struct fx *f = *state;
	int64_t m1 = named(f, "model", W("v1"));
	int64_t m2 = named(f, "model", W("v2"));
	char *dirs[2];
	struct gc_report r;
	struct err e;
	int64_t ids[2] = { m1, m2 };

	for (int i = 0; i < 2; i++) {
		struct artifact_info a;
		struct manifest m = { 0 };
		char *text = NULL;
		assert_int_equal(catalog_get(f->st, ids[i], &a, &e), 0);
		assert_int_equal(catalog_manifest(f->st, ids[i], &text, &e), 0);
		assert_int_equal(manifest_parse(text, &m, &e), 0);
		assert_int_equal(fs_mkdir_p(f->checkouts, 0700, &e), 0);
		dirs[i] = fs_join(f->checkouts, a.digest);
		assert_int_equal(store_checkout(f->s, &m, dirs[i], &e), 0);
		manifest_free(&m);
		free(text);
		artifact_info_clear(&a);
	}
	r = gc(f, 1, 0, 0);
	assert_int_equal(r.checkouts, 1);
	assert_true(fs_exists(dirs[0]));
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.checkouts, 1);
	assert_int_equal(r.objects, 1);
	/* The checkout held a link: the object's bytes were not freed by
	 * removing it from objects/, but by removing the checkout. */
	assert_int_equal(r.bytes_freed, 0);
	assert_false(fs_exists(dirs[0]));
	assert_true(fs_exists(dirs[1]));
	free(dirs[0]);
	free(dirs[1]);
}

/* Between gc's snapshot and its transaction, someone tags an old version
 * and registers an artifact that names an object gc meant to remove (an
 * ingest that found it stored already). */
struct meanwhile {
	struct fx *f;
	int64_t tag;
};

static void meanwhile(void *ctx)
{
	struct meanwhile *mw = ctx;
	struct err e;

	assert_int_equal(catalog_tag(mw->f->st, "keep-me", mw->tag, &e), 0);
	named(mw->f, "other", W("m1-b"));
}

static void test_gc__decides_again_on_what_changed_meanwhile(void **state)
{
	struct fx *f = *state;
	int64_t m1 = named(f, "model", W("m1-a", "m1-b"));
	int64_t n1, other;
	struct meanwhile mw = { .f = f };
	struct gc_opts o = { .start = now_wall() + 5, .between = meanwhile, .between_ctx = &mw };
	struct gc_report r;
	struct err e;

	named(f, "model", W("m2"));
	n1 = named(f, "notes", W("n1"));
	named(f, "notes", W("n2"));
	mw.tag = n1;
	err_clear(&e);
	assert_int_equal(gc_run(f->st, f->s, f->checkouts, &o, &r, &e), 0);
	assert_whole(f);
	assert_false(has_word(f, "m1-a"));
	assert_true(has_word(f, "m1-b"));
	assert_true(has_word(f, "n1"));
	assert_true(pruned(f, m1));
	assert_false(pruned(f, n1));
	assert_int_equal(catalog_resolve(f->st, "other", &other, &e), 0);
	assert_false(pruned(f, other));
	assert_int_equal(r.objects, 1);
	assert_int_equal(r.pruned, 1);
}

/* A step that has stored objects and not registered them yet: they stay
 * while its attempt is recorded running, however long ago gc started. */
static void test_gc__running_attempt_keeps_what_it_stores(void **state)
{
	struct fx *f = *state;
	int64_t run = make_run(f, RUN_RUNNING);
	struct attempt_end ae = { .state = ATT_FAILED, .exit_code = 1,
				  .step_state = STEP_FAILED };
	struct manifest m = { 0 };
	struct gc_report r;
	struct err e;

	assert_int_equal(state_attempt_begin(f->st, run, "train", 1, NULL, &e), 0);
	ingest(f, W("half-stored"), &m);
	manifest_free(&m);
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 0);
	assert_int_equal(r.young, 1);
	assert_true(has_word(f, "half-stored"));

	assert_int_equal(state_attempt_end(f->st, run, "train", 1, &ae, &e), 0);
	r = gc(f, 0, 0, 0);
	assert_int_equal(r.objects, 1);
	assert_false(has_word(f, "half-stored"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gc__old_version_goes_latest_stays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__tagged_old_version_stays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__ancestors_of_latest_stay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__dry_run_changes_nothing_and_agrees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__prune_intermediate_keeps_lineage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__unfinished_run_keeps_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__succeeded_run_leaves_dead_checkpoints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__new_objects_stay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__marked_before_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__stale_checkouts_go, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__decides_again_on_what_changed_meanwhile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc__running_attempt_keeps_what_it_stores, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
