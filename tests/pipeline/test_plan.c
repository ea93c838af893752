/* tests/pipeline/test_plan.c — cache keys: what changes them, what not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "pipeline/plan.h"

static char *dir;

static int setup(void **state)
{
	char tmpl[] = "/tmp/anneal-plan-XXXXXX";
	(void)state;
	dir = xstrdup(mkdtemp(tmpl));
	return 0;
}

static int teardown(void **state)
{
	struct err e;
	(void)state;
	fs_remove_tree(dir, &e);
	free(dir);
	return 0;
}

static void mk(struct step *s, const char *a0, const char *a1)
{
	memset(s, 0, sizeof(*s));
	s->id = xstrdup("train");
	s->kind = xstrdup("exec");
	s->argc = 2;
	s->argv = xcalloc(3, sizeof(char *));
	s->argv[0] = xstrdup(a0);
	s->argv[1] = xstrdup(a1);
	s->outputs = xcalloc(1, sizeof(*s->outputs));
	s->outputs[0].name = xstrdup("model");
	s->outputs[0].type = ART_CHECKPOINT;
	s->noutputs = 1;
}

static void add_env(struct step *s, const char *k, const char *v)
{
	s->env = xrealloc(s->env, (s->nenv + 1) * sizeof(*s->env));
	s->env[s->nenv].key = xstrdup(k);
	s->env[s->nenv].value = xstrdup(v);
	s->nenv++;
}

static void key(const struct step *s, const char *params, const struct key_input *in,
		size_t nin, char *out)
{
	struct err e;
	assert_int_equal(plan_cache_key(s, params, in, nin, dir, "/usr/bin:/bin", out, &e), 0);
	assert_int_equal(strlen(out), 64);
}

static void test_plan__same_step_same_key(void **state)
{
	struct step a, b;
	char k1[65], k2[65];
	(void)state;
	mk(&a, "true", "${outputs.model}");
	mk(&b, "true", "${outputs.model}");
	key(&a, "{}", NULL, 0, k1);
	key(&b, "{}", NULL, 0, k2);
	assert_string_equal(k1, k2);
	/* The step's id is not part of it: content, not names. */
	free(b.id);
	b.id = xstrdup("other");
	key(&b, "{}", NULL, 0, k2);
	assert_string_equal(k1, k2);
	step_clear(&a);
	step_clear(&b);
}

static void test_plan__argv_params_env_change_key(void **state)
{
	struct step a, b;
	char k1[65], k2[65], k3[65];
	(void)state;
	mk(&a, "true", "--lr=1");
	mk(&b, "true", "--lr=2");
	key(&a, "{}", NULL, 0, k1);
	key(&b, "{}", NULL, 0, k2);
	assert_string_not_equal(k1, k2);
	key(&a, "{\"lr\":1}", NULL, 0, k2);
	assert_string_not_equal(k1, k2);
	/* env: values count, order does not. */
	add_env(&a, "A", "1");
	add_env(&a, "B", "2");
	key(&a, "{}", NULL, 0, k2);
	assert_string_not_equal(k1, k2);
	step_clear(&b);
	mk(&b, "true", "--lr=1");
	add_env(&b, "B", "2");
	add_env(&b, "A", "1");
	key(&b, "{}", NULL, 0, k3);
	assert_string_equal(k2, k3);
	/* Length-prefixed: moving a boundary between words is a change. */
	step_clear(&a);
	step_clear(&b);
	mk(&a, "true", "ab");
	a.argc = 3;
	a.argv = xrealloc(a.argv, 4 * sizeof(char *));
	a.argv[2] = xstrdup("c");
	a.argv[3] = NULL;
	mk(&b, "true", "a");
	b.argc = 3;
	b.argv = xrealloc(b.argv, 4 * sizeof(char *));
	b.argv[2] = xstrdup("bc");
	b.argv[3] = NULL;
	key(&a, "{}", NULL, 0, k1);
	key(&b, "{}", NULL, 0, k2);
	assert_string_not_equal(k1, k2);
	step_clear(&a);
	step_clear(&b);
}

static void test_plan__inputs_by_digest_not_order(void **state)
{
	struct step a;
	struct key_input in1[] = { { "data", "d1" }, { "teacher", "t1" } };
	struct key_input in2[] = { { "teacher", "t1" }, { "data", "d1" } };
	struct key_input in3[] = { { "data", "d2" }, { "teacher", "t1" } };
	char k1[65], k2[65], k3[65];
	(void)state;
	mk(&a, "true", "${inputs.data}");
	key(&a, "{}", in1, 2, k1);
	key(&a, "{}", in2, 2, k2);
	key(&a, "{}", in3, 2, k3);
	assert_string_equal(k1, k2);
	assert_string_not_equal(k1, k3);
	step_clear(&a);
}

static void test_plan__script_content_not_mtime(void **state)
{
	struct step a;
	char *script = fs_join(dir, "train.py"), k1[65], k2[65], k3[65];
	struct err e;
	struct timespec ts[2] = { { 1000000, 0 }, { 1000000, 0 } };
	(void)state;
	assert_int_equal(fs_write_atomic(script, "print(1)\n", 9, 0644, &e), 0);
	mk(&a, "true", "train.py");       /* relative to the workspace (dir) */
	key(&a, "{}", NULL, 0, k1);
	/* Touching it (new mtime, same bytes) keeps the key. */
	assert_int_equal(utimensat(AT_FDCWD, script, ts, 0), 0);
	key(&a, "{}", NULL, 0, k2);
	assert_string_equal(k1, k2);
	/* Editing it changes it. */
	assert_int_equal(fs_write_atomic(script, "print(2)\n", 9, 0644, &e), 0);
	key(&a, "{}", NULL, 0, k3);
	assert_string_not_equal(k1, k3);
	step_clear(&a);
	free(script);
}

static void test_plan__program_identity(void **state)
{
	struct step a, b;
	char k1[65], k2[65];
	char *p;
	(void)state;
	p = plan_which("sh", dir, "/nonexistent:/bin:/usr/bin");
	assert_non_null(p);
	assert_true(p[0] == '/');
	free(p);
	assert_null(plan_which("no-such-program-anneal", dir, "/bin:/usr/bin"));
	/* Two different programs, same argv words otherwise. */
	mk(&a, "true", "x");
	mk(&b, "false", "x");
	key(&a, "{}", NULL, 0, k1);
	key(&b, "{}", NULL, 0, k2);
	assert_string_not_equal(k1, k2);
	step_clear(&a);
	step_clear(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan__same_step_same_key),
		cmocka_unit_test(test_plan__argv_params_env_change_key),
		cmocka_unit_test(test_plan__inputs_by_digest_not_order),
		cmocka_unit_test(test_plan__script_content_not_mtime),
		cmocka_unit_test(test_plan__program_identity),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
