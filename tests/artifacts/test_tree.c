/* tests/artifacts/test_tree.c — tree digests depend on content only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"

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

/* ---- parallel hashing, structured manifests -------------------------------- */

struct want {
	const char *rel;
	size_t size;
	int exec;
};

/* Sizes around the 1 MiB read chunk, empty files, nested directories and an
 * executable; the content depends on the path so that no two files agree. */
static const struct want wide[] = {
	{ "a/b/c/deep.bin", 3 * (1 << 20) + 17, 0 },
	{ "a/empty", 0, 0 },
	{ "a/one", 1, 0 },
	{ "b.sh", 100, 1 },
	{ "chunk", 1 << 20, 0 },
	{ "chunk+1", (1 << 20) + 1, 0 },
	{ "chunk-1", (1 << 20) - 1, 0 },
	{ "model-00001-of-00003.safetensors", 5 * (1 << 20) + 3, 0 },
	{ "model-00002-of-00003.safetensors", 5 * (1 << 20) + 3, 0 },
	{ "model-00003-of-00003.safetensors", 2 * (1 << 20), 0 },
	{ "z/config.json", 300, 0 },
	{ "z/tokenizer.json", 70000, 0 },
};

static uint8_t *content(const char *rel, size_t size)
{
	uint8_t *p = xmalloc(size ? size : 1);
	uint32_t x = 2166136261u;

	for (const char *c = rel; *c; c++)
		x = (x ^ (uint8_t)*c) * 16777619u;
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return p;
}

/* Builds the wide tree and, from our own sha256_buf, the manifest text it
 * must have. */
static char *mkwide(char **expect)
{
	char tmpl[] = "/tmp/anneal-tree-XXXXXX";
	char *d = xstrdup(mkdtemp(tmpl));
	struct buf m = BUF_INIT;
	struct err e;

	buf_init(&m);
	for (size_t i = 0; i < sizeof(wide) / sizeof(*wide); i++) {
		char *path = fs_join(d, wide[i].rel), *dir = xstrdup(path);
		uint8_t *data = content(wide[i].rel, wide[i].size);
		struct digest dg;
		char hex[DIGEST_HEX_LEN + 1];

		*strrchr(dir, '/') = '\0';
		assert_int_equal(fs_mkdir_p(dir, 0755, &e), 0);
		assert_int_equal(fs_write_atomic(path, data, wide[i].size,
						 wide[i].exec ? 0755 : 0644, &e), 0);
		sha256_buf(data, wide[i].size, &dg);
		digest_hex(&dg, hex);
		/* wide[] is sorted bytewise already, as the manifest is. */
		buf_printf(&m, "%s %zu %s %s\n", hex, wide[i].size,
			   wide[i].exec ? "755" : "644", wide[i].rel);
		free(data);
		free(dir);
		free(path);
	}
	*expect = buf_detach(&m);
	return d;
}

static void test_tree__same_manifest_for_any_thread_count(void **state)
{
	char *expect = NULL, *d = mkwide(&expect);
	struct digest want;
	struct err e;
	int threads[] = { 1, 2, 8, 0 };
	(void)state;
	sha256_buf(expect, strlen(expect), &want);
	for (size_t t = 0; t < sizeof(threads) / sizeof(*threads); t++) {
		struct manifest m;

		assert_int_equal(tree_manifest_ex(d, threads[t], &m, &e), 0);
		assert_string_equal(m.text, expect);
		assert_int_equal(m.text_len, strlen(expect));
		assert_memory_equal(m.digest.b, want.b, DIGEST_LEN);
		assert_int_equal(m.n, sizeof(wide) / sizeof(*wide));
		for (size_t i = 0; i < m.n; i++) {
			assert_string_equal(m.v[i].path, wide[i].rel);
			assert_int_equal(m.v[i].size, wide[i].size);
			assert_int_equal(m.v[i].exec, wide[i].exec);
		}
		manifest_free(&m);
		manifest_free(&m); /* zeroed: a second free is harmless */
	}
	free(expect);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__single_file_is_dot(void **state)
{
	char *d = mktree(), *a = fs_join(d, "a.txt");
	struct manifest m;
	struct err e;
	(void)state;
	assert_int_equal(tree_manifest_ex(a, 4, &m, &e), 0);
	assert_string_equal(m.text,
		"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 6 644 .\n");
	assert_int_equal(m.n, 1);
	assert_string_equal(m.v[0].path, ".");
	manifest_free(&m);
	free(a);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__empty_dir(void **state)
{
	char tmpl[] = "/tmp/anneal-tree-XXXXXX";
	char *d = mkdtemp(tmpl);
	struct manifest m;
	struct digest empty;
	struct err e;
	(void)state;
	assert_int_equal(tree_manifest_ex(d, 0, &m, &e), 0);
	assert_int_equal(m.n, 0);
	assert_string_equal(m.text, "");
	sha256_buf("", 0, &empty);
	assert_memory_equal(m.digest.b, empty.b, DIGEST_LEN);
	manifest_free(&m);
	rmdir(d);
}

static void test_tree__refuses_fifo_and_newline(void **state)
{
	char *d = mktree(), *p = fs_join(d, "sub/pipe"), *nl = fs_join(d, "bad\nname");
	struct manifest m;
	struct err e;
	(void)state;
	assert_int_equal(mkfifo(p, 0644), 0);
	assert_int_equal(tree_manifest_ex(d, 2, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "sub/pipe': a FIFO is not allowed in an output"));
	assert_null(m.text);
	unlink(p);
	assert_int_equal(fs_write_atomic(nl, "x", 1, 0644, &e), 0);
	assert_int_equal(tree_manifest_ex(d, 2, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "a file name with a newline is not allowed"));
	free(p);
	free(nl);
	fs_remove_tree(d, &e);
	free(d);
}

/* Hooks: count calls; fail on one named file; or grow a file while it is
 * read. */
struct hook_ctx {
	pthread_mutex_t lock;
	int begins, ends, failed_ends;
	const char *fail_on;
	int grow;
};

static int h_begin(void *ctx, struct tree_file *f, struct err *err)
{
	struct hook_ctx *c = ctx;
	pthread_mutex_lock(&c->lock);
	c->begins++;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int h_chunk(void *ctx, struct tree_file *f, const void *data, size_t len,
		   struct err *err)
{
	struct hook_ctx *c = ctx;
	if (c->fail_on && !strcmp(f->entry->path, c->fail_on))
		return err_set(err, ERR_SYSTEM, "'%s': injected failure", f->path);
	if (c->grow) {
		int fd = open(f->path, O_WRONLY | O_APPEND);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "x", 1), 1);
		close(fd);
	}
	return 0;
}

static int h_end(void *ctx, struct tree_file *f, int failed, struct err *err)
{
	struct hook_ctx *c = ctx;
	pthread_mutex_lock(&c->lock);
	c->ends++;
	c->failed_ends += failed;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void test_tree__hooks_see_every_file_and_failures_stop(void **state)
{
	char *expect = NULL, *d = mkwide(&expect);
	struct hook_ctx c = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct tree_hooks hk = { &c, h_begin, h_chunk, h_end };
	struct manifest m;
	struct err e;
	(void)state;
	assert_int_equal(tree_scan(d, 3, &hk, &m, &e), 0);
	assert_string_equal(m.text, expect);
	assert_int_equal(c.begins, (int)(sizeof(wide) / sizeof(*wide)));
	assert_int_equal(c.ends, c.begins);
	assert_int_equal(c.failed_ends, 0);
	manifest_free(&m);

	memset(&c, 0, sizeof(c));
	pthread_mutex_init(&c.lock, NULL);
	c.fail_on = "chunk";
	assert_int_equal(tree_scan(d, 2, &hk, &m, &e), ERR_SYSTEM);
	assert_non_null(strstr(e.msg, "chunk': injected failure"));
	assert_null(m.text);
	assert_int_equal(c.ends, c.begins);     /* every begun file ended */
	assert_true(c.failed_ends >= 1);
	pthread_mutex_destroy(&c.lock);
	free(expect);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__file_changing_while_hashed(void **state)
{
	char *expect = NULL, *d = mkwide(&expect);
	struct hook_ctx c = { .lock = PTHREAD_MUTEX_INITIALIZER, .grow = 1 };
	struct tree_hooks hk = { &c, NULL, h_chunk, NULL };
	struct manifest m;
	struct err e;
	(void)state;
	assert_int_equal(tree_scan(d, 1, &hk, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "changed while being hashed"));
	free(expect);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__manifest_parse_round_trip(void **state)
{
	char *expect = NULL, *d = mkwide(&expect);
	struct manifest a, b;
	struct err e;
	(void)state;
	assert_int_equal(tree_manifest_ex(d, 2, &a, &e), 0);
	assert_int_equal(manifest_parse(a.text, &b, &e), 0);
	assert_int_equal(a.n, b.n);
	assert_memory_equal(a.digest.b, b.digest.b, DIGEST_LEN);
	assert_int_equal(a.bytes, b.bytes);
	for (size_t i = 0; i < a.n; i++) {
		assert_string_equal(a.v[i].path, b.v[i].path);
		assert_int_equal(a.v[i].size, b.v[i].size);
		assert_int_equal(a.v[i].exec, b.v[i].exec);
		assert_memory_equal(a.v[i].digest.b, b.v[i].digest.b, DIGEST_LEN);
	}
	manifest_free(&a);
	manifest_free(&b);
	free(expect);
	fs_remove_tree(d, &e);
	free(d);
}

static void test_tree__manifest_parse_rejects(void **state)
{
#define H "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	static const struct { const char *text, *msg; } bad[] = {
		{ H " 6 644 ../etc/passwd\n", "not allowed" },
		{ H " 6 644 /etc/passwd\n", "not allowed" },
		{ H " 6 644 a//b\n", "not allowed" },
		{ H " 6 644 a/./b\n", "not allowed" },
		{ H " 6 644 b\n" H " 6 644 a\n", "out of order" },
		{ H " 6 644 a\n" H " 6 644 a\n", "out of order or repeated" },
		{ H " 6 644 .\n" H " 6 644 a\n", "not allowed" },
		{ H " 6 600 a\n", "bad mode" },
		{ H " 06 644 a\n", "bad size" },
		{ H " x 644 a\n", "bad size" },
		{ H " 99999999999999999999999 644 a\n", "bad size" },
		{ "5891B5B522D5DF086D0FF0B110FBD9D21BB4FC7163AF34D08286A2E846F6BE03 6 644 a\n", "bad digest" },
		{ H " 6 644 a", "no final newline" },
		{ "garbage\n", "malformed" },
	};
	struct manifest m;
	struct err e;
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		assert_int_equal(manifest_parse(bad[i].text, &m, &e), ERR_INVALID);
		if (!strstr(e.msg, bad[i].msg))
			fail_msg("case %zu: '%s'", i, e.msg);
		assert_null(m.v);
	}
	assert_int_equal(manifest_parse(H " 6 644 .\n", &m, &e), 0);
	assert_int_equal(m.n, 1);
	manifest_free(&m);
#undef H
}

/* A step swaps a directory for a symlink after the walk: the scan must not
 * follow it out of the tree. */
static int swap_dir(void *ctx, struct tree_file *f, struct err *err)
{
	const char *root = ctx;
	char *sub = fs_join(root, "sub"), *moved = fs_join(root, "moved");
	if (!strcmp(f->entry->path, "big")) {
		assert_int_equal(rename(sub, moved), 0);
		assert_int_equal(symlink("/etc", sub), 0);
	}
	free(sub);
	free(moved);
	return 0;
}

static void test_tree__no_symlink_followed_after_the_walk(void **state)
{
	char *d = mktree(), *big = fs_join(d, "big");
	struct tree_hooks hk = { d, swap_dir, NULL, NULL };
	struct manifest m;
	struct err e;
	(void)state;
	assert_int_equal(fs_write_atomic(big, "a bigger file than the others", 29, 0644, &e), 0);
	assert_int_equal(tree_scan(d, 1, &hk, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "sub/b.bin': a symbolic link is not allowed"));
	free(big);
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
		cmocka_unit_test(test_tree__same_manifest_for_any_thread_count),
		cmocka_unit_test(test_tree__single_file_is_dot),
		cmocka_unit_test(test_tree__empty_dir),
		cmocka_unit_test(test_tree__refuses_fifo_and_newline),
		cmocka_unit_test(test_tree__hooks_see_every_file_and_failures_stop),
		cmocka_unit_test(test_tree__file_changing_while_hashed),
		cmocka_unit_test(test_tree__manifest_parse_round_trip),
		cmocka_unit_test(test_tree__manifest_parse_rejects),
		cmocka_unit_test(test_tree__no_symlink_followed_after_the_walk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
