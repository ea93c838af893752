/* tests/artifacts/test_bundle.c — export and import between two temp
 * workspaces (digests, lineage, weights, records without bytes, reuse),
 * and a corpus of hostile archives built here with libarchive: each one
 * refused with its message, leaving no artifact, no object and no staging
 * directory behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "artifacts/bundle.h"
#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

/* A workspace-like pair: a state database and a store. */
struct ws {
	char *dir;
	struct state *st;
	struct store *store;
	char *staging;
};

struct fx {
	char *dir;
	struct ws a, b;
	int64_t data, base, ckpt, student, teacher, merged;
	char *bundle;          /* dir/b.tar.zst */
};

static void ws_open(struct ws *w, const char *parent, const char *name)
{
	struct err e;
	char *db, *root;

	w->dir = fs_join(parent, name);
	assert_int_equal(fs_mkdir_p(w->dir, 0700, &e), 0);
	db = fs_join(w->dir, "state.db");
	root = fs_join(w->dir, "store");
	assert_int_equal(state_open(db, &w->st, &e), 0);
	assert_int_equal(store_open(&w->store, root, &e), 0);
	w->staging = fs_join(w->dir, "import");
	free(db);
	free(root);
}

static void ws_close(struct ws *w)
{
	state_close(w->st);
	store_free(w->store);
	free(w->dir);
	free(w->staging);
	memset(w, 0, sizeof(*w));
}

static void put(const char *dir, const char *rel, const void *data, size_t len)
{
	char *p = fs_join(dir, rel);
	char *slash = strrchr(p, '/');
	struct err e;

	*slash = 0;
	assert_int_equal(fs_mkdir_p(p, 0755, &e), 0);
	*slash = '/';
	assert_int_equal(fs_write_atomic(p, data, len, 0644, &e), 0);
	free(p);
}

/* len bytes no compressor can shrink (so that cutting the bundle cuts data). */
static char *noise(size_t len, uint64_t seed)
{
	char *p = xmalloc(len);
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (char)(x >> 32);
	}
	return p;
}

struct files {
	const char *rel, *text;   /* text NULL: 300 KiB of noise */
};

static int64_t reg(struct fx *f, enum artifact_kind kind, const char *name,
		   const struct files *files, size_t nfiles, const char *step_key,
		   const struct lineage_parent *parents, size_t np, const char *dirty)
{
	static int n;
	char *src = xasprintf("%s/src/%d", f->dir, n++);
	char digest[DIGEST_HEX_LEN + 1];
	struct manifest m = { 0 };
	struct err e;
	int64_t id;
	int v, c;

	for (size_t i = 0; i < nfiles; i++) {
		if (files[i].text) {
			put(src, files[i].rel, files[i].text, strlen(files[i].text));
		} else {
			char *z = noise(300 << 10, (uint64_t)n);
			put(src, files[i].rel, z, 300 << 10);
			free(z);
		}
	}
	assert_int_equal(store_ingest_tree(f->a.store, src, STORE_COPY, 1, &m, &e), 0);
	digest_hex(&m.digest, digest);
	struct artifact_new a = {
		.kind = kind, .name = name,
		.type = kind == AK_ROOT ? ART_DATASET : ART_CHECKPOINT,
		.digest = digest, .manifest = m.text, .bytes = m.bytes, .files = m.n,
		.run_id = kind == AK_ROOT ? 0 : 1, .step = kind == AK_ROOT ? NULL : "train",
		.attempt = kind == AK_ROOT ? 0 : 1,
		.engine_step = kind == AK_INTERMEDIATE ? 100 : -1,
		.step_key = step_key, .recipe_digest = kind == AK_ROOT ? NULL : "recipe-1",
		.git_commit = kind == AK_ROOT ? NULL : "c0ffee", .git_dirty = dirty,
		.origin = kind == AK_ROOT ? "https://example.org/corpus" : NULL,
		.parents = parents, .nparents = np,
	};
	assert_int_equal(catalog_register(f->a.st, &a, &id, &v, &c, &e), 0);
	assert_int_equal(c, 1);
	manifest_free(&m);
	free(src);
	return id;
}

/* corpus (root) -> base -> ckpt (intermediate, resumed-from) -> student;
 * corpus -> teacher; student + teacher -> merged (weights 0.1 and 0.9). */
static int setup(void **state)
{
	char tmpl[] = "/tmp/anneal-bundle-XXXXXX";
	struct fx *f = xcalloc(1, sizeof(*f));

	f->dir = xstrdup(mkdtemp(tmpl));
	ws_open(&f->a, f->dir, "a");
	ws_open(&f->b, f->dir, "b");
	f->bundle = fs_join(f->dir, "b.tar.zst");

	const struct files corpus[] = { { "a.txt", "alpha\n" }, { "sub/big.bin", NULL } };
	f->data = reg(f, AK_ROOT, "corpus", corpus, 2, NULL, NULL, 0, NULL);
	const struct lineage_parent pb[] = { { f->data, "data", 0, 0 } };
	const struct files base[] = { { "model.bin", "base weights" } };
	f->base = reg(f, AK_OUTPUT, "base", base, 1, "key-base", pb, 1, NULL);
	const struct lineage_parent pc[] = { { f->base, "init", 0, 0 } };
	const struct files ckpt[] = { { "model.bin", "step 100" } };
	f->ckpt = reg(f, AK_INTERMEDIATE, NULL, ckpt, 1, "key-sft", pc, 1, NULL);
	const struct lineage_parent ps[] = {
		{ f->base, "init", 0, 0 }, { f->ckpt, "resumed-from", 0, 0 },
		{ f->data, "data", 0, 0 },
	};
	const struct files student[] = { { "model.bin", "student" }, { "shared.txt", "same" } };
	f->student = reg(f, AK_OUTPUT, "student", student, 2, "key-sft", ps, 3, "d1rty");
	const struct lineage_parent pt[] = { { f->data, "data", 0, 0 } };
	const struct files teacher[] = { { "model.bin", "teacher" } };
	f->teacher = reg(f, AK_OUTPUT, "teacher", teacher, 1, "key-teacher", pt, 1, NULL);
	const struct lineage_parent pm[] = {
		{ f->student, "merge-input", 1, 0.1 }, { f->teacher, "merge-input", 1, 0.9 },
	};
	const struct files merged[] = { { "model.bin", "merged" }, { "shared.txt", "same" } };
	f->merged = reg(f, AK_OUTPUT, "merged", merged, 2, "key-merge", pm, 2, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct err e;

	ws_close(&f->a);
	ws_close(&f->b);
	assert_int_equal(fs_remove_tree(f->dir, &e), 0);
	free(f->bundle);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- helpers on the importing side ------------------------------------------- */

static size_t count_artifacts(struct state *st)
{
	struct artifact_info *v;
	size_t n;
	struct err e;

	assert_int_equal(catalog_list(st, NULL, 1, &v, &n, &e), 0);
	for (size_t i = 0; i < n; i++)
		artifact_info_clear(&v[i]);
	free(v);
	return n;
}

static int count_cb(void *ctx, const struct store_entry *e)
{
	(*(size_t *)ctx)++;
	return 0;
}

static size_t count_objects(struct store *s)
{
	size_t n = 0;
	struct err e;

	assert_int_equal(store_list(s, count_cb, &n, &e), 0);
	return n;
}

static size_t count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* The artifact of b with a's artifact id's lineage digest (0 if none). */
static int64_t twin(struct fx *f, int64_t id_a, struct artifact_info *ia,
		    struct artifact_info *ib)
{
	struct err e;
	int64_t id_b = 0;

	assert_int_equal(catalog_get(f->a.st, id_a, ia, &e), 0);
	if (catalog_resolve(f->b.st, ia->lineage, &id_b, &e))
		return 0;
	assert_int_equal(catalog_get(f->b.st, id_b, ib, &e), 0);
	return id_b;
}

/* Same lineage digests, content digests, parents (roles, weights), facts;
 * the lineage digest recomputes in b. */
static void assert_same_history(struct fx *f, int64_t root_a)
{
	struct lineage_edge *ea, *eb;
	size_t na, nb;
	struct artifact_info ia, ib;
	char lin[DIGEST_HEX_LEN + 1];
	struct err e;
	int64_t root_b = twin(f, root_a, &ia, &ib);

	assert_true(root_b != 0);
	artifact_info_clear(&ia);
	artifact_info_clear(&ib);
	assert_int_equal(catalog_lineage(f->a.st, root_a, 0, 0, &ea, &na, &e), 0);
	assert_int_equal(catalog_lineage(f->b.st, root_b, 0, 0, &eb, &nb, &e), 0);
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++) {
		struct artifact_info ca, cb, pa, pb;
		int found = 0;
		assert_true(twin(f, ea[i].child, &ca, &cb) != 0);
		assert_true(twin(f, ea[i].parent, &pa, &pb) != 0);
		for (size_t k = 0; k < nb; k++)
			if (eb[k].child == cb.id && eb[k].parent == pb.id &&
			    !strcmp(eb[k].role, ea[i].role) && eb[k].has_weight == ea[i].has_weight &&
			    eb[k].weight == ea[i].weight && eb[k].depth == ea[i].depth)
				found = 1;
		assert_true(found);
		assert_string_equal(ca.digest, cb.digest);
		assert_int_equal(cb.kind, AK_IMPORTED);
		assert_int_equal(catalog_lineage_digest(f->b.st, cb.id, lin, &e), 0);
		assert_string_equal(lin, ca.lineage);
		if (ca.name)
			assert_string_equal(ca.name, cb.name);
		else
			assert_null(cb.name);
		assert_int_equal(cb.run_id, 0);
		if (ca.step_key)
			assert_string_equal(ca.step_key, cb.step_key);
		if (ca.git_dirty)
			assert_string_equal(ca.git_dirty, cb.git_dirty);
		assert_int_equal(ca.engine_step, cb.engine_step);
		artifact_info_clear(&ca);
		artifact_info_clear(&cb);
		artifact_info_clear(&pa);
		artifact_info_clear(&pb);
	}
	for (size_t i = 0; i < na; i++)
		lineage_edge_clear(&ea[i]);
	for (size_t i = 0; i < nb; i++)
		lineage_edge_clear(&eb[i]);
	free(ea);
	free(eb);
}

/* Every object of b's artifact id is in b's store, re-hashed. */
static void assert_bytes_here(struct ws *w, int64_t id)
{
	struct manifest m = { 0 };
	char *text;
	struct err e;

	assert_int_equal(catalog_manifest(w->st, id, &text, &e), 0);
	assert_int_equal(manifest_parse(text, &m, &e), 0);
	for (size_t i = 0; i < m.n; i++)
		assert_int_equal(store_verify(w->store, &m.v[i].digest, m.v[i].size, 1, &e), 0);
	manifest_free(&m);
	free(text);
}

static int pruned_in_b(struct fx *f, int64_t id_a)
{
	struct artifact_info ia, ib;
	int p;

	assert_true(twin(f, id_a, &ia, &ib) != 0);
	p = ib.pruned;
	artifact_info_clear(&ia);
	artifact_info_clear(&ib);
	return p;
}

/* ---- round trips ----------------------------------------------------------------- */

static void test_bundle__round_trip_with_ancestors(void **state)
{
	struct fx *f = *state;
	struct bundle_summary sum;
	struct bundle_import_result r;
	struct err e;
	int64_t all[6];

	assert_int_equal(bundle_export(f->a.st, f->a.store, f->merged, 1, f->bundle, &sum, &e), 0);
	assert_int_equal(sum.artifacts, 6);
	assert_int_equal(sum.with_bytes, 6);
	/* a.txt, big.bin, 5 model.bin, shared.txt (twice, stored once) */
	assert_int_equal(sum.objects, 8);
	assert_int_equal(count_dir(f->dir), 4);   /* a, b, src, the bundle: no temp */

	assert_int_equal(bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, NULL, &r, &e), 0);
	assert_int_equal(r.n, 6);
	assert_int_equal(r.summary.objects, 8);
	for (size_t i = 0; i < r.n; i++) {
		assert_int_equal(r.v[i].created, 1);
		assert_int_equal(r.v[i].pruned, 0);
	}
	assert_int_equal(count_artifacts(f->b.st), 6);
	assert_int_equal(count_objects(f->b.store), 8);
	assert_same_history(f, f->merged);
	all[0] = f->data, all[1] = f->base, all[2] = f->ckpt;
	all[3] = f->student, all[4] = f->teacher, all[5] = f->merged;
	for (int i = 0; i < 6; i++) {
		struct artifact_info ia, ib;
		assert_true(twin(f, all[i], &ia, &ib) != 0);
		assert_bytes_here(&f->b, ib.id);
		assert_int_equal(ib.pruned, 0);
		if (all[i] == f->merged)
			assert_int_equal(r.root, ib.id);
		artifact_info_clear(&ia);
		artifact_info_clear(&ib);
	}
	assert_int_equal(count_dir(f->b.staging), 0);
	bundle_import_result_clear(&r);

	/* Again: everything is already here, nothing is duplicated. */
	assert_int_equal(bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, NULL, &r, &e), 0);
	for (size_t i = 0; i < r.n; i++)
		assert_int_equal(r.v[i].created, 0);
	assert_int_equal(count_artifacts(f->b.st), 6);
	assert_int_equal(count_objects(f->b.store), 8);
	bundle_import_result_clear(&r);
}

static void test_bundle__without_ancestors_carries_records_only(void **state)
{
	struct fx *f = *state;
	struct bundle_summary sum;
	struct bundle_import_result r;
	struct err e;

	assert_int_equal(bundle_export(f->a.st, f->a.store, f->student, 0, f->bundle, &sum, &e), 0);
	assert_int_equal(sum.artifacts, 4);        /* corpus, base, ckpt, student */
	assert_int_equal(sum.with_bytes, 1);
	assert_int_equal(sum.objects, 2);
	assert_int_equal(bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, NULL, &r, &e), 0);
	assert_int_equal(count_artifacts(f->b.st), 4);
	assert_int_equal(count_objects(f->b.store), 2);
	assert_same_history(f, f->student);
	assert_int_equal(pruned_in_b(f, f->student), 0);
	assert_int_equal(pruned_in_b(f, f->base), 1);
	assert_int_equal(pruned_in_b(f, f->ckpt), 1);
	assert_int_equal(pruned_in_b(f, f->data), 1);
	bundle_import_result_clear(&r);

	/* The whole merged history later: the four are reused, two are new. */
	assert_int_equal(bundle_export(f->a.st, f->a.store, f->merged, 1, f->bundle, &sum, &e), 0);
	assert_int_equal(bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, NULL, &r, &e), 0);
	size_t fresh = 0;
	for (size_t i = 0; i < r.n; i++)
		fresh += r.v[i].created;
	assert_int_equal(fresh, 2);
	assert_int_equal(count_artifacts(f->b.st), 6);
	assert_same_history(f, f->merged);
	bundle_import_result_clear(&r);
}

static void test_bundle__export_refuses_a_damaged_store(void **state)
{
	struct fx *f = *state;
	struct manifest m = { 0 };
	char *text, *obj;
	struct err e;
	int fd;

	assert_int_equal(catalog_manifest(f->a.st, f->teacher, &text, &e), 0);
	assert_int_equal(manifest_parse(text, &m, &e), 0);
	obj = store_object_path(f->a.store, &m.v[0].digest);
	assert_int_equal(chmod(obj, 0644), 0);
	fd = open(obj, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "T", 1, 0), 1);
	close(fd);
	assert_int_equal(chmod(obj, 0444), 0);
	assert_int_equal(bundle_export(f->a.st, f->a.store, f->teacher, 0, f->bundle, NULL, &e),
			 ERR_INVALID);
	assert_non_null(strstr(e.msg, "damaged"));
	assert_false(fs_exists(f->bundle));
	assert_int_equal(count_dir(f->dir), 3);   /* a, b, src: no temp file */
	manifest_free(&m);
	free(text);
	free(obj);
}

/* ---- the hostile corpus ---------------------------------------------------------- */

struct entry {
	char *name;
	unsigned type;        /* AE_IFREG, AE_IFLNK, ... ; 0: a hard link */
	char *data;
	size_t len;
	long long size;       /* declared; -1: len */
	const char *link;
};

struct good {
	struct entry *v;      /* [0] the JSON, then the objects */
	size_t n;
};

static void good_free(struct good *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->v[i].name);
		free(g->v[i].data);
	}
	free(g->v);
	memset(g, 0, sizeof(*g));
}

/* Reads a bundle back as entries (a valid starting point to break). */
static void read_good(const char *path, struct good *g)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;

	memset(g, 0, sizeof(*g));
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_filename(a, path, 65536), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		struct entry *x;
		size_t size = (size_t)archive_entry_size(e);
		g->v = xrealloc(g->v, (g->n + 1) * sizeof(*g->v));
		x = &g->v[g->n++];
		memset(x, 0, sizeof(*x));
		x->name = xstrdup(archive_entry_pathname(e));
		x->type = AE_IFREG;
		x->data = xmalloc(size + 1);
		x->len = size;
		x->size = -1;
		assert_int_equal(archive_read_data(a, x->data, size + 1), (la_ssize_t)size);
		x->data[size] = 0;
	}
	archive_read_free(a);
	assert_true(g->n >= 2);
	assert_string_equal(g->v[0].name, BUNDLE_JSON_NAME);
}

/* Appends the integrity trailer bundle.c expects (bundle.c: a zstd
 * skippable frame holding the SHA-256 of the bytes before it); bad: with
 * one bit of the digest flipped. */
static void add_trailer(const char *path, int bad)
{
	static const unsigned char head[12] = {
		0x5a, 0x2a, 0x4d, 0x18, 0x24, 0x00, 0x00, 0x00, 'A', 'N', 'B', '1',
	};
	struct digest d;
	struct err e;
	int fd;

	assert_int_equal(sha256_file(path, &d, NULL, &e), 0);
	d.b[5] ^= (uint8_t)(bad ? 1 : 0);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, head, sizeof(head)), (ssize_t)sizeof(head));
	assert_int_equal(write(fd, d.b, DIGEST_LEN), DIGEST_LEN);
	close(fd);
}

static void write_entries(const char *path, const struct entry *v, size_t n)
{
	struct archive *a = archive_write_new();

	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, v[i].name);
		archive_entry_set_perm(e, 0644);
		if (v[i].type == 0) {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, v[i].link);
			archive_entry_set_size(e, 0);
		} else {
			archive_entry_set_filetype(e, v[i].type);
			if (v[i].type == AE_IFLNK)
				archive_entry_set_symlink(e, v[i].link);
			if (v[i].type == AE_IFCHR)
				archive_entry_set_rdev(e, makedev(1, 3));
			if (v[i].type == AE_IFREG)
				archive_entry_set_size(e, v[i].size >= 0 ? v[i].size
									 : (la_int64_t)v[i].len);
		}
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		if (v[i].type == AE_IFREG && v[i].len)
			archive_write_data(a, v[i].data, v[i].len);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* The index of the biggest object (big.bin: 300 KiB of noise). */
static size_t biggest(const struct good *g)
{
	size_t best = 1;

	for (size_t i = 2; i < g->n; i++)
		if (g->v[i].len > g->v[best].len)
			best = i;
	return best;
}

/* Replaces the first occurrence of from in the JSON with to. */
static void json_edit(struct good *g, const char *from, const char *to)
{
	char *at = strstr(g->v[0].data, from);
	struct buf b = BUF_INIT;

	assert_non_null(at);
	buf_init(&b);
	buf_add(&b, g->v[0].data, (size_t)(at - g->v[0].data));
	buf_adds(&b, to);
	buf_adds(&b, at + strlen(from));
	free(g->v[0].data);
	g->v[0].len = b.len;
	g->v[0].data = buf_detach(&b);
}

static struct entry extra(const char *name, unsigned type, const char *data,
			  const char *link)
{
	struct entry x = { xstrdup(name), type, xstrdup(data ? data : ""),
			   data ? strlen(data) : 0, -1, link };
	return x;
}

static void append(struct good *g, struct entry x)
{
	g->v = xrealloc(g->v, (g->n + 1) * sizeof(*g->v));
	g->v[g->n++] = x;
}

enum hostile {
	H_ABSOLUTE, H_DOTDOT, H_SYMLINK, H_HARDLINK, H_FIFO, H_CHARDEV, H_DIR,
	H_BAD_BYTES, H_TRUNCATED, H_DUPLICATE, H_OVERSIZE, H_TAMPERED_FACT,
	H_TAMPERED_WEIGHT, H_TAMPERED_LINEAGE, H_MISSING_OBJECT, H_UNKNOWN_VERSION,
	H_JSON_TOO_BIG, H_TOO_MANY, H_JSON_NOT_FIRST, H_UNEXPECTED, H_STRAY_OBJECT,
	H_NOT_AN_ARCHIVE, H_BAD_JSON, H_MANIFEST_DIGEST, H_NO_TRAILER, H_BAD_TRAILER,
	H_COUNT
};

static const char *const expect[H_COUNT] = {
	[H_ABSOLUTE] = "entry '/etc/passwd': an absolute path",
	[H_DOTDOT] = "entry 'objects/../../x': a '..' component",
	[H_SYMLINK] = "a symbolic link (a bundle holds regular files only)",
	[H_HARDLINK] = "a hard link (a bundle holds regular files only)",
	[H_FIFO] = "entry 'objects/fifo': a FIFO",
	[H_CHARDEV] = "entry 'objects/null': a character device",
	[H_DIR] = "entry 'objects/': a directory",
	[H_BAD_BYTES] = "its bytes hash to",
	[H_TRUNCATED] = "truncated or corrupt archive",
	[H_DUPLICATE] = "a duplicate entry",
	[H_OVERSIZE] = "declares 307210 bytes, its manifests say 307200",
	[H_TAMPERED_FACT] = "does not recompute from its facts and parents",
	[H_TAMPERED_WEIGHT] = "record 'merged@1': lineage digest",
	[H_TAMPERED_LINEAGE] = "does not recompute from its facts and parents",
	[H_MISSING_OBJECT] = "missing from the bundle and from the store",
	[H_UNKNOWN_VERSION] = "unsupported bundle format version 2 (this anneal reads 1)",
	[H_JSON_TOO_BIG] = "over the limit of 1000",
	[H_TOO_MANY] = "more than 3 entries",
	[H_JSON_NOT_FIRST] = BUNDLE_JSON_NAME " must come first",
	[H_UNEXPECTED] = "entry 'notes.txt': unexpected",
	[H_STRAY_OBJECT] = "not a file of any artifact whose bytes the bundle carries",
	[H_NOT_AN_ARCHIVE] = "not a tar.zst archive",
	[H_BAD_JSON] = BUNDLE_JSON_NAME ": line 1, column",
	[H_MANIFEST_DIGEST] = "its manifest hashes to",
	[H_NO_TRAILER] = "no integrity trailer at the end",
	[H_BAD_TRAILER] = "its bytes do not match its integrity trailer",
};

static void hostile_case(struct fx *f, enum hostile h)
{
	struct good g;
	struct bundle_limits lim = { 0, 0 };
	struct bundle_import_result r;
	struct err e;
	size_t big;
	int rc;

	/* merged with everything: six records, weights, big.bin. */
	assert_int_equal(bundle_export(f->a.st, f->a.store, f->merged, 1, f->bundle, NULL, &e), 0);
	read_good(f->bundle, &g);
	big = biggest(&g);
	switch (h) {
	case H_ABSOLUTE: append(&g, extra("/etc/passwd", AE_IFREG, "root", NULL)); break;
	case H_DOTDOT: append(&g, extra("objects/../../x", AE_IFREG, "x", NULL)); break;
	case H_SYMLINK:
		/* In place of a real object, pointing out. */
		free(g.v[1].data);
		g.v[1].data = xstrdup("");
		g.v[1].len = 0;
		g.v[1].type = AE_IFLNK;
		g.v[1].link = "/etc/passwd";
		break;
	case H_HARDLINK:
		g.v[2].type = 0;
		g.v[2].link = "/etc/shadow";
		break;
	case H_FIFO: append(&g, extra("objects/fifo", AE_IFIFO, NULL, NULL)); break;
	case H_CHARDEV: append(&g, extra("objects/null", AE_IFCHR, NULL, NULL)); break;
	case H_DIR: append(&g, extra("objects/", AE_IFDIR, NULL, NULL)); break;
	case H_BAD_BYTES: g.v[big].data[1000] ^= 1; break;
	case H_TRUNCATED: break;   /* cut after writing */
	case H_DUPLICATE: {
		struct entry x = extra(g.v[1].name, AE_IFREG, NULL, NULL);
		free(x.data);
		x.data = xmalloc(g.v[1].len + 1);
		memcpy(x.data, g.v[1].data, g.v[1].len);
		x.len = g.v[1].len;
		append(&g, x);
		break;
	}
	case H_OVERSIZE: g.v[big].size = (long long)g.v[big].len + 10; break;
	case H_TAMPERED_FACT: json_edit(&g, "\"key-base\"", "\"key-bas3\""); break;
	case H_TAMPERED_WEIGHT: json_edit(&g, "\"weight\":0.90000000000000002", "\"weight\":0.8"); break;
	case H_TAMPERED_LINEAGE: {
		/* The root record's own lineage digest (and "root" with it). */
		char *root = strstr(g.v[0].data, "\"root\":\"");
		char old[DIGEST_HEX_LEN + 1], bad[DIGEST_HEX_LEN + 1];
		assert_non_null(root);
		memcpy(old, root + 8, DIGEST_HEX_LEN);
		old[DIGEST_HEX_LEN] = 0;
		memcpy(bad, old, sizeof(bad));
		bad[0] = bad[0] == '0' ? '1' : '0';
		json_edit(&g, old, bad);
		json_edit(&g, old, bad);
		break;
	}
	case H_MISSING_OBJECT:
		free(g.v[big].name);
		free(g.v[big].data);
		g.v[big] = g.v[--g.n];
		break;
	case H_UNKNOWN_VERSION: json_edit(&g, "\"version\":1,", "\"version\":2,"); break;
	case H_JSON_TOO_BIG: lim.max_json_bytes = 1000; break;
	case H_TOO_MANY: lim.max_entries = 3; break;
	case H_JSON_NOT_FIRST: {
		struct entry t = g.v[0];
		g.v[0] = g.v[1];
		g.v[1] = t;
		break;
	}
	case H_UNEXPECTED: append(&g, extra("notes.txt", AE_IFREG, "hi", NULL)); break;
	case H_STRAY_OBJECT:
		append(&g, extra("objects/0000000000000000000000000000000000000000000000000000000000000000",
				 AE_IFREG, "x", NULL));
		break;
	case H_NOT_AN_ARCHIVE: break;
	case H_BAD_JSON: json_edit(&g, "{", "["); break;
	case H_MANIFEST_DIGEST: json_edit(&g, "644 model.bin", "755 model.bin"); break;
	case H_NO_TRAILER: break;
	case H_BAD_TRAILER: json_edit(&g, "\"created\":", "\"created\":1"); break;
	case H_COUNT: break;
	}
	write_entries(f->bundle, g.v, g.n);
	if (h != H_NO_TRAILER)
		add_trailer(f->bundle, h == H_BAD_TRAILER);
	if (h == H_TRUNCATED) {
		struct stat sb;
		assert_int_equal(stat(f->bundle, &sb), 0);
		assert_int_equal(truncate(f->bundle, sb.st_size * 3 / 5), 0);
	}
	if (h == H_NOT_AN_ARCHIVE) {
		char *z = noise(50000, 7);
		struct err we;
		assert_int_equal(fs_write_atomic(f->bundle, z, 50000, 0644, &we), 0);
		free(z);
	}
	rc = bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, &lim, &r, &e);
	if (rc != ERR_INVALID || !strstr(e.msg, expect[h]))
		fail_msg("hostile case %d: rc %d, message '%s', expected '%s'", (int)h, rc, e.msg,
			 expect[h]);
	if (getenv("BUNDLE_TEST_SHOW"))
		print_message("  %s\n", e.msg);
	/* One line, naming the bundle. */
	assert_null(strchr(e.msg, '\n'));
	assert_true(!strncmp(e.msg, "bundle '", 8));
	assert_int_equal(count_artifacts(f->b.st), 0);
	assert_int_equal(count_objects(f->b.store), 0);
	assert_int_equal(count_dir(f->b.staging), 0);
	assert_null(r.v);
	good_free(&g);
}

static void test_bundle__hostile_archives_are_refused_leaving_nothing(void **state)
{
	for (int h = 0; h < H_COUNT; h++)
		hostile_case(*state, (enum hostile)h);
}

/* After all that, the untouched bundle still imports (the corpus was not
 * refused for some unrelated reason). */
static void test_bundle__a_refused_import_leaves_the_workspace_usable(void **state)
{
	struct fx *f = *state;
	struct bundle_import_result r;
	struct err e;

	hostile_case(f, H_BAD_BYTES);
	assert_int_equal(bundle_export(f->a.st, f->a.store, f->merged, 1, f->bundle, NULL, &e), 0);
	assert_int_equal(bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, NULL, &r, &e), 0);
	assert_same_history(f, f->merged);
	bundle_import_result_clear(&r);
}

static void test_bundle__stale_staging_is_swept(void **state)
{
	struct fx *f = *state;
	struct bundle_import_result r;
	struct err e;
	char *stale = fs_join(f->b.staging, "12345.abcdef");

	put(stale, "o/leftover", "x", 1);
	assert_int_equal(bundle_export(f->a.st, f->a.store, f->teacher, 0, f->bundle, NULL, &e), 0);
	assert_int_equal(bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, NULL, &r, &e), 0);
	assert_false(fs_exists(stale));
	assert_int_equal(count_dir(f->b.staging), 0);
	bundle_import_result_clear(&r);
	free(stale);
}

static void test_bundle__missing_file_is_notfound(void **state)
{
	struct fx *f = *state;
	struct bundle_import_result r;
	struct err e;

	assert_int_equal(bundle_import(f->b.st, f->b.store, f->b.staging, f->bundle, NULL, &r, &e),
			 ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "no such file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_bundle__round_trip_with_ancestors),
		T(test_bundle__without_ancestors_carries_records_only),
		T(test_bundle__export_refuses_a_damaged_store),
		T(test_bundle__hostile_archives_are_refused_leaving_nothing),
		T(test_bundle__a_refused_import_leaves_the_workspace_usable),
		T(test_bundle__stale_staging_is_swept),
		T(test_bundle__missing_file_is_notfound),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
