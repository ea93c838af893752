/* tests/pipeline/test_dag.c — dependency graph: order, cycles, references. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "pipeline/dag.h"

/* Steps from a compact description: "id:dep1,dep2" (deps via after). */
static struct step *mk(const char *const *desc, size_t n)
{
	struct step *s = xcalloc(n, sizeof(*s));
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(desc[i], ':');
		s[i].id = colon ? xstrndup(desc[i], (size_t)(colon - desc[i])) : xstrdup(desc[i]);
		s[i].kind = xstrdup("exec");
		s[i].argc = 1;
		s[i].argv = xcalloc(2, sizeof(char *));
		s[i].argv[0] = xstrdup("true");
		if (colon && colon[1]) {
			char *deps = xstrdup(colon + 1), *save = NULL;
			for (char *t = strtok_r(deps, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				s[i].after = xrealloc(s[i].after, (s[i].nafter + 1) * sizeof(char *));
				s[i].after[s[i].nafter++] = xstrdup(t);
			}
			free(deps);
		}
	}
	return s;
}

static void rm(struct step *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		step_clear(&s[i]);
	free(s);
}

static void test_dag__topological_and_stable(void **state)
{
	const char *d[] = { "c:a,b", "a", "b:a", "d" };
	struct step *s = mk(d, 4);
	struct dag *g = NULL;
	struct err e;
	(void)state;
	assert_int_equal(dag_build(s, 4, &g, &e), 0);
	/* a (1) first; then b (2) and d (3) are ready: b before d by recipe
	 * order... and c (0) only after a and b. */
	assert_int_equal(g->order[0], 1);
	assert_int_equal(g->order[1], 2);
	assert_int_equal(g->order[2], 0);
	assert_int_equal(g->order[3], 3);
	assert_int_equal(g->ndeps[0], 2);
	assert_int_equal(g->ndependents[1], 2);
	dag_free(g);
	rm(s, 4);
}

static void test_dag__rejects_cycle_naming_it(void **state)
{
	const char *d[] = { "a", "b:a,d", "c:b", "d:c" };
	struct step *s = mk(d, 4);
	struct dag *g = NULL;
	struct err e;
	(void)state;
	assert_int_equal(dag_build(s, 4, &g, &e), ERR_INVALID);
	assert_null(g);
	assert_string_equal(e.msg, "dependency cycle: b -> c -> d -> b");
	rm(s, 4);
}

static void test_dag__rejects_self_dependency(void **state)
{
	const char *d[] = { "a:a" };
	struct step *s = mk(d, 1);
	struct dag *g = NULL;
	struct err e;
	(void)state;
	assert_int_equal(dag_build(s, 1, &g, &e), ERR_INVALID);
	assert_string_equal(e.msg, "dependency cycle: a -> a");
	rm(s, 1);
}

static void test_dag__rejects_unknown_and_duplicate(void **state)
{
	const char *d1[] = { "a", "b:zz" };
	const char *d2[] = { "a", "a" };
	struct step *s = mk(d1, 2);
	struct dag *g = NULL;
	struct err e;
	(void)state;
	assert_int_equal(dag_build(s, 2, &g, &e), ERR_INVALID);
	assert_string_equal(e.msg, "step 'b': depends on unknown step 'zz'");
	rm(s, 2);
	s = mk(d2, 2);
	assert_int_equal(dag_build(s, 2, &g, &e), ERR_INVALID);
	assert_string_equal(e.msg, "duplicate step id 'a'");
	rm(s, 2);
}

static void test_dag__inputs_are_edges_and_dedup(void **state)
{
	const char *d[] = { "a", "b:a" };
	struct step *s = mk(d, 2);
	struct dag *g = NULL;
	struct err e;
	(void)state;
	s[1].inputs = xcalloc(1, sizeof(*s[1].inputs));
	s[1].ninputs = 1;
	s[1].inputs[0].role = xstrdup("data");
	s[1].inputs[0].from_step = xstrdup("a");
	s[1].inputs[0].from_output = xstrdup("out");
	assert_int_equal(dag_build(s, 2, &g, &e), 0);
	assert_int_equal(g->ndeps[1], 1);   /* after + input on a: one edge */
	dag_free(g);
	rm(s, 2);
}

static void test_dag__large_chain_and_fan(void **state)
{
	enum { N = 5000 };
	struct step *s = xcalloc(N, sizeof(*s));
	struct dag *g = NULL;
	struct err e;
	(void)state;
	for (size_t i = 0; i < N; i++) {
		s[i].id = xasprintf("s%zu", i);
		s[i].kind = xstrdup("exec");
		s[i].argc = 1;
		s[i].argv = xcalloc(2, sizeof(char *));
		s[i].argv[0] = xstrdup("true");
		if (i) {
			s[i].after = xcalloc(1, sizeof(char *));
			s[i].after[0] = xasprintf("s%zu", i - 1);
			s[i].nafter = 1;
		}
	}
	assert_int_equal(dag_build(s, N, &g, &e), 0);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(g->order[i], i);
	dag_free(g);
	rm(s, N);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dag__topological_and_stable),
		cmocka_unit_test(test_dag__rejects_cycle_naming_it),
		cmocka_unit_test(test_dag__rejects_self_dependency),
		cmocka_unit_test(test_dag__rejects_unknown_and_duplicate),
		cmocka_unit_test(test_dag__inputs_are_edges_and_dedup),
		cmocka_unit_test(test_dag__large_chain_and_fan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
