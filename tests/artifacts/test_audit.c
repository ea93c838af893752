/* tests/artifacts/test_audit.c — audit finds what it must, and only that. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/audit.h"
#include "artifacts/store.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

struct fx {
	char *dir, *db;
	struct state *st;
	struct store *store;
	int64_t data, model;
};

static void write_file(const char *path, const char *text)
{
	struct err e;
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, &e), 0);
}

/* Ingests dir and registers it as a root (parent 0) or a child. */
static int64_t add(struct fx *f, const char *name, const char *src, int64_t parent)
{
	struct manifest m = { 0 };
	struct lineage_parent p = { parent, "data", 0, 0 };
	char digest[65];
	struct err e;
	int64_t id;
	int v, c;

	assert_int_equal(store_ingest_tree(f->store, src, STORE_LINK, 0, &m, &e), 0);
	digest_hex(&m.digest, digest);
	struct artifact_new a = {
		.kind = AK_ROOT, .name = name, .type = ART_DATASET, .digest = digest,
		.manifest = m.text, .bytes = m.bytes, .files = m.n, .engine_step = -1,
		.origin = src, .path = src, .parents = parent ? &p : NULL,
		.nparents = parent ? 1 : 0,
	};
	assert_int_equal(catalog_register(f->st, &a, &id, &v, &c, &e), 0);
	manifest_free(&m);
	return id;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/anneal-audit-XXXXXX";
	struct err e;
	char *store, *d1, *d2, *p;

	f->dir = xstrdup(mkdtemp(tmpl));
	f->db = fs_join(f->dir, "state.db");
	store = fs_join(f->dir, "store");
	assert_int_equal(state_open(f->db, &f->st, &e), 0);
	assert_int_equal(store_open(&f->store, store, &e), 0);
	d1 = fs_join(f->dir, "data");
	d2 = fs_join(f->dir, "model");
	assert_int_equal(fs_mkdir_p(d1, 0777, &e), 0);
	assert_int_equal(fs_mkdir_p(d2, 0777, &e), 0);
	p = fs_join(d1, "corpus.txt");
	write_file(p, "the data\n");
	free(p);
	p = fs_join(d2, "weights.bin");
	write_file(p, "weights!\n");
	free(p);
	f->data = add(f, "data", d1, 0);
	f->model = add(f, "model", d2, f->data);
	free(store);
	free(d1);
	free(d2);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct err e;
	store_free(f->store);
	state_close(f->st);
	fs_remove_tree(f->dir, &e);
	free(f->db);
	free(f->dir);
	free(f);
	return 0;
}

static size_t audit(struct fx *f, int64_t only, int deep, struct audit_report *r)
{
	struct err e;
	assert_int_equal(audit_run(f->st, f->store, only, deep, r, &e), 0);
	return r->nfindings;
}

static char *object_of(struct fx *f, int64_t id)
{
	struct manifest m = { 0 };
	char *text = NULL, *path;
	struct err e;
	assert_int_equal(catalog_manifest(f->st, id, &text, &e), 0);
	assert_int_equal(manifest_parse(text, &m, &e), 0);
	path = store_object_path(f->store, &m.v[0].digest);
	manifest_free(&m);
	free(text);
	return path;
}

static void test_audit__clean_workspace(void **state)
{
	struct fx *f = *state;
	struct audit_report r;
	/* roots need origins only: a clean audit, deep or not */
	assert_int_equal(audit(f, 0, 0, &r), 0);
	assert_int_equal(r.artifacts, 2);
	assert_int_equal(r.objects, 2);
	audit_report_clear(&r);
	assert_int_equal(audit(f, 0, 1, &r), 0);
	assert_int_equal(r.bytes_hashed, 18);
	audit_report_clear(&r);
}

static void test_audit__flipped_byte_needs_deep(void **state)
{
	struct fx *f = *state;
	struct audit_report r;
	char *obj = object_of(f, f->model);
	int fd;
	assert_int_equal(chmod(obj, 0644), 0);   /* root or not, the write happens */
	fd = open(obj, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "W", 1, 0), 1);
	close(fd);
	assert_int_equal(chmod(obj, 0444), 0);
	assert_int_equal(audit(f, 0, 0, &r), 0);    /* same size: shallow misses it */
	audit_report_clear(&r);
	assert_int_equal(audit(f, f->model, 1, &r), 1);
	assert_int_equal(r.findings[0].artifact, f->model);
	assert_string_equal(r.findings[0].ref, "model@1");
	assert_non_null(strstr(r.findings[0].what, "weights.bin (object "));
	assert_non_null(strstr(r.findings[0].what, "does not match its digest"));
	audit_report_clear(&r);
	free(obj);
}

static void test_audit__missing_and_truncated_objects(void **state)
{
	struct fx *f = *state;
	struct audit_report r;
	char *obj = object_of(f, f->data);
	assert_int_equal(chmod(obj, 0644), 0);
	assert_int_equal(truncate(obj, 3), 0);
	assert_int_equal(chmod(obj, 0444), 0);
	assert_int_equal(audit(f, 0, 0, &r), 1);
	assert_string_equal(r.findings[0].ref, "data@1");
	audit_report_clear(&r);
	assert_int_equal(unlink(obj), 0);
	assert_int_equal(audit(f, 0, 0, &r), 1);
	assert_non_null(strstr(r.findings[0].what, "corpus.txt"));
	audit_report_clear(&r);
	free(obj);
}

static void test_audit__edited_rows(void **state)
{
	struct fx *f = *state;
	struct audit_report r;
	sqlite3 *db;
	/* Another writer (a person with sqlite3) edits a recorded fact of the
	 * parent: the parent's own lineage digest no longer recomputes. */
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE artifacts SET origin = '/elsewhere'"
				      " WHERE name = 'data'", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(audit(f, 0, 0, &r), 1);
	assert_string_equal(r.findings[0].ref, "data@1");
	assert_non_null(strstr(r.findings[0].what, "lineage digest does not recompute"));
	audit_report_clear(&r);
	/* an edited edge: the child's */
	assert_int_equal(sqlite3_exec(db, "UPDATE artifacts SET origin = NULL WHERE name = 'data';"
				      "UPDATE lineage SET role = 'teacher'", NULL, NULL, NULL), SQLITE_OK);
	assert_true(audit(f, 0, 0, &r) >= 2);
	int saw_model = 0, saw_origin = 0;
	for (size_t i = 0; i < r.nfindings; i++) {
		saw_model |= r.findings[i].artifact == f->model;
		saw_origin |= strstr(r.findings[i].what, "without an origin") != NULL;
	}
	assert_true(saw_model);
	assert_true(saw_origin);
	audit_report_clear(&r);
	sqlite3_close(db);
}

static void test_audit__orphans_are_notes(void **state)
{
	struct fx *f = *state;
	struct audit_report r;
	char *extra = fs_join(f->dir, "extra");
	struct manifest m = { 0 };
	struct err e;
	write_file(extra, "not registered\n");
	assert_int_equal(store_ingest_tree(f->store, extra, STORE_COPY, 0, &m, &e), 0);
	manifest_free(&m);
	assert_int_equal(audit(f, 0, 0, &r), 0);
	assert_int_equal(r.nnotes, 1);
	assert_non_null(strstr(r.notes[0].what, "referenced by no artifact"));
	audit_report_clear(&r);
	free(extra);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_audit__clean_workspace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit__flipped_byte_needs_deep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit__missing_and_truncated_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit__edited_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit__orphans_are_notes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
