/* runners/spawn.h — starting processes from argv arrays, and waiting for them.
 *
 * The one place where anneal creates processes (git's run-command): an argv
 * array, never a shell string; the shell is opt-in by putting "sh", "-c" in
 * argv yourself. Built on posix_spawn, which glibc implements with
 * clone(CLONE_VM|CLONE_VFORK): starting a child does not copy the parent's
 * address space, so it stays cheap however large anneal grows.
 *
 * File descriptors: the child gets stdin, stdout and stderr as chosen in
 * struct spawn_opts, pass_fd if set, and every other descriptor of the parent
 * that lacks FD_CLOEXEC. Code that spawns must therefore open everything else
 * with O_CLOEXEC. spawn_start opens the redirection files itself, in the
 * parent, and closes its copies before returning: the caller owns no new
 * descriptor afterwards and pass_fd stays the caller's. */
#ifndef ANNEAL_SPAWN_H
#define ANNEAL_SPAWN_H

#include <sys/types.h>

struct err;

struct spawn_opts {
	const char *cwd;          /* NULL: the parent's */
	char *const *envp;        /* NULL: the parent's environ */
	int stdin_null;           /* 1: stdin from /dev/null; 0: the parent's */
	const char *stdout_path;  /* NULL: the parent's; else appended to, */
	const char *stderr_path;  /*   created 0644 (paths relative to the parent's cwd) */
	int new_pgroup;           /* 1: the child leads a process group of its own
	                             (pgid == pid), so kill(-pid, sig) reaches it
	                             and everything it starts */
	int pass_fd;              /* -1: none; else inherited by the child under the
	                             same number even if it has FD_CLOEXEC (cleared
	                             in the child only) */
	int stdout_fd;            /* -1: none; else the child's stdout (a pipe's */
	int stderr_fd;            /* write end, say), stays the caller's; used
	                             when the matching _path is NULL */
};

#define SPAWN_OPTS_INIT { NULL, NULL, 0, NULL, NULL, 0, -1, -1, -1 }

/* Starts argv[0] with argv. An argv[0] without '/' is looked up in the PATH
 * of the child's environment (opts->envp), as execvp would (confstr's
 * default path when PATH is unset); one with a '/' is used as is, and a
 * relative one is relative to opts->cwd when set. opts may be NULL (all
 * defaults). On success sets *pid; the caller must reap the child
 * (spawn_wait or waitpid). Fails with ERR_NOTFOUND when argv[0] is not found
 * or not executable ("exec 'trian': No such file or directory"), ERR_SYSTEM
 * when a redirection, the cwd or the spawn itself fails. */
int spawn_start(char *const *argv, const struct spawn_opts *opts, pid_t *pid,
		struct err *err);

/* The exit status of a wait(2) status word, shell-style: the exit code, or
 * 128 + n for a death by signal n. */
int spawn_status(int wstatus);

/* Waits for pid (retrying on EINTR) and sets *status as spawn_status does. */
int spawn_wait(pid_t pid, int *status, struct err *err);

/* spawn_start then spawn_wait. */
int spawn_run(char *const *argv, const struct spawn_opts *opts, int *status,
	      struct err *err);

#endif
