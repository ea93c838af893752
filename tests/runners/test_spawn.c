/* tests/runners/test_spawn.c — runners/spawn: argv, PATH of the child's
 * environment, cwd, envp, redirections, process groups, passed fds, exit and
 * signal statuses, and clean failures. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "runners/spawn.h"

static char *tmp;   /* a fresh directory per test */

static int setup(void **state)
{
	char tmpl[] = "/tmp/anneal-test-spawn.XXXXXX";

	if (!mkdtemp(tmpl))
		return -1;
	tmp = xstrdup(tmpl);
	umask(022);
	return 0;
}

static int teardown(void **state)
{
	struct err err;

	fs_remove_tree(tmp, &err);
	free(tmp);
	tmp = NULL;
	return 0;
}

static char *slurp(const char *path)
{
	struct err err;
	char *data = NULL;

	if (fs_read_file(path, 1 << 20, &data, NULL, &err))
		return NULL;
	return data;
}

static char *tpath(const char *name)
{
	return fs_join(tmp, name);
}

static void test_spawn__runs_argv(void **state)
{
	char *argv[] = { "/bin/sh", "-c", "exit 0", NULL };
	struct err err;
	int status = -1;

	assert_int_equal(spawn_run(argv, NULL, &status, &err), 0);
	assert_int_equal(status, 0);
}

static void test_spawn__exit_status(void **state)
{
	char *argv[] = { "sh", "-c", "exit 7", NULL };
	struct err err;
	int status = -1;

	assert_int_equal(spawn_run(argv, NULL, &status, &err), 0);
	assert_int_equal(status, 7);
}

static void test_spawn__signal_status_is_128_plus_n(void **state)
{
	char *argv[] = { "sh", "-c", "kill -TERM $$", NULL };
	struct err err;
	int status = -1;

	assert_int_equal(spawn_run(argv, NULL, &status, &err), 0);
	assert_int_equal(status, 128 + SIGTERM);
}

/* The PATH that counts is the child's: the parent's does not hold tmp. */
static void test_spawn__searches_path_of_child_env(void **state)
{
	char *prog = tpath("anneal-test-prog");
	char *mark = tpath("mark");
	char *script = xasprintf("#!/bin/sh\necho ran > '%s'\n", mark);
	char *pathvar = xasprintf("PATH=/nonexistent::%s", tmp);
	char *envp[] = { pathvar, NULL };
	char *argv[] = { "anneal-test-prog", NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	char *text;
	int status = -1;

	assert_int_equal(fs_write_atomic(prog, script, strlen(script), 0755, &err), 0);
	so.envp = envp;
	so.cwd = "/";   /* the empty PATH entry is "/" then: no match there */
	assert_int_equal(spawn_run(argv, &so, &status, &err), 0);
	assert_int_equal(status, 0);
	text = slurp(mark);
	assert_non_null(text);
	assert_string_equal(text, "ran\n");

	/* Same name, the parent's environment: not found. */
	assert_int_equal(spawn_run(argv, NULL, &status, &err), ERR_NOTFOUND);
	free(text);
	free(prog);
	free(mark);
	free(script);
	free(pathvar);
}

static void test_spawn__cwd(void **state)
{
	char *argv[] = { "sh", "-c", "pwd > out", NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	char *out = tpath("out"), *text, real[PATH_MAX], *want;
	int status = -1;

	so.cwd = tmp;
	assert_int_equal(spawn_run(argv, &so, &status, &err), 0);
	assert_int_equal(status, 0);
	text = slurp(out);
	assert_non_null(text);
	assert_non_null(realpath(tmp, real));
	want = xasprintf("%s\n", real);
	assert_string_equal(text, want);
	free(want);
	free(text);
	free(out);
}

static void test_spawn__envp_and_redirections_append(void **state)
{
	char *argv[] = { "sh", "-c", "printf 'o=%s\\n' \"$FOO\"; printf 'e\\n' >&2; cat", NULL };
	char *envp[] = { "FOO=bar", "PATH=/usr/bin:/bin", NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	char *out = tpath("out.log"), *errp = tpath("err.log"), *text;
	struct stat st;
	int status = -1;

	so.envp = envp;
	so.stdin_null = 1;   /* cat reads nothing and ends */
	so.stdout_path = out;
	so.stderr_path = errp;
	assert_int_equal(spawn_run(argv, &so, &status, &err), 0);
	assert_int_equal(spawn_run(argv, &so, &status, &err), 0);
	assert_int_equal(status, 0);
	text = slurp(out);
	assert_string_equal(text, "o=bar\no=bar\n");
	free(text);
	text = slurp(errp);
	assert_string_equal(text, "e\ne\n");
	free(text);
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	free(out);
	free(errp);
}

static void test_spawn__own_process_group(void **state)
{
	char *argv[] = { "sleep", "100", NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	pid_t pid;
	int status = -1;

	so.new_pgroup = 1;
	assert_int_equal(spawn_start(argv, &so, &pid, &err), 0);
	assert_int_equal(getpgid(pid), pid);
	assert_int_equal(kill(-pid, SIGKILL), 0);
	assert_int_equal(spawn_wait(pid, &status, &err), 0);
	assert_int_equal(status, 128 + SIGKILL);
}

/* An ignored signal in the parent is not the child's. */
static void test_spawn__default_signal_dispositions(void **state)
{
	char *argv[] = { "sleep", "100", NULL };
	struct sigaction ign, old;
	struct err err;
	pid_t pid;
	int status = -1;

	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigaction(SIGINT, &ign, &old);
	assert_int_equal(spawn_start(argv, NULL, &pid, &err), 0);
	sigaction(SIGINT, &old, NULL);
	/* posix_spawn returns once the child has exec'd. */
	assert_int_equal(kill(pid, SIGINT), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGINT);
}

static void test_spawn__pass_fd(void **state)
{
	char *out = tpath("passed"), *text;
	int fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	char script[64];
	char *argv[] = { "sh", "-c", script, NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	int status = -1;

	assert_true(fd >= 0);
	snprintf(script, sizeof(script), "echo hi >&%d", fd);
	/* Not passed: CLOEXEC keeps it from the child. */
	so.stderr_path = "/dev/null";
	assert_int_equal(spawn_run(argv, &so, &status, &err), 0);
	assert_int_not_equal(status, 0);
	so.pass_fd = fd;
	assert_int_equal(spawn_run(argv, &so, &status, &err), 0);
	assert_int_equal(status, 0);
	/* Still CLOEXEC here. */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	text = slurp(out);
	assert_string_equal(text, "hi\n");
	free(text);
	free(out);
}

static void test_spawn__missing_program_fails_cleanly(void **state)
{
	char *argv[] = { "anneal-no-such-program", NULL };
	char *argv2[] = { "/nonexistent/prog", NULL };
	char *argv3[] = { "true", NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	pid_t pid = 0;

	assert_int_equal(spawn_start(argv, NULL, &pid, &err), ERR_NOTFOUND);
	assert_string_equal(err.msg,
			    "exec 'anneal-no-such-program': No such file or directory");
	assert_int_equal(spawn_start(argv2, NULL, &pid, &err), ERR_NOTFOUND);
	assert_non_null(strstr(err.msg, "exec '/nonexistent/prog'"));
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);   /* no child left */

	so.cwd = "/nonexistent-dir";
	assert_int_equal(spawn_start(argv3, &so, &pid, &err), ERR_SYSTEM);
	assert_non_null(strstr(err.msg, "'/nonexistent-dir'"));
	so.cwd = NULL;
	so.stdout_path = "/nonexistent-dir/out";
	assert_int_equal(spawn_start(argv3, &so, &pid, &err), ERR_SYSTEM);
	assert_non_null(strstr(err.msg, "cannot open '/nonexistent-dir/out'"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_spawn__runs_argv),
		T(test_spawn__exit_status),
		T(test_spawn__signal_status_is_128_plus_n),
		T(test_spawn__searches_path_of_child_env),
		T(test_spawn__cwd),
		T(test_spawn__envp_and_redirections_append),
		T(test_spawn__own_process_group),
		T(test_spawn__default_signal_dispositions),
		T(test_spawn__pass_fd),
		T(test_spawn__missing_program_fails_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
