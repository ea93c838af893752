/* cli/cmd_lineage.c — anneal lineage REF [--descendants] [--depth N]
 *                                       [--format tree|json|dot]
 *
 * Ancestry (which data, parents and merges produced REF) or descent (what
 * was built from it: a bad dataset's blast radius). The walk is one
 * recursive query in the catalog; this file only draws it. A node reached
 * twice (DAGs share ancestors) is drawn once and referred to after. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

struct node {
	int64_t id;
	char *label;
	char digest[DIGEST_HEX_LEN + 1];
	int printed;
};

struct graph {
	struct node *v;
	size_t n, cap;
	struct lineage_edge *e;
	size_t ne;
	int descendants;
};

static struct node *node_of(struct graph *g, int64_t id)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i].id == id)
			return &g->v[i];
	return NULL;
}

static int add_node(struct graph *g, struct state *st, int64_t id, struct err *err)
{
	struct artifact_info a;
	int rc;

	if (node_of(g, id))
		return 0;
	rc = catalog_get(st, id, &a, err);
	if (rc)
		return rc;
	if (g->n == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 16;
		g->v = xrealloc(g->v, g->cap * sizeof(*g->v));
	}
	struct node *nd = &g->v[g->n++];
	memset(nd, 0, sizeof(*nd));
	nd->id = id;
	nd->label = a.name ? xasprintf("%s@%d", a.name, a.version)
			   : xasprintf("%s:%.12s", artifact_kind_name(a.kind), a.digest);
	memcpy(nd->digest, a.digest, sizeof(nd->digest));
	artifact_info_clear(&a);
	return 0;
}

/* The edge's far end seen from "from": parent when walking up. */
static int64_t far(const struct graph *g, const struct lineage_edge *e)
{
	return g->descendants ? e->child : e->parent;
}

static int64_t near(const struct graph *g, const struct lineage_edge *e)
{
	return g->descendants ? e->parent : e->child;
}

static void draw(struct graph *g, struct buf *b, int64_t id, const char *prefix)
{
	size_t *kids = xcalloc(g->ne + 1, sizeof(size_t)), nk = 0;

	for (size_t i = 0; i < g->ne; i++)
		if (near(g, &g->e[i]) == id)
			kids[nk++] = i;
	for (size_t k = 0; k < nk; k++) {
		const struct lineage_edge *e = &g->e[kids[k]];
		struct node *nd = node_of(g, far(g, e));
		int last = k + 1 == nk;
		char *next;

		buf_printf(b, "%s%s %s", prefix, last ? "└─" : "├─", e->role);
		if (e->has_weight)
			buf_printf(b, " (%.6g)", e->weight);
		buf_printf(b, " %s", nd ? nd->label : "?");
		if (nd && nd->printed) {
			int has_more = 0;
			for (size_t i = 0; i < g->ne; i++)
				has_more |= near(g, &g->e[i]) == nd->id;
			buf_adds(b, has_more ? " (see above)\n" : "\n");
			continue;
		}
		buf_addc(b, '\n');
		if (!nd)
			continue;
		nd->printed = 1;
		next = xasprintf("%s%s", prefix, last ? "   " : "│  ");
		draw(g, b, nd->id, next);
		free(next);
	}
	free(kids);
}

int cmd_lineage(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "descendants", no_argument, NULL, 'd' },
		{ "depth", required_argument, NULL, 'n' },
		{ "format", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct graph g = { 0 };
	struct err err;
	struct buf b = BUF_INIT;
	const char *format = "tree";
	long long depth = 0;
	int64_t id = 0;
	int c, rc = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': g.descendants = 1; break;
		case 'n':
			if (parse_int(optarg, 1, 1000000, &depth))
				return cli_usage("lineage: --depth must be a positive integer, not '%s'", optarg);
			break;
		case 'f': format = optarg; break;
		case 'j': format = "json"; break;
		case 'h':
			printf("usage: anneal lineage REF [--descendants] [--depth N] [--format tree|json|dot]\n\n"
			       "Shows what REF was made from (its ancestors, with roles and merge\n"
			       "weights) or, with --descendants, everything made from it.\n");
			return 0;
		default:
			return cli_usage("lineage: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (strcmp(format, "tree") && strcmp(format, "json") && strcmp(format, "dot"))
		return cli_usage("lineage: --format must be tree, json or dot, not '%s'", format);
	if (optind != argc - 1)
		return cli_usage("lineage: expected one REF (see 'anneal lineage --help')");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = catalog_resolve(st, argv[optind], &id, &err);
	if (!rc)
		rc = catalog_lineage(st, id, g.descendants, (int)depth, &g.e, &g.ne, &err);
	if (!rc)
		rc = add_node(&g, st, id, &err);
	for (size_t i = 0; !rc && i < g.ne; i++) {
		rc = add_node(&g, st, g.e[i].child, &err);
		if (!rc)
			rc = add_node(&g, st, g.e[i].parent, &err);
	}
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	buf_init(&b);
	if (!strcmp(format, "json")) {
		buf_printf(&b, "{\"root\":%" PRId64 ",\"direction\":\"%s\",\"nodes\":[", id,
			   g.descendants ? "descendants" : "ancestors");
		for (size_t i = 0; i < g.n; i++) {
			buf_printf(&b, "%s{\"id\":%" PRId64 ",\"ref\":", i ? "," : "", g.v[i].id);
			buf_add_json_str(&b, g.v[i].label);
			buf_printf(&b, ",\"digest\":\"%s\"}", g.v[i].digest);
		}
		buf_adds(&b, "],\"edges\":[");
		for (size_t i = 0; i < g.ne; i++) {
			buf_printf(&b, "%s{\"child\":%" PRId64 ",\"parent\":%" PRId64 ",\"role\":",
				   i ? "," : "", g.e[i].child, g.e[i].parent);
			buf_add_json_str(&b, g.e[i].role);
			if (g.e[i].has_weight) {
				buf_adds(&b, ",\"weight\":");
				buf_add_num(&b, g.e[i].weight);
			}
			buf_printf(&b, ",\"depth\":%d}", g.e[i].depth);
		}
		buf_adds(&b, "]}\n");
	} else if (!strcmp(format, "dot")) {
		buf_adds(&b, "digraph lineage {\n  rankdir=BT;\n  node [shape=box, style=rounded];\n");
		for (size_t i = 0; i < g.n; i++) {
			buf_printf(&b, "  a%" PRId64 " [label=", g.v[i].id);
			buf_add_json_str(&b, g.v[i].label);
			buf_adds(&b, g.v[i].id == id ? ", penwidth=2];\n" : "];\n");
		}
		for (size_t i = 0; i < g.ne; i++) {
			char lab[96];
			if (g.e[i].has_weight)
				snprintf(lab, sizeof(lab), "%s %.6g", g.e[i].role, g.e[i].weight);
			else
				snprintf(lab, sizeof(lab), "%s", g.e[i].role);
			buf_printf(&b, "  a%" PRId64 " -> a%" PRId64 " [label=", g.e[i].child,
				   g.e[i].parent);
			buf_add_json_str(&b, lab);
			buf_adds(&b, "];\n");
		}
		buf_adds(&b, "}\n");
	} else {
		struct node *root = node_of(&g, id);
		buf_printf(&b, "%s\n", root->label);
		root->printed = 1;
		draw(&g, &b, id, "");
		if (!g.ne)
			buf_adds(&b, g.descendants ? "(nothing was made from it)\n"
						   : "(a root: nothing recorded before it)\n");
	}
	fputs(buf_str(&b), stdout);
done:
	buf_free(&b);
	for (size_t i = 0; i < g.n; i++)
		free(g.v[i].label);
	free(g.v);
	for (size_t i = 0; i < g.ne; i++)
		lineage_edge_clear(&g.e[i]);
	free(g.e);
	state_close(st);
	workspace_free(ws);
	return rc;
}
