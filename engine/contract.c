/* engine/contract.c — see contract.h. The engine contract from the
 * engine's side: ANNEAL_* variables, events appended one write(2) per line
 * to an O_APPEND file (so that a reader following the file never sees
 * half a line from us), and checkpoints written s6-style: a temporary
 * directory, fsync, rename, fsync the parent, then the event. */
#include "engine/contract.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "pipeline/json.h"

#define PARAMS_MAX (1u << 20)

volatile sig_atomic_t contract_stop;

static void on_signal(int sig)
{
	(void)sig;
	contract_stop = 1;
}

void contract_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* Restart interrupted reads and writes: the flag is polled. */
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* "ANNEAL_INPUT_" + NAME upper-cased, other characters than letters and
 * digits as '_' (the runner's rule). */
static char *env_name(const char *prefix, const char *name)
{
	char *s = xasprintf("%s%s", prefix, name);

	for (char *p = s + strlen(prefix); *p; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
		else if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			*p = '_';
	}
	return s;
}

int contract_open(struct contract *c, const char *cmd, struct err *err)
{
	const char *ev = env("ANNEAL_EVENTS"), *ck = env("ANNEAL_CKPT_DIR");
	const char *res = env("ANNEAL_RESUME_FROM");

	memset(c, 0, sizeof(*c));
	c->cmd = cmd;
	c->step_id = env("ANNEAL_STEP_ID") ? env("ANNEAL_STEP_ID") : "";
	c->events_fd = -1;
	if (ck)
		c->ckpt_dir = xstrdup(ck);
	if (ev) {
		c->events_fd = open(ev, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
		if (c->events_fd < 0)
			return err_sys(err, errno, "ANNEAL_EVENTS: cannot open '%s'", ev);
	}
	if (res) {
		if (fs_is_dir(res))
			c->resume = xstrdup(res);
		else if (res[0] != '/' && ck) {
			char *p = fs_join(ck, res);
			if (fs_is_dir(p))
				c->resume = p;
			else
				free(p);
		}
		if (!c->resume)
			return err_set(err, ERR_INVALID,
				       "ANNEAL_RESUME_FROM: '%s' is not a directory", res);
	}
	return 0;
}

void contract_close(struct contract *c)
{
	if (c->events_fd >= 0)
		close(c->events_fd);
	free(c->ckpt_dir);
	free(c->resume);
	memset(c, 0, sizeof(*c));
	c->events_fd = -1;
}

int contract_input(const char *role, int required, const char **out,
		   struct err *err)
{
	char *name = env_name("ANNEAL_INPUT_", role);
	int rc = 0;

	*out = env(name);
	if (!*out && required)
		rc = err_set(err, ERR_INVALID, "input '%s' is missing (%s is not set)",
			     role, name);
	else if (*out && !fs_is_dir(*out))
		rc = err_set(err, ERR_INVALID, "input '%s': '%s' is not a directory",
			     role, *out);
	free(name);
	return rc;
}

int contract_output(const char *name, char **out, struct err *err)
{
	char *var = env_name("ANNEAL_OUTPUT_", name);
	const char *v = env(var), *all = env("ANNEAL_OUTPUT_DIR");
	int rc;

	*out = NULL;
	if (v)
		*out = xstrdup(v);
	else if (all)
		*out = fs_join(all, name);
	if (!*out) {
		rc = err_set(err, ERR_INVALID,
			     "output '%s': neither %s nor ANNEAL_OUTPUT_DIR is set",
			     name, var);
		free(var);
		return rc;
	}
	free(var);
	rc = fs_mkdir_p(*out, 0777, err);
	if (rc) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

int contract_params(const char *path, struct jnode **out, struct err *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (!path)
		path = env("ANNEAL_PARAMS");
	if (!path)
		return 0;
	rc = fs_read_file(path, PARAMS_MAX, &text, &len, err);
	if (!rc) {
		rc = json_parse(text, len, JSON_COMMENTS, out, err);
		if (rc)
			err_prefix(err, "'%s'", path);
	}
	free(text);
	return rc;
}

void contract_event(struct contract *c, const char *json)
{
	size_t n = strlen(json);
	char *line;

	if (c->events_fd < 0)
		return;
	line = xmalloc(n + 1);
	memcpy(line, json, n);
	line[n] = '\n';
	/* One write: with O_APPEND a line lands whole (short writes to a
	 * regular file happen only when the disk is full). */
	for (;;) {
		ssize_t w = write(c->events_fd, line, n + 1);
		if (w < 0 && errno == EINTR)
			continue;
		break;
	}
	free(line);
}

void contract_progress(struct contract *c, long long done, long long total)
{
	char line[128];

	snprintf(line, sizeof(line), "{\"event\":\"progress\",\"done\":%lld,\"total\":%lld}",
		 done, total);
	contract_event(c, line);
}

/* ---- checkpoints -------------------------------------------------------------- */

int contract_ckpt_begin(struct contract *c, long long step, char **tmp,
			struct err *err)
{
	char *name;
	int rc;

	*tmp = NULL;
	if (!c->ckpt_dir)
		return err_set(err, ERR_INVALID,
			       "cannot write a checkpoint: ANNEAL_CKPT_DIR is not set");
	rc = fs_mkdir_p(c->ckpt_dir, 0777, err);
	if (rc)
		return rc;
	name = xasprintf("step-%lld.tmp", step);
	*tmp = fs_join(c->ckpt_dir, name);
	free(name);
	rc = fs_remove_tree(*tmp, err);
	if (!rc && mkdir(*tmp, 0777) < 0)
		rc = err_sys(err, errno, "cannot create '%s'", *tmp);
	if (rc) {
		free(*tmp);
		*tmp = NULL;
	}
	return rc;
}

static int fsync_path(const char *path, struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return err_sys(err, errno, "cannot open '%s'", path);
	if (fsync(fd) < 0)
		rc = err_sys(err, errno, "cannot fsync '%s'", path);
	close(fd);
	return rc;
}

/* fsyncs every regular file directly in dir, then dir. */
static int fsync_files(const char *dir, struct err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return err_sys(err, errno, "cannot open directory '%s'", dir);
	while (!rc && (e = readdir(d))) {
		char *p;
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		p = fs_join(dir, e->d_name);
		if (lstat(p, &st) == 0 && S_ISREG(st.st_mode))
			rc = fsync_path(p, err);
		free(p);
	}
	closedir(d);
	return rc ? rc : fs_fsync_dir(dir, err);
}

/* The N of "step-N", or -1 for any other name (step-N.tmp included). */
static long long step_of(const char *name)
{
	long long n = 0;
	const char *p;

	if (strncmp(name, "step-", 5) || !name[5])
		return -1;
	for (p = name + 5; *p; p++) {
		if (*p < '0' || *p > '9' || n > 1000000000000LL)
			return -1;
		n = n * 10 + (*p - '0');
	}
	return n;
}

static int cmp_ll_desc(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* Removes all but the newest keep step-N directories, and step-N.tmp
 * directories that a killed attempt left (this process is the only
 * writer: attempts of a step never overlap). Best effort: a checkpoint
 * left behind costs disk, not correctness. */
static void prune(const char *dir, int keep)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long long *steps = NULL;
	size_t n = 0, cap = 0;
	struct err err;

	if (!d)
		return;
	while ((e = readdir(d))) {
		long long s = step_of(e->d_name);
		size_t len = strlen(e->d_name);

		if (s < 0 && !strncmp(e->d_name, "step-", 5) && len > 4 &&
		    !strcmp(e->d_name + len - 4, ".tmp")) {
			char *p = fs_join(dir, e->d_name);
			fs_remove_tree(p, &err);
			free(p);
			continue;
		}
		if (s < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			steps = xrealloc(steps, cap * sizeof(*steps));
		}
		steps[n++] = s;
	}
	closedir(d);
	if (n)
		qsort(steps, n, sizeof(*steps), cmp_ll_desc);
	for (size_t i = (size_t)keep; i < n; i++) {
		char *name = xasprintf("step-%lld", steps[i]);
		char *p = fs_join(dir, name);
		fs_remove_tree(p, &err);
		free(p);
		free(name);
	}
	free(steps);
}

int contract_ckpt_commit(struct contract *c, long long step, const char *tmp,
			 int keep, struct err *err)
{
	char *name = xasprintf("step-%lld", step);
	char *final = fs_join(c->ckpt_dir, name);
	char line[256];
	int rc;

	rc = fsync_files(tmp, err);
	/* A checkpoint of this step from an earlier attempt holds the same
	 * bytes (determinism); replace it rather than fail. */
	if (!rc && fs_exists(final))
		rc = fs_remove_tree(final, err);
	if (!rc && rename(tmp, final) < 0)
		rc = err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, final);
	if (!rc)
		rc = fs_fsync_dir(c->ckpt_dir, err);
	if (!rc) {
		snprintf(line, sizeof(line),
			 "{\"event\":\"checkpoint\",\"step\":%lld,\"dir\":\"%s\"}", step, name);
		contract_event(c, line);
		if (keep > 0)
			prune(c->ckpt_dir, keep);
	}
	free(final);
	free(name);
	return rc;
}

int contract_write(const char *dir, const char *name, const char *data,
		   size_t len, struct err *err)
{
	char *p = fs_join(dir, name);
	int rc = fs_write_atomic(p, data, len, 0666, err);

	free(p);
	return rc;
}

int contract_exit_status(int code)
{
	switch (code) {
	case 0: return ENGINE_EXIT_OK;
	case ERR_INVALID:
	case ERR_NOTFOUND: return ENGINE_EXIT_INVALID;
	case ERR_INTERRUPTED: return ENGINE_EXIT_INTERRUPTED;
	default: return ENGINE_EXIT_FAIL;
	}
}
