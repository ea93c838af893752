/* runners/shim.c — anneal-shim, the per-job supervisor of the local runner.
 *
 *   anneal-shim LOCK_FD ATTEMPT_DIR -- ARGV...
 *
 * The local runner starts one shim per step, in a process group of its own,
 * holding an flock on ATTEMPT_DIR itself through the inherited LOCK_FD. The
 * shim runs ARGV as its child and records how it ended in ATTEMPT_DIR/exit,
 * so that an anneal process that is not our parent (anneal was kill -9'd and
 * restarted) still learns the status: the lock is held exactly as long as
 * the shim lives, and the ending is in the status file before it dies.
 *
 * The status file ATTEMPT_DIR/status (one inode per attempt: file creation
 * is what a step costs most on a busy ext4) gets one line at start and one
 * at the end, each a single O_APPEND write, so a reader sees a line whole
 * or not at all:
 *   pid PID STARTTIME          the shim, STARTTIME from /proc/self/stat
 *   exit N | signal N | spawnfail ERRNO WHAT
 *         (WHAT: "exec 'PROG'" or "fork", for the runner's message)
 * No fsync: losing the last line on power loss only means the step runs
 * again.
 *
 * Leftovers: the shim is a child subreaper (PR_SET_CHILD_SUBREAPER), so
 * whatever the step leaves behind when it exits (a background child, a
 * daemon that double-forked and called setsid to leave the process group)
 * becomes the shim's child instead of init's. Once the step has exited the
 * shim sends them SIGTERM, SIGKILL after LEFTOVER_GRACE_S, reaps them, says
 * so in the log, and only then records the ending and lets the lock go: a
 * step's processes never outlive its attempt. (A shim that is itself
 * SIGKILLed cannot do this; the runner then kills the job's group.)
 *
 * The shim exits with the step's status (N, or 128 + signal; 127 when the
 * step could not be started; 2 on a usage error). SIGINT, SIGTERM, SIGHUP
 * and SIGQUIT are meant for the step, which is in the same process group and
 * gets them directly, so the shim does not act on them and stays to record
 * the result. It does note them, though, until the step exists: one sent
 * to the group before the fork (cancel right after submit) would reach
 * nobody. fork copies the notes (and Linux restarts a fork that a signal
 * interrupts, so none falls in between); the child raises them on itself
 * before exec, with default dispositions. Nothing is ever forwarded twice.
 *
 * libc only, nothing from base/: starting it must cost one exec and no more. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long processes a step left behind get between SIGTERM and SIGKILL. */
#define LEFTOVER_GRACE_S 5

static const int shim_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
#define N_SIGNALS (sizeof(shim_signals) / sizeof(shim_signals[0]))

static volatile sig_atomic_t noted[N_SIGNALS];

static void note_signal(int sig)
{
	for (size_t i = 0; i < N_SIGNALS; i++)
		if (shim_signals[i] == sig)
			noted[i] = 1;
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
	char msg[PATH_MAX + 256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	msg[n++] = '\n';
	/* stderr is the step's log: one write keeps the line whole. */
	if (write(2, "anneal-shim: ", 13) < 0 || write(2, msg, (size_t)n) < 0)
		return;
}

/* The attempt's status file, opened at start (O_APPEND): a "pid" line
 * first, the ending line last. */
static int status_fd = -1;
static const char *status_dir;

/* Appends one line with one write(2): a reader sees it whole or not at
 * all (a line without its '\n' is not there yet). */
static void record(const char *text)
{
	size_t len = strlen(text);
	ssize_t n;

	if (status_fd < 0)
		return;
	do
		n = write(status_fd, text, len);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		warn("cannot write '%s/status': %s", status_dir,
		     n < 0 ? strerror(errno) : "short write");
}

/* Field 22 of /proc/self/stat, after the command name, which may itself
 * hold spaces and parentheses: count from the last ')'. */
static unsigned long long self_start_time(void)
{
	char buf[1024], *p;
	ssize_t n;
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

static int parse_fd(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT_MAX)
		return -1;
	return (int)v;
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reaps every child that has ended, without waiting. */
static void reap_ended(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* The live children of the shim (the step is gone: every one of them is
 * something it left behind), at most cap of them; returns how many. Reads
 * /proc/self/task/TID/children (one file, the shim has one thread), or
 * scans /proc where the kernel lacks it. Zombies are reaped first. */
static size_t leftovers(pid_t *out, size_t cap)
{
	char path[64], buf[4096];
	pid_t self = getpid();
	size_t n = 0;
	ssize_t r;
	int fd;

	reap_ended();
	snprintf(path, sizeof(path), "/proc/self/task/%ld/children", (long)self);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char *p = buf, *end;
		do
			r = read(fd, buf, sizeof(buf) - 1);
		while (r < 0 && errno == EINTR);
		close(fd);
		if (r >= 0) {
			buf[r] = '\0';
			while (n < cap) {
				long v = strtol(p, &end, 10);
				if (end == p)
					break;
				if (v > 1)
					out[n++] = (pid_t)v;
				p = end;
			}
			return n;
		}
	}
	{
		DIR *d = opendir("/proc");
		struct dirent *de;

		if (!d)
			return 0;
		while (n < cap && (de = readdir(d))) {
			char stat[512], *q;
			long pid = strtol(de->d_name, &q, 10);
			if (*q || pid <= 1)
				continue;
			snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
			if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
				continue;
			r = read(fd, stat, sizeof(stat) - 1);
			close(fd);
			if (r <= 0)
				continue;
			stat[r] = '\0';
			/* "PID (COMM) STATE PPID ...", COMM may hold anything. */
			q = strrchr(stat, ')');
			if (q && q[1] == ' ' && q[2] && q[2] != 'Z' && q[2] != 'X' &&
			    strtol(q + 4, NULL, 10) == (long)self)
				out[n++] = (pid_t)pid;
		}
		closedir(d);
	}
	return n;
}

/* After the step exited: ends what it left behind (see the top). Each
 * round signals the shim's current children; when one dies, its own
 * children become the shim's and are found by the next round. */
static void end_leftovers(void)
{
	pid_t pids[256];
	double deadline = 0;
	size_t n;
	int killing = 0;

	while ((n = leftovers(pids, sizeof(pids) / sizeof(pids[0]))) > 0) {
		struct timespec pause = { 0, 20 * 1000 * 1000 };
		char list[256];
		size_t len = 0;

		if (!deadline) {
			deadline = mono_now() + LEFTOVER_GRACE_S;
			list[0] = '\0';
			for (size_t i = 0; i < n && len + 24 < sizeof(list); i++)
				len += (size_t)snprintf(list + len, sizeof(list) - len,
							"%s%ld", i ? " " : "", (long)pids[i]);
			warn("the step left %zu process%s running (pid%s %s%s); sending"
			     " SIGTERM, SIGKILL after %ds", n, n == 1 ? "" : "es",
			     n == 1 ? "" : "s", list, len + 24 >= sizeof(list) ? " ..." : "",
			     LEFTOVER_GRACE_S);
		}
		if (!killing && mono_now() >= deadline) {
			killing = 1;
			warn("%zu process%s still running after %ds; sending SIGKILL", n,
			     n == 1 ? "" : "es", LEFTOVER_GRACE_S);
		}
		/* SIGTERM again to a process that ignores it costs nothing;
		 * one found in a later round gets its first. */
		for (size_t i = 0; i < n; i++)
			kill(pids[i], killing ? SIGKILL : SIGTERM);
		nanosleep(&pause, NULL);
	}
}

/* In the forked child: the step's process. Never returns. */
static void run_step(char **argv, int report_fd)
{
	struct sigaction dfl;
	sigset_t none;
	int e;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (size_t i = 0; i < N_SIGNALS; i++)
		sigaction(shim_signals[i], &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Sent to the group before we existed: ours all the same. */
	for (size_t i = 0; i < N_SIGNALS; i++)
		if (noted[i])
			raise(shim_signals[i]);
	execvp(argv[0], argv);
	/* report_fd is CLOEXEC: a successful exec closes it and the shim reads
	 * EOF; a failed one sends errno. */
	e = errno;
	while (write(report_fd, &e, sizeof(e)) < 0 && errno == EINTR)
		;
	_exit(127);
}

int main(int argc, char **argv)
{
	struct sigaction note;
	char line[PATH_MAX + 64];
	const char *dir;
	int lock_fd, report[2], ws, exec_errno = 0;
	pid_t pid;
	ssize_t n;

	if (argc < 5 || strcmp(argv[3], "--") || (lock_fd = parse_fd(argv[1])) < 0) {
		warn("usage: anneal-shim LOCK_FD ATTEMPT_DIR -- PROGRAM [ARG]...");
		return 2;
	}
	dir = argv[2];
	/* The lock belongs to the shim alone: a step that leaves a daemon
	 * behind must not keep the attempt looking alive. */
	if (fcntl(lock_fd, F_SETFD, FD_CLOEXEC) < 0) {
		warn("lock fd %d: %s", lock_fd, strerror(errno));
		return 2;
	}

	memset(&note, 0, sizeof(note));
	note.sa_handler = note_signal;
	note.sa_flags = SA_RESTART;
	sigemptyset(&note.sa_mask);
	for (size_t i = 0; i < N_SIGNALS; i++)
		sigaction(shim_signals[i], &note, NULL);

	status_dir = dir;
	if ((size_t)snprintf(line, sizeof(line), "%s/status", dir) >= sizeof(line) ||
	    (status_fd = open(line, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
			      0644)) < 0)
		warn("cannot open '%s/status': %s", dir, strerror(errno));
	snprintf(line, sizeof(line), "pid %ld %llu\n", (long)getpid(), self_start_time());
	record(line);

	/* Orphans of the step become ours, not init's (see the top). A
	 * kernel without it (< 3.4) only loses the clean-up of leftovers. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L) < 0)
		warn("cannot become a child subreaper: %s; processes the step leaves"
		     " behind will not be stopped", strerror(errno));

	if (pipe2(report, O_CLOEXEC) < 0) {
		snprintf(line, sizeof(line), "spawnfail %d pipe\n", errno);
		record(line);
		return 127;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(line, sizeof(line), "spawnfail %d fork\n", errno);
		record(line);
		return 127;
	}
	if (pid == 0) {
		close(report[0]);
		run_step(argv + 4, report[1]);
	}
	close(report[1]);
	do
		n = read(report[0], &exec_errno, sizeof(exec_errno));
	while (n < 0 && errno == EINTR);
	close(report[0]);

	/* Orphans the step leaves while it runs are reaped on the way. */
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, 0);

		if (w == pid) {
			ws = st;
			break;
		}
		if (w < 0 && errno != EINTR) {
			/* Cannot happen for our own child; record no ending so
			 * that the runner reports the job lost, not made up. */
			warn("wait: %s", strerror(errno));
			return 127;
		}
	}
	end_leftovers();
	if (n == (ssize_t)sizeof(exec_errno)) {
		snprintf(line, sizeof(line), "spawnfail %d exec '%s'\n", exec_errno,
			 argv[4]);
		record(line);
		return 127;
	}
	if (WIFSIGNALED(ws)) {
		snprintf(line, sizeof(line), "signal %d\n", WTERMSIG(ws));
		record(line);
		return 128 + WTERMSIG(ws);
	}
	snprintf(line, sizeof(line), "exit %d\n", WEXITSTATUS(ws));
	record(line);
	return WEXITSTATUS(ws);
}
