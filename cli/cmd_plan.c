/* cli/cmd_plan.c — anneal plan RECIPE [--format text|dot|json] [--set K=V]
 *
 * Shows the expanded steps, their dependencies, and for each whether a run
 * now would reuse an earlier result, and why (or why not). The cache
 * decision is the scheduler's own: the same key function, the same
 * intactness check; a step downstream of one that must run cannot be
 * decided before it runs, and says so. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/catalog.h"
#include "pipeline/dag.h"
#include "pipeline/plan.h"
#include "pipeline/recipe.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

enum verdict { V_RUN, V_CACHED, V_UNKNOWN };

struct decision {
	enum verdict v;
	char why[512];
	char key[DIGEST_HEX_LEN + 1];
	struct output_rec *outs;   /* of the reused result */
	size_t nouts;
};

static int intact(const struct cache_hit *h, char *why, size_t size)
{
	for (size_t i = 0; i < h->noutputs; i++) {
		struct tree_info ti;
		struct err e;
		char hex[DIGEST_HEX_LEN + 1];

		if (tree_digest(h->outputs[i].path, &ti, &e)) {
			snprintf(why, size, "earlier result (run %" PRId64 ") is damaged: output '%s' unreadable",
				 h->run_id, h->outputs[i].name);
			return 0;
		}
		digest_hex(&ti.digest, hex);
		if (strcmp(hex, h->outputs[i].digest)) {
			snprintf(why, size, "earlier result (run %" PRId64 ") is damaged: output '%s' changed",
				 h->run_id, h->outputs[i].name);
			return 0;
		}
	}
	return 1;
}

static int decide(const struct recipe *r, const struct dag *d, struct state *st,
		  const char *root, struct decision *dec, int no_cache,
		  struct err *err)
{
	for (size_t oi = 0; oi < r->nsteps; oi++) {
		size_t i = d->order[oi];
		const struct step *s = &r->steps[i];
		struct decision *me = &dec[i];
		struct key_input *in = xcalloc(s->ninputs + 1, sizeof(*in));
		struct cache_hit *hits = NULL;
		size_t nhits = 0;
		int rc = 0, blocked = 0;

		for (size_t k = 0; k < d->ndeps[i] && !blocked; k++) {
			const struct decision *up = &dec[d->deps[i][k]];
			if (up->v != V_CACHED) {
				snprintf(me->why, sizeof(me->why), "runs after '%s', which %s",
					 r->steps[d->deps[i][k]].id,
					 up->v == V_RUN ? "runs" : "may run");
				blocked = 1;
			}
		}
		if (blocked) {
			me->v = V_UNKNOWN;
			free(in);
			continue;
		}
		struct artifact_info *ext = xcalloc(s->ninputs + 1, sizeof(*ext));
		for (size_t k = 0; k < s->ninputs && !blocked; k++) {
			in[k].role = s->inputs[k].role;
			in[k].digest = "";
			if (s->inputs[k].ref) {
				int64_t id;
				if (!st || catalog_resolve(st, s->inputs[k].ref, &id, err) ||
				    catalog_get(st, id, &ext[k], err)) {
					snprintf(me->why, sizeof(me->why), "input '%s': %.400s",
						 s->inputs[k].role,
						 st ? err->msg : "no workspace to find artifacts in");
					err_clear(err);
					blocked = 1;
					break;
				}
				in[k].digest = ext[k].digest;
				continue;
			}
			long j = recipe_find_step(r, s->inputs[k].from_step);
			for (size_t o = 0; j >= 0 && o < dec[j].nouts; o++)
				if (!strcmp(dec[j].outs[o].name, s->inputs[k].from_output))
					in[k].digest = dec[j].outs[o].digest;
		}
		if (blocked) {
			me->v = V_UNKNOWN;
			for (size_t k = 0; k < s->ninputs; k++)
				artifact_info_clear(&ext[k]);
			free(ext);
			free(in);
			continue;
		}
		rc = plan_cache_key(s, s->params_json ? s->params_json : "{}", in,
				    s->ninputs, root, NULL, me->key, err);
		for (size_t k = 0; k < s->ninputs; k++)
			artifact_info_clear(&ext[k]);
		free(ext);
		free(in);
		if (rc)
			return rc;
		me->v = V_RUN;
		if (no_cache) {
			snprintf(me->why, sizeof(me->why), "--no-cache");
			continue;
		}
		if (!st) {
			snprintf(me->why, sizeof(me->why), "no workspace yet");
			continue;
		}
		rc = state_cache_candidates(st, me->key, &hits, &nhits, err);
		if (rc)
			return rc;
		snprintf(me->why, sizeof(me->why), "no earlier result with this key");
		for (size_t h = 0; h < nhits; h++) {
			char why[512];
			if (intact(&hits[h], why, sizeof(why))) {
				me->v = V_CACHED;
				snprintf(me->why, sizeof(me->why), "run %" PRId64 " step '%s', outputs intact",
					 hits[h].run_id, hits[h].step);
				me->outs = hits[h].outputs;
				me->nouts = hits[h].noutputs;
				hits[h].outputs = NULL;
				hits[h].noutputs = 0;
				break;
			}
			if (h == 0)
				snprintf(me->why, sizeof(me->why), "%s", why);
		}
		for (size_t h = 0; h < nhits; h++)
			cache_hit_clear(&hits[h]);
		free(hits);
	}
	return 0;
}

static const char *verdict_word(enum verdict v)
{
	return v == V_CACHED ? "cached" : v == V_RUN ? "run" : "run?";
}

static void print_text(const struct recipe *r, const struct dag *d,
		       const struct decision *dec)
{
	size_t ncached = 0;

	printf("recipe %s (%s): %zu steps\n", r->name, r->path, r->nsteps);
	for (size_t oi = 0; oi < r->nsteps; oi++) {
		size_t i = d->order[oi];
		const struct step *s = &r->steps[i];

		ncached += dec[i].v == V_CACHED;
		printf("  %-7s %-24s %s", verdict_word(dec[i].v), s->id, s->kind);
		if (d->ndeps[i]) {
			printf("  after ");
			for (size_t k = 0; k < d->ndeps[i]; k++)
				printf("%s%s", k ? "," : "", r->steps[d->deps[i][k]].id);
		}
		printf("\n          %s\n", dec[i].why);
	}
	printf("%zu to run, %zu cached\n", r->nsteps - ncached, ncached);
}

static void print_dot(const struct recipe *r, const struct dag *d,
		      const struct decision *dec)
{
	struct buf b = BUF_INIT;

	buf_init(&b);
	buf_adds(&b, "digraph anneal {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
	for (size_t i = 0; i < r->nsteps; i++) {
		buf_adds(&b, "  ");
		buf_add_json_str(&b, r->steps[i].id);
		buf_printf(&b, " [label=\"%s\\n%s\"%s];\n", r->steps[i].id, r->steps[i].kind,
			   dec[i].v == V_CACHED ? ", style=\"rounded,dashed\"" : "");
	}
	for (size_t i = 0; i < r->nsteps; i++)
		for (size_t k = 0; k < d->ndeps[i]; k++) {
			buf_adds(&b, "  ");
			buf_add_json_str(&b, r->steps[d->deps[i][k]].id);
			buf_adds(&b, " -> ");
			buf_add_json_str(&b, r->steps[i].id);
			buf_adds(&b, ";\n");
		}
	buf_adds(&b, "}\n");
	fputs(buf_str(&b), stdout);
	buf_free(&b);
}

static void print_json(const struct recipe *r, const struct dag *d,
		       const struct decision *dec)
{
	struct buf b = BUF_INIT;

	buf_init(&b);
	buf_adds(&b, "{\"recipe\":");
	buf_add_json_str(&b, r->path);
	buf_adds(&b, ",\"name\":");
	buf_add_json_str(&b, r->name);
	buf_printf(&b, ",\"digest\":\"%s\",\"params\":%s,\"steps\":[", r->digest, r->params_json);
	for (size_t oi = 0; oi < r->nsteps; oi++) {
		size_t i = d->order[oi];
		const struct step *s = &r->steps[i];
		buf_adds(&b, oi ? ",{\"id\":" : "{\"id\":");
		buf_add_json_str(&b, s->id);
		buf_adds(&b, ",\"kind\":");
		buf_add_json_str(&b, s->kind);
		buf_adds(&b, ",\"stage\":");
		buf_add_json_str(&b, s->stage ? s->stage : s->id);
		buf_adds(&b, ",\"argv\":[");
		for (size_t k = 0; k < s->argc; k++) {
			if (k)
				buf_addc(&b, ',');
			buf_add_json_str(&b, s->argv[k]);
		}
		buf_adds(&b, "],\"after\":[");
		for (size_t k = 0; k < d->ndeps[i]; k++) {
			if (k)
				buf_addc(&b, ',');
			buf_add_json_str(&b, r->steps[d->deps[i][k]].id);
		}
		buf_adds(&b, "],\"outputs\":{");
		for (size_t k = 0; k < s->noutputs; k++) {
			if (k)
				buf_addc(&b, ',');
			buf_add_json_str(&b, s->outputs[k].name);
			buf_addc(&b, ':');
			buf_add_json_str(&b, artifact_type_name(s->outputs[k].type));
		}
		buf_printf(&b, "},\"resources\":{\"cpus\":%d,\"gpus\":%d,\"npus\":%d,\"mem_mb\":%ld}",
			   s->res.cpus, s->res.gpus, s->res.npus, s->res.mem_mb);
		buf_printf(&b, ",\"cached\":%s,\"decided\":%s,\"why\":",
			   dec[i].v == V_CACHED ? "true" : "false",
			   dec[i].v == V_UNKNOWN ? "false" : "true");
		buf_add_json_str(&b, dec[i].why);
		if (dec[i].v != V_UNKNOWN)
			buf_printf(&b, ",\"cache_key\":\"%s\"", dec[i].key);
		buf_addc(&b, '}');
	}
	buf_adds(&b, "]}\n");
	fputs(buf_str(&b), stdout);
	buf_free(&b);
}

int cmd_plan(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "set", required_argument, NULL, 's' },
		{ "format", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-cache", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct strv sets = STRV_INIT;
	struct recipe *r = NULL;
	struct dag *d = NULL;
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct decision *dec = NULL;
	const char *format = "text";
	struct err err;
	int c, rc = 0, no_cache = 0;
	char *root = NULL;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': strv_push(&sets, optarg); break;
		case 'f': format = optarg; break;
		case 'j': format = "json"; break;
		case 'n': no_cache = 1; break;
		case 'h':
			printf("usage: anneal plan RECIPE [--format text|dot|json] [--set KEY=VALUE]... [--no-cache]\n\n"
			       "Shows the steps RECIPE expands to, their dependencies, and which a run\n"
			       "would reuse from earlier runs (cached) and why.\n");
			goto done;
		default:
			rc = cli_usage("plan: unknown option '%s'", argv[optind - 1]);
			goto done;
		}
	}
	if (strcmp(format, "text") && strcmp(format, "dot") && strcmp(format, "json")) {
		rc = cli_usage("plan: --format must be text, dot or json, not '%s'", format);
		goto done;
	}
	if (optind != argc - 1) {
		rc = cli_usage("plan: expected one RECIPE (see 'anneal plan --help')");
		goto done;
	}
	if ((rc = recipe_load(argv[optind], &sets, &r, &err)) ||
	    (rc = dag_build(r->steps, r->nsteps, &d, &err))) {
		rc = cli_fail(&err);
		goto done;
	}
	/* Plan never creates a workspace; without one nothing is cached. */
	if (workspace_find(cli->dir, &ws, &err) == 0) {
		if (state_open(ws->db_path, &st, &err)) {
			rc = cli_fail(&err);
			goto done;
		}
		root = strdup(ws->root);
	} else {
		err_clear(&err);
		root = fs_abspath(cli->dir ? cli->dir : ".");
	}
	dec = calloc(r->nsteps + 1, sizeof(*dec));
	if (!dec || !root) {
		rc = 3;
		goto done;
	}
	if (decide(r, d, st, root, dec, no_cache, &err)) {
		rc = cli_fail(&err);
		goto done;
	}
	if (!strcmp(format, "json"))
		print_json(r, d, dec);
	else if (!strcmp(format, "dot"))
		print_dot(r, d, dec);
	else
		print_text(r, d, dec);
done:
	for (size_t i = 0; dec && i < r->nsteps; i++) {
		for (size_t k = 0; k < dec[i].nouts; k++)
			output_rec_clear(&dec[i].outs[k]);
		free(dec[i].outs);
	}
	free(dec);
	free(root);
	state_close(st);
	workspace_free(ws);
	dag_free(d);
	recipe_free(r);
	strv_free(&sets);
	return rc;
}
