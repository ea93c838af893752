/* cli/cmd_audit.c — anneal audit [REF] [--deep] [--json]
 *
 * Exit 0 when clean, 1 with the list of findings (artifacts/audit.h says
 * what is checked). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/audit.h"
#include "artifacts/store.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "cli/cli.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

static void json_items(struct buf *b, const struct audit_item *v, size_t n)
{
	buf_addc(b, '[');
	for (size_t i = 0; i < n; i++) {
		buf_printf(b, "%s{\"artifact\":%" PRId64 ",\"ref\":", i ? "," : "", v[i].artifact);
		buf_add_json_str(b, v[i].ref);
		buf_adds(b, ",\"what\":");
		buf_add_json_str(b, v[i].what);
		buf_addc(b, '}');
	}
	buf_addc(b, ']');
}

int cmd_audit(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "deep", no_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct store *store = NULL;
	struct audit_report r = { 0 };
	struct err err;
	struct buf b = BUF_INIT;
	char *root = NULL;
	int64_t only = 0;
	int c, rc = 0, deep = 0, json = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': deep = 1; break;
		case 'j': json = 1; break;
		case 'h':
			printf("usage: anneal audit [REF] [--deep] [--json]\n\n"
			       "Checks that every stored byte is what was recorded: each artifact's\n"
			       "objects present, read-only and of the right size (--deep: re-hashed),\n"
			       "each lineage digest recomputing from the recorded facts, every artifact\n"
			       "with a producing step and provenance, no dangling lineage. With REF,\n"
			       "that artifact and its ancestors. Exit 0 clean, 1 with findings.\n");
			return 0;
		default:
			return cli_usage("audit: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc - 1)
		return cli_usage("audit: expected at most one REF");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc && optind == argc - 1)
		rc = catalog_resolve(st, argv[optind], &only, &err);
	if (!rc) {
		root = fs_join(ws->dir, "store");
		rc = store_open(&store, root, &err);
	}
	if (!rc)
		rc = audit_run(st, store, only, deep, &r, &err);
	if (!rc && !only)
		audit_temp_files(ws->dir, &r);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	buf_init(&b);
	if (json) {
		buf_printf(&b, "{\"clean\":%s,\"deep\":%s,\"artifacts\":%zu,\"objects\":%zu,"
			   "\"bytes_hashed\":%" PRIu64 ",\"findings\":",
			   r.nfindings ? "false" : "true", deep ? "true" : "false",
			   r.artifacts, r.objects, r.bytes_hashed);
		json_items(&b, r.findings, r.nfindings);
		buf_adds(&b, ",\"notes\":");
		json_items(&b, r.notes, r.nnotes);
		buf_adds(&b, "}\n");
	} else {
		for (size_t i = 0; i < r.nfindings; i++)
			buf_printf(&b, "FAIL %s%s%s\n", r.findings[i].ref,
				   r.findings[i].ref[0] ? ": " : "", r.findings[i].what);
		for (size_t i = 0; i < r.nnotes; i++)
			buf_printf(&b, "note %s\n", r.notes[i].what);
		buf_printf(&b, "audit%s: %zu artifact%s, %zu object%s", deep ? " --deep" : "",
			   r.artifacts, r.artifacts == 1 ? "" : "s", r.objects,
			   r.objects == 1 ? "" : "s");
		if (deep)
			buf_printf(&b, " (%" PRIu64 " bytes re-hashed)", r.bytes_hashed);
		if (r.nfindings)
			buf_printf(&b, ": %zu finding%s\n", r.nfindings, r.nfindings == 1 ? "" : "s");
		else
			buf_adds(&b, ": clean\n");
	}
	fputs(buf_str(&b), stdout);
	rc = r.nfindings ? 1 : 0;
done:
	buf_free(&b);
	audit_report_clear(&r);
	store_free(store);
	free(root);
	state_close(st);
	workspace_free(ws);
	return rc;
}
