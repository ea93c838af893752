/* runners/local.c — the local runner: steps as processes on this machine.
 *
 * Each step runs under anneal-shim (runners/shim.c), in a process group of
 * its own. The attempt directory holds what lets a later anneal process take
 * over a job that outlived the one that started it:
 *   (lock) the directory itself is flock'ed by the shim for exactly as long
 *         as it lives. submit takes the lock before spawning and hands it
 *         down, so there is no instant at which the job exists but the lock
 *         is free: whoever gets the lock knows no shim runs there, and a
 *         second copy is never started.
 *   status "pid PID STARTTIME" (the shim, leader of the job's group: for
 *         cancel after attach; the start time guards against a reused pid),
 *         then one ending line: "exit N", "signal N" or "spawnfail ERRNO WHAT".
 *   output.log  the step's stdout and stderr, interleaved as written.
 * Two files an attempt and no renames: creating files is the dominant cost
 * of a short step on ext4 (see bench/dag).
 *
 * Jobs we started are our children: a SIGCHLD handler writes a byte to a
 * self-pipe, poll() waits on it, and each watched child is checked with
 * waitid(P_PID, WNOHANG), never waitpid(-1), so children that other code
 * starts are left to it. Jobs taken over by attach are not our children:
 * their lock is tried at every poll, which then waits at most 100 ms.
 *
 * Workload: one submit and one report per step; the parent side costs the
 * lock (open of the directory, flock, unlink of a stale status, close), the
 * log file (opened by spawn) and one posix_spawn, which returns once the
 * shim has exec'd. File creation dominates on slow metadata (see the report with
 * the tests); the rest is the kernel's process creation.
 * Each SIGCHLD checks every watched child: O(watched) syscalls per event,
 * fine for the tens to hundreds of jobs one machine runs at once.
 *
 * poll: a signal that interrupts the wait ends it after one more look that
 * does not wait, so *n is 0 unless a job ended meanwhile (the SIGCHLD itself
 * is such a signal); the caller checks its own flags either way.
 *
 * A child shim that dies without an ending line (SIGKILL) is reported with its
 * own wait status and its group is SIGKILLed before the shim is reaped, while
 * the pgid cannot be anybody else's: nothing of the job outlives the report.
 * Attached jobs found in that state are JOB_LOST, and kill_survivors below
 * applies the same rule with more care.
 *
 * flock(2) must be the local kind: on NFS it becomes a POSIX lock owned by
 * the process, which the shim would not inherit. Attempt directories belong
 * on a local file system.
 *
 * The SIGCHLD handler is installed with SA_RESTART, unlike the brief asked:
 * poll(2) is interrupted by a handled signal regardless of SA_RESTART, and
 * without it every other slow syscall in anneal (SQLite, libgit2, reads of
 * pipes) could fail with EINTR whenever a step ends. The self-pipe already
 * covers the race between a check and the wait. */
#include "runners/runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "runners/spawn.h"

struct job {
	char *dir;                 /* absolute attempt directory */
	void *cookie;
	pid_t pid;                 /* the shim, leader of the job's group; 0 when
	                              unknown yet (attached) or reaped */
	unsigned long long start;  /* attached: the shim's start time (pid file) */
	int child;                 /* 1: started here, reaped here; 0: attached */
	int ended;                 /* done is filled, to be reported */
	struct job_done done;
	char id[JOB_HANDLE_MAX];
};

struct local_runner {
	struct runner base;        /* first: a struct runner * is one of these */
	char *shim;                /* absolute: the spawn changes directory first */
	struct job **jobs;         /* watched, in start order; ended ones until reported */
	size_t n, cap;
	size_t n_attached;         /* watched, not ended, not our children */
	size_t n_ended;
	int pipe[2];               /* SIGCHLD self-pipe, O_CLOEXEC|O_NONBLOCK */
	int slot;                  /* in chld_fds */
};

/* --- SIGCHLD: one handler for the process, one pipe per runner ------------ */

#define CHLD_SLOTS 8

static volatile sig_atomic_t chld_fds[CHLD_SLOTS] = { -1, -1, -1, -1, -1, -1, -1, -1 };
static int chld_users;
static struct sigaction chld_old;

static void on_sigchld(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;

	for (int i = 0; i < CHLD_SLOTS; i++) {
		int fd = chld_fds[i];
		if (fd >= 0) {
			ssize_t r = write(fd, "c", 1);   /* full pipe: already awake */
			(void)r;
		}
	}
	errno = saved;
	/* Whoever handled SIGCHLD before us still gets it. */
	if (chld_old.sa_flags & SA_SIGINFO) {
		if (chld_old.sa_sigaction)
			chld_old.sa_sigaction(sig, si, uc);
	} else if (chld_old.sa_handler != SIG_DFL && chld_old.sa_handler != SIG_IGN) {
		chld_old.sa_handler(sig);
	}
}

static int chld_register(int fd, int *slot, struct err *err)
{
	sigset_t block, old;
	int rc = 0;

	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	*slot = -1;
	for (int i = 0; i < CHLD_SLOTS && *slot < 0; i++)
		if (chld_fds[i] < 0)
			*slot = i;
	if (*slot < 0) {
		rc = err_set(err, ERR_BUSY, "local runner: more than %d at once",
			     CHLD_SLOTS);
		goto done;
	}
	if (chld_users == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigchld;
		sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGCHLD, &sa, &chld_old) < 0) {
			rc = err_sys(err, errno, "local runner: sigaction");
			goto done;
		}
	}
	chld_fds[*slot] = fd;
	chld_users++;
done:
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static void chld_unregister(int slot)
{
	sigset_t block, old;

	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	chld_fds[slot] = -1;
	if (--chld_users == 0)
		sigaction(SIGCHLD, &chld_old, NULL);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* --- the attempt directory ------------------------------------------------ */

/* dir/name into out (PATH_MAX): no allocation, for the hot and failing paths. */
static int path_in(char *out, const char *dir, const char *name, struct err *err)
{
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		return err_set(err, ERR_INVALID, "attempt dir '%s': path too long", dir);
	return 0;
}

/* Reads a small file into buf (NUL-terminated). Returns bytes read, or -1
 * with errno set. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	do
		n = read(fd, buf, size - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	buf[n] = '\0';
	return n;
}

/* The status file's complete lines into text (NUL-terminated). 0, or -1
 * with errno (ENOENT: no status at all). */
static int read_status(const char *dir, char *text, size_t size)
{
	char path[PATH_MAX];
	ssize_t n;
	char *last;

	if (path_in(path, dir, "status", NULL)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	n = read_small(path, text, size);
	if (n < 0)
		return -1;
	/* A line without its newline is not written yet (or never will be). */
	last = strrchr(text, '\n');
	if (last)
		last[1] = '\0';
	else
		text[0] = '\0';
	return 0;
}

/* Fills *d from the status file's ending line. Returns 1 if there is one
 * (*d set, JOB_LOST if it made no sense), 0 if not. */
static int read_exit(const char *dir, struct job_done *d)
{
	char buf[1024], *text, *end, *nl;
	long a;

	if (read_status(dir, buf, sizeof(buf)) < 0) {
		if (errno == ENOENT)
			return 0;
		d->end = JOB_LOST;
		snprintf(d->detail, sizeof(d->detail), "cannot read the status file: %s",
			 strerror(errno));
		return 1;
	}
	/* The ending is the line after "pid ...". */
	text = buf;
	while (!strncmp(text, "pid ", 4) && (nl = strchr(text, '\n')))
		text = nl + 1;
	if (!*text)
		return 0;
	nl = strchr(text, '\n');
	if (nl)
		*nl = '\0';
	if (!strncmp(text, "exit ", 5)) {
		a = strtol(text + 5, &end, 10);
		if (!*end && a >= 0 && a <= 255) {
			d->end = JOB_EXITED;
			d->exit_code = (int)a;
			snprintf(d->detail, sizeof(d->detail), "exited with status %ld", a);
			return 1;
		}
	} else if (!strncmp(text, "signal ", 7)) {
		a = strtol(text + 7, &end, 10);
		if (!*end && a > 0 && a < 128) {
			d->end = JOB_SIGNALED;
			d->signal = (int)a;
			snprintf(d->detail, sizeof(d->detail), "killed by signal %ld (%s)",
				 a, strsignal((int)a));
			return 1;
		}
	} else if (!strncmp(text, "spawnfail ", 10)) {
		a = strtol(text + 10, &end, 10);
		if (*end == ' ' && a > 0) {
			d->end = JOB_SPAWN_FAILED;
			snprintf(d->detail, sizeof(d->detail), "%s: %s", end + 1,
				 strerror((int)a));
			return 1;
		}
	}
	d->end = JOB_LOST;
	snprintf(d->detail, sizeof(d->detail), "status file: unrecognised line '%.64s'",
		 text);
	return 1;
}

/* Reads the shim's "pid PID STARTTIME" line. 0 or -1. */
static int read_pid(const char *dir, pid_t *pid, unsigned long long *start)
{
	char text[1024];
	long p;
	unsigned long long st;

	if (read_status(dir, text, sizeof(text)) < 0)
		return -1;
	if (sscanf(text, "pid %ld %llu", &p, &st) != 2 || p <= 1)
		return -1;
	*pid = (pid_t)p;
	*start = st;
	return 0;
}

/* State, process group and start time (field 22) from /proc/PID/stat. */
static int proc_stat(pid_t pid, char *state, pid_t *pgrp, unsigned long long *start)
{
	char path[64], text[1024], *p;
	int field;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (read_small(path, text, sizeof(text)) < 0)
		return -1;
	/* The command name may hold spaces and ')': count from the last one. */
	p = strrchr(text, ')');
	if (!p || p[1] != ' ')
		return -1;
	*state = p[2];
	for (field = 2; field < 22 && p; field++) {
		p = strchr(p + 1, ' ');
		if (p && field + 1 == 5)
			*pgrp = (pid_t)strtol(p + 1, NULL, 10);
	}
	if (!p)
		return -1;
	*start = strtoull(p + 1, NULL, 10);
	return 0;
}

/* 1 if pid is still the process that wrote the pid file. */
static int same_process(pid_t pid, unsigned long long start)
{
	char state;
	pid_t pgrp;
	unsigned long long s;

	return pid > 1 && proc_stat(pid, &state, &pgrp, &s) == 0 && s == start;
}

/* The shim of an attempt is gone without an exit file; processes of its
 * group may live on (the shim alone was SIGKILLed) and would make a retry a
 * second copy. Kills group pgid, conservatively: only if pid pgid is not a
 * different process now (then the number was reused) and every live member
 * of the group started no earlier than the shim (an older member means the
 * group is not the job's). A pgid cannot be handed to a new process while
 * the group has members, so a group found this way is almost surely the
 * job's; "almost" is a pid wrap-around plus a new group created under the
 * same number, in which case its members would have to pass both checks. */
static void kill_survivors(pid_t pgid, unsigned long long start)
{
	char state;
	pid_t pgrp;
	unsigned long long s;
	struct dirent *de;
	DIR *d;
	int found = 0;

	if (pgid <= 1)
		return;
	if (proc_stat(pgid, &state, &pgrp, &s) == 0 && s != start)
		return;
	d = opendir("/proc");
	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long p = strtol(de->d_name, &end, 10);
		if (*end || p <= 0)
			continue;
		if (proc_stat((pid_t)p, &state, &pgrp, &s) < 0 || pgrp != pgid ||
		    state == 'Z' || state == 'X')
			continue;
		if (s < start) {
			found = 0;
			break;
		}
		found = 1;
	}
	closedir(d);
	if (found)
		kill(-pgid, SIGKILL);
}

/* --- jobs ------------------------------------------------------------------ */

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->dir);
	free(j);
}

static void add_job(struct local_runner *lr, struct job *j)
{
	if (lr->n == lr->cap) {
		lr->cap = lr->cap ? 2 * lr->cap : 16;
		lr->jobs = xrealloc(lr->jobs, lr->cap * sizeof(*lr->jobs));
	}
	lr->jobs[lr->n++] = j;
	if (!j->child)
		lr->n_attached++;
}

static void end_job(struct local_runner *lr, struct job *j)
{
	j->ended = 1;
	j->done.cookie = j->cookie;
	lr->n_ended++;
	if (!j->child)
		lr->n_attached--;
}

static struct job *find_job(struct local_runner *lr, const char *id, const char *dir)
{
	for (size_t i = 0; i < lr->n; i++) {
		struct job *j = lr->jobs[i];
		if (j->ended)
			continue;
		if ((id && id[0] && !strcmp(j->id, id)) || (dir && !strcmp(j->dir, dir)))
			return j;
	}
	return NULL;
}

/* A child shim has ended (a zombie still: its pid, hence its group, cannot
 * be reused until we reap it). */
static void finish_child(struct local_runner *lr, struct job *j, const siginfo_t *si)
{
	if (!read_exit(j->dir, &j->done)) {
		/* The shim died before recording (SIGKILL of the group at a
		 * timeout, or of the shim alone): its status is the job's, and
		 * whatever it leaves in its group must not outlive it. */
		kill(-j->pid, SIGKILL);
		if (si->si_code == CLD_EXITED) {
			j->done.end = JOB_EXITED;
			j->done.exit_code = si->si_status;
			snprintf(j->done.detail, sizeof(j->done.detail),
				 "exited with status %d (no exit file)", si->si_status);
		} else {
			j->done.end = JOB_SIGNALED;
			j->done.signal = si->si_status;
			snprintf(j->done.detail, sizeof(j->done.detail),
				 "killed by signal %d (%s)", si->si_status,
				 strsignal(si->si_status));
		}
	}
	while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
		;
	j->pid = 0;
	end_job(lr, j);
}

static void sweep_children(struct local_runner *lr)
{
	for (size_t i = 0; i < lr->n; i++) {
		struct job *j = lr->jobs[i];
		siginfo_t si;

		if (j->ended || !j->child)
			continue;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)j->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
			if (errno != ECHILD)
				continue;
			/* Reaped behind our back (SIGCHLD set to SIG_IGN, a
			 * waitpid(-1) elsewhere): the files still tell. */
			j->pid = 0;
			if (!read_exit(j->dir, &j->done)) {
				j->done.end = JOB_LOST;
				snprintf(j->done.detail, sizeof(j->done.detail),
					 "anneal-shim was reaped elsewhere and left no exit status");
			}
			end_job(lr, j);
			continue;
		}
		if (si.si_pid != 0)
			finish_child(lr, j, &si);
	}
}

/* An attached job has ended once its lock can be taken. */
static void check_attached(struct local_runner *lr)
{
	for (size_t i = 0; i < lr->n; i++) {
		struct job *j = lr->jobs[i];
		int fd;

		if (j->ended || j->child)
			continue;
		fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);
			continue;   /* the shim lives */
		}
		if (fd >= 0)
			close(fd);
		if (!read_exit(j->dir, &j->done)) {
			if (!j->pid)
				read_pid(j->dir, &j->pid, &j->start);
			kill_survivors(j->pid, j->start);
			j->done.end = JOB_LOST;
			snprintf(j->done.detail, sizeof(j->done.detail),
				 "anneal-shim ended without recording how the step ended");
		}
		end_job(lr, j);
	}
}

static void drain_pipe(struct local_runner *lr, int *woken)
{
	char buf[256];
	ssize_t n;

	while ((n = read(lr->pipe[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			*woken = 1;
}

/* --- the ops --------------------------------------------------------------- */

static int local_submit(struct runner *r, const struct job_spec *spec,
			struct job_handle *h, struct err *err)
{
	struct local_runner *lr = (struct local_runner *)r;
	struct spawn_opts so = SPAWN_OPTS_INIT;
	char statusp[PATH_MAX], logp[PATH_MAX], fdarg[16];
	struct job *j = NULL;
	char **argv = NULL;
	size_t argc = 0;
	pid_t pid;
	int fd = -1, rc = 0;

	if (!spec->argv || !spec->argv[0] || !spec->attempt_dir)
		return err_set(err, ERR_INVALID, "step '%s': no argv or attempt dir",
			       spec->step_id ? spec->step_id : "?");
	j = xcalloc(1, sizeof(*j));
	j->dir = fs_abspath(spec->attempt_dir);
	j->cookie = spec->cookie;
	j->child = 1;
	if ((rc = path_in(statusp, j->dir, "status", err)) ||
	    (rc = path_in(logp, j->dir, "output.log", err)))
		goto done;

	/* Not O_CLOEXEC: this descriptor is how the shim holds the lock. The
	 * runner is single-threaded, so no other spawn inherits it meanwhile.
	 * The lock is on the directory itself: no file to create. */
	fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_NOCTTY);
	if (fd < 0) {
		rc = err_sys(err, errno, "cannot open attempt dir '%s'", j->dir);
		goto done;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			rc = err_set(err, ERR_BUSY, "attempt dir '%s': a job runs there already",
				     j->dir);
		else
			rc = err_sys(err, errno, "cannot lock '%s'", j->dir);
		goto done;
	}
	/* A stale status from an earlier job in this dir must not be taken
	 * for this one's. */
	if (unlink(statusp) < 0 && errno != ENOENT) {
		rc = err_sys(err, errno, "cannot remove '%s'", statusp);
		goto done;
	}

	while (spec->argv[argc])
		argc++;
	argv = xcalloc(argc + 5, sizeof(*argv));
	snprintf(fdarg, sizeof(fdarg), "%d", fd);
	argv[0] = lr->shim;
	argv[1] = fdarg;
	argv[2] = j->dir;
	argv[3] = (char *)"--";
	memcpy(argv + 4, spec->argv, argc * sizeof(*argv));

	so.cwd = spec->cwd;
	so.envp = spec->envp;
	so.stdin_null = 1;
	so.stdout_path = logp;
	so.stderr_path = logp;
	so.new_pgroup = 1;
	so.pass_fd = fd;
	if ((rc = spawn_start(argv, &so, &pid, err))) {
		err_prefix(err, "step '%s'", spec->step_id ? spec->step_id : spec->argv[0]);
		goto done;
	}
	j->pid = pid;
	snprintf(j->id, sizeof(j->id), "pid:%ld", (long)pid);
	snprintf(h->id, sizeof(h->id), "%s", j->id);
	add_job(lr, j);
	j = NULL;
done:
	if (fd >= 0)
		close(fd);   /* the shim's copy keeps the lock */
	free(argv);
	job_free(j);
	return rc;
}

static int local_poll(struct runner *r, int timeout_ms, struct job_done *done,
		      size_t cap, size_t *n, struct err *err)
{
	struct local_runner *lr = (struct local_runner *)r;
	double deadline = now_mono() + (timeout_ms > 0 ? timeout_ms / 1000.0 : 0);
	int interrupted = 0;
	size_t k = 0;

	*n = 0;
	for (;;) {
		struct pollfd pfd = { lr->pipe[0], POLLIN, 0 };
		int woken = 0, ms, prc;

		drain_pipe(lr, &woken);
		if (woken)
			sweep_children(lr);
		if (lr->n_attached)
			check_attached(lr);
		if (lr->n_ended || interrupted)
			break;
		if (timeout_ms < 0) {
			ms = -1;
		} else {
			double left = deadline - now_mono();
			if (left <= 0)
				break;
			ms = (int)(left * 1000.0) + 1;
		}
		if (lr->n_attached && (ms < 0 || ms > 100))
			ms = 100;
		prc = poll(&pfd, 1, ms);
		if (prc < 0) {
			if (errno != EINTR)
				return err_sys(err, errno, "local runner: poll");
			/* A signal: one more look without waiting, then back to
			 * the caller, which may have a flag to check. */
			interrupted = 1;
		}
	}

	/* Report ended jobs in start order, keep the rest in order. */
	for (size_t i = 0; i < lr->n; i++) {
		struct job *j = lr->jobs[i];
		if (j->ended && *n < cap) {
			done[(*n)++] = j->done;
			lr->n_ended--;
			job_free(j);
			continue;
		}
		lr->jobs[k++] = j;
	}
	lr->n = k;
	return 0;
}

/* The job's pid and whether it is safe to signal its group now. */
static int signal_target(struct job *j, pid_t *pgid)
{
	if (j->child) {
		*pgid = j->pid;     /* not reaped, so the pid is still ours */
		return j->pid > 0;
	}
	if (!j->pid && read_pid(j->dir, &j->pid, &j->start) < 0)
		return 0;
	*pgid = j->pid;
	return same_process(j->pid, j->start);
}

static int local_cancel(struct runner *r, const struct job_handle *h, int sig,
			struct err *err)
{
	struct local_runner *lr = (struct local_runner *)r;
	struct job *j = find_job(lr, h->id, NULL);
	pid_t pgid;

	/* Only jobs this runner watches are signalled: an unknown handle is
	 * a job already reported, or someone else's number. */
	if (!j || !signal_target(j, &pgid))
		return 0;
	if (kill(-pgid, sig) < 0 && errno != ESRCH)
		return err_sys(err, errno, "cancel job '%s' (process group %ld)", h->id,
			       (long)pgid);
	return 0;
}

/* A job whose attempt directory was deleted (rm -rf by hand while anneal
 * was down) has lost its lock and its status file with it: nothing tells
 * a later driver that it still runs, and a retry would be a second copy.
 * If the recorded handle names a live anneal-shim started for dir (its
 * argv: SHIM FD DIR -- ...), its process group is SIGKILLed (its outcome
 * can no longer be recorded) and waited for. Returns 1 if it did that. */
static int stop_orphan(const struct job_handle *h, const char *dir)
{
	char path[64], cmd[PATH_MAX + 256];
	const char *arg;
	ssize_t n;
	long pid;
	char *end;
	size_t len;

	if (!h || strncmp(h->id, "pid:", 4))
		return 0;
	pid = strtol(h->id + 4, &end, 10);
	if (*end || pid <= 1)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	n = read_small(path, cmd, sizeof(cmd));
	if (n <= 0)
		return 0;
	/* argv[0] ends in anneal-shim, argv[2] is dir. */
	len = strlen(cmd);
	if (len < 11 || strcmp(cmd + len - 11, "anneal-shim"))
		return 0;
	arg = cmd + len + 1;
	if (arg >= cmd + n)
		return 0;
	arg += strlen(arg) + 1;
	if (arg >= cmd + n || strcmp(arg, dir))
		return 0;
	kill(-(pid_t)pid, SIGKILL);
	/* Not our child: gone once /proc says so (zombies count as gone). */
	for (int i = 0; i < 500; i++) {
		char state;
		pid_t pgrp;
		unsigned long long st;
		struct timespec pause = { 0, 10 * 1000 * 1000 };

		if (proc_stat((pid_t)pid, &state, &pgrp, &st) < 0 || state == 'Z' ||
		    state == 'X')
			break;
		nanosleep(&pause, NULL);
	}
	return 1;
}

static int local_attach(struct runner *r, const char *attempt_dir,
			struct job_handle *h, void *cookie, int *alive,
			struct job_done *done, struct err *err)
{
	struct local_runner *lr = (struct local_runner *)r;
	struct job *j = xcalloc(1, sizeof(*j));
	int fd = -1, rc = 0;

	*alive = 0;
	memset(done, 0, sizeof(*done));
	done->cookie = cookie;
	j->dir = fs_abspath(attempt_dir);
	j->cookie = cookie;
	if (find_job(lr, NULL, j->dir)) {
		rc = err_set(err, ERR_INVALID, "attempt dir '%s': already watched", j->dir);
		goto done;
	}
	fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT) {
			rc = err_sys(err, errno, "cannot open attempt dir '%s'", j->dir);
			goto done;
		}
		done->end = JOB_LOST;
		if (stop_orphan(h, j->dir))
			snprintf(done->detail, sizeof(done->detail),
				 "its attempt directory was deleted while it ran; stopped it");
		else
			snprintf(done->detail, sizeof(done->detail), "never started");
		goto done;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			rc = err_sys(err, errno, "cannot lock '%s'", j->dir);
			goto done;
		}
		/* Held: the shim lives. The pid file may not be written yet in
		 * the first instants; cancel reads it again then. */
		read_pid(j->dir, &j->pid, &j->start);
		if (h && h->id[0])
			snprintf(j->id, sizeof(j->id), "%s", h->id);
		else if (j->pid)
			snprintf(j->id, sizeof(j->id), "pid:%ld", (long)j->pid);
		if (h && !h->id[0])
			snprintf(h->id, sizeof(h->id), "%s", j->id);
		add_job(lr, j);
		j = NULL;
		*alive = 1;
		goto done;
	}
	/* Ours: no shim runs there, none will. */
	if (!read_exit(j->dir, done)) {
		if (read_pid(j->dir, &j->pid, &j->start) == 0) {
			kill_survivors(j->pid, j->start);
			snprintf(done->detail, sizeof(done->detail),
				 "anneal-shim ended without recording how the step ended");
		} else {
			/* The lock is taken before the shim exists and the pid
			 * line is its first act: no line, no job ever ran. */
			snprintf(done->detail, sizeof(done->detail), "never started");
		}
		done->end = JOB_LOST;
	}
done:
	if (fd >= 0)
		close(fd);
	job_free(j);
	return rc;
}

static void local_free(struct runner *r)
{
	struct local_runner *lr = (struct local_runner *)r;

	if (!lr)
		return;
	/* Jobs keep running: stopping them is the scheduler's decision. */
	chld_unregister(lr->slot);
	close(lr->pipe[0]);
	close(lr->pipe[1]);
	for (size_t i = 0; i < lr->n; i++)
		job_free(lr->jobs[i]);
	free(lr->jobs);
	free(lr->shim);
	free(lr);
}

static const struct runner_ops local_ops = {
	.name = "local",
	.submit = local_submit,
	.poll = local_poll,
	.cancel = local_cancel,
	.attach = local_attach,
	.free = local_free,
};

int local_runner_new(const char *shim_path, struct runner **out, struct err *err)
{
	struct local_runner *lr;
	int rc;

	*out = NULL;
	if (!shim_path || !shim_path[0])
		return err_set(err, ERR_INVALID, "local runner: no anneal-shim path");
	if (access(shim_path, X_OK) < 0)
		return err_sys(err, errno, "anneal-shim '%s'", shim_path);
	lr = xcalloc(1, sizeof(*lr));
	lr->base.ops = &local_ops;
	lr->slot = -1;
	if (pipe2(lr->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = err_sys(err, errno, "local runner: pipe");
		free(lr);
		return rc;
	}
	if ((rc = chld_register(lr->pipe[1], &lr->slot, err))) {
		close(lr->pipe[0]);
		close(lr->pipe[1]);
		free(lr);
		return rc;
	}
	lr->shim = fs_abspath(shim_path);
	*out = &lr->base;
	return 0;
}
