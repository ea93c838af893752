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
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR) {
			/* Cannot happen for our own child; record no ending so
			 * that the runner reports the job lost, not made up. */
			warn("wait: %s", strerror(errno));
			return 127;
		}
	}
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
