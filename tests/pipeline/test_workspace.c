/* tests/pipeline/test_workspace.c — finding .anneal/, config, driver locks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "pipeline/workspace.h"

static char *dir;

static int setup(void **state)
{
	char tmpl[] = "/tmp/anneal-ws-XXXXXX";
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

static void test_workspace__init_then_found_from_below(void **state)
{
	struct workspace *ws = NULL, *found = NULL;
	char *deep = fs_join(dir, "a/b/c");
	struct err e;
	struct stat st;
	(void)state;
	assert_int_equal(workspace_find(dir, &found, &e), ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "run 'anneal init'"));
	assert_int_equal(workspace_init(dir, &ws, &e), 0);
	assert_int_equal(stat(ws->dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(fs_mkdir_p(deep, 0777, &e), 0);
	assert_int_equal(workspace_find(deep, &found, &e), 0);
	assert_string_equal(found->root, ws->root);
	workspace_free(found);
	/* init again is harmless */
	workspace_free(ws);
	assert_int_equal(workspace_init(dir, &ws, &e), 0);
	workspace_free(ws);
	free(deep);
}

static void test_workspace__config(void **state)
{
	struct workspace *ws = NULL;
	char *cfg;
	struct err e;
	(void)state;
	assert_int_equal(workspace_init(dir, &ws, &e), 0);
	cfg = fs_join(ws->dir, "config.json");
	workspace_free(ws);
	assert_int_equal(fs_write_atomic(cfg, "{\"gpus\": 8, // eight\n \"jobs\": 3}", 32, 0644, &e), 0);
	assert_int_equal(workspace_find(dir, &ws, &e), 0);
	assert_int_equal(ws->gpus, 8);
	assert_int_equal(ws->jobs, 3);
	assert_int_equal(ws->npus, 0);
	workspace_free(ws);
	assert_int_equal(fs_write_atomic(cfg, "{\"gpu\": 8}", 10, 0644, &e), 0);
	assert_int_equal(workspace_find(dir, &ws, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "config.json: unknown field 'gpu'"));
	assert_int_equal(fs_write_atomic(cfg, "{\"gpus\": -1}", 12, 0644, &e), 0);
	assert_int_equal(workspace_find(dir, &ws, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "gpus: must be an integer in 0..4096"));
	/* the runner and where work dirs go */
	{
		char *runs = fs_join(dir, "elsewhere"), *text, *run1;
		text = xasprintf("{\"runner\": {\"type\": \"slurm\", \"partition\": \"p\"}, \"runs_dir\": \"%s\"}", runs);
		assert_int_equal(fs_write_atomic(cfg, text, strlen(text), 0644, &e), 0);
		assert_int_equal(workspace_find(dir, &ws, &e), 0);
		assert_string_equal(ws->runner, "{\"type\":\"slurm\",\"partition\":\"p\"}");
		assert_string_equal(ws->runs_dir, runs);
		assert_true(fs_is_dir(runs));
		run1 = workspace_run_dir(ws, 1);
		assert_true(!strncmp(run1, runs, strlen(runs)));
		free(run1);
		workspace_free(ws);
		free(text);
		assert_int_equal(fs_write_atomic(cfg, "{\"runs_dir\": \"rel\"}", 19, 0644, &e), 0);
		assert_int_equal(workspace_find(dir, &ws, &e), ERR_INVALID);
		assert_non_null(strstr(e.msg, "runs_dir: must be an absolute path"));
		assert_int_equal(fs_write_atomic(cfg, "{\"runner\": \"lsf\"}", 17, 0644, &e), 0);
		assert_int_equal(workspace_find(dir, &ws, &e), ERR_INVALID);
		assert_non_null(strstr(e.msg, "runner: must be"));
		free(runs);
	}
	free(cfg);
}

static void test_workspace__one_driver_per_run(void **state)
{
	struct workspace *ws = NULL;
	struct err e;
	int fd1 = -1, fd2 = -1;
	(void)state;
	assert_int_equal(workspace_init(dir, &ws, &e), 0);
	assert_false(workspace_run_locked(ws, 7));
	assert_int_equal(workspace_lock_run(ws, 7, &fd1, &e), 0);
	assert_true(workspace_run_locked(ws, 7));
	assert_int_equal(workspace_lock_run(ws, 7, &fd2, &e), ERR_BUSY);
	assert_string_equal(e.msg, "run 7 is being driven by another anneal process");
	assert_int_equal(fd2, -1);
	/* Another run is not affected. */
	assert_int_equal(workspace_lock_run(ws, 8, &fd2, &e), 0);
	close(fd2);
	close(fd1);
	assert_false(workspace_run_locked(ws, 7));
	assert_int_equal(workspace_lock_run(ws, 7, &fd1, &e), 0);
	close(fd1);
	workspace_free(ws);
}

/* .anneal/ and the store are 0700; one writable by every user is
 * refused by find and init (naming the path and the fix), one writable by
 * its group is accepted (a warning). */
static void test_workspace__modes(void **state)
{
	struct workspace *ws = NULL;
	char *a = fs_join(dir, ".anneal"), *store = fs_join(dir, ".anneal/store");
	struct stat st;
	struct err e;
	(void)state;
	assert_int_equal(workspace_init(dir, &ws, &e), 0);
	workspace_free(ws);
	assert_int_equal(stat(a, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(store, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	const char *const paths[] = { a, store };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(chmod(paths[i], 0777), 0);
		assert_int_equal(workspace_find(dir, &ws, &e), ERR_INVALID);
		assert_null(ws);
		assert_non_null(strstr(e.msg, "is writable by every user (mode 0777): run 'chmod o-w "));
		assert_non_null(strstr(e.msg, paths[i]));
		assert_int_equal(workspace_init(dir, &ws, &e), ERR_INVALID);
		assert_int_equal(chmod(paths[i], 0770), 0);
		assert_int_equal(workspace_find(dir, &ws, &e), 0);
		workspace_free(ws);
		ws = NULL;
		assert_int_equal(chmod(paths[i], 0700), 0);
	}
	free(store);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_workspace__init_then_found_from_below, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workspace__config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workspace__one_driver_per_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workspace__modes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
