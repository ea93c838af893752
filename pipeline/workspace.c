/* pipeline/workspace.c — see workspace.h. */
#include "pipeline/workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/log.h"
#include "pipeline/json.h"

static int read_config(struct workspace *ws, struct err *err)
{
	char *path = fs_join(ws->dir, "config.json"), *text = NULL;
	struct jnode *root = NULL;
	size_t len;
	int rc = 0;

	if (!fs_exists(path))
		goto done;
	rc = fs_read_file(path, 1 << 20, &text, &len, err);
	if (rc)
		goto done;
	rc = json_parse(text, len, JSON_COMMENTS, &root, err);
	if (rc) {
		err_prefix(err, "%s", path);
		goto done;
	}
	if (root->type != J_OBJECT) {
		rc = err_set(err, ERR_INVALID, "%s: must be a JSON object", path);
		goto done;
	}
	for (size_t i = 0; i < root->nkids; i++) {
		const struct jnode *k = &root->kids[i];

		/* "runner": "slurm" or {"type": "slurm", "partition": ...}: the
		 * default for runs whose recipe names none (runners/factory.c) */
		if (!strcmp(k->key, "runner")) {
			const struct jnode *t = k->type == J_OBJECT ? json_get(k, "type") : k;
			struct buf b = BUF_INIT;

			if (!t || t->type != J_STRING ||
			    (strcmp(t->str, "local") && strcmp(t->str, "slurm"))) {
				rc = err_set(err, ERR_INVALID,
					     "%s: runner: must be \"local\", \"slurm\" or {\"type\": \"slurm\", ...}",
					     path);
				goto done;
			}
			if (k->type == J_STRING) {
				buf_adds(&b, k->str);
			} else {
				struct jnode *c = json_clone(k);
				free(c->key);
				c->key = NULL;
				json_write(&b, c);
				json_free(c);
			}
			free(ws->runner);
			ws->runner = buf_detach(&b);
			continue;
		}
		/* "runs_dir": an absolute path for the work dirs of runs (steps'
		 * output, events, checkpoints): on a cluster, a filesystem the
		 * compute nodes share, when the workspace itself is not. */
		if (!strcmp(k->key, "runs_dir")) {
			if (k->type != J_STRING || k->str[0] != '/') {
				rc = err_set(err, ERR_INVALID, "%s: runs_dir: must be an absolute path", path);
				goto done;
			}
			free(ws->runs_dir);
			ws->runs_dir = xstrdup(k->str);
			if ((rc = fs_mkdir_p(ws->runs_dir, 0700, err)))
				goto done;
			continue;
		}
		int *slot = !strcmp(k->key, "gpus") ? &ws->gpus
			  : !strcmp(k->key, "npus") ? &ws->npus
			  : !strcmp(k->key, "jobs") ? &ws->jobs : NULL;
		if (!slot) {
			rc = err_set(err, ERR_INVALID, "%s: unknown field '%s' (known: gpus, npus, jobs, runner, runs_dir)",
				     path, k->key);
			goto done;
		}
		if (k->type != J_NUMBER || !k->is_int || k->inum < 0 || k->inum > 4096) {
			rc = err_set(err, ERR_INVALID, "%s: %s: must be an integer in 0..4096",
				     path, k->key);
			goto done;
		}
		*slot = (int)k->inum;
	}
done:
	json_free(root);
	free(text);
	free(path);
	return rc;
}

/* What other users must not be able to change: the records and the
 * bytes they vouch for. World-writable is refused (anyone could rewrite a
 * run's history or a stored checkpoint); group-writable is warned about
 * (a shared group may be meant, but it is trusted with the same power).
 * A missing entry is fine (made later, 0700/0644 under a 0700 dir). */
static int check_modes(const struct workspace *ws, struct err *err)
{
	static const char *const parts[] = { "", "state.db", "store", "store/objects", "runs" };

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		char *p = *parts[i] ? fs_join(ws->dir, parts[i]) : xstrdup(ws->dir);
		struct stat st;
		int rc = 0;

		if (stat(p, &st) == 0) {
			unsigned mode = (unsigned)st.st_mode & 07777;
			if (st.st_mode & S_IWOTH)
				rc = err_set(err, ERR_INVALID,
					     "'%s' is writable by every user (mode %04o): run 'chmod o-w %s'",
					     p, mode, p);
			else if (st.st_mode & S_IWGRP)
				log_warn("'%s' is writable by its group (mode %04o): its members can change what anneal records",
					 p, mode);
		}
		free(p);
		if (rc)
			return rc;
	}
	return 0;
}

static struct workspace *ws_new(const char *root)
{
	struct workspace *ws = xcalloc(1, sizeof(*ws));

	ws->root = xstrdup(root);
	ws->dir = fs_join(root, ".anneal");
	ws->db_path = fs_join(ws->dir, "state.db");
	ws->runs_dir = fs_join(ws->dir, "runs");
	return ws;
}

int workspace_find(const char *start, struct workspace **out, struct err *err)
{
	char *dir = fs_abspath(start ? start : ".");
	struct workspace *ws = NULL;
	int rc = 0;

	*out = NULL;
	if (!fs_is_dir(dir)) {
		rc = err_set(err, ERR_NOTFOUND, "'%s': no such directory", start ? start : ".");
		goto done;
	}
	for (;;) {
		char *cand = fs_join(dir, ".anneal");
		int found = fs_is_dir(cand);
		free(cand);
		if (found)
			break;
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir) {
			rc = err_set(err, ERR_NOTFOUND,
				     "not an anneal workspace (or any parent): '%s'; run 'anneal init'",
				     start ? start : ".");
			goto done;
		}
		*slash = '\0';
	}
	ws = ws_new(dir);
	rc = check_modes(ws, err);
	if (rc)
		goto done;
	rc = read_config(ws, err);
	if (rc)
		goto done;
	*out = ws;
	ws = NULL;
done:
	workspace_free(ws);
	free(dir);
	return rc;
}

int workspace_init(const char *root, struct workspace **out, struct err *err)
{
	char *abs = fs_abspath(root);
	struct workspace *ws = NULL;
	char *store = NULL;
	int rc;

	*out = NULL;
	rc = fs_mkdir_p(abs, 0777, err);
	if (rc)
		goto done;
	ws = ws_new(abs);
	/* State and store are the user's alone (0700): other users must not
	 * be able to change what a run records. */
	rc = fs_mkdir_p(ws->dir, 0700, err);
	if (rc)
		goto done;
	rc = fs_mkdir_p(ws->runs_dir, 0700, err);
	if (rc)
		goto done;
	store = fs_join(ws->dir, "store");
	rc = fs_mkdir_p(store, 0700, err);
	if (rc)
		goto done;
	/* A workspace inside a git repository must not make it look dirty
	 * (provenance, --require-clean): .anneal ignores itself. */
	{
		char *gi = fs_join(ws->dir, ".gitignore");
		if (!fs_exists(gi))
			rc = fs_write_atomic(gi, "*\n", 2, 0644, err);
		free(gi);
		if (rc)
			goto done;
	}
	rc = check_modes(ws, err);
	if (rc)
		goto done;
	rc = read_config(ws, err);
	if (rc)
		goto done;
	*out = ws;
	ws = NULL;
done:
	free(store);
	workspace_free(ws);
	free(abs);
	return rc;
}

void workspace_free(struct workspace *ws)
{
	if (!ws)
		return;
	free(ws->root);
	free(ws->dir);
	free(ws->db_path);
	free(ws->runs_dir);
	free(ws->runner);
	free(ws);
}

char *workspace_run_dir(const struct workspace *ws, int64_t run)
{
	return xasprintf("%s/%" PRId64, ws->runs_dir, run);
}

char *workspace_step_dir(const struct workspace *ws, int64_t run, const char *step)
{
	return xasprintf("%s/%" PRId64 "/%s", ws->runs_dir, run, step);
}

/* Open-file-description locks: owned by the open file (like flock), so
 * they survive fork and are released when the last descriptor closes, and
 * unlike flock they can be queried without being taken. */
static int ofd_lock(int fd, int cmd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };
	return fcntl(fd, cmd, &fl);
}

int workspace_lock_run(const struct workspace *ws, int64_t run, int *fdp,
		       struct err *err)
{
	char *dir = workspace_run_dir(ws, run), *path = fs_join(dir, "lock");
	int fd = -1, rc = 0;

	*fdp = -1;
	rc = fs_mkdir_p(dir, 0700, err);
	if (rc)
		goto done;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = err_sys(err, errno, "cannot open '%s'", path);
		goto done;
	}
	if (ofd_lock(fd, F_OFD_SETLK, F_WRLCK) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			rc = err_set(err, ERR_BUSY,
				     "run %" PRId64 " is being driven by another anneal process", run);
		else
			rc = err_sys(err, errno, "cannot lock '%s'", path);
		close(fd);
		goto done;
	}
	*fdp = fd;
done:
	free(path);
	free(dir);
	return rc;
}

int workspace_gc_lock(const struct workspace *ws, int exclusive, int *fdp,
		      struct err *err)
{
	char *path = fs_join(ws->dir, "gc.lock");
	int fd, rc = 0;

	*fdp = -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = err_sys(err, errno, "cannot open '%s'", path);
		goto done;
	}
	while (ofd_lock(fd, F_OFD_SETLKW, exclusive ? F_WRLCK : F_RDLCK) < 0) {
		if (errno == EINTR)
			continue;
		rc = err_sys(err, errno, "cannot lock '%s'", path);
		close(fd);
		goto done;
	}
	*fdp = fd;
done:
	free(path);
	return rc;
}

int workspace_run_locked(const struct workspace *ws, int64_t run)
{
	char *dir = workspace_run_dir(ws, run), *path = fs_join(dir, "lock");
	int fd = open(path, O_RDWR | O_CLOEXEC), locked = 0;

	if (fd >= 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		/* F_OFD_GETLK asks without taking the lock, so a status query can
		 * never make a starting driver believe the run is taken. */
		if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			locked = 1;
		close(fd);
	}
	free(path);
	free(dir);
	return locked;
}
