/* cli/common.c — see cli.h. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/sched.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

int cli_fail(const struct err *err)
{
	fprintf(stderr, "anneal: %s\n", err->msg[0] ? err->msg : "unknown error");
	return err_exit_status(err->code);
}

int cli_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("anneal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

int cli_open(struct cli *cli, struct workspace **ws, struct state **st,
	     struct err *err)
{
	int rc;

	*st = NULL;
	rc = workspace_find(cli->dir, ws, err);
	if (rc)
		return rc;
	rc = state_open((*ws)->db_path, st, err);
	if (rc) {
		workspace_free(*ws);
		*ws = NULL;
	}
	return rc;
}

int cli_find_or_init(struct cli *cli, struct workspace **ws, struct err *err)
{
	int rc = workspace_find(cli->dir, ws, err);

	if (rc == ERR_NOTFOUND) {
		err_clear(err);
		rc = workspace_init(cli->dir ? cli->dir : ".", ws, err);
	}
	return rc;
}

int cli_parse_run(const char *s, int64_t *run, struct err *err)
{
	long long v;

	if (parse_int(s, 1, INT64_MAX, &v))
		return err_set(err, ERR_INVALID, "'%s' is not a run id (a number, see 'anneal status')", s);
	*run = v;
	return 0;
}

int cli_pick_run(struct state *st, const char *arg, int unfinished_only,
		 const char *none_msg, int64_t *run, struct err *err)
{
	int rc;

	if (arg)
		return cli_parse_run(arg, run, err);
	rc = state_run_latest(st, unfinished_only, run, err);
	if (rc == ERR_NOTFOUND)
		err_set(err, ERR_NOTFOUND, "%s", none_msg);
	return rc;
}

static void on_stop_signal(int sig)
{
	(void)sig;
	sched_request_stop();
}

void cli_install_stop_handlers(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;   /* no SA_RESTART: poll() returns at once */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* A closed stdout (anneal run | head) must not kill the driver. */
	signal(SIGPIPE, SIG_IGN);
}

char *cli_shim_path(void)
{
	const char *env = getenv("ANNEAL_SHIM");
	char *dir, *p;

	if (env && *env)
		return xstrdup(env);
	dir = fs_self_dir();
	if (!dir)
		return xstrdup("anneal-shim");
	p = fs_join(dir, "anneal-shim");
	if (access(p, X_OK) != 0) {
		free(p);
		p = fs_join(dir, "../libexec/anneal/anneal-shim");
	}
	free(dir);
	return p;
}

static void sink(enum log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level == LOG_DEBUG && !getenv("ANNEAL_DEBUG"))
		return;
	fprintf(stderr, "anneal: %s%s\n", level == LOG_WARN ? "warning: " :
		level == LOG_ERROR ? "error: " : "", msg);
}

void cli_install_log_sink(void)
{
	log_set_sink(sink, NULL);
}
