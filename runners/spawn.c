/* runners/spawn.c — see spawn.h.
 *
 * Workload: the local runner starts one shim per step, possibly thousands per
 * run, so the parent side is kept to a handful of syscalls: the PATH lookup
 * (only for names without '/'), one open per redirection, and posix_spawn,
 * which glibc runs as clone(CLONE_VM|CLONE_VFORK) with the exec error, if
 * any, handed back to us. */
#include "runners/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"

extern char **environ;

static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);

	for (; *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* 0 if path (as the parent sees it) is an executable regular file, else an
 * errno in the spirit of execve's. */
static int check_exec(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno;
	if (!S_ISREG(st.st_mode))
		return EACCES;
	if (access(path, X_OK) < 0)
		return errno;
	return 0;
}

/* execvp's search, done in the parent so that the child's PATH, not ours,
 * decides: sets *out (malloc'd, relative to the child's cwd like the PATH
 * entry it came from) or returns an errno: EACCES if some candidate exists
 * but cannot be run, else ENOENT. */
static int path_search(const char *prog, const char *path, const char *cwd,
		       char **out)
{
	char defpath[256];
	int seen_eacces = 0;

	if (!path) {
		size_t n = confstr(_CS_PATH, defpath, sizeof(defpath));
		path = n > 0 && n <= sizeof(defpath) ? defpath : "/bin:/usr/bin";
	}
	for (const char *p = path;; p++) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char *cand, *seen;
		int e;

		if (len == 0)
			cand = xstrdup(prog);   /* an empty entry is the cwd */
		else
			cand = xasprintf("%.*s/%s", (int)len, p, prog);
		seen = cwd && cand[0] != '/' ? fs_join(cwd, cand) : NULL;
		e = check_exec(seen ? seen : cand);
		free(seen);
		if (e == 0) {
			*out = cand;
			return 0;
		}
		free(cand);
		if (e == EACCES)
			seen_eacces = 1;
		if (!end)
			break;
		p = end;
	}
	return seen_eacces ? EACCES : ENOENT;
}

static int open_out(const char *path, int *fd, struct err *err)
{
	*fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
	if (*fd < 0)
		return err_sys(err, errno, "cannot open '%s'", path);
	return 0;
}

int spawn_start(char *const *argv, const struct spawn_opts *opts, pid_t *pid,
		struct err *err)
{
	static const struct spawn_opts defaults = SPAWN_OPTS_INIT;
	char *const *envp;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t mask;
	char *resolved = NULL;
	const char *prog;
	int out_fd = -1, err_fd = -1, fa_ok = 0, attr_ok = 0;
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	int rc = 0, e;

	if (!opts)
		opts = &defaults;
	envp = opts->envp ? opts->envp : environ;
	if (!argv || !argv[0] || !argv[0][0])
		return err_set(err, ERR_INVALID, "spawn: empty argv");
	prog = argv[0];
	if (!strchr(prog, '/')) {
		e = path_search(prog, env_get(envp, "PATH"), opts->cwd, &resolved);
		if (e)
			return err_set(err, ERR_NOTFOUND, "exec '%s': %s", prog,
				       strerror(e));
		prog = resolved;
	}
	if (opts->stdout_path && (rc = open_out(opts->stdout_path, &out_fd, err)))
		goto done;
	if (opts->stderr_path && (rc = open_out(opts->stderr_path, &err_fd, err)))
		goto done;

	if ((e = posix_spawn_file_actions_init(&fa))) {
		rc = err_sys(err, e, "spawn '%s'", argv[0]);
		goto done;
	}
	fa_ok = 1;
	e = 0;
	if (opts->stdin_null)
		e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	/* dup2 onto the standard numbers clears FD_CLOEXEC in the child; for
	 * pass_fd, dup2 onto itself does the same (glibc >= 2.29, POSIX 2024). */
	if (!e && (out_fd >= 0 || opts->stdout_fd >= 0))
		e = posix_spawn_file_actions_adddup2(&fa, out_fd >= 0 ? out_fd : opts->stdout_fd, 1);
	if (!e && (err_fd >= 0 || opts->stderr_fd >= 0))
		e = posix_spawn_file_actions_adddup2(&fa, err_fd >= 0 ? err_fd : opts->stderr_fd, 2);
	if (!e && opts->pass_fd >= 0)
		e = posix_spawn_file_actions_adddup2(&fa, opts->pass_fd, opts->pass_fd);
	if (!e && opts->cwd)
		e = posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
	if (!e && (e = posix_spawnattr_init(&attr)) == 0)
		attr_ok = 1;
	/* The child starts with no signal blocked and every disposition at its
	 * default: an ignored SIGPIPE or SIGINT in anneal is not the step's. */
	sigemptyset(&mask);
	if (!e)
		e = posix_spawnattr_setsigmask(&attr, &mask);
	sigfillset(&mask);
	if (!e)
		e = posix_spawnattr_setsigdefault(&attr, &mask);
	if (opts->new_pgroup) {
		flags |= POSIX_SPAWN_SETPGROUP;
		if (!e)
			e = posix_spawnattr_setpgroup(&attr, 0);
	}
	if (!e)
		e = posix_spawnattr_setflags(&attr, flags);
	if (e) {
		rc = err_sys(err, e, "spawn '%s'", argv[0]);
		goto done;
	}

	e = posix_spawn(pid, prog, &fa, &attr, argv, envp);
	if (e) {
		/* The child reports one errno whatever failed: tell which. */
		if (opts->cwd && !fs_is_dir(opts->cwd))
			rc = err_sys(err, e, "spawn '%s': cannot change to directory '%s'",
				     argv[0], opts->cwd);
		else if (e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR)
			rc = err_set(err, ERR_NOTFOUND, "exec '%s': %s", argv[0],
				     strerror(e));
		else
			rc = err_sys(err, e, "spawn '%s'", argv[0]);
	}
done:
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	free(resolved);
	return rc;
}

int spawn_status(int wstatus)
{
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	return 255;   /* stopped/continued: not asked for by our waits */
}

int spawn_wait(pid_t pid, int *status, struct err *err)
{
	int ws;

	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return err_sys(err, errno, "wait for process %ld", (long)pid);
	}
	*status = spawn_status(ws);
	return 0;
}

int spawn_run(char *const *argv, const struct spawn_opts *opts, int *status,
	      struct err *err)
{
	pid_t pid;
	int rc = spawn_start(argv, opts, &pid, err);

	if (rc)
		return rc;
	return spawn_wait(pid, status, err);
}
