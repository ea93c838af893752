/* tests/pipeline/test_catalog.c — versions, references, lineage, digests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

static struct state *st;

static int setup(void **state)
{
	struct err e;
	(void)state;
	return state_open(":memory:", &st, &e);
}

static int teardown(void **state)
{
	(void)state;
	state_close(st);
	st = NULL;
	return 0;
}

/* A content digest from a word, and its one-line manifest. */
static void content(const char *word, char *digest, char *manifest, size_t msize)
{
	struct digest d;
	char fhex[65];
	sha256_buf(word, strlen(word), &d);
	digest_hex(&d, fhex);
	snprintf(manifest, msize, "%s %zu 644 data.bin\n", fhex, strlen(word));
	sha256_buf(manifest, strlen(manifest), &d);
	digest_hex(&d, digest);
}

static int64_t reg(const char *name, const char *word, const struct lineage_parent *p,
		   size_t np, int *version, int *created)
{
	char digest[65], manifest[200];
	struct artifact_new a = { 0 };
	int64_t id = 0;
	int v = 0, c = 0;
	struct err e;

	content(word, digest, manifest, sizeof(manifest));
	a.kind = name ? AK_OUTPUT : AK_INTERMEDIATE;
	a.name = name;
	a.type = ART_CHECKPOINT;
	a.digest = digest;
	a.manifest = manifest;
	a.bytes = strlen(word);
	a.files = 1;
	a.step_key = "key";
	a.recipe_digest = "recipe";
	a.engine_step = -1;
	a.parents = p;
	a.nparents = np;
	assert_int_equal(catalog_register(st, &a, &id, &v, &c, &e), 0);
	if (version)
		*version = v;
	if (created)
		*created = c;
	return id;
}

static void test_catalog__versions_grow_with_new_content(void **state)
{
	int v, c;
	int64_t a1, a2, a1again, b1;
	(void)state;
	a1 = reg("student", "one", NULL, 0, &v, &c);
	assert_int_equal(v, 1);
	assert_int_equal(c, 1);
	a2 = reg("student", "two", NULL, 0, &v, &c);
	assert_int_equal(v, 2);
	a1again = reg("student", "one", NULL, 0, &v, &c);
	assert_int_equal(a1again, a1);      /* identical content keeps its version */
	assert_int_equal(v, 1);
	assert_int_equal(c, 0);
	b1 = reg("teacher", "one", NULL, 0, &v, &c);
	assert_int_equal(v, 1);             /* versions are per name */
	assert_true(b1 != a1 && a2 != a1);
}

static void test_catalog__resolve_refs(void **state)
{
	struct artifact_info ai;
	int64_t a1, a2, id = 0;
	struct err e;
	(void)state;
	a1 = reg("student", "one", NULL, 0, NULL, NULL);
	a2 = reg("student", "two", NULL, 0, NULL, NULL);
	assert_int_equal(catalog_resolve(st, "student", &id, &e), 0);
	assert_int_equal(id, a2);
	assert_int_equal(catalog_resolve(st, "student@1", &id, &e), 0);
	assert_int_equal(id, a1);
	assert_int_equal(catalog_resolve(st, "student@3", &id, &e), ERR_NOTFOUND);
	assert_string_equal(e.msg, "no artifact 'student@3' (latest is student@2)");
	assert_int_equal(catalog_resolve(st, "studnet", &id, &e), ERR_NOTFOUND);
	assert_string_equal(e.msg, "no artifact 'studnet' (did you mean 'student'?)");
	assert_int_equal(catalog_resolve(st, "student@x", &id, &e), ERR_INVALID);
	/* alias */
	assert_int_equal(catalog_tag(st, "champion", a1, &e), 0);
	assert_int_equal(catalog_resolve(st, "champion", &id, &e), 0);
	assert_int_equal(id, a1);
	assert_int_equal(catalog_tag(st, "champion", a2, &e), 0);   /* moves */
	assert_int_equal(catalog_resolve(st, "champion", &id, &e), 0);
	assert_int_equal(id, a2);
	assert_int_equal(catalog_tag(st, "student", a1, &e), ERR_INVALID);
	assert_int_equal(catalog_tag(st, "x@1", a1, &e), ERR_INVALID);
	assert_int_equal(catalog_tag(st, "abcdef12", a1, &e), ERR_INVALID);
	/* Aliases follow the rules of names: no path, newline or control byte. */
	assert_int_equal(catalog_tag(st, "a/b", a1, &e), ERR_INVALID);
	assert_int_equal(catalog_tag(st, "..", a1, &e), ERR_INVALID);
	assert_int_equal(catalog_tag(st, "-rf", a1, &e), ERR_INVALID);
	assert_int_equal(catalog_tag(st, "a\nb", a1, &e), ERR_INVALID);
	assert_null(strchr(e.msg, '\n'));
	assert_int_equal(catalog_tag(st, "a\x1b[2Jb", a1, &e), ERR_INVALID);
	assert_null(strchr(e.msg, '\x1b'));
	/* digest prefix, content or lineage */
	assert_int_equal(catalog_get(st, a1, &ai, &e), 0);
	char prefix[13];
	snprintf(prefix, sizeof(prefix), "%.12s", ai.digest);
	assert_int_equal(catalog_resolve(st, prefix, &id, &e), 0);
	assert_int_equal(id, a1);
	snprintf(prefix, sizeof(prefix), "%.12s", ai.lineage);
	assert_int_equal(catalog_resolve(st, prefix, &id, &e), 0);
	assert_int_equal(id, a1);
	assert_int_equal(ai.naliases, 0);
	artifact_info_clear(&ai);
	assert_int_equal(catalog_get(st, a2, &ai, &e), 0);
	assert_int_equal(ai.naliases, 1);
	assert_string_equal(ai.aliases[0], "champion");
	assert_string_equal(ai.name, "student");
	assert_int_equal(ai.version, 2);
	artifact_info_clear(&ai);
}

static void test_catalog__lineage_walks(void **state)
{
	struct lineage_edge *e = NULL;
	size_t n = 0;
	struct err err;
	int64_t data, base, t1, t2, merged;
	(void)state;
	data = reg("data", "d", NULL, 0, NULL, NULL);
	struct lineage_parent pb[] = { { data, "data", 0, 0 } };
	base = reg("base", "b", pb, 1, NULL, NULL);
	struct lineage_parent pt[] = { { base, "init", 0, 0 }, { data, "data", 0, 0 } };
	t1 = reg("tune_a", "t1", pt, 2, NULL, NULL);
	t2 = reg("tune_b", "t2", pt, 2, NULL, NULL);
	struct lineage_parent pm[] = { { t1, "merge-input", 1, 0.7 }, { t2, "merge-input", 1, 0.3 } };
	merged = reg("merged", "m", pm, 2, NULL, NULL);

	assert_int_equal(catalog_lineage(st, merged, 0, 0, &e, &n, &err), 0);
	/* merged<-t1, merged<-t2, t1<-base, t1<-data, t2<-base, t2<-data, base<-data */
	assert_int_equal(n, 7);
	assert_int_equal(e[0].depth, 1);
	assert_string_equal(e[0].role, "merge-input");
	assert_true(e[0].has_weight);
	assert_true(e[0].weight == 0.7 || e[0].weight == 0.3);
	assert_int_equal(e[6].depth, 3);
	for (size_t i = 0; i < n; i++)
		lineage_edge_clear(&e[i]);
	free(e);
	/* depth-limited */
	assert_int_equal(catalog_lineage(st, merged, 0, 1, &e, &n, &err), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		lineage_edge_clear(&e[i]);
	free(e);
	/* the blast radius of the dataset */
	assert_int_equal(catalog_lineage(st, data, 1, 0, &e, &n, &err), 0);
	int saw_merged = 0;
	for (size_t i = 0; i < n; i++) {
		saw_merged |= e[i].child == merged;
		lineage_edge_clear(&e[i]);
	}
	free(e);
	assert_true(saw_merged);
	assert_int_equal(n, 7);
}

static void test_catalog__lineage_digest_chains(void **state)
{
	struct artifact_info ai;
	char again[65];
	struct err e;
	int64_t d1, d2, c1, c2;
	(void)state;
	d1 = reg("data", "d", NULL, 0, NULL, NULL);
	d2 = reg("data", "d2", NULL, 0, NULL, NULL);
	struct lineage_parent p1[] = { { d1, "data", 0, 0 } };
	struct lineage_parent p2[] = { { d2, "data", 0, 0 } };
	/* same content, different parents: different lineage */
	c1 = reg("model", "m", p1, 1, NULL, NULL);
	c2 = reg("model-b", "m", p2, 1, NULL, NULL);
	struct artifact_info a1, a2;
	assert_int_equal(catalog_get(st, c1, &a1, &e), 0);
	assert_int_equal(catalog_get(st, c2, &a2, &e), 0);
	assert_string_equal(a1.digest, a2.digest);
	assert_string_not_equal(a1.lineage, a2.lineage);
	/* recomputable from the recorded facts */
	assert_int_equal(catalog_lineage_digest(st, c1, again, &e), 0);
	assert_string_equal(again, a1.lineage);
	artifact_info_clear(&a1);
	artifact_info_clear(&a2);
	(void)ai;
}

static void test_catalog__intermediates_dedup_by_lineage(void **state)
{
	int v, c;
	int64_t p, k1, k2, k3;
	(void)state;
	p = reg("data", "d", NULL, 0, NULL, NULL);
	struct lineage_parent pp[] = { { p, "data", 0, 0 } };
	k1 = reg(NULL, "ckpt-100", pp, 1, &v, &c);
	assert_int_equal(v, 0);
	assert_int_equal(c, 1);
	k2 = reg(NULL, "ckpt-100", pp, 1, &v, &c);
	assert_int_equal(k1, k2);
	assert_int_equal(c, 0);
	k3 = reg(NULL, "ckpt-200", pp, 1, &v, &c);
	assert_true(k3 != k1);
	/* a missing parent is refused and nothing is registered */
	struct lineage_parent bad[] = { { 9999, "data", 0, 0 } };
	char digest[65], manifest[200];
	struct artifact_new a = { .kind = AK_OUTPUT, .name = "x", .type = ART_DATASET,
				  .digest = digest, .manifest = manifest, .parents = bad,
				  .nparents = 1, .engine_step = -1 };
	int64_t id;
	struct err e;
	content("x", digest, manifest, sizeof(manifest));
	assert_int_equal(catalog_register(st, &a, &id, &v, &c, &e), ERR_NOTFOUND);
	assert_int_equal(catalog_resolve(st, "x", &id, &e), ERR_NOTFOUND);
}

static void test_catalog__list_latest_and_versions(void **state)
{
	struct artifact_info *v = NULL;
	size_t n = 0;
	struct err e;
	(void)state;
	reg("b", "1", NULL, 0, NULL, NULL);
	reg("a", "1", NULL, 0, NULL, NULL);
	reg("a", "2", NULL, 0, NULL, NULL);
	reg(NULL, "i", NULL, 0, NULL, NULL);
	assert_int_equal(catalog_list(st, NULL, 0, &v, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "a");
	assert_int_equal(v[0].version, 2);
	assert_string_equal(v[1].name, "b");
	for (size_t i = 0; i < n; i++)
		artifact_info_clear(&v[i]);
	free(v);
	assert_int_equal(catalog_list(st, "a", 0, &v, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].version, 1);
	for (size_t i = 0; i < n; i++)
		artifact_info_clear(&v[i]);
	free(v);
	assert_int_equal(catalog_list(st, NULL, 1, &v, &n, &e), 0);
	assert_int_equal(n, 4);
	assert_null(v[3].name);     /* the intermediate comes last */
	for (size_t i = 0; i < n; i++)
		artifact_info_clear(&v[i]);
	free(v);
}

/* The REF grammar alone (fuzz_ref found refs with control characters
 * echoed raw into messages, and versions spelled several ways). */
static void test_catalog__ref_parse(void **state)
{
	struct catalog_ref r;
	struct err e;
	int64_t id = 0;
	(void)state;
	assert_int_equal(catalog_ref_parse("student@12", &r, &e), 0);
	assert_int_equal(r.form, REF_VERSION);
	assert_string_equal(r.name, "student");
	assert_int_equal(r.version, 12);
	catalog_ref_clear(&r);
	assert_int_equal(catalog_ref_parse("@student", &r, &e), 0);
	assert_int_equal(r.form, REF_WORD);
	assert_string_equal(r.name, "@student");
	catalog_ref_clear(&r);
	assert_int_equal(catalog_ref_parse("0123abcd", &r, &e), 0);
	assert_int_equal(r.form, REF_WORD);
	assert_int_equal(r.digest_prefix, 1);
	catalog_ref_clear(&r);
	assert_int_equal(catalog_ref_parse("0123ABCD", &r, &e), 0);
	assert_int_equal(r.digest_prefix, 0);
	catalog_ref_clear(&r);
	/* One spelling per version: no sign, space or leading zero. */
	assert_int_equal(catalog_ref_parse("student@+3", &r, &e), ERR_INVALID);
	assert_null(r.name);
	assert_int_equal(catalog_ref_parse("student@ 3", &r, &e), ERR_INVALID);
	assert_int_equal(catalog_ref_parse("student@03", &r, &e), ERR_INVALID);
	assert_int_equal(catalog_ref_parse("student@0", &r, &e), ERR_INVALID);
	assert_int_equal(catalog_ref_parse("student@2147483648", &r, &e), ERR_INVALID);
	assert_int_equal(catalog_ref_parse("student@", &r, &e), ERR_INVALID);
	assert_int_equal(catalog_ref_parse("", &r, &e), ERR_INVALID);
	/* A REF's control characters never reach a message raw. */
	assert_int_equal(catalog_resolve(st, "a\nb\033[31m", &id, &e), ERR_NOTFOUND);
	assert_string_equal(e.msg, "no artifact 'a\\nb\\x1b[31m'");
	assert_int_equal(catalog_resolve(st, "a\n@x", &id, &e), ERR_INVALID);
	assert_string_equal(e.msg, "'a\\n@x': the version after '@' must be a positive number");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_catalog__versions_grow_with_new_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog__resolve_refs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog__ref_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog__lineage_walks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog__lineage_digest_chains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog__intermediates_dedup_by_lineage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog__list_latest_and_versions, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
