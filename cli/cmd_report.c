/* cli/cmd_report.c — anneal report [RUN] [--json]
 *
 * The scores of every checkpoint a run evaluated: one row per eval step
 * (in plan order) with the model it evaluated (name@version), accuracy and
 * mean generated length in fast, slow and auto mode, and how often auto
 * mode chose to reason slowly; then accuracy by difficulty. A merged
 * checkpoint's row is followed by its inputs, with their weights and
 * their own slow-mode scores, so a merge can be judged at a glance.
 *
 * Reports are the report.json files eval steps write (docs/engine.md):
 *   {"problems": N, "modes": {"fast": {"accuracy": a, "mean_length": l,
 *    "buckets": {"1": a1, ...}}, "slow": {...}, "auto": {..., "slow_rate": r}}} */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/catalog.h"
#include "pipeline/json.h"
#include "pipeline/state.h"
#include "pipeline/step.h"
#include "pipeline/workspace.h"

static const char *const modes[] = { "fast", "slow", "auto" };
#define NMODES 3
#define MAX_BUCKETS 8

struct row {
	const struct step *eval;      /* the eval step */
	const char *model_step;       /* the step that made the model, or NULL */
	int64_t model;                /* its artifact, 0 if unknown */
	char *label;                  /* name@version */
	struct jnode *report;         /* parsed report.json, or NULL */
};

static const struct step_info *info_of(const struct step_info *si, size_t n,
				       const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(si[i].id, id))
			return &si[i];
	return NULL;
}

static const struct step *step_of(const struct step *steps, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(steps[i].id, id))
			return &steps[i];
	return NULL;
}

static const struct output_rec *output_of(const struct step_info *s, const char *name)
{
	for (size_t i = 0; s && i < s->noutputs; i++)
		if (!strcmp(s->outputs[i].name, name))
			return &s->outputs[i];
	return NULL;
}

/* modes.MODE.KEY as a number, or -1. */
static double metric(const struct jnode *report, const char *mode, const char *key)
{
	const struct jnode *m = report ? json_get(report, "modes") : NULL;

	m = m ? json_get(m, mode) : NULL;
	m = m ? json_get(m, key) : NULL;
	return m && m->type == J_NUMBER ? m->num : -1;
}

static double bucket_of(const struct jnode *report, const char *mode,
			const char *what, int digits)
{
	const struct jnode *m = report ? json_get(report, "modes") : NULL;
	char key[16];

	snprintf(key, sizeof(key), "%d", digits);
	m = m ? json_get(m, mode) : NULL;
	m = m ? json_get(m, what) : NULL;
	m = m ? json_get(m, key) : NULL;
	return m && m->type == J_NUMBER ? m->num : -1;
}

static double bucket(const struct jnode *report, const char *mode, int digits)
{
	return bucket_of(report, mode, "buckets", digits);
}

/* v with `decimals` decimals (a percentage when pct), right-aligned in
 * width; "-" when absent (negative). */
static void cell(struct buf *b, double v, int decimals, int pct, int width)
{
	char s[32];

	if (v < 0)
		snprintf(s, sizeof(s), "-");
	else
		snprintf(s, sizeof(s), "%.*f%s", decimals, pct ? v * 100 : v, pct ? "%" : "");
	buf_printf(b, "%*s", width, s);
}

static const struct row *row_of_step(const struct row *rows, size_t n, const char *step)
{
	for (size_t i = 0; i < n; i++)
		if (rows[i].model_step && !strcmp(rows[i].model_step, step))
			return &rows[i];
	return NULL;
}

/* How a report names a merge's input: by the row of the checkpoint it is
 * (*p: that row), else by its step or REF (*p: NULL). */
static const char *merge_input(const struct step_input *in, const struct row *rows,
			       size_t n, const struct row **p)
{
	*p = in->from_step ? row_of_step(rows, n, in->from_step) : NULL;
	if (*p)
		return (*p)->label;
	return in->from_step ? in->from_step : in->ref;
}

static int load_rows(struct state *st, const struct step *steps, size_t nsteps,
		     const struct step_info *si, size_t ninfo, struct row **out,
		     size_t *nout, struct err *err)
{
	struct row *rows = NULL;
	size_t n = 0;

	for (size_t i = 0; i < nsteps; i++) {
		const struct step *s = &steps[i];
		const struct step_input *in = NULL;
		const struct output_rec *rep;
		struct row r = { 0 };

		if (strcmp(s->kind, "eval"))
			continue;
		for (size_t k = 0; k < s->ninputs; k++)
			if (!strcmp(s->inputs[k].role, "model"))
				in = &s->inputs[k];
		r.eval = s;
		if (in && in->from_step) {
			const struct output_rec *o = output_of(info_of(si, ninfo, in->from_step),
							       in->from_output);
			r.model_step = in->from_step;
			r.model = o ? o->artifact : 0;
		} else if (in) {
			r.model = in->artifact;
		}
		if (r.model) {
			struct artifact_info a;
			if (!catalog_get(st, r.model, &a, err)) {
				r.label = a.name ? xasprintf("%s@%d", a.name, a.version)
						 : xasprintf("#%" PRId64, a.id);
				artifact_info_clear(&a);
			}
			err_clear(err);
		}
		if (!r.label)
			r.label = xstrdup(in && in->from_step ? in->from_step : s->id);
		rep = output_of(info_of(si, ninfo, s->id), "report");
		if (rep) {
			char *path = fs_join(rep->path, "report.json"), *text = NULL;
			size_t len = 0;

			if (!fs_read_file(path, 16u << 20, &text, &len, err) &&
			    json_parse(text, len, 0, &r.report, err))
				r.report = NULL;
			err_clear(err);
			free(text);
			free(path);
		}
		rows = xrealloc(rows, (n + 1) * sizeof(*rows));
		rows[n++] = r;
	}
	*out = rows;
	*nout = n;
	return 0;
}

static int max_digits(const struct row *rows, size_t n)
{
	int d = 0;

	for (size_t i = 0; i < n; i++)
		for (int k = d + 1; k <= MAX_BUCKETS; k++)
			if (bucket(rows[i].report, "slow", k) >= 0)
				d = k;
	return d;
}

/* A table of one per-digits figure (what: "buckets" or "buckets_length")
 * for two modes side by side, modes[m0] and modes[m0 + 1]. */
static void by_digits(struct buf *b, const struct row *rows, size_t n, int w,
		      int digits, const char *title, const char *what, int m0,
		      int decimals)
{
	int tw = (int)strlen(title) + 1;

	buf_printf(b, "\n%s %-*s %s", title, w - tw > 0 ? w - tw : 0, "", modes[m0]);
	buf_printf(b, "%*s %s\n", 7 * digits - 4, "", modes[m0 + 1]);
	buf_printf(b, "%-*s ", w, "checkpoint");
	for (int m = 0; m < 2; m++) {
		for (int d = 1; d <= digits; d++)
			buf_printf(b, " %5dd", d);
		buf_addc(b, ' ');
	}
	buf_addc(b, '\n');
	for (size_t i = 0; i < n; i++) {
		buf_printf(b, "%-*s ", w, rows[i].label);
		for (int m = m0; m < m0 + 2; m++) {
			for (int d = 1; d <= digits; d++) {
				buf_addc(b, ' ');
				cell(b, bucket_of(rows[i].report, modes[m], what, d), decimals, 0, 6);
			}
			buf_addc(b, ' ');
		}
		buf_addc(b, '\n');
	}
}

static void print_text(const struct step *steps, size_t nsteps,
		       const struct row *rows, size_t n)
{
	struct buf b = BUF_INIT;
	int w = 10, digits = max_digits(rows, n);

	for (size_t i = 0; i < n; i++)
		if ((int)strlen(rows[i].label) > w)
			w = (int)strlen(rows[i].label);
	buf_init(&b);
	buf_printf(&b, "%-*s  %13s  %13s  %19s\n", w, "", "fast", "slow", "auto");
	buf_printf(&b, "%-*s  %6s %6s  %6s %6s  %6s %6s %5s\n", w, "checkpoint",
		   "acc", "len", "acc", "len", "acc", "len", "slow");
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		const struct step *maker = r->model_step ? step_of(steps, nsteps, r->model_step) : NULL;

		buf_printf(&b, "%-*s ", w, r->label);
		for (int m = 0; m < NMODES; m++) {
			buf_addc(&b, ' ');
			cell(&b, metric(r->report, modes[m], "accuracy"), 3, 0, 6);
			cell(&b, metric(r->report, modes[m], "mean_length"), 1, 0, 7);
			buf_addc(&b, ' ');
		}
		cell(&b, metric(r->report, "auto", "slow_rate"), 0, 1, 5);
		buf_addc(&b, '\n');
		if (!r->report)
			buf_printf(&b, "%-*s   (no report: step %s has not succeeded)\n", w, "", r->eval->id);
		/* a merge: its inputs beside it */
		if (maker && !strcmp(maker->kind, "merge")) {
			buf_printf(&b, "%-*s   = ", w, "");
			int first = 1;
			for (size_t k = 0; k < maker->ninputs; k++) {
				const struct step_input *in = &maker->inputs[k];
				const struct row *p;

				if (!in->has_weight)
					continue;
				buf_printf(&b, "%s", first ? "" : " + ");
				buf_add_num(&b, in->weight);
				buf_printf(&b, " x %s", merge_input(in, rows, n, &p));
				if (p && metric(p->report, "slow", "accuracy") >= 0)
					buf_printf(&b, " (slow %.3f)", metric(p->report, "slow", "accuracy"));
				first = 0;
			}
			buf_addc(&b, '\n');
		}
	}
	if (digits > 0)
		by_digits(&b, rows, n, w, digits, "accuracy by digits", "buckets", 0, 3);
	if (digits > 0 && bucket_of(rows[n - 1].report, "slow", "buckets_length", 1) >= 0)
		by_digits(&b, rows, n, w, digits, "mean length by digits", "buckets_length", 1, 1);
	fputs(buf_str(&b), stdout);
	buf_free(&b);
}

static void print_json(const struct step *steps, size_t nsteps,
		       const struct row *rows, size_t n, int64_t run)
{
	struct buf b = BUF_INIT;

	buf_init(&b);
	buf_printf(&b, "{\"run\":%" PRId64 ",\"checkpoints\":[", run);
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		const struct step *maker = r->model_step ? step_of(steps, nsteps, r->model_step) : NULL;

		buf_adds(&b, i ? ",{\"checkpoint\":" : "{\"checkpoint\":");
		buf_add_json_str(&b, r->label);
		buf_printf(&b, ",\"artifact\":%" PRId64 ",\"eval_step\":", r->model);
		buf_add_json_str(&b, r->eval->id);
		buf_adds(&b, ",\"made_by\":");
		if (r->model_step)
			buf_add_json_str(&b, r->model_step);
		else
			buf_adds(&b, "null");
		buf_adds(&b, ",\"report\":");
		if (r->report)
			json_write(&b, r->report);
		else
			buf_adds(&b, "null");
		if (maker && !strcmp(maker->kind, "merge")) {
			int first = 1;
			buf_adds(&b, ",\"merge_inputs\":[");
			for (size_t k = 0; k < maker->ninputs; k++) {
				const struct step_input *in = &maker->inputs[k];
				const struct row *p;

				if (!in->has_weight)
					continue;
				buf_adds(&b, first ? "{\"checkpoint\":" : ",{\"checkpoint\":");
				buf_add_json_str(&b, merge_input(in, rows, n, &p));
				buf_adds(&b, ",\"weight\":");
				buf_add_num(&b, in->weight);
				buf_addc(&b, '}');
				first = 0;
			}
			buf_addc(&b, ']');
		}
		buf_addc(&b, '}');
	}
	buf_adds(&b, "]}\n");
	fputs(buf_str(&b), stdout);
	buf_free(&b);
}

int cmd_report(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct step *steps = NULL;
	struct step_info *si = NULL;
	struct row *rows = NULL;
	size_t nsteps = 0, ninfo = 0, nrows = 0;
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
			printf("usage: anneal report [RUN] [--json]\n\n"
			       "The eval scores of every checkpoint RUN (default: the latest run)\n"
			       "evaluated: accuracy and mean length per mode, auto mode's share of\n"
			       "slow answers, accuracy by difficulty; merges beside their inputs.\n");
			return 0;
		default:
			return cli_usage("report: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc - 1)
		return cli_usage("report: expected at most one RUN");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = cli_pick_run(st, optind == argc - 1 ? argv[optind] : NULL, 0,
				  "no runs yet; start one with 'anneal run RECIPE'", &run, &err);
	if (!rc)
		rc = state_steps_load(st, run, &steps, &nsteps, &err);
	if (!rc)
		rc = state_steps_info(st, run, &si, &ninfo, &err);
	if (!rc)
		rc = load_rows(st, steps, nsteps, si, ninfo, &rows, &nrows, &err);
	if (!rc && !nrows)
		rc = err_set(&err, ERR_NOTFOUND, "run %" PRId64 " has no eval steps", run);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	if (json)
		print_json(steps, nsteps, rows, nrows, run);
	else
		print_text(steps, nsteps, rows, nrows);
done:
	for (size_t i = 0; i < nrows; i++) {
		free(rows[i].label);
		json_free(rows[i].report);
	}
	free(rows);
	for (size_t i = 0; i < nsteps; i++)
		step_clear(&steps[i]);
	free(steps);
	for (size_t i = 0; i < ninfo; i++)
		step_info_clear(&si[i]);
	free(si);
	state_close(st);
	workspace_free(ws);
	return rc;
}
