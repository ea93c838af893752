/* tests/artifacts/test_provenance.c — git provenance of a path.
 *
 * Each case builds its own repository in a temp dir with libgit2 (fixed
 * signature and times, so commit ids are the same on every run) and checks
 * what provenance_collect() reports. HOME points to an empty dir so that
 * the user's git config cannot change the outcome. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <git2.h>

#include "artifacts/provenance.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/util.h"

static char *g_home;

static char *mktemp_dir(void)
{
	char tmpl[] = "/tmp/anneal-prov-XXXXXX";
	char *d = mkdtemp(tmpl);

	assert_non_null(d);
	return realpath(d, NULL);
}

static void rmtree(char *d)
{
	struct err e;

	assert_int_equal(fs_remove_tree(d, &e), 0);
	free(d);
}

static void put(const char *dir, const char *rel, const char *text)
{
	char *p = fs_join(dir, rel), *slash;
	struct err e;

	slash = strrchr(p, '/');
	*slash = '\0';
	assert_int_equal(fs_mkdir_p(p, 0777, &e), 0);
	*slash = '/';
	assert_int_equal(fs_write_replace(p, text, strlen(text), 0644, &e), 0);
	free(p);
}

/* A new repository whose HEAD names refs/heads/main. */
static git_repository *repo_new(char **dir)
{
	git_repository_init_options o;
	git_repository *r = NULL;

	*dir = mktemp_dir();
	assert_int_equal(git_repository_init_options_init(&o, GIT_REPOSITORY_INIT_OPTIONS_VERSION), 0);
	o.flags = GIT_REPOSITORY_INIT_MKPATH;
	o.initial_head = "main";
	assert_int_equal(git_repository_init_ext(&r, *dir, &o), 0);
	return r;
}

static void stage_all(git_repository *r)
{
	git_index *idx = NULL;

	assert_int_equal(git_repository_index(&idx, r), 0);
	assert_int_equal(git_index_add_all(idx, NULL, 0, NULL, NULL), 0);
	assert_int_equal(git_index_write(idx), 0);
	git_index_free(idx);
}

/* Stages everything and commits it at a fixed time; *id gets the commit. */
static void commit_all(git_repository *r, const char *msg, git_oid *id)
{
	git_index *idx = NULL;
	git_tree *tree = NULL;
	git_commit *parent = NULL;
	git_signature *sig = NULL;
	git_oid tid, pid;
	const git_commit *parents[1];
	size_t np = 0;

	assert_int_equal(git_repository_index(&idx, r), 0);
	assert_int_equal(git_index_add_all(idx, NULL, 0, NULL, NULL), 0);
	assert_int_equal(git_index_write(idx), 0);
	assert_int_equal(git_index_write_tree(&tid, idx), 0);
	assert_int_equal(git_tree_lookup(&tree, r, &tid), 0);
	if (git_reference_name_to_id(&pid, r, "HEAD") == 0) {
		assert_int_equal(git_commit_lookup(&parent, r, &pid), 0);
		parents[np++] = parent;
	}
	assert_int_equal(git_signature_new(&sig, "Tester", "tester@example.com",
					   1700000000, 60), 0);
	assert_int_equal(git_commit_create(id, r, "HEAD", sig, sig, NULL, msg,
					   tree, np, parents), 0);
	git_signature_free(sig);
	git_commit_free(parent);
	git_tree_free(tree);
	git_index_free(idx);
}

static void collect(const char *dir, const char *rel, struct provenance *p)
{
	char *path = rel ? fs_join(dir, rel) : xstrdup(dir);
	struct err e;

	err_clear(&e);
	if (provenance_collect(path, p, &e) != 0)
		fail_msg("collect '%s': %s", path, e.msg);
	free(path);
}

static void oid_hex(const git_oid *id, char *hex)
{
	git_oid_tostr(hex, GIT_OID_HEXSZ + 1, id);
}

/* Base fixture: recipe.json and src/a.txt committed on main. */
static git_repository *fixture(char **dir, git_oid *id)
{
	git_repository *r = repo_new(dir);

	put(*dir, "recipe.json", "{\"stages\": []}\n");
	put(*dir, "src/a.txt", "hello\n");
	commit_all(r, "first commit\n\nwith a body", id);
	return r;
}

static void test_provenance__clean_repo(void **state)
{
	struct provenance p;
	git_repository *r;
	git_oid id;
	char *dir, hex[GIT_OID_HEXSZ + 1];
	(void)state;

	r = fixture(&dir, &id);
	oid_hex(&id, hex);
	collect(dir, "recipe.json", &p);
	assert_int_equal(p.found, 1);
	assert_string_equal(p.workdir, dir);
	assert_string_equal(p.commit, hex);
	assert_string_equal(p.branch, "main");
	assert_string_equal(p.summary, "first commit");
	assert_int_equal(p.commit_time, 1700000000);
	assert_int_equal(p.commit_tz, 60);
	assert_int_equal(p.dirty, 0);
	assert_int_equal(p.modified, 0);
	assert_int_equal(p.untracked, 0);
	assert_string_equal(p.dirty_digest, "");
	assert_string_equal(p.path_in_repo, "recipe.json");
	assert_int_equal(p.path_state, PROVENANCE_PATH_CLEAN);
	provenance_clear(&p);
	git_repository_free(r);
	rmtree(dir);
}

/* The digest follows the format documented in provenance.h. */
static void expected_digest(const char *lines, size_t len, char *hex)
{
	struct buf b = BUF_INIT;
	struct digest d;

	buf_adds(&b, "anneal-provenance-dirty 1\n");
	buf_add(&b, lines, len);
	sha256_buf(b.ptr, b.len, &d);
	digest_hex(&d, hex);
	buf_free(&b);
}

static void test_provenance__modified_file(void **state)
{
	struct provenance p1, p2, p3;
	struct digest d;
	struct buf line = BUF_INIT;
	git_repository *r;
	git_oid id;
	char *dir, hex[DIGEST_HEX_LEN + 1], want[DIGEST_HEX_LEN + 1];
	(void)state;

	r = fixture(&dir, &id);
	put(dir, "src/a.txt", "hello, world\n");
	collect(dir, "recipe.json", &p1);
	assert_int_equal(p1.dirty, 1);
	assert_int_equal(p1.modified, 1);
	assert_int_equal(p1.untracked, 0);
	assert_int_equal(strlen(p1.dirty_digest), 64);
	assert_int_equal(p1.path_state, PROVENANCE_PATH_CLEAN);

	sha256_buf("hello, world\n", 13, &d);
	digest_hex(&d, hex);
	buf_printf(&line, ".M - 644:%s src/a.txt", hex);
	expected_digest(line.ptr, line.len + 1, want);
	assert_string_equal(p1.dirty_digest, want);

	/* Same tree, same digest. */
	collect(dir, "recipe.json", &p2);
	assert_string_equal(p1.dirty_digest, p2.dirty_digest);

	/* A further edit changes it. */
	put(dir, "src/a.txt", "hello, world!\n");
	collect(dir, "recipe.json", &p3);
	assert_int_equal(p3.modified, 1);
	assert_string_not_equal(p1.dirty_digest, p3.dirty_digest);

	buf_free(&line);
	provenance_clear(&p1);
	provenance_clear(&p2);
	provenance_clear(&p3);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__staged_and_deleted(void **state)
{
	struct provenance p1, p2;
	git_repository *r;
	git_oid id;
	char *dir, *a;
	(void)state;

	r = fixture(&dir, &id);
	/* The recipe itself staged with new content. */
	put(dir, "recipe.json", "{\"stages\": [1]}\n");
	stage_all(r);
	collect(dir, "recipe.json", &p1);
	assert_int_equal(p1.modified, 1);
	assert_int_equal(p1.path_state, PROVENANCE_PATH_MODIFIED);

	a = fs_join(dir, "src/a.txt");
	assert_int_equal(unlink(a), 0);
	collect(dir, "recipe.json", &p2);
	assert_int_equal(p2.modified, 2);
	assert_int_equal(p2.untracked, 0);
	assert_string_not_equal(p1.dirty_digest, p2.dirty_digest);

	free(a);
	provenance_clear(&p1);
	provenance_clear(&p2);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__untracked_file(void **state)
{
	struct provenance p;
	struct buf s = BUF_INIT;
	git_repository *r;
	git_oid id;
	char *dir, hex[GIT_OID_HEXSZ + 1];
	(void)state;

	r = fixture(&dir, &id);
	oid_hex(&id, hex);
	put(dir, "notes/new.txt", "scratch\n");
	put(dir, "src/a.txt", "changed\n");
	collect(dir, "notes/new.txt", &p);
	assert_int_equal(p.dirty, 1);
	assert_int_equal(p.modified, 1);
	assert_int_equal(p.untracked, 1);
	assert_int_equal(p.path_state, PROVENANCE_PATH_UNTRACKED);
	provenance_summary(&p, &s);
	{
		char want[128];

		snprintf(want, sizeof(want),
			 "git %.7s (main), dirty: 1 modified, 1 untracked, 'notes/new.txt' untracked",
			 hex);
		assert_string_equal(s.ptr, want);
	}
	buf_free(&s);
	provenance_clear(&p);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__ignored_file(void **state)
{
	struct provenance p;
	git_repository *r;
	git_oid id;
	char *dir;
	(void)state;

	r = repo_new(&dir);
	put(dir, ".gitignore", "*.log\nbuild/\n");
	put(dir, "recipe.json", "{}\n");
	commit_all(r, "ignore logs", &id);
	put(dir, "run.log", "noise\n");
	put(dir, "build/out.bin", "bytes\n");
	collect(dir, "run.log", &p);
	assert_int_equal(p.dirty, 0);
	assert_int_equal(p.untracked, 0);
	assert_string_equal(p.dirty_digest, "");
	assert_int_equal(p.path_state, PROVENANCE_PATH_IGNORED);
	provenance_clear(&p);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__detached_head(void **state)
{
	struct provenance p;
	struct buf s = BUF_INIT;
	git_repository *r;
	git_oid id1, id2;
	char *dir, hex[GIT_OID_HEXSZ + 1], want[128];
	(void)state;

	r = fixture(&dir, &id1);
	put(dir, "src/b.txt", "b\n");
	commit_all(r, "second", &id2);
	assert_int_equal(git_repository_set_head_detached(r, &id1), 0);
	/* Make the work tree match the detached commit. */
	{
		git_checkout_options co;

		git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
		co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_REMOVE_UNTRACKED;
		assert_int_equal(git_checkout_head(r, &co), 0);
	}
	oid_hex(&id1, hex);
	collect(dir, "recipe.json", &p);
	assert_string_equal(p.commit, hex);
	assert_string_equal(p.branch, "HEAD");
	assert_string_equal(p.summary, "first commit");
	assert_int_equal(p.dirty, 0);
	provenance_summary(&p, &s);
	snprintf(want, sizeof(want), "git %.7s (detached HEAD), clean", hex);
	assert_string_equal(s.ptr, want);
	buf_free(&s);
	provenance_clear(&p);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__unborn_branch(void **state)
{
	struct provenance p1, p2;
	struct buf s = BUF_INIT;
	git_repository *r;
	char *dir;
	(void)state;

	r = repo_new(&dir);
	collect(dir, NULL, &p1);
	assert_int_equal(p1.found, 1);
	assert_string_equal(p1.commit, "");
	assert_string_equal(p1.branch, "main");
	assert_string_equal(p1.summary, "");
	assert_int_equal(p1.commit_time, 0);
	assert_int_equal(p1.dirty, 0);
	assert_string_equal(p1.path_in_repo, ".");
	assert_int_equal(p1.path_state, PROVENANCE_PATH_DIRECTORY);
	provenance_summary(&p1, &s);
	assert_string_equal(s.ptr, "git (no commits) (main), clean");

	put(dir, "recipe.json", "{}\n");
	put(dir, "other.json", "{}\n");
	stage_all(r);
	put(dir, "loose.txt", "x\n");
	collect(dir, "recipe.json", &p2);
	assert_int_equal(p2.modified, 2); /* staged, not committed */
	assert_int_equal(p2.untracked, 1);
	assert_int_equal(p2.path_state, PROVENANCE_PATH_MODIFIED);

	buf_free(&s);
	provenance_clear(&p1);
	provenance_clear(&p2);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__outside_any_repo(void **state)
{
	struct provenance p;
	struct buf j = BUF_INIT, s = BUF_INIT;
	char *dir = mktemp_dir();
	(void)state;

	/* Stop discovery at dir, whatever holds /tmp on this machine. */
	assert_int_equal(setenv("GIT_CEILING_DIRECTORIES", dir, 1), 0);
	put(dir, "loose/recipe.json", "{}\n");
	collect(dir, "loose/recipe.json", &p);
	unsetenv("GIT_CEILING_DIRECTORIES");
	assert_int_equal(p.found, 0);
	assert_int_equal(p.path_state, PROVENANCE_PATH_NONE);
	provenance_to_json(&p, &j);
	assert_string_equal(j.ptr,
		"{\"found\":false,\"workdir\":\"\",\"commit\":\"\",\"branch\":\"\","
		"\"summary\":\"\",\"commit_time\":0,\"commit_tz\":0,\"dirty\":false,"
		"\"modified\":0,\"untracked\":0,\"dirty_digest\":\"\","
		"\"paths_skipped\":0,\"files_unhashed\":0,\"path\":\"\","
		"\"path_state\":\"none\"}");
	provenance_summary(&p, &s);
	assert_string_equal(s.ptr, "not in a git repository");
	buf_free(&j);
	buf_free(&s);
	provenance_clear(&p);
	rmtree(dir);
}

static void test_provenance__subdirectory(void **state)
{
	struct provenance p1, p2, p3;
	git_repository *r;
	git_oid id;
	char *dir, *sub, *link;
	(void)state;

	r = repo_new(&dir);
	put(dir, "recipes/pangu/r.json", "{}\n");
	commit_all(r, "nested", &id);
	collect(dir, "recipes/pangu/r.json", &p1);
	assert_string_equal(p1.workdir, dir);
	assert_string_equal(p1.path_in_repo, "recipes/pangu/r.json");
	assert_int_equal(p1.path_state, PROVENANCE_PATH_CLEAN);

	collect(dir, "recipes/pangu", &p2);
	assert_string_equal(p2.path_in_repo, "recipes/pangu");
	assert_int_equal(p2.path_state, PROVENANCE_PATH_DIRECTORY);

	/* A relative path with a symlink: resolved before discovery. */
	sub = mktemp_dir();
	link = fs_join(sub, "r.json");
	{
		char *target = fs_join(dir, "recipes/pangu/r.json");

		assert_int_equal(symlink(target, link), 0);
		free(target);
	}
	assert_int_equal(setenv("GIT_CEILING_DIRECTORIES", sub, 1), 0);
	collect(sub, "r.json", &p3);
	unsetenv("GIT_CEILING_DIRECTORIES");
	assert_int_equal(p3.found, 1);
	assert_string_equal(p3.workdir, dir);
	assert_string_equal(p3.path_in_repo, "recipes/pangu/r.json");

	free(link);
	rmtree(sub);
	provenance_clear(&p1);
	provenance_clear(&p2);
	provenance_clear(&p3);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__json_exact(void **state)
{
	struct provenance p;
	struct buf j = BUF_INIT, want = BUF_INIT;
	git_repository *r;
	git_oid id;
	char *dir, hex[GIT_OID_HEXSZ + 1];
	(void)state;

	r = repo_new(&dir);
	put(dir, "recipe.json", "{}\n");
	commit_all(r, "say \"hi\"\tnow\n", &id);
	oid_hex(&id, hex);
	/* Fixed tree, signature, time and message: a fixed commit id (the
	 * same as `git hash-object -t commit` gives for that text). */
	assert_string_equal(hex, "48951d0adca8b1d9f6c0adebe7716a26708bc63b");
	put(dir, "extra.txt", "x\n");
	collect(dir, "recipe.json", &p);
	/* One untracked file: sha256 over the documented text
	 * "anneal-provenance-dirty 1\n?? - 644:<sha256 of x\n> extra.txt\0",
	 * computed independently with Python's hashlib. */
	assert_string_equal(p.dirty_digest,
		"a2c088ec40f33296456ca89f1e1bf66311f38664289599d3cb8bb4785caa139a");
	provenance_to_json(&p, &j);
	buf_adds(&want, "{\"found\":true,\"workdir\":");
	buf_add_json_str(&want, dir);
	buf_printf(&want, ",\"commit\":\"%s\",\"branch\":\"main\","
		   "\"summary\":\"say \\\"hi\\\"\\tnow\",\"commit_time\":1700000000,"
		   "\"commit_tz\":60,\"dirty\":true,\"modified\":0,\"untracked\":1,"
		   "\"dirty_digest\":\"%s\",\"paths_skipped\":0,\"files_unhashed\":0,"
		   "\"path\":\"recipe.json\",\"path_state\":\"clean\"}",
		   hex, p.dirty_digest);
	assert_string_equal(j.ptr, want.ptr);
	buf_free(&j);
	buf_free(&want);
	provenance_clear(&p);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__limits(void **state)
{
	struct provenance_limits lim = PROVENANCE_LIMITS_INIT;
	struct provenance p1, p2;
	struct err e;
	git_repository *r;
	git_oid id;
	char *dir, *path;
	(void)state;

	r = fixture(&dir, &id);
	put(dir, "u1.txt", "1\n");
	put(dir, "u2.txt", "22\n");
	put(dir, "u3.txt", "a bigger file\n");
	path = fs_join(dir, "recipe.json");
	lim.max_paths = 2;
	lim.max_file_bytes = 5;
	assert_int_equal(provenance_collect_limits(path, &lim, &p1, &e), 0);
	assert_int_equal(p1.untracked, 3);
	assert_int_equal(p1.paths_skipped, 1);   /* u3.txt */
	assert_int_equal(p1.files_unhashed, 0);

	lim.max_paths = 10;
	assert_int_equal(provenance_collect_limits(path, &lim, &p2, &e), 0);
	assert_int_equal(p2.paths_skipped, 0);
	assert_int_equal(p2.files_unhashed, 1);  /* u3.txt, by size and mtime */
	assert_string_not_equal(p1.dirty_digest, p2.dirty_digest);

	free(path);
	provenance_clear(&p1);
	provenance_clear(&p2);
	git_repository_free(r);
	rmtree(dir);
}

static void test_provenance__missing_path(void **state)
{
	struct provenance p;
	struct err e;
	(void)state;

	assert_int_equal(provenance_collect("/nonexistent/anneal/r.json", &p, &e),
			 ERR_NOTFOUND);
	assert_string_equal(e.msg, "path '/nonexistent/anneal/r.json': no such file or directory");
	provenance_clear(&p);
	provenance_clear(NULL);
}

/* Timing, printed and not asserted: 10,000 tracked files, clean and with
 * a few edits; with libgit2 initialised per call and held by the caller. */
static void test_provenance__ten_thousand_files(void **state)
{
	struct provenance p;
	struct timeval old[2];
	git_repository *r;
	git_oid id;
	char *dir, rel[64];
	double t0, t_clean, t_dirty, t_held;
	int i;
	(void)state;

	r = repo_new(&dir);
	/* Files older than the index, as in a checkout someone works in: a
	 * racily-clean index would make libgit2 re-hash every file. */
	old[0].tv_sec = old[1].tv_sec = 1700000000;
	old[0].tv_usec = old[1].tv_usec = 0;
	for (i = 0; i < 10000; i++) {
		char *full;

		snprintf(rel, sizeof(rel), "d%03d/f%05d.txt", i / 100, i);
		put(dir, rel, rel);
		full = fs_join(dir, rel);
		assert_int_equal(utimes(full, old), 0);
		free(full);
	}
	commit_all(r, "ten thousand", &id);

	git_libgit2_shutdown(); /* drop the suite's hold: measure the plain call */
	t0 = now_mono();
	collect(dir, "d000/f00000.txt", &p);
	t_clean = now_mono() - t0;
	assert_int_equal(p.dirty, 0);
	provenance_clear(&p);

	put(dir, "d001/f00100.txt", "edited");
	put(dir, "d002/new.txt", "new");
	t0 = now_mono();
	collect(dir, "d000/f00000.txt", &p);
	t_dirty = now_mono() - t0;
	assert_int_equal(p.modified, 1);
	assert_int_equal(p.untracked, 1);
	provenance_clear(&p);
	assert_true(git_libgit2_init() > 0);

	t0 = now_mono();
	collect(dir, "d000/f00000.txt", &p);
	t_held = now_mono() - t0;
	provenance_clear(&p);

	print_message("provenance: 10,000 tracked files: clean %.1f ms, dirty %.1f ms, "
		      "dirty with libgit2 held %.1f ms\n",
		      t_clean * 1e3, t_dirty * 1e3, t_held * 1e3);
	git_repository_free(r);
	rmtree(dir);
}

static int setup(void **state)
{
	char *cfg;
	(void)state;

	/* No user or system config: an empty HOME, before libgit2 reads it. */
	g_home = mktemp_dir();
	cfg = fs_join(g_home, ".config");
	setenv("HOME", g_home, 1);
	setenv("XDG_CONFIG_HOME", cfg, 1);
	free(cfg);
	if (git_libgit2_init() < 0)
		return -1;
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_SYSTEM, g_home);
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_PROGRAMDATA, g_home);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	git_libgit2_shutdown();
	rmtree(g_home);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_provenance__clean_repo),
		cmocka_unit_test(test_provenance__modified_file),
		cmocka_unit_test(test_provenance__staged_and_deleted),
		cmocka_unit_test(test_provenance__untracked_file),
		cmocka_unit_test(test_provenance__ignored_file),
		cmocka_unit_test(test_provenance__detached_head),
		cmocka_unit_test(test_provenance__unborn_branch),
		cmocka_unit_test(test_provenance__outside_any_repo),
		cmocka_unit_test(test_provenance__subdirectory),
		cmocka_unit_test(test_provenance__json_exact),
		cmocka_unit_test(test_provenance__limits),
		cmocka_unit_test(test_provenance__missing_path),
		cmocka_unit_test(test_provenance__ten_thousand_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
