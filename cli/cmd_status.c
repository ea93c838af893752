/* cli/cmd_status.c — anneal status [RUN] [--json]
 *
 * A run's state and each step's: attempts, time, latest metric, runner
 * handle, the reason of a failure. A run recorded "running" whose driver
 * lock is free has lost its driver (anneal was killed): status says so
 * and names the command that continues it. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"
#include "runners/runner.h"
#include "runners/slurm.h"

/* Wall-clock time, as recorded: a clock set back while the step runs must
 * not show a negative duration. */
static double step_duration(const struct step_info *si)
{
	double d;

	if (si->started <= 0)
		return 0;
	d = (si->finished > 0 ? si->finished : now_wall()) - si->started;
	return d > 0 ? d : 0;
}

/* What Slurm says of each running step's job ("PENDING (Resources)"),
 * for runs on the Slurm runner: one query for all of them. NULL entries
 * for the rest. */
static char **slurm_states(const struct run_info *ri, const struct step_info *si, size_t n)
{
	struct runner *r = NULL;
	struct job_handle *h;
	struct slurm_job_view *v;
	size_t *at, k = 0;
	char type[32], **out = NULL;
	struct err err;

	if (!ri->runner || runner_spec_type(ri->runner, type, sizeof(type)) || strcmp(type, "slurm"))
		return NULL;
	h = xcalloc(n ? n : 1, sizeof(*h));
	v = xcalloc(n ? n : 1, sizeof(*v));
	at = xcalloc(n ? n : 1, sizeof(*at));
	for (size_t i = 0; i < n; i++)
		if (si[i].state == STEP_RUNNING && si[i].last_handle) {
			snprintf(h[k].id, sizeof(h[k].id), "%s", si[i].last_handle);
			at[k++] = i;
		}
	if (k && !runner_from_spec(ri->runner, NULL, &r, &err)) {
		out = xcalloc(n, sizeof(*out));
		if (slurm_jobs_state(r, h, k, v, &err)) {
			for (size_t i = 0; i < k; i++)
				out[at[i]] = xstrdup(err.msg);
		} else {
			for (size_t i = 0; i < k; i++) {
				if (!v[i].known)
					out[at[i]] = xstrdup("unknown to Slurm");
				else if (v[i].reason[0] && strcmp(v[i].reason, "None"))
					out[at[i]] = xasprintf("%s (%s)", slurm_state_name(v[i].state),
							       v[i].reason);
				else
					out[at[i]] = xstrdup(slurm_state_name(v[i].state));
			}
		}
		runner_free(r);
	}
	free(h);
	free(v);
	free(at);
	return out;
}

static void print_json(const struct run_info *ri, int driver_alive,
		       const struct step_info *si, size_t n, char **slurm)
{
	struct buf b = BUF_INIT;

	buf_init(&b);
	buf_printf(&b, "{\"run\":%" PRId64 ",\"state\":\"%s\",\"name\":", ri->id,
		   run_state_name(ri->state));
	buf_add_json_str(&b, ri->recipe_name ? ri->recipe_name : "");
	buf_adds(&b, ",\"recipe\":");
	buf_add_json_str(&b, ri->recipe_path ? ri->recipe_path : "");
	buf_printf(&b, ",\"recipe_digest\":\"%s\",\"created\":", ri->recipe_digest ? ri->recipe_digest : "");
	buf_add_num(&b, ri->created);
	buf_adds(&b, ",\"finished\":");
	if (ri->finished > 0)
		buf_add_num(&b, ri->finished);
	else
		buf_adds(&b, "null");
	buf_printf(&b, ",\"driver_pid\":%d,\"driver_alive\":%s,\"steps\":[", ri->driver_pid,
		   driver_alive ? "true" : "false");
	for (size_t i = 0; i < n; i++) {
		const struct step_info *s = &si[i];
		buf_adds(&b, i ? ",{\"id\":" : "{\"id\":");
		buf_add_json_str(&b, s->id);
		buf_printf(&b, ",\"state\":\"%s\",\"attempts\":%d,\"retries_used\":%d",
			   step_state_name(s->state), s->attempts, s->retries_used);
		buf_adds(&b, ",\"duration\":");
		buf_add_num(&b, step_duration(s));
		buf_adds(&b, ",\"handle\":");
		if (s->last_handle)
			buf_add_json_str(&b, s->last_handle);
		else
			buf_adds(&b, "null");
		if (slurm && slurm[i]) {
			buf_adds(&b, ",\"slurm\":");
			buf_add_json_str(&b, slurm[i]);
		}
		if (s->last_attempt)
			buf_printf(&b, ",\"last_attempt\":{\"n\":%d,\"state\":\"%s\"}",
				   s->last_attempt, attempt_state_name(s->last_attempt_state));
		if (s->state == STEP_CACHED) {
			buf_printf(&b, ",\"cached_from\":{\"run\":%" PRId64 ",\"step\":", s->cached_from_run);
			buf_add_json_str(&b, s->cached_from_step ? s->cached_from_step : "");
			buf_addc(&b, '}');
		}
		if (s->cache_key)
			buf_printf(&b, ",\"cache_key\":\"%s\"", s->cache_key);
		if (s->metric_name) {
			buf_adds(&b, ",\"metric\":{\"name\":");
			buf_add_json_str(&b, s->metric_name);
			buf_adds(&b, ",\"value\":");
			buf_add_num(&b, s->metric_value);
			buf_addc(&b, '}');
		}
		if (s->progress_total > 0 || s->progress_done > 0) {
			buf_adds(&b, ",\"progress\":{\"done\":");
			buf_add_num(&b, s->progress_done);
			buf_adds(&b, ",\"total\":");
			buf_add_num(&b, s->progress_total);
			buf_addc(&b, '}');
		}
		if (s->last_error) {
			buf_adds(&b, ",\"error\":");
			buf_add_json_str(&b, s->last_error);
		}
		buf_adds(&b, ",\"outputs\":[");
		for (size_t k = 0; k < s->noutputs; k++) {
			const struct output_rec *o = &s->outputs[k];
			buf_adds(&b, k ? ",{\"name\":" : "{\"name\":");
			buf_add_json_str(&b, o->name);
			buf_printf(&b, ",\"type\":\"%s\",\"digest\":\"%s\",\"bytes\":%" PRIu64 ",\"path\":",
				   artifact_type_name(o->type), o->digest, o->bytes);
			buf_add_json_str(&b, o->path);
			buf_addc(&b, '}');
		}
		buf_adds(&b, "]}");
	}
	buf_adds(&b, "]}\n");
	fputs(buf_str(&b), stdout);
	buf_free(&b);
}

static void print_text(const struct run_info *ri, int driver_alive,
		       const struct step_info *si, size_t n, char **slurm)
{
	char when[64] = "", dur[32];
	time_t t = (time_t)ri->created;
	struct tm tm;
	size_t width = 4;

	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	format_duration((ri->finished > 0 ? ri->finished : now_wall()) - ri->created,
			dur, sizeof(dur));
	printf("run %" PRId64 "  %s  %s", ri->id, ri->recipe_name ? ri->recipe_name : "",
	       run_state_name(ri->state));
	if (ri->state == RUN_RUNNING && !driver_alive)
		printf(" (no anneal process is driving it: 'anneal resume %" PRId64 "')", ri->id);
	printf("\n  recipe %s\n  started %s, %s%s\n", ri->recipe_path ? ri->recipe_path : "?",
	       when, dur, ri->finished > 0 ? "" : " so far");
	for (size_t i = 0; i < n; i++)
		if (strlen(si[i].id) > width)
			width = strlen(si[i].id);
	printf("\n  %-*s  %-9s  %8s  %8s  %s\n", (int)width, "STEP", "STATE", "ATTEMPTS",
	       "TIME", "DETAIL");
	for (size_t i = 0; i < n; i++) {
		const struct step_info *s = &si[i];
		struct buf d = BUF_INIT;

		buf_init(&d);
		format_duration(step_duration(s), dur, sizeof(dur));
		if (s->state == STEP_CACHED)
			buf_printf(&d, "from run %" PRId64 " ", s->cached_from_run);
		if (s->state == STEP_RUNNING && s->progress_total > 0)
			buf_printf(&d, "%.0f/%.0f ", s->progress_done, s->progress_total);
		if (s->metric_name)
			buf_printf(&d, "%s=%.6g ", s->metric_name, s->metric_value);
		if (s->state == STEP_RUNNING && s->last_handle)
			buf_printf(&d, "%s ", s->last_handle);
		if (slurm && slurm[i])
			buf_printf(&d, "%s ", slurm[i]);
		if (s->last_error && s->state != STEP_SUCCEEDED && s->state != STEP_CACHED)
			buf_printf(&d, "%s", s->last_error);
		printf("  %-*s  %-9s  %8d  %8s  %s\n", (int)width, s->id,
		       step_state_name(s->state), s->attempts,
		       s->started > 0 ? dur : "-", buf_str(&d));
		buf_free(&d);
	}
}

int cmd_status(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct run_info ri = { 0 };
	struct step_info *si = NULL;
	char **slurm = NULL;
	size_t n = 0;
	struct err err;
	int64_t run = 0;
	int c, rc = 0, json = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'h':
			printf("usage: anneal status [RUN] [--json]\n\n"
			       "Shows RUN (default: the latest run) and the state of each step:\n"
			       "pending, running, succeeded, cached, failed or cancelled.\n");
			return 0;
		default:
			return cli_usage("status: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc - 1)
		return cli_usage("status: expected at most one RUN");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = cli_pick_run(st, optind == argc - 1 ? argv[optind] : NULL, 0,
				  "no runs yet; start one with 'anneal run RECIPE'", &run, &err);
	if (!rc)
		rc = state_run_get(st, run, &ri, &err);
	if (!rc)
		rc = state_steps_info(st, run, &si, &n, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	slurm = slurm_states(&ri, si, n);
	if (json)
		print_json(&ri, workspace_run_locked(ws, run), si, n, slurm);
	else
		print_text(&ri, workspace_run_locked(ws, run), si, n, slurm);
done:
	for (size_t i = 0; slurm && i < n; i++)
		free(slurm[i]);
	free(slurm);
	for (size_t i = 0; i < n; i++)
		step_info_clear(&si[i]);
	free(si);
	run_info_clear(&ri);
	state_close(st);
	workspace_free(ws);
	return rc;
}
