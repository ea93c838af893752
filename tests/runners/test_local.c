/* tests/runners/test_local.c — the local runner and anneal-shim: statuses,
 * spawn failures, many jobs, cancel, logs, and re-attaching after the anneal
 * process that started a job is gone (simulated by freeing its runner).
 *
 * Needs the shim binary: $ANNEAL_SHIM, else bin/anneal-shim, else
 * build-san/bin/anneal-shim (run from the repository root). No fixed sleeps:
 * every wait is on a condition, with a generous deadline. */
#include <dirent.h>
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
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "runners/runner.h"
#include "runners/spawn.h"

extern char **environ;

#define DEADLINE_S 30.0

static const char *shim;
static char *tmp;

static const char *find_shim(void)
{
	static const char *cands[] = { "bin/anneal-shim", "build-san/bin/anneal-shim" };
	const char *env = getenv("ANNEAL_SHIM");

	if (env && *env)
		return env;
	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
		if (access(cands[i], X_OK) == 0)
			return cands[i];
	return NULL;
}

static int setup(void **state)
{
	const char *base = getenv("TMPDIR");
	char *tmpl = xasprintf("%s/anneal-test-local.XXXXXX", base && *base ? base : "/tmp");

	if (!mkdtemp(tmpl)) {
		free(tmpl);
		return -1;
	}
	tmp = tmpl;
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

static struct runner *new_runner(void)
{
	struct runner *r = NULL;
	struct err err;

	if (local_runner_new(shim, &r, &err))
		fail_msg("local_runner_new: %s", err.msg);
	return r;
}

/* A fresh attempt directory under tmp; malloc'd. */
static char *attempt_dir(const char *name)
{
	char *d = fs_join(tmp, name);

	assert_int_equal(mkdir(d, 0755), 0);
	return d;
}

static void submit(struct runner *r, char **argv, const char *dir, void *cookie,
		   struct job_handle *h)
{
	struct job_spec spec;
	struct err err;

	memset(&spec, 0, sizeof(spec));
	spec.run_id = "r1";
	spec.step_id = "s1";
	spec.attempt = 1;
	spec.argv = argv;
	spec.envp = environ;
	spec.cwd = tmp;
	spec.attempt_dir = dir;
	spec.cookie = cookie;
	if (r->ops->submit(r, &spec, h, &err))
		fail_msg("submit: %s", err.msg);
}

/* Polls until one job is reported; fails past the deadline. */
static struct job_done wait_one(struct runner *r)
{
	double end = now_mono() + DEADLINE_S;
	struct job_done d;
	struct err err;
	size_t n = 0;

	while (n == 0) {
		if (now_mono() > end)
			fail_msg("no job reported within %.0f s", DEADLINE_S);
		if (r->ops->poll(r, 1000, &d, 1, &n, &err))
			fail_msg("poll: %s", err.msg);
	}
	return d;
}

static struct job_done run_one(char **argv, const char *name)
{
	struct runner *r = new_runner();
	char *dir = attempt_dir(name);
	struct job_handle h;
	struct job_done d;
	int cookie;

	submit(r, argv, dir, &cookie, &h);
	assert_true(!strncmp(h.id, "pid:", 4));
	d = wait_one(r);
	assert_ptr_equal(d.cookie, &cookie);
	runner_free(r);
	free(dir);
	return d;
}

static char *read_text(const char *dir, const char *name)
{
	char *path = fs_join(dir, name), *data = NULL;
	struct err err;

	if (fs_read_file(path, 1 << 20, &data, NULL, &err))
		data = NULL;
	free(path);
	return data;
}

/* Waits until dir/name exists and holds want (a prefix is not enough). */
static void wait_file(const char *dir, const char *name, const char *want)
{
	double end = now_mono() + DEADLINE_S;

	for (;;) {
		char *t = read_text(dir, name);
		int ok = t && (!want || !strcmp(t, want));
		free(t);
		if (ok)
			return;
		if (now_mono() > end)
			fail_msg("'%s/%s' never became '%s'", dir, name, want ? want : "");
		usleep(2000);
	}
}

static pid_t handle_pid(const struct job_handle *h)
{
	assert_true(!strncmp(h->id, "pid:", 4));
	return (pid_t)atol(h->id + 4);
}

/* 1 if a live (not zombie) process is in group pgid. */
static int group_alive(pid_t pgid)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int alive = 0;

	assert_non_null(d);
	while (!alive && (de = readdir(d))) {
		char path[300], text[1024], *p, state;
		long pgrp;
		FILE *f;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		text[0] = '\0';
		if (!fgets(text, sizeof(text), f))
			text[0] = '\0';
		fclose(f);
		if (!(p = strrchr(text, ')')))
			continue;
		if (sscanf(p + 1, " %c %*d %ld", &state, &pgrp) == 2 && pgrp == pgid &&
		    state != 'Z' && state != 'X')
			alive = 1;
	}
	closedir(d);
	return alive;
}

static void wait_group_gone(pid_t pgid)
{
	double end = now_mono() + DEADLINE_S;

	while (group_alive(pgid)) {
		if (now_mono() > end)
			fail_msg("process group %ld still alive", (long)pgid);
		usleep(2000);
	}
}

/* ---------------------------------------------------------------------- */

static void test_local__true_false_exit3(void **state)
{
	char *t[] = { "true", NULL }, *f[] = { "false", NULL };
	char *e3[] = { "sh", "-c", "exit 3", NULL };
	struct job_done d;

	d = run_one(t, "t");
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 0);
	d = run_one(f, "f");
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 1);
	d = run_one(e3, "e3");
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 3);
}

static void test_local__killed_by_signal(void **state)
{
	char *argv[] = { "sh", "-c", "kill -TERM $$", NULL };
	struct job_done d = run_one(argv, "sig");

	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, SIGTERM);
}

static void test_local__missing_program_is_spawn_failed(void **state)
{
	char *argv[] = { "trian", "--lr", "1", NULL };
	struct job_done d = run_one(argv, "missing");
	char *dir = fs_join(tmp, "missing"), *text;

	assert_int_equal(d.end, JOB_SPAWN_FAILED);
	assert_string_equal(d.detail, "exec 'trian': No such file or directory");
	text = read_text(dir, "status");
	assert_non_null(text);
	assert_true(!strncmp(text, "pid ", 4));
	assert_non_null(strstr(text, "\nspawnfail 2 exec 'trian'\n"));
	free(text);
	free(dir);
}

static void test_local__logs_in_attempt_dir(void **state)
{
	char *argv[] = { "sh", "-c", "echo out; echo err >&2; pwd", NULL };
	struct job_done d = run_one(argv, "logs");
	char *dir = fs_join(tmp, "logs"), *out, *errt, real[PATH_MAX], *want;

	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 0);
	assert_non_null(realpath(tmp, real));
	/* One log, both streams in the order written; cwd is spec->cwd. */
	want = xasprintf("out\nerr\n%s\n", real);
	out = read_text(dir, "output.log");
	errt = read_text(dir, "status");
	assert_string_equal(out, want);
	assert_non_null(strstr(errt, "\nexit 0\n"));
	free(want);
	free(out);
	free(errt);
	free(dir);
}

#define N_PAR 40

static void test_local__many_jobs_each_reported_once(void **state)
{
	struct runner *r = new_runner();
	int cookies[N_PAR], seen[N_PAR] = { 0 };
	struct job_done d[3];
	struct job_handle h;
	struct err err;
	double end = now_mono() + DEADLINE_S;
	size_t got = 0;

	for (int i = 0; i < N_PAR; i++) {
		char name[32], code[32];
		char *argv[] = { "sh", "-c", code, NULL };
		char *dir;

		snprintf(name, sizeof(name), "job%d", i);
		snprintf(code, sizeof(code), "exit %d", i);
		dir = attempt_dir(name);
		cookies[i] = i;
		submit(r, argv, dir, &cookies[i], &h);
		free(dir);
	}
	while (got < N_PAR) {
		size_t n;
		assert_true(now_mono() < end);
		/* A small cap: the rest must wait for the next poll, not vanish. */
		assert_int_equal(r->ops->poll(r, 1000, d, 3, &n, &err), 0);
		assert_true(n <= 3);
		for (size_t k = 0; k < n; k++) {
			int i = *(int *)d[k].cookie;
			assert_int_equal(d[k].end, JOB_EXITED);
			assert_int_equal(d[k].exit_code, i);
			assert_int_equal(seen[i], 0);
			seen[i] = 1;
		}
		got += n;
	}
	/* Nothing more to report. */
	{
		size_t n = 7;
		assert_int_equal(r->ops->poll(r, 0, d, 3, &n, &err), 0);
		assert_int_equal(n, 0);
	}
	runner_free(r);
}

static void test_local__cancel_reaches_step(void **state)
{
	char *argv[] = { "sh", "-c", "echo started; exec sleep 100", NULL };
	struct runner *r = new_runner();
	char *dir = attempt_dir("cancel");
	struct job_handle h;
	struct job_done d;
	struct err err;
	int cookie;

	submit(r, argv, dir, &cookie, &h);
	wait_file(dir, "output.log", "started\n");
	assert_int_equal(r->ops->cancel(r, &h, SIGTERM, &err), 0);
	d = wait_one(r);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, SIGTERM);
	/* Reported: the handle is no longer ours to signal. */
	assert_int_equal(r->ops->cancel(r, &h, SIGTERM, &err), 0);
	runner_free(r);
	free(dir);
}

/* A cancel right after submit, before the step exists, is not lost. */
static void test_local__cancel_at_once(void **state)
{
	char *argv[] = { "sleep", "100", NULL };
	struct runner *r = new_runner();
	struct job_handle h;
	struct job_done d;
	struct err err;

	for (int i = 0; i < 20; i++) {
		char name[32];
		char *dir;
		int cookie;

		snprintf(name, sizeof(name), "now%d", i);
		dir = attempt_dir(name);
		submit(r, argv, dir, &cookie, &h);
		assert_int_equal(r->ops->cancel(r, &h, SIGTERM, &err), 0);
		d = wait_one(r);
		assert_int_equal(d.end, JOB_SIGNALED);
		assert_int_equal(d.signal, SIGTERM);
		free(dir);
	}
	runner_free(r);
}

static void test_local__cancel_unknown_handle_is_noop(void **state)
{
	struct runner *r = new_runner();
	struct job_handle h;
	struct err err;

	snprintf(h.id, sizeof(h.id), "pid:%ld", (long)getpid());
	assert_int_equal(r->ops->cancel(r, &h, SIGKILL, &err), 0);
	runner_free(r);
}

/* The step must not inherit the lock: a daemon it leaves behind must not
 * keep the attempt looking alive. */
static void test_local__step_does_not_hold_lock(void **state)
{
	char *argv[] = { "sh", "-c",
			 "sleep 100 </dev/null >/dev/null 2>&1 & echo $! > bgpid", NULL };
	struct job_done d = run_one(argv, "daemon");
	char *dir = fs_join(tmp, "daemon"), *lock = xstrdup(dir);   /* the dir is the lock */
	char *bg = read_text(tmp, "bgpid");
	int fd;

	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 0);
	fd = open(lock, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	close(fd);
	assert_non_null(bg);
	kill((pid_t)atol(bg), SIGKILL);
	free(bg);
	free(lock);
	free(dir);
}

/* anneal dies (its runner is freed without stopping the job); a new one
 * attaches, sees the job alive, and learns its exit status. */
static void test_local__reattach_running_job(void **state)
{
	char *dir = attempt_dir("reattach"), *fifo = fs_join(tmp, "go");
	char script[PATH_MAX + 64];
	char *argv[] = { "sh", "-c", script, NULL };
	struct runner *r1 = new_runner(), *r2;
	struct job_handle h;
	struct job_done d;
	struct err err;
	int c1, c2, alive = -1, fd, ws;

	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(script, sizeof(script), "read x < '%s'; exit 5", fifo);
	submit(r1, argv, dir, &c1, &h);
	runner_free(r1);   /* anneal "dies": the job runs on */

	r2 = new_runner();
	assert_int_equal(r2->ops->attach(r2, dir, &h, &c2, &alive, &d, &err), 0);
	assert_int_equal(alive, 1);
	/* Attaching twice to one dir is a caller's bug. */
	assert_int_equal(r2->ops->attach(r2, dir, &h, &c2, &alive, &d, &err), ERR_INVALID);

	fd = open(fifo, O_WRONLY | O_CLOEXEC);   /* blocks until the step reads */
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x\n", 2), 2);
	close(fd);
	d = wait_one(r2);
	assert_ptr_equal(d.cookie, &c2);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 5);
	runner_free(r2);

	/* The shim is still this test's child: reap it. */
	assert_int_equal(waitpid(handle_pid(&h), &ws, 0), handle_pid(&h));
	assert_int_equal(WEXITSTATUS(ws), 5);

	/* A finished attempt: status at once. */
	r2 = new_runner();
	assert_int_equal(r2->ops->attach(r2, dir, &h, &c2, &alive, &d, &err), 0);
	assert_int_equal(alive, 0);
	assert_ptr_equal(d.cookie, &c2);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 5);
	runner_free(r2);
	free(fifo);
	free(dir);
}

/* cancel through a runner that attached: it uses the pid file. */
static void test_local__cancel_after_reattach(void **state)
{
	char *argv[] = { "sh", "-c", "echo started; exec sleep 100", NULL };
	char *dir = attempt_dir("recancel");
	struct runner *r1 = new_runner(), *r2;
	struct job_handle h, empty;
	struct job_done d;
	struct err err;
	int c, alive = -1;

	submit(r1, argv, dir, &c, &h);
	wait_file(dir, "output.log", "started\n");
	runner_free(r1);

	r2 = new_runner();
	memset(&empty, 0, sizeof(empty));   /* crashed before the handle was stored */
	assert_int_equal(r2->ops->attach(r2, dir, &empty, &c, &alive, &d, &err), 0);
	assert_int_equal(alive, 1);
	/* The handle is learnt from the pid file. */
	assert_int_equal(r2->ops->cancel(r2, &h, SIGTERM, &err), 0);
	d = wait_one(r2);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, SIGTERM);
	runner_free(r2);
	assert_int_equal(waitpid(handle_pid(&h), NULL, 0), handle_pid(&h));
	free(dir);
}

/* The shim alone is SIGKILLed: no exit file, the step lives on in the group.
 * attach reports the job lost and kills what is left, so a retry is never a
 * second copy. */
static void test_local__attach_after_shim_killed_is_lost(void **state)
{
	char *argv[] = { "sh", "-c", "echo started; exec sleep 100", NULL };
	char *dir = attempt_dir("shimkilled");
	struct runner *r1 = new_runner(), *r2;
	struct job_handle h;
	struct job_done d;
	struct err err;
	pid_t pid;
	int c, alive = -1;

	submit(r1, argv, dir, &c, &h);
	wait_file(dir, "output.log", "started\n");
	runner_free(r1);
	pid = handle_pid(&h);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_true(group_alive(pid));   /* the sleep survived its shim */

	r2 = new_runner();
	assert_int_equal(r2->ops->attach(r2, dir, &h, &c, &alive, &d, &err), 0);
	assert_int_equal(alive, 0);
	assert_int_equal(d.end, JOB_LOST);
	wait_group_gone(pid);
	runner_free(r2);
	free(dir);
}

/* Same, for a job we started: the shim's own death is the job's status,
 * and the group goes with it. */
static void test_local__shim_killed_while_watched(void **state)
{
	char *argv[] = { "sh", "-c", "echo started; exec sleep 100", NULL };
	char *dir = attempt_dir("shimkilled2");
	struct runner *r = new_runner();
	struct job_handle h;
	struct job_done d;
	int c;

	submit(r, argv, dir, &c, &h);
	wait_file(dir, "output.log", "started\n");
	assert_int_equal(kill(handle_pid(&h), SIGKILL), 0);
	d = wait_one(r);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, SIGKILL);
	wait_group_gone(handle_pid(&h));
	runner_free(r);
	free(dir);
}

static void test_local__attach_never_started(void **state)
{
	char *dir = attempt_dir("never");
	struct runner *r = new_runner();
	struct job_handle h;
	struct job_done d;
	struct err err;
	int c, alive = -1;

	memset(&h, 0, sizeof(h));
	assert_int_equal(r->ops->attach(r, dir, &h, &c, &alive, &d, &err), 0);
	assert_int_equal(alive, 0);
	assert_int_equal(d.end, JOB_LOST);
	assert_string_equal(d.detail, "never started");
	assert_ptr_equal(d.cookie, &c);
	runner_free(r);
	free(dir);
}

/* Never two copies: while a shim holds the lock, another runner sees it
 * alive and cannot start a job there. */
static void test_local__never_two_copies(void **state)
{
	char *dir = attempt_dir("two"), *fifo = fs_join(tmp, "go2");
	char script[PATH_MAX + 64];
	char *argv[] = { "sh", "-c", script, NULL };
	struct runner *r1 = new_runner(), *r2 = new_runner();
	struct job_handle h, h2;
	struct job_spec spec;
	struct job_done d;
	struct err err;
	int c1, c2, alive = -1, fd;

	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(script, sizeof(script), "read x < '%s'", fifo);
	submit(r1, argv, dir, &c1, &h);
	assert_int_equal(r2->ops->attach(r2, dir, &h, &c2, &alive, &d, &err), 0);
	assert_int_equal(alive, 1);

	memset(&spec, 0, sizeof(spec));
	spec.argv = argv;
	spec.envp = environ;
	spec.cwd = tmp;
	spec.attempt_dir = dir;
	spec.step_id = "s1";
	assert_int_equal(r2->ops->submit(r2, &spec, &h2, &err), ERR_BUSY);
	assert_non_null(strstr(err.msg, "a job runs there already"));

	fd = open(fifo, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x\n", 2), 2);
	close(fd);
	d = wait_one(r1);
	assert_ptr_equal(d.cookie, &c1);
	assert_int_equal(d.end, JOB_EXITED);
	d = wait_one(r2);
	assert_ptr_equal(d.cookie, &c2);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 0);
	runner_free(r1);
	runner_free(r2);
	free(fifo);
	free(dir);
}

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig)
{
	alarmed = 1;
}

static void test_local__poll_returns_on_signal(void **state)
{
	char *argv[] = { "sleep", "100", NULL };
	struct runner *r = new_runner();
	char *dir = attempt_dir("intr");
	struct itimerval it = { { 0, 0 }, { 0, 50000 } };
	struct sigaction sa, old;
	struct job_handle h;
	struct job_done d;
	struct err err;
	size_t n = 9;
	double t0;
	int c;

	submit(r, argv, dir, &c, &h);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, &old);
	setitimer(ITIMER_REAL, &it, NULL);
	t0 = now_mono();
	assert_int_equal(r->ops->poll(r, 20000, &d, 1, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_true(alarmed);
	assert_true(now_mono() - t0 < 10.0);
	sigaction(SIGALRM, &old, NULL);

	assert_int_equal(r->ops->cancel(r, &h, SIGKILL, &err), 0);
	d = wait_one(r);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, SIGKILL);
	runner_free(r);
	free(dir);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_local__free_restores_sigchld(void **state)
{
	struct sigaction sa;
	int fds = count_fds();
	struct runner *r = new_runner();

	assert_true(count_fds() > fds);
	sigaction(SIGCHLD, NULL, &sa);
	assert_true(sa.sa_flags & SA_SIGINFO);
	runner_free(r);
	sigaction(SIGCHLD, NULL, &sa);
	assert_true(!(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL);
	assert_int_equal(count_fds(), fds);
	runner_free(NULL);
}

static void test_local__shim_usage_error(void **state)
{
	char *argv[] = { (char *)shim, "x", tmp, "--", "true", NULL };
	char *argv2[] = { (char *)shim, "0", tmp, "true", NULL };
	char *errp = fs_join(tmp, "err"), *text;
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	int status = -1;

	so.stderr_path = errp;
	assert_int_equal(spawn_run(argv, &so, &status, &err), 0);
	assert_int_equal(status, 2);
	assert_int_equal(spawn_run(argv2, &so, &status, &err), 0);
	assert_int_equal(status, 2);
	text = read_text(tmp, "err");
	assert_non_null(strstr(text, "anneal-shim: usage: anneal-shim LOCK_FD ATTEMPT_DIR"));
	free(text);
	free(errp);
	errp = fs_join(tmp, "status");   /* a usage error records nothing */
	assert_false(fs_exists(errp));
	free(errp);
}

/* Per-job cost of submit + poll, 2 jobs at a time; not a pass/fail limit
 * (machines differ), printed for the record. ANNEAL_LOCAL_JOBS sets N. */
static void test_local__throughput(void **state)
{
	const char *nenv = getenv("ANNEAL_LOCAL_JOBS");
	int total = nenv ? atoi(nenv) : 200, started = 0, ended = 0, running = 0;
	char *argv[] = { "true", NULL };
	struct runner *r = new_runner();
	struct job_handle h;
	struct job_done d[2];
	struct err err;
	double t0 = now_mono(), t, in_submit = 0, in_poll = 0, t1;
	static int cookie;

	while (ended < total) {
		size_t n;
		while (running < 2 && started < total) {
			char name[32], *dir;
			snprintf(name, sizeof(name), "bench%d", started);
			dir = attempt_dir(name);
			t1 = now_mono();
			submit(r, argv, dir, &cookie, &h);
			in_submit += now_mono() - t1;
			free(dir);
			started++;
			running++;
		}
		t1 = now_mono();
		assert_int_equal(r->ops->poll(r, 1000, d, 2, &n, &err), 0);
		in_poll += now_mono() - t1;
		for (size_t k = 0; k < n; k++)
			assert_int_equal(d[k].exit_code, 0);
		ended += (int)n;
		running -= (int)n;
	}
	t = now_mono() - t0;
	print_message("local runner: %d 'true' jobs, 2 at a time: %.3f s wall, "
		      "%.0f us/job; in submit %.0f us/job, in poll %.0f us/job "
		      "(mostly waiting)\n", total, t, t / total * 1e6,
		      in_submit / total * 1e6, in_poll / total * 1e6);
	runner_free(r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_local__true_false_exit3),
		T(test_local__killed_by_signal),
		T(test_local__missing_program_is_spawn_failed),
		T(test_local__logs_in_attempt_dir),
		T(test_local__many_jobs_each_reported_once),
		T(test_local__cancel_reaches_step),
		T(test_local__cancel_at_once),
		T(test_local__cancel_unknown_handle_is_noop),
		T(test_local__step_does_not_hold_lock),
		T(test_local__reattach_running_job),
		T(test_local__cancel_after_reattach),
		T(test_local__attach_after_shim_killed_is_lost),
		T(test_local__shim_killed_while_watched),
		T(test_local__attach_never_started),
		T(test_local__never_two_copies),
		T(test_local__poll_returns_on_signal),
		T(test_local__free_restores_sigchld),
		T(test_local__shim_usage_error),
		T(test_local__throughput),
	};

	shim = find_shim();
	if (!shim) {
		fprintf(stderr, "test_local: no anneal-shim (set ANNEAL_SHIM or run 'make')\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
