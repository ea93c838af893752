/* cli/cmd_logs.c — anneal logs RUN STEP [-f] [--attempt N]
 *
 * Prints a step attempt's output.log (its stdout and stderr, interleaved as
 * written; the latest attempt by default). With -f it keeps printing what
 * the step appends until the attempt ends, like tail -f that knows when to
 * stop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

struct tail {
	char *path;
	off_t off;
	FILE *to;
};

/* Copies what was appended since the last call. */
static void drain(struct tail *t)
{
	char buf[65536];
	int fd = open(t->path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), t->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fwrite(buf, 1, (size_t)n, t->to);
		t->off += n;
	}
	fflush(t->to);
	close(fd);
}

/* 1 while the attempt's process lives. The store says so while a driver
 * records it; with no driver (anneal was killed) the attempt directory's
 * lock, held by the step's shim for its whole life, tells. */
static int attempt_running(struct state *st, const struct workspace *ws,
			   int64_t run, const char *step, int n, const char *dir)
{
	struct attempt_info *ai = NULL;
	size_t na = 0;
	struct err e;
	int running = 0;

	if (state_attempts_list(st, run, step, &ai, &na, &e))
		return 0;
	for (size_t i = 0; i < na; i++) {
		if (ai[i].n == n)
			running = ai[i].state == ATT_RUNNING;
		attempt_info_clear(&ai[i]);
	}
	free(ai);
	if (running && !workspace_run_locked(ws, run)) {
		int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			if (flock(fd, LOCK_SH | LOCK_NB) == 0)
				running = 0;   /* no shim holds it: the step is gone */
			close(fd);
		}
	}
	return running;
}

int cmd_logs(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "attempt", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct step_info *si = NULL;
	size_t n = 0;
	struct tail tail = { 0 };
	struct err err;
	int64_t run = 0;
	long long attempt = 0;
	int c, rc = 0, follow = 0;
	const struct step_info *me = NULL;
	char *dir = NULL;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': follow = 1; break;
		case 'a':
			if (parse_int(optarg, 1, 1000000, &attempt))
				return cli_usage("logs: --attempt must be a positive integer, not '%s'", optarg);
			break;
		case 'h':
			printf("usage: anneal logs RUN STEP [-f] [--attempt N]\n\n"
			       "Prints the output of STEP in RUN (its latest attempt unless --attempt):\n"
			       "stdout and stderr as the step wrote them. -f follows it until the\n"
			       "attempt ends.\n");
			return 0;
		default:
			return cli_usage("logs: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 2)
		return cli_usage("logs: expected RUN STEP (see 'anneal logs --help')");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = cli_parse_run(argv[optind], &run, &err);
	if (!rc)
		rc = state_steps_info(st, run, &si, &n, &err);
	if (!rc && n == 0)
		rc = err_set(&err, ERR_NOTFOUND, "no run %" PRId64, run);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		if (!strcmp(si[i].id, argv[optind + 1]))
			me = &si[i];
	if (!me) {
		const char **names = calloc(n + 1, sizeof(*names));
		const char *hint;
		for (size_t i = 0; names && i < n; i++)
			names[i] = si[i].id;
		hint = names ? did_you_mean(argv[optind + 1], names, n) : NULL;
		err_set(&err, ERR_NOTFOUND, "run %" PRId64 " has no step '%s'%s%s%s", run,
			argv[optind + 1], hint ? " (did you mean '" : "", hint ? hint : "",
			hint ? "'?)" : "");
		free(names);
		rc = cli_fail(&err);
		goto done;
	}
	if (!attempt)
		attempt = me->last_attempt;
	if (!attempt) {
		if (me->state == STEP_CACHED)
			printf("step '%s' was cached from run %" PRId64 "; see 'anneal logs %" PRId64 " %s'\n",
			       me->id, me->cached_from_run, me->cached_from_run,
			       me->cached_from_step ? me->cached_from_step : me->id);
		else
			fprintf(stderr, "anneal: step '%s' has not started yet\n", me->id);
		goto done;
	}
	if (attempt > me->attempts) {
		err_set(&err, ERR_NOTFOUND, "step '%s' has %d attempt%s, no attempt %lld", me->id,
			me->attempts, me->attempts == 1 ? "" : "s", attempt);
		rc = cli_fail(&err);
		goto done;
	}
	dir = xasprintf("%s/%" PRId64 "/%s/a%lld", ws->runs_dir, run, me->id, attempt);
	tail.path = fs_join(dir, "output.log");
	tail.to = stdout;
	if (!follow) {
		drain(&tail);
		goto done;
	}
	for (;;) {
		int running = attempt_running(st, ws, run, me->id, (int)attempt, dir);
		drain(&tail);
		if (!running)
			break;
		usleep(200 * 1000);
	}
done:
	free(tail.path);
	free(dir);
	for (size_t i = 0; i < n; i++)
		step_info_clear(&si[i]);
	free(si);
	state_close(st);
	workspace_free(ws);
	return rc;
}
