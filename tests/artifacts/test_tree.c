/* tests/artifacts/test_tree.c — tree digests depend on content only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"

static char *mktree(void)
{
	char tmpl[] = "/tmp/anneal-tree-XXXXXX";
	char *d = xstrdup(mkdtemp(tmpl));
	struct err e;
	char *sub = fs_join(d, "sub"), *a = fs_join(d, "a.txt"), *b = fs_join(sub, "b.bin");
	assert_int_equal(fs_mkdir_p(sub, 0777, &e), 0);
	assert_int_equal(fs_write_atomic(a, "hello\n", 6, 0644, &e), 0);
	assert_int_equal(fs_write_atomic(b, "\x00\x01\x02", 3, 0644, &e), 0);
	free(sub);
	free(a);
	free(b);
	return d;
}

static void test_tree__manifest_format_and_sha256sum(void **state)
{
	char *d = mktree(), *m = NULL;
	struct tree_info ti;
	struct err e;
	(void)state;
	assert_int_equal(tree_manifest(d, &m, &ti, &e), 0);
	/* sha256sum of "hello\n" */
	assert_non_null(strstr(m, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 6 644 a.txt\n"));
	assert_non_null(strstr(m, " 3 644 sub/b.bin\n"));
	assert_true(strstr(m, "a.txt") < strstr(m, "sub/b.bin"));
	assert_int_equal(ti.files, 2);
	assert_int_equal(ti.bytes, 9);
	free(m);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__digest_ignores_mtime_and_readonly(void **state)
{
	char *d = mktree(), *a;
	struct tree_info t1, t2, t3;
	struct err e;
	(void)state;
	assert_int_equal(tree_digest(d, &t1, &e), 0);
	a = fs_join(d, "a.txt");
	chmod(a, 0444);
	assert_int_equal(tree_digest(d, &t2, &e), 0);
	assert_memory_equal(t1.digest.b, t2.digest.b, 32);
	/* Content change: new digest. */
	chmod(a, 0644);
	assert_int_equal(fs_write_atomic(a, "hellO\n", 6, 0644, &e), 0);
	assert_int_equal(tree_digest(d, &t3, &e), 0);
	assert_memory_not_equal(t1.digest.b, t3.digest.b, 32);
	free(a);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__refuses_symlink(void **state)
{
	char *d = mktree(), *l;
	struct tree_info ti;
	struct err e;
	(void)state;
	l = fs_join(d, "escape");
	assert_int_equal(symlink("/etc/passwd", l), 0);
	assert_int_equal(tree_digest(d, &ti, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "a symbolic link is not allowed in an output"));
	free(l);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__single_file_and_missing(void **state)
{
	char *d = mktree(), *a = NULL;
	struct tree_info ti;
	struct err e;
	(void)state;
	a = fs_join(d, "a.txt");
	assert_int_equal(tree_digest(a, &ti, &e), 0);
	assert_int_equal(ti.files, 1);
	assert_int_equal(tree_digest("/nonexistent/x", &ti, &e), ERR_SYSTEM);
	free(a);
	fs_remove_tree(d, &e);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tree__manifest_format_and_sha256sum),
		cmocka_unit_test(test_tree__digest_ignores_mtime_and_readonly),
		cmocka_unit_test(test_tree__refuses_symlink),
		cmocka_unit_test(test_tree__single_file_and_missing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
