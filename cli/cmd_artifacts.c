/* cli/cmd_artifacts.c — the commands that read the artifact catalog:
 *   anneal ls [NAME] [--all] [--json]
 *   anneal show REF [--json]
 *   anneal tag REF ALIAS
 * They share the printing of an artifact, hence one file. */
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
#include "pipeline/catalog.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

static void human_size(uint64_t b, char *out, size_t size)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, size, "%" PRIu64 " B", b);
	else
		snprintf(out, size, "%.1f %s", v, u[i]);
}

static void when(double t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm);
}

/* "student@4" or "(checkpoint 1a2b3c4d5e6f)" */
static void label(const struct artifact_info *a, char *out, size_t size)
{
	if (a->name)
		snprintf(out, size, "%s@%d", a->name, a->version);
	else
		snprintf(out, size, "(%s %.12s)", artifact_kind_name(a->kind), a->digest);
}

static void json_artifact(struct buf *b, const struct artifact_info *a,
			  const struct metric *m, size_t nm)
{
	buf_printf(b, "{\"id\":%" PRId64 ",\"kind\":\"%s\",\"name\":", a->id,
		   artifact_kind_name(a->kind));
	if (a->name)
		buf_add_json_str(b, a->name);
	else
		buf_adds(b, "null");
	buf_printf(b, ",\"version\":%d,\"ref\":", a->version);
	if (a->name)
		buf_printf(b, "\"%s@%d\"", a->name, a->version);   /* names are plain */
	else
		buf_printf(b, "\"%.12s\"", a->digest);
	buf_printf(b, ",\"type\":\"%s\",\"digest\":\"%s\",\"lineage_digest\":\"%s\","
		   "\"bytes\":%" PRIu64 ",\"files\":%" PRIu64 ",\"created\":",
		   artifact_type_name(a->type), a->digest, a->lineage, a->bytes, a->files);
	buf_add_num(b, a->created);
	buf_adds(b, ",\"run\":");
	if (a->run_id)
		buf_printf(b, "%" PRId64, a->run_id);
	else
		buf_adds(b, "null");
	buf_adds(b, ",\"step\":");
	if (a->step)
		buf_add_json_str(b, a->step);
	else
		buf_adds(b, "null");
	if (a->attempt)
		buf_printf(b, ",\"attempt\":%d", a->attempt);
	if (a->engine_step >= 0)
		buf_printf(b, ",\"engine_step\":%lld", a->engine_step);
	if (a->origin) {
		buf_adds(b, ",\"origin\":");
		buf_add_json_str(b, a->origin);
	}
	if (a->path) {
		buf_adds(b, ",\"path\":");
		buf_add_json_str(b, a->path);
	}
	buf_printf(b, ",\"pruned\":%s,\"aliases\":[", a->pruned ? "true" : "false");
	for (size_t i = 0; i < a->naliases; i++) {
		if (i)
			buf_addc(b, ',');
		buf_add_json_str(b, a->aliases[i]);
	}
	buf_adds(b, "],\"metrics\":{");
	for (size_t i = 0; i < nm; i++) {
		if (i)
			buf_addc(b, ',');
		buf_add_json_str(b, m[i].name);
		buf_addc(b, ':');
		buf_add_num(b, m[i].value);
	}
	buf_addc(b, '}');
}

static void metrics_text(struct buf *b, const struct metric *m, size_t nm)
{
	for (size_t i = 0; i < nm; i++)
		buf_printf(b, "%s%s=%.6g", i ? " " : "", m[i].name, m[i].value);
}

int cmd_ls(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct artifact_info *v = NULL;
	size_t n = 0;
	struct err err;
	struct buf b = BUF_INIT;
	int c, rc = 0, json = 0, all = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "ah", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'a': all = 1; break;
		case 'h':
			printf("usage: anneal ls [NAME] [--all] [--json]\n\n"
			       "Lists versioned artifacts: the latest version of each name, or every\n"
			       "version of NAME; --all lists every version of every name and the\n"
			       "intermediate checkpoints.\n");
			return 0;
		default:
			return cli_usage("ls: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc - 1)
		return cli_usage("ls: expected at most one NAME");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = catalog_list(st, optind < argc ? argv[optind] : NULL, all, &v, &n, &err);
	if (!rc && optind < argc && n == 0) {
		int64_t id;
		rc = catalog_resolve(st, argv[optind], &id, &err);
		if (!rc)
			rc = err_set(&err, ERR_INVALID, "'%s' is not a name; see 'anneal show %s'",
				     argv[optind], argv[optind]);
	}
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	buf_init(&b);
	if (json)
		buf_addc(&b, '[');
	else if (n)
		buf_printf(&b, "%-28s %-10s %-12s %10s  %-18s %-19s %s\n", "ARTIFACT", "TYPE",
			   "DIGEST", "SIZE", "PRODUCED BY", "CREATED", "METRICS");
	for (size_t i = 0; i < n; i++) {
		struct metric *m = NULL;
		size_t nm = 0;
		if (catalog_metrics(st, v[i].run_id, v[i].step, &m, &nm, &err)) {
			rc = cli_fail(&err);
			goto done;
		}
		if (json) {
			if (i)
				buf_addc(&b, ',');
			json_artifact(&b, &v[i], m, nm);
			buf_addc(&b, '}');
		} else {
			char lab[160], size[32], by[64], cr[32];
			label(&v[i], lab, sizeof(lab));
			human_size(v[i].bytes, size, sizeof(size));
			if (v[i].run_id)
				snprintf(by, sizeof(by), "run %" PRId64 " %s", v[i].run_id,
					 v[i].step ? v[i].step : "");
			else
				snprintf(by, sizeof(by), "%s", artifact_kind_name(v[i].kind));
			when(v[i].created, cr, sizeof(cr));
			buf_printf(&b, "%-28s %-10s %.12s %10s  %-18s %-19s ", lab,
				   artifact_type_name(v[i].type), v[i].digest, size, by, cr);
			metrics_text(&b, m, nm);
			for (size_t k = 0; k < v[i].naliases; k++)
				buf_printf(&b, "%s[%s]", nm || k ? " " : "", v[i].aliases[k]);
			buf_addc(&b, '\n');
		}
		metrics_free(m, nm);
	}
	if (json)
		buf_adds(&b, "]\n");
	else if (!n)
		buf_adds(&b, "no artifacts yet: a run's declared outputs become artifacts, or 'anneal add PATH --name NAME'\n");
	fputs(buf_str(&b), stdout);
done:
	buf_free(&b);
	for (size_t i = 0; i < n; i++)
		artifact_info_clear(&v[i]);
	free(v);
	state_close(st);
	workspace_free(ws);
	return rc;
}

int cmd_show(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct artifact_info a = { 0 };
	struct lineage_edge *e = NULL;
	struct metric *m = NULL;
	size_t ne = 0, nm = 0;
	char *manifest = NULL, *prov = NULL, *commit = NULL, *dirty = NULL;
	struct err err;
	struct buf b = BUF_INIT;
	int64_t id = 0;
	int c, rc = 0, json = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'h':
			printf("usage: anneal show REF [--json]\n\n"
			       "Shows an artifact (REF: NAME, NAME@N, an alias or a digest prefix):\n"
			       "its manifest, parents, producing step, provenance and metrics.\n");
			return 0;
		default:
			return cli_usage("show: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_usage("show: expected one REF (see 'anneal show --help')");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = catalog_resolve(st, argv[optind], &id, &err);
	if (!rc)
		rc = catalog_get(st, id, &a, &err);
	if (!rc)
		rc = catalog_manifest(st, id, &manifest, &err);
	if (!rc)
		rc = catalog_lineage(st, id, 0, 1, &e, &ne, &err);
	if (!rc)
		rc = catalog_metrics(st, a.run_id, a.step, &m, &nm, &err);
	if (!rc && a.run_id)
		rc = catalog_run_provenance(st, a.run_id, &prov, &commit, &dirty, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	buf_init(&b);
	if (json) {
		json_artifact(&b, &a, m, nm);
		buf_adds(&b, ",\"parents\":[");
		for (size_t i = 0; i < ne; i++) {
			struct artifact_info p;
			if (catalog_get(st, e[i].parent, &p, &err)) {
				rc = cli_fail(&err);
				goto done;
			}
			buf_printf(&b, "%s{\"role\":", i ? "," : "");
			buf_add_json_str(&b, e[i].role);
			if (e[i].has_weight) {
				buf_adds(&b, ",\"weight\":");
				buf_add_num(&b, e[i].weight);
			}
			buf_printf(&b, ",\"id\":%" PRId64 ",\"ref\":", p.id);
			if (p.name)
				buf_printf(&b, "\"%s@%d\"", p.name, p.version);
			else
				buf_printf(&b, "\"%.12s\"", p.digest);
			buf_printf(&b, ",\"digest\":\"%s\"}", p.digest);
			artifact_info_clear(&p);
		}
		buf_adds(&b, "],\"producer\":{\"step_key\":");
		a.step_key ? buf_add_json_str(&b, a.step_key) : buf_adds(&b, "null");
		buf_adds(&b, ",\"recipe_digest\":");
		a.recipe_digest ? buf_add_json_str(&b, a.recipe_digest) : buf_adds(&b, "null");
		buf_adds(&b, ",\"git_commit\":");
		a.git_commit ? buf_add_json_str(&b, a.git_commit) : buf_adds(&b, "null");
		buf_adds(&b, ",\"git_dirty\":");
		a.git_dirty ? buf_add_json_str(&b, a.git_dirty) : buf_adds(&b, "null");
		buf_adds(&b, ",\"provenance\":");
		buf_adds(&b, prov ? prov : "null");
		buf_adds(&b, "},\"manifest\":");
		buf_add_json_str(&b, manifest);
		buf_adds(&b, "}\n");
	} else {
		char lab[160], size[32], cr[32];
		label(&a, lab, sizeof(lab));
		human_size(a.bytes, size, sizeof(size));
		when(a.created, cr, sizeof(cr));
		buf_printf(&b, "%s  %s %s, %" PRIu64 " file%s, %s\n", lab, artifact_kind_name(a.kind),
			   artifact_type_name(a.type), a.files, a.files == 1 ? "" : "s", size);
		buf_printf(&b, "  digest   %s\n  lineage  %s\n  created  %s\n", a.digest,
			   a.lineage, cr);
		if (a.naliases) {
			buf_adds(&b, "  aliases ");
			for (size_t i = 0; i < a.naliases; i++)
				buf_printf(&b, " %s", a.aliases[i]);
			buf_addc(&b, '\n');
		}
		if (a.run_id)
			buf_printf(&b, "  produced by run %" PRId64 " step '%s' attempt %d\n",
				   a.run_id, a.step ? a.step : "?", a.attempt);
		else if (a.step)
			buf_printf(&b, "  produced by step '%s' attempt %d (in the workspace it was"
				   " imported from)\n", a.step, a.attempt);
		if (a.pruned)
			buf_adds(&b, "  bytes    pruned (the record stays; anneal gc)\n");
		if (a.engine_step >= 0)
			buf_printf(&b, "  engine step %lld\n", a.engine_step);
		if (a.origin)
			buf_printf(&b, "  origin   %s\n", a.origin);
		if (a.path)
			buf_printf(&b, "  path     %s\n", a.path);
		if (a.step_key)
			buf_printf(&b, "  step key %s\n", a.step_key);
		if (a.recipe_digest)
			buf_printf(&b, "  recipe   %s\n", a.recipe_digest);
		if (commit)
			buf_printf(&b, "  git      %s%s\n", commit, dirty ? " (dirty)" : "");
		else if (a.git_commit)
			buf_printf(&b, "  git      %s%s\n", a.git_commit, a.git_dirty ? " (dirty)" : "");
		if (nm) {
			buf_adds(&b, "  metrics  ");
			metrics_text(&b, m, nm);
			buf_addc(&b, '\n');
		}
		buf_adds(&b, ne ? "  parents\n" : "  parents  none (a root)\n");
		for (size_t i = 0; i < ne; i++) {
			struct artifact_info p;
			char pl[160];
			if (catalog_get(st, e[i].parent, &p, &err)) {
				rc = cli_fail(&err);
				goto done;
			}
			label(&p, pl, sizeof(pl));
			buf_printf(&b, "    %-14s %s", e[i].role, pl);
			if (e[i].has_weight)
				buf_printf(&b, "  weight %.6g", e[i].weight);
			buf_addc(&b, '\n');
			artifact_info_clear(&p);
		}
		buf_adds(&b, "  manifest (sha256, size, mode, path)\n");
		for (const char *p = manifest; *p;) {
			const char *nl = strchr(p, '\n');
			size_t len = nl ? (size_t)(nl - p) : strlen(p);
			buf_adds(&b, "    ");
			buf_add(&b, p, len);
			buf_addc(&b, '\n');
			p += len + (nl ? 1 : 0);
		}
	}
	fputs(buf_str(&b), stdout);
done:
	buf_free(&b);
	for (size_t i = 0; i < ne; i++)
		lineage_edge_clear(&e[i]);
	free(e);
	metrics_free(m, nm);
	free(manifest);
	free(prov);
	free(commit);
	free(dirty);
	artifact_info_clear(&a);
	state_close(st);
	workspace_free(ws);
	return rc;
}

int cmd_tag(struct cli *cli, int argc, char **argv)
{
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct artifact_info a = { 0 };
	struct err err;
	int64_t id = 0;
	int rc;

	err_clear(&err);
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: anneal tag REF ALIAS\n\n"
		       "Points ALIAS at the artifact REF (moving it if it pointed elsewhere);\n"
		       "ALIAS then works wherever a REF is taken, and gc keeps what it names.\n");
		return 0;
	}
	if (argc != 3)
		return cli_usage("tag: expected REF ALIAS (see 'anneal tag --help')");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = catalog_resolve(st, argv[1], &id, &err);
	if (!rc)
		rc = catalog_tag(st, argv[2], id, &err);
	if (!rc)
		rc = catalog_get(st, id, &a, &err);
	if (rc) {
		rc = cli_fail(&err);
	} else {
		char lab[160];
		label(&a, lab, sizeof(lab));
		printf("%s -> %s\n", argv[2], lab);
	}
	artifact_info_clear(&a);
	state_close(st);
	workspace_free(ws);
	return rc;
}
