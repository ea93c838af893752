/* tests/artifacts/test_store.c — the content-addressed store: ingest by link
 * and by copy, dedup, verification, stale staging files, a kill mid-ingest,
 * checkout, hostile input. Everything in temp dirs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"

struct fx {
	char *dir;     /* the test's temp dir */
	char *root;    /* dir/store */
	struct store *s;
};

static int setup(void **state)
{
	char tmpl[] = "/tmp/anneal-store-XXXXXX";
	struct fx *f = xcalloc(1, sizeof(*f));
	struct err e;

	f->dir = xstrdup(mkdtemp(tmpl));
	f->root = fs_join(f->dir, "store");
	assert_int_equal(store_open(&f->s, f->root, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct err e;

	store_free(f->s);
	assert_int_equal(fs_remove_tree(f->dir, &e), 0);
	free(f->root);
	free(f->dir);
	free(f);
	return 0;
}

static void put(const char *dir, const char *rel, const char *data, mode_t mode)
{
	char *path = fs_join(dir, rel), *parent = xstrdup(path);
	struct err e;

	*strrchr(parent, '/') = '\0';
	assert_int_equal(fs_mkdir_p(parent, 0755, &e), 0);
	assert_int_equal(fs_write_atomic(path, data, strlen(data), mode, &e), 0);
	free(parent);
	free(path);
}

static struct stat st_of(const char *dir, const char *rel)
{
	char *path = rel ? fs_join(dir, rel) : xstrdup(dir);
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	free(path);
	return st;
}

static struct stat st_obj(struct store *s, const struct digest *d)
{
	char *path = store_object_path(s, d);
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	free(path);
	return st;
}

static const struct manifest_entry *entry(const struct manifest *m, const char *rel)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->v[i].path, rel))
			return &m->v[i];
	fail_msg("no entry '%s'", rel);
	return NULL;
}

struct counts {
	int objects, stray;
	int deep_bad;
	struct store *s;
};

static int count_cb(void *ctx, const struct store_entry *e)
{
	struct counts *c = ctx;
	struct err err;

	if (e->stray) {
		c->stray++;
		return 0;
	}
	c->objects++;
	if (c->s && store_verify(c->s, &e->digest, e->size, 1, &err))
		c->deep_bad++;
	return 0;
}

static struct counts count(struct store *s, int deep)
{
	struct counts c = { .s = deep ? s : NULL };
	struct err e;

	assert_int_equal(store_list(s, count_cb, &c, &e), 0);
	return c;
}

static int tmp_files(const char *root)
{
	char *tmp = fs_join(root, "tmp");
	DIR *d = opendir(tmp);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	free(tmp);
	return n;
}

static char *mksrc(struct fx *f, const char *name)
{
	char *src = fs_join(f->dir, name);

	put(src, "model.safetensors", "weights weights weights", 0644);
	put(src, "config.json", "{\"layers\": 2}", 0644);
	put(src, "sub/tokenizer.json", "{\"vocab\": []}", 0644);
	return src;
}

/* ---- link mode ----------------------------------------------------------------- */

static void test_store__link_keeps_inode_and_makes_it_readonly(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out");
	struct manifest m, again;
	struct err e;

	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 2, &m, &e), 0);
	assert_int_equal(m.n, 3);
	for (size_t i = 0; i < m.n; i++) {
		struct stat s1 = st_of(src, m.v[i].path), o = st_obj(f->s, &m.v[i].digest);
		assert_int_equal(s1.st_ino, o.st_ino);
		assert_int_equal(o.st_nlink, 2);
		assert_int_equal(o.st_mode & 07777, 0444);
		assert_int_equal(store_has(f->s, &m.v[i].digest, NULL), 1);
		assert_int_equal(store_verify(f->s, &m.v[i].digest, m.v[i].size, 1, &e), 0);
	}
	/* Store directories are private. */
	assert_int_equal(st_of(f->root, "objects").st_mode & 07777, 0700);
	assert_int_equal(st_of(f->root, "tmp").st_mode & 07777, 0700);
	/* The source still hashes the same: same manifest digest. */
	assert_int_equal(tree_manifest_ex(src, 1, &again, &e), 0);
	assert_memory_equal(m.digest.b, again.digest.b, DIGEST_LEN);
	/* A second ingest of the same tree is a no-op. */
	manifest_free(&again);
	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 2, &again, &e), 0);
	assert_int_equal(st_obj(f->s, &m.v[0].digest).st_nlink, 2);
	assert_int_equal(count(f->s, 0).objects, 3);
	assert_int_equal(tmp_files(f->root), 0);
	manifest_free(&again);
	manifest_free(&m);
	free(src);
}

static void test_store__dedup_across_trees(void **state)
{
	struct fx *f = *state;
	char *a = fs_join(f->dir, "a"), *b = fs_join(f->dir, "b");
	struct manifest ma, mb;
	struct stat sa, sb;
	struct err e;

	put(a, "shared.bin", "the same bytes in two outputs", 0644);
	put(a, "only-a", "a", 0644);
	put(b, "x/shared.bin", "the same bytes in two outputs", 0644);
	put(b, "only-b", "b", 0644);
	assert_true(st_of(a, "shared.bin").st_ino != st_of(b, "x/shared.bin").st_ino);
	{	/* two names of one inode inside a tree */
		char *p1 = fs_join(a, "shared.bin"), *p2 = fs_join(a, "again.bin");
		assert_int_equal(link(p1, p2), 0);
		free(p1);
		free(p2);
	}
	assert_int_equal(store_ingest_tree(f->s, a, STORE_LINK, 0, &ma, &e), 0);
	assert_int_equal(store_ingest_tree(f->s, b, STORE_LINK, 0, &mb, &e), 0);
	assert_int_equal(count(f->s, 0).objects, 3);
	sa = st_of(a, "shared.bin");
	sb = st_of(b, "x/shared.bin");
	assert_int_equal(sa.st_ino, sb.st_ino);
	assert_int_equal(sa.st_ino, st_obj(f->s, &entry(&ma, "shared.bin")->digest).st_ino);
	assert_int_equal(sa.st_nlink, 4);
	assert_int_equal(st_of(a, "again.bin").st_ino, sa.st_ino);
	/* No link temp left beside the replaced file. */
	{
		char *x = fs_join(b, "x");
		DIR *d = opendir(x);
		struct dirent *de;
		int n = 0;
		assert_non_null(d);
		while ((de = readdir(d)))
			n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
		closedir(d);
		free(x);
		assert_int_equal(n, 1);
	}
	manifest_free(&ma);
	manifest_free(&mb);
	free(a);
	free(b);
}

static void test_store__single_files_dedup(void **state)
{
	struct fx *f = *state;
	char *one = fs_join(f->dir, "one.bin"), *two = fs_join(f->dir, "two.bin");
	struct manifest m1, m2;
	struct err e;

	assert_int_equal(fs_write_atomic(one, "same", 4, 0644, &e), 0);
	assert_int_equal(fs_write_atomic(two, "same", 4, 0644, &e), 0);
	assert_int_equal(store_ingest_tree(f->s, one, STORE_LINK, 0, &m1, &e), 0);
	assert_int_equal(store_ingest_tree(f->s, two, STORE_LINK, 0, &m2, &e), 0);
	assert_string_equal(m1.v[0].path, ".");
	assert_memory_equal(m1.digest.b, m2.digest.b, DIGEST_LEN);
	assert_int_equal(st_of(one, NULL).st_ino, st_of(two, NULL).st_ino);
	assert_int_equal(st_of(one, NULL).st_nlink, 3);
	assert_int_equal(count(f->s, 0).objects, 1);
	manifest_free(&m1);
	manifest_free(&m2);
	free(one);
	free(two);
}

/* ---- copy mode ------------------------------------------------------------------ */

static void test_store__copy_mode_leaves_source_alone(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out");
	struct manifest m;
	struct err e;

	assert_int_equal(store_ingest_tree(f->s, src, STORE_COPY, 2, &m, &e), 0);
	for (size_t i = 0; i < m.n; i++) {
		struct stat s1 = st_of(src, m.v[i].path), o = st_obj(f->s, &m.v[i].digest);
		assert_true(s1.st_ino != o.st_ino);
		assert_int_equal(s1.st_mode & 07777, 0644);
		assert_int_equal(s1.st_nlink, 1);
		assert_int_equal(o.st_mode & 07777, 0444);
		assert_int_equal(o.st_nlink, 1);
		assert_int_equal(store_verify(f->s, &m.v[i].digest, m.v[i].size, 1, &e), 0);
	}
	assert_int_equal(tmp_files(f->root), 0);
	manifest_free(&m);
	free(src);
}

static void test_store__link_falls_back_to_copy_across_filesystems(void **state)
{
	struct fx *f = *state;
	char tmpl[] = "/dev/shm/anneal-store-XXXXXX";
	struct stat shm;
	struct manifest m;
	struct err e;
	char *src;

	if (stat("/dev/shm", &shm) < 0 || shm.st_dev == st_of(f->root, NULL).st_dev ||
	    !mkdtemp(tmpl)) {
		skip(); /* no second filesystem here */
		return;
	}
	src = xstrdup(tmpl);
	put(src, "shard-1", "one", 0644);
	put(src, "shard-2", "two", 0644);
	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 2, &m, &e), 0);
	for (size_t i = 0; i < m.n; i++) {
		struct stat s1 = st_of(src, m.v[i].path);
		assert_int_equal(s1.st_mode & 07777, 0644);   /* untouched */
		assert_int_equal(s1.st_nlink, 1);
		assert_int_equal(store_verify(f->s, &m.v[i].digest, m.v[i].size, 1, &e), 0);
	}
	assert_int_equal(tmp_files(f->root), 0);
	manifest_free(&m);
	assert_int_equal(fs_remove_tree(src, &e), 0);
	free(src);
}

static void test_store__executable_is_copied_and_keeps_its_mode(void **state)
{
	struct fx *f = *state;
	char *src = fs_join(f->dir, "tool"), *dst = fs_join(f->dir, "co");
	struct manifest m, back;
	struct err e;

	put(src, "run.sh", "#!/bin/sh\necho hi\n", 0755);
	put(src, "data", "#!/bin/sh\necho hi\n", 0644);   /* same bytes, not exec */
	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 2, &m, &e), 0);
	assert_int_equal(st_of(src, "run.sh").st_mode & 07777, 0755);
	assert_int_equal(count(f->s, 0).objects, 1);
	assert_int_equal(store_checkout(f->s, &m, dst, &e), 0);
	assert_int_equal(st_of(dst, "run.sh").st_mode & 07777, 0555);
	assert_int_equal(st_of(dst, "data").st_mode & 07777, 0444);
	assert_int_equal(tree_manifest_ex(dst, 2, &back, &e), 0);
	assert_string_equal(back.text, m.text);
	manifest_free(&back);
	manifest_free(&m);
	free(src);
	free(dst);
}

/* ---- verify --------------------------------------------------------------------- */

static void test_store__verify_finds_flipped_byte_and_truncation(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out"), *obj;
	struct manifest m;
	const struct manifest_entry *w;
	struct digest missing;
	struct err e;
	int fd;
	char c;

	assert_int_equal(store_ingest_tree(f->s, src, STORE_COPY, 1, &m, &e), 0);
	w = entry(&m, "model.safetensors");
	obj = store_object_path(f->s, &w->digest);

	/* One flipped byte: same size, so only deep finds it. */
	assert_int_equal(chmod(obj, 0644), 0);
	fd = open(obj, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, 5), 1);
	c ^= 1;
	assert_int_equal(pwrite(fd, &c, 1, 5), 1);
	close(fd);
	assert_int_equal(store_verify(f->s, &w->digest, w->size, 0, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "is writable"));
	assert_int_equal(chmod(obj, 0444), 0);
	assert_int_equal(store_verify(f->s, &w->digest, w->size, 0, &e), 0);
	assert_int_equal(store_verify(f->s, &w->digest, w->size, 1, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "does not match its digest"));
	assert_int_equal(count(f->s, 1).deep_bad, 1);

	/* Truncated: shallow finds it. */
	assert_int_equal(truncate(obj, 3), 0);
	assert_int_equal(store_verify(f->s, &w->digest, w->size, 0, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "has 3 bytes, expected 23"));

	/* Missing. */
	memset(&missing, 0xab, sizeof(missing));
	assert_int_equal(store_has(f->s, &missing, NULL), 0);
	assert_int_equal(store_verify(f->s, &missing, 1, 0, &e), ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "'abababab"));
	assert_non_null(strstr(e.msg, "is missing"));

	/* Removal (gc). */
	assert_int_equal(store_remove_object(f->s, &w->digest, &e), 0);
	assert_int_equal(store_has(f->s, &w->digest, NULL), 0);
	assert_int_equal(store_remove_object(f->s, &w->digest, &e), ERR_NOTFOUND);
	free(obj);
	manifest_free(&m);
	free(src);
}

static void test_store__list_reports_strays(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out");
	struct manifest m;
	struct counts c;
	struct err e;

	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 2, &m, &e), 0);
	put(f->root, "objects/zz", "not an object dir", 0644);
	put(f->root, "objects/ab/short", "bad name", 0644);
	c = count(f->s, 1);
	assert_int_equal(c.objects, 3);
	assert_int_equal(c.stray, 2);
	assert_int_equal(c.deep_bad, 0);
	manifest_free(&m);
	free(src);
}

/* ---- crashes -------------------------------------------------------------------- */

static void test_store__open_removes_stale_staging_files(void **state)
{
	struct fx *f = *state;
	char *live = fs_join(f->root, "tmp/4242.live");
	struct store *s2;
	struct err e;
	int fd;

	put(f->root, "tmp/99999.0123456789abcdef", "left by a dead writer", 0600);
	put(f->root, "tmp/1.fedcba", "another", 0600);
	put(f->root, "tmp/4242.live", "a writer at work", 0600);
	/* A live writer holds its lock (another open file description). */
	fd = open(live, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	assert_int_equal(tmp_files(f->root), 3);
	assert_int_equal(store_open(&s2, f->root, &e), 0);
	assert_int_equal(tmp_files(f->root), 1);
	assert_int_equal(fs_exists(live), 1);
	store_free(s2);
	close(fd);
	assert_int_equal(store_open(&s2, f->root, &e), 0);
	assert_int_equal(tmp_files(f->root), 0);
	store_free(s2);
	free(live);
}

static void write_big(const char *path, size_t mib)
{
	uint8_t *chunk = xmalloc(1 << 20);
	uint32_t x = 12345;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	for (size_t i = 0; i < (1 << 20); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		chunk[i] = (uint8_t)x;
	}
	for (size_t k = 0; k < mib; k++) {
		memcpy(chunk, &k, sizeof(k));   /* every MiB differs */
		assert_int_equal(write(fd, chunk, 1 << 20), 1 << 20);
	}
	close(fd);
	free(chunk);
}

static void test_store__kill_mid_ingest_leaves_a_consistent_store(void **state)
{
	struct fx *f = *state;
	char *src = fs_join(f->dir, "big"), *tmpdir = fs_join(f->root, "tmp");
	struct manifest m, want;
	struct counts c;
	struct store *s2;
	struct err e;
	int saw_staging = 0, status;
	pid_t pid;

	assert_int_equal(fs_mkdir_p(src, 0755, &e), 0);
	{
		char *p = fs_join(src, "shard.bin");
		write_big(p, 256);
		free(p);
	}
	put(src, "config.json", "{}", 0644);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *cs;
		struct manifest cm;
		struct err ce;
		if (store_open(&cs, f->root, &ce) ||
		    store_ingest_tree(cs, src, STORE_COPY, 2, &cm, &ce))
			_exit(1);
		_exit(0);
	}
	/* Wait until the child is writing a staging file, then kill it. */
	for (int i = 0; i < 200000 && !saw_staging; i++) {
		DIR *d = opendir(tmpdir);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			struct stat st;
			if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, 0) == 0 &&
			    st.st_size > (1 << 20))
				saw_staging = 1;
		}
		if (d)
			closedir(d);
		if (!saw_staging) {
			struct timespec ts = { 0, 100000 };
			if (waitpid(pid, &status, WNOHANG) == pid) {
				pid = 0;
				break;
			}
			nanosleep(&ts, NULL);
		}
	}
	if (pid > 0) {
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
	}
	assert_true(saw_staging);
	assert_true(tmp_files(f->root) >= 1);

	/* Next open: staging gone; whatever object exists is whole. */
	assert_int_equal(store_open(&s2, f->root, &e), 0);
	assert_int_equal(tmp_files(f->root), 0);
	c = count(s2, 1);
	assert_int_equal(c.deep_bad, 0);
	assert_int_equal(c.stray, 0);
	assert_true(c.objects <= 1);   /* config.json at most */

	/* Ingest again: complete and right. */
	assert_int_equal(store_ingest_tree(s2, src, STORE_COPY, 2, &m, &e), 0);
	assert_int_equal(tree_manifest_ex(src, 1, &want, &e), 0);
	assert_memory_equal(m.digest.b, want.digest.b, DIGEST_LEN);
	c = count(s2, 1);
	assert_int_equal(c.objects, 2);
	assert_int_equal(c.deep_bad, 0);
	assert_int_equal(tmp_files(f->root), 0);
	manifest_free(&want);
	manifest_free(&m);
	store_free(s2);
	free(tmpdir);
	free(src);
}

/* ---- checkout ------------------------------------------------------------------- */

static void test_store__checkout_is_readonly_and_same_digest(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out"), *dst = fs_join(f->dir, "co"), *one = fs_join(f->dir, "one");
	struct manifest m, back, single;
	struct err e;

	assert_int_equal(store_ingest_tree(f->s, src, STORE_COPY, 2, &m, &e), 0);
	assert_int_equal(store_checkout(f->s, &m, dst, &e), 0);
	assert_int_equal(tree_manifest_ex(dst, 2, &back, &e), 0);
	assert_memory_equal(back.digest.b, m.digest.b, DIGEST_LEN);
	for (size_t i = 0; i < m.n; i++) {
		struct stat s1 = st_of(dst, m.v[i].path);
		assert_int_equal(s1.st_mode & 07777, 0444);
		assert_int_equal(s1.st_ino, st_obj(f->s, &m.v[i].digest).st_ino);
	}
	assert_int_equal(st_of(dst, NULL).st_mode & 07777, 0555);
	assert_int_equal(st_of(dst, "sub").st_mode & 07777, 0555);
	/* Never over something. */
	assert_int_equal(store_checkout(f->s, &m, dst, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "already exists"));
	manifest_free(&back);

	/* A single-file manifest makes a file. */
	{
		char *p = fs_join(src, "config.json");
		assert_int_equal(tree_manifest_ex(p, 1, &single, &e), 0);
		free(p);
	}
	assert_int_equal(store_checkout(f->s, &single, one, &e), 0);
	assert_true(S_ISREG(st_of(one, NULL).st_mode));
	assert_int_equal(tree_manifest_ex(one, 1, &back, &e), 0);
	assert_memory_equal(back.digest.b, single.digest.b, DIGEST_LEN);
	manifest_free(&back);
	manifest_free(&single);
	manifest_free(&m);
	free(one);
	free(dst);
	free(src);
}

static int no_tmp_sibling(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int ok = 1;

	while ((de = readdir(d)))
		if (strstr(de->d_name, "anneal-tmp"))
			ok = 0;
	closedir(d);
	return ok;
}

static void test_store__checkout_with_missing_object_leaves_nothing(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out"), *dst = fs_join(f->dir, "co");
	struct manifest m;
	struct err e;

	assert_int_equal(store_ingest_tree(f->s, src, STORE_COPY, 2, &m, &e), 0);
	assert_int_equal(store_remove_object(f->s, &entry(&m, "sub/tokenizer.json")->digest, &e), 0);
	assert_int_equal(store_checkout(f->s, &m, dst, &e), ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "'sub/tokenizer.json': object '"));
	assert_int_equal(fs_exists(dst), 0);
	assert_true(no_tmp_sibling(f->dir));
	manifest_free(&m);
	free(dst);
	free(src);
}

static void test_store__checkout_refuses_escaping_paths(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out"), *dst = fs_join(f->dir, "co");
	struct manifest m;
	struct err e;
	char *saved;

	assert_int_equal(store_ingest_tree(f->s, src, STORE_COPY, 2, &m, &e), 0);
	/* A manifest built by code, not parsed: checkout checks again. */
	saved = m.v[0].path;
	m.v[0].path = "../escaped";
	assert_int_equal(store_checkout(f->s, &m, dst, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "'../escaped' is not allowed"));
	m.v[0].path = saved;
	assert_int_equal(fs_exists(dst), 0);
	assert_true(no_tmp_sibling(f->dir));
	{
		char *esc = fs_join(f->dir, "escaped");
		assert_int_equal(fs_exists(esc), 0);
		free(esc);
	}
	manifest_free(&m);
	free(dst);
	free(src);
}

/* ---- hostile input -------------------------------------------------------------- */

static void test_store__symlink_refused_and_nothing_stored(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out"), *l = NULL;
	struct manifest m;
	struct err e;

	l = fs_join(src, "sub/escape");
	assert_int_equal(symlink("/etc/passwd", l), 0);
	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 2, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "sub/escape': a symbolic link is not allowed in an output"));
	assert_null(m.text);
	assert_int_equal(count(f->s, 0).objects, 0);
	assert_int_equal(tmp_files(f->root), 0);
	/* The sources were not touched. */
	assert_int_equal(st_of(src, "model.safetensors").st_mode & 07777, 0644);
	assert_int_equal(st_of(src, "model.safetensors").st_nlink, 1);
	/* A symlink as the root itself. */
	unlink(l);
	assert_int_equal(symlink(src, l), 0);
	assert_int_equal(store_ingest_tree(f->s, l, STORE_COPY, 1, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "a symbolic link is not allowed"));
	free(l);
	free(src);
}

/* `ln /elsewhere/secret out/h`: stored as a copy; the other name keeps its
 * inode and its mode (linking would make it read-only, chmod it 0444 for
 * everyone, and let writes through it change the object). */
static void test_store__hard_link_to_a_file_outside_is_copied(void **state)
{
	struct fx *f = *state;
	char *src = mksrc(f, "out"), *outside = fs_join(f->dir, "secret");
	char *h = fs_join(src, "h");
	struct manifest m;
	struct stat so, sh, sobj;
	struct err e;

	assert_int_equal(fs_write_atomic(outside, "not the step's", 14, 0600, &e), 0);
	assert_int_equal(link(outside, h), 0);
	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 2, &m, &e), 0);
	so = st_of(outside, NULL);
	sh = st_of(h, NULL);
	sobj = st_obj(f->s, &entry(&m, "h")->digest);
	assert_int_equal(so.st_mode & 07777, 0600);
	assert_int_equal(so.st_nlink, 1);
	assert_true(so.st_ino != sobj.st_ino);
	/* The tree's name joined the object, as any other file does. */
	assert_int_equal(sh.st_ino, sobj.st_ino);
	assert_int_equal(sobj.st_mode & 07777, 0444);
	assert_int_equal(count(f->s, 1).deep_bad, 0);
	manifest_free(&m);
	free(h);
	free(outside);
	free(src);
}

/* Ingest under a top dir: a symlink in place of a directory on the way is
 * refused, and the files behind it are not touched; "..", or a path not
 * under top, is refused too. */
static void test_store__ingest_under_follows_no_symlink_on_the_way(void **state)
{
	struct fx *f = *state;
	char *top = fs_join(f->dir, "run"), *elsewhere = mksrc(f, "elsewhere");
	char *step = fs_join(top, "s"), *out = fs_join(top, "s/out");
	char *model = fs_join(top, "s/out/model"), *esc = fs_join(top, "s/../../elsewhere");
	struct manifest m;
	struct err e;

	assert_int_equal(fs_mkdir_p(step, 0755, &e), 0);
	assert_int_equal(symlink(elsewhere, out), 0);    /* out -> elsewhere */
	put(elsewhere, "model/w", "behind the link", 0644);
	assert_int_equal(store_ingest_under(f->s, top, model, STORE_LINK, 1, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "a symbolic link or a file on the way from"));
	assert_int_equal(st_of(elsewhere, "model/w").st_mode & 07777, 0644);
	assert_int_equal(st_of(elsewhere, "model/w").st_nlink, 1);
	assert_int_equal(count(f->s, 0).objects, 0);
	assert_int_equal(store_ingest_under(f->s, top, esc, STORE_LINK, 1, &m, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "is not inside"));
	assert_int_equal(store_ingest_under(f->s, top, elsewhere, STORE_LINK, 1, &m, &e),
			 ERR_INVALID);
	/* The same tree for real, as a dir and as a single file. */
	assert_int_equal(unlink(out), 0);
	put(top, "s/out/model/w", "the step's", 0644);
	assert_int_equal(store_ingest_under(f->s, top, model, STORE_LINK, 1, &m, &e), 0);
	assert_int_equal(m.n, 1);
	manifest_free(&m);
	free(model);
	model = fs_join(top, "s/out/model/w");
	assert_int_equal(store_ingest_under(f->s, top, model, STORE_COPY, 1, &m, &e), 0);
	assert_string_equal(m.v[0].path, ".");
	manifest_free(&m);
	free(esc);
	free(model);
	free(out);
	free(step);
	free(elsewhere);
	free(top);
}

/* Two files of the same bytes with names near NAME_MAX: the second is
 * replaced by a link to the object through a temporary name that must
 * not grow with the file's name. */
static void test_store__dedup_with_names_near_name_max(void **state)
{
	struct fx *f = *state;
	char *src = fs_join(f->dir, "long");
	char name[256];
	struct manifest m;
	struct err e;

	assert_int_equal(mkdir(src, 0755), 0);
	memset(name, 'n', 250);
	name[250] = '\0';
	for (int i = 0; i < 2; i++) {
		char *p;
		int fd;

		name[0] = (char)('m' + i);
		p = fs_join(src, name);
		fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "same bytes", 10), 10);
		assert_int_equal(close(fd), 0);
		free(p);
	}
	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 1, &m, &e), 0);
	assert_int_equal(m.n, 2);
	assert_int_equal(count(f->s, 0).objects, 1);
	manifest_free(&m);
	free(src);
}

/* Many small files on many threads (the TSan build runs this). */
static void test_store__many_files_many_threads(void **state)
{
	struct fx *f = *state;
	char *src = fs_join(f->dir, "many");
	struct manifest m1, m2;
	struct err e;

	for (int i = 0; i < 200; i++) {
		char rel[64], data[64];
		snprintf(rel, sizeof(rel), "d%d/f%03d", i % 7, i);
		snprintf(data, sizeof(data), "content %d", i % 150); /* some dups */
		put(src, rel, data, 0644);
	}
	assert_int_equal(tree_manifest_ex(src, 1, &m1, &e), 0);
	assert_int_equal(store_ingest_tree(f->s, src, STORE_LINK, 8, &m2, &e), 0);
	assert_string_equal(m1.text, m2.text);
	assert_int_equal(count(f->s, 1).objects, 150);
	assert_int_equal(count(f->s, 1).deep_bad, 0);
	manifest_free(&m1);
	manifest_free(&m2);
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_store__link_keeps_inode_and_makes_it_readonly),
		T(test_store__dedup_across_trees),
		T(test_store__single_files_dedup),
		T(test_store__copy_mode_leaves_source_alone),
		T(test_store__link_falls_back_to_copy_across_filesystems),
		T(test_store__executable_is_copied_and_keeps_its_mode),
		T(test_store__verify_finds_flipped_byte_and_truncation),
		T(test_store__list_reports_strays),
		T(test_store__open_removes_stale_staging_files),
		T(test_store__kill_mid_ingest_leaves_a_consistent_store),
		T(test_store__checkout_is_readonly_and_same_digest),
		T(test_store__checkout_with_missing_object_leaves_nothing),
		T(test_store__checkout_refuses_escaping_paths),
		T(test_store__symlink_refused_and_nothing_stored),
		T(test_store__hard_link_to_a_file_outside_is_copied),
		T(test_store__ingest_under_follows_no_symlink_on_the_way),
		T(test_store__dedup_with_names_near_name_max),
		T(test_store__many_files_many_threads),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
