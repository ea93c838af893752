/* tests/base/test_base.c — errors, buffers, atomic files, hashing, utils. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/util.h"

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/anneal-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return xstrdup(d);
}

static void test_err__prefix_and_exit_codes(void **state)
{
	struct err e;
	(void)state;
	err_clear(&e);
	assert_int_equal(err_set(&e, ERR_INVALID, "field '%s': bad", "x"), ERR_INVALID);
	err_prefix(&e, "recipes/%s", "a.json");
	assert_string_equal(e.msg, "recipes/a.json: field 'x': bad");
	assert_int_equal(e.code, ERR_INVALID);
	assert_int_equal(err_exit_status(ERR_INVALID), 2);
	assert_int_equal(err_exit_status(ERR_STEP), 1);
	assert_int_equal(err_exit_status(ERR_SYSTEM), 3);
	assert_int_equal(err_exit_status(0), 0);
	err_sys(&e, ENOENT, "cannot open '%s'", "f");
	assert_string_equal(e.msg, "cannot open 'f': No such file or directory");
	assert_int_equal(e.code, ERR_SYSTEM);
}

static void test_err__prefix_truncates_safely(void **state)
{
	struct err e;
	char big[3000];
	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	err_set(&e, ERR_INVALID, "%s", big);
	err_prefix(&e, "%s", big);
	assert_int_equal(strlen(e.msg), ERR_MSG_MAX - 1);
}

static void test_buf__json_escapes(void **state)
{
	struct buf b = BUF_INIT;
	(void)state;
	buf_add_json_str(&b, "a\"b\\c\n\x01");
	assert_string_equal(buf_str(&b), "\"a\\\"b\\\\c\\n\\u0001\"");
	buf_reset(&b);
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%d,", i);
	assert_true(b.len > 3000);
	assert_memory_equal(b.ptr, "0,1,2,", 6);
	buf_free(&b);
}

static void test_fs__atomic_write_replaces_whole(void **state)
{
	char *d = tmpdir(), *p = fs_join(d, "f.json"), *data = NULL;
	struct err e;
	size_t len;
	(void)state;
	assert_int_equal(fs_write_atomic(p, "old", 3, 0644, &e), 0);
	assert_int_equal(fs_write_atomic(p, "new!", 4, 0644, &e), 0);
	assert_int_equal(fs_read_file(p, 100, &data, &len, &e), 0);
	assert_string_equal(data, "new!");
	free(data);
	/* No temporary files left behind. */
	char *tmp = xasprintf("%s.tmp.%ld", p, (long)getpid());
	assert_false(fs_exists(tmp));
	free(tmp);
	assert_int_equal(fs_read_file(p, 2, &data, &len, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "too large"));
	assert_int_equal(fs_read_file(d, 100, &data, &len, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "not a regular file"));
	assert_int_equal(fs_remove_tree(d, &e), 0);
	assert_false(fs_exists(d));
	free(p);
	free(d);
}

static void test_fs__atomic_write_fails_cleanly(void **state)
{
	struct err e;
	(void)state;
	assert_int_equal(fs_write_atomic("/nonexistent-dir/x", "a", 1, 0644, &e), ERR_SYSTEM);
	assert_non_null(strstr(e.msg, "/nonexistent-dir/x"));
}

static void test_fs__mkdir_p_and_remove_readonly_tree(void **state)
{
	char *d = tmpdir(), *deep = fs_join(d, "a/b/c"), *f = fs_join(deep, "x");
	struct err e;
	(void)state;
	assert_int_equal(fs_mkdir_p(deep, 0777, &e), 0);
	assert_int_equal(fs_write_atomic(f, "x", 1, 0444, &e), 0);
	chmod(deep, 0555);
	assert_int_equal(fs_remove_tree(d, &e), 0);
	assert_false(fs_exists(d));
	free(f);
	free(deep);
	free(d);
}

static void test_hash__sha256_known_vectors(void **state)
{
	struct digest dg, back;
	char hex[65];
	(void)state;
	sha256_buf("abc", 3, &dg);
	digest_hex(&dg, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(digest_parse(hex, &back), 0);
	assert_memory_equal(back.b, dg.b, 32);
	assert_int_equal(digest_parse("zz", &back), ERR_INVALID);
}

static void test_hash__file_matches_buffer(void **state)
{
	char *d = tmpdir(), *p = fs_join(d, "big");
	size_t n = 3 * 1024 * 1024 + 17;
	char *data = xmalloc(n);
	struct digest a, b;
	uint64_t size = 0;
	struct err e;
	(void)state;
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 31 + 7);
	assert_int_equal(fs_write_atomic(p, data, n, 0644, &e), 0);
	sha256_buf(data, n, &a);
	assert_int_equal(sha256_file(p, &b, &size, &e), 0);
	assert_int_equal(size, n);
	assert_memory_equal(a.b, b.b, 32);
	fs_remove_tree(d, &e);
	free(data);
	free(p);
	free(d);
}

static void test_util__did_you_mean(void **state)
{
	const char *c[] = { "teacher", "student", "data" };
	(void)state;
	assert_string_equal(did_you_mean("teachr", c, 3), "teacher");
	assert_string_equal(did_you_mean("dta", c, 3), "data");
	assert_string_equal(did_you_mean("tecaher", c, 3), "teacher");   /* a swap is one edit */
	assert_string_equal(did_you_mean("stduent", c, 3), "student");
	assert_null(did_you_mean("zzzzzz", c, 3));
}

static void test_util__parse_int(void **state)
{
	long long v = 0;

	(void)state;
	assert_int_equal(parse_int("42", 1, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_int("-3", -5, 5, &v), 0);
	assert_int_equal(v, -3);
	/* Only digits (and a sign for negatives): no space, no '+', no junk. */
	assert_int_equal(parse_int(" 3", 1, 100, &v), ERR_INVALID);
	assert_int_equal(parse_int("+3", 1, 100, &v), ERR_INVALID);
	assert_int_equal(parse_int("3 ", 1, 100, &v), ERR_INVALID);
	assert_int_equal(parse_int("-", -5, 5, &v), ERR_INVALID);
	assert_int_equal(parse_int("", 1, 100, &v), ERR_INVALID);
	assert_int_equal(parse_int("0x10", 1, 100, &v), ERR_INVALID);
	assert_int_equal(parse_int("101", 1, 100, &v), ERR_INVALID);
	assert_int_equal(parse_int("99999999999999999999", 1, LLONG_MAX, &v), ERR_INVALID);
	assert_int_equal(v, -3);
}

static void test_util__parse_duration(void **state)
{
	long long v;
	(void)state;
	assert_int_equal(parse_duration("90", 100000, &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(parse_duration("1h30m", 100000, &v), 0);
	assert_int_equal(v, 5400);
	assert_int_equal(parse_duration("2d", 1000000, &v), 0);
	assert_int_equal(v, 172800);
	assert_int_equal(parse_duration("1h 5m 3s", 100000, &v), 0);
	assert_int_equal(v, 3903);
	assert_int_equal(parse_duration("", 100, &v), ERR_INVALID);
	assert_int_equal(parse_duration("5x", 100, &v), ERR_INVALID);
	assert_int_equal(parse_duration("-5", 100, &v), ERR_INVALID);
	assert_int_equal(parse_duration("2h", 3600, &v), ERR_INVALID);
	assert_int_equal(parse_duration("99999999999999999999", 3600, &v), ERR_INVALID);
}

static void test_util__strv(void **state)
{
	struct strv sv = STRV_INIT;
	char out[32];
	(void)state;
	for (int i = 0; i < 20; i++)
		strv_push_owned(&sv, xasprintf("s%d", i));
	assert_int_equal(sv.n, 20);
	assert_null(sv.v[20]);
	assert_int_equal(strv_find(&sv, "s7"), 7);
	assert_int_equal(strv_find(&sv, "nope"), -1);
	strv_free(&sv);
	format_duration(42, out, sizeof(out));
	assert_string_equal(out, "0:42");
	format_duration(3723, out, sizeof(out));
	assert_string_equal(out, "1:02:03");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err__prefix_and_exit_codes),
		cmocka_unit_test(test_err__prefix_truncates_safely),
		cmocka_unit_test(test_buf__json_escapes),
		cmocka_unit_test(test_fs__atomic_write_replaces_whole),
		cmocka_unit_test(test_fs__atomic_write_fails_cleanly),
		cmocka_unit_test(test_fs__mkdir_p_and_remove_readonly_tree),
		cmocka_unit_test(test_hash__sha256_known_vectors),
		cmocka_unit_test(test_hash__file_matches_buffer),
		cmocka_unit_test(test_util__did_you_mean),
		cmocka_unit_test(test_util__parse_int),
		cmocka_unit_test(test_util__parse_duration),
		cmocka_unit_test(test_util__strv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
