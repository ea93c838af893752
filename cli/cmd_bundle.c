/* cli/cmd_bundle.c — bundles between workspaces:
 *   anneal export REF [--with-ancestors] -o FILE.tar.zst
 *   anneal import FILE.tar.zst
 * The work is artifacts/bundle.c's; this file parses arguments, opens the
 * workspace and says what happened. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifacts/bundle.h"
#include "artifacts/store.h"
#include "base/err.h"
#include "base/fs.h"
#include "cli/cli.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

static void ref_of(struct state *st, int64_t id, char *out, size_t size)
{
	struct artifact_info a;
	struct err err;

	if (catalog_get(st, id, &a, &err)) {
		snprintf(out, size, "artifact %" PRId64, id);
		return;
	}
	if (a.name)
		snprintf(out, size, "%s@%d", a.name, a.version);
	else
		snprintf(out, size, "%s %.12s", artifact_kind_name(a.kind), a.digest);
	artifact_info_clear(&a);
}

static int open_store(struct workspace *ws, struct store **store, struct err *err)
{
	char *root = fs_join(ws->dir, "store");
	int rc = store_open(store, root, err);

	free(root);
	return rc;
}

int cmd_export(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "with-ancestors", no_argument, NULL, 'a' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct store *store = NULL;
	struct bundle_summary sum;
	const char *out = NULL;
	char ref[200];
	struct err err;
	int64_t id = 0;
	int c, rc = 0, ancestors = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': ancestors = 1; break;
		case 'o': out = optarg; break;
		case 'h':
			printf("usage: anneal export REF [--with-ancestors] -o FILE.tar.zst\n\n"
			       "Writes REF (NAME, NAME@N, an alias or a digest prefix) into a bundle\n"
			       "another workspace can 'anneal import': a tar archive compressed with\n"
			       "zstd holding anneal-bundle.json (the records of REF and of all its\n"
			       "ancestors, so that their lineage digests can be checked) and the\n"
			       "files of REF under objects/<sha256>. --with-ancestors carries the\n"
			       "files of every ancestor too; without it they arrive as records only\n"
			       "(marked pruned where imported). See docs/bundles.md.\n");
			return 0;
		default:
			if (optopt == 'o')
				return cli_usage("export: -o needs a FILE");
			return cli_usage("export: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_usage("export: expected one REF (see 'anneal export --help')");
	if (!out || !*out)
		return cli_usage("export: -o FILE.tar.zst is required");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = catalog_resolve(st, argv[optind], &id, &err);
	if (!rc)
		rc = open_store(ws, &store, &err);
	if (!rc)
		rc = bundle_export(st, store, id, ancestors, out, &sum, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	ref_of(st, id, ref, sizeof(ref));
	printf("exported %s to %s: %zu artifact%s (%zu with bytes), %zu object%s, %" PRIu64
	       " bytes\n", ref, out, sum.artifacts, sum.artifacts == 1 ? "" : "s",
	       sum.with_bytes, sum.objects, sum.objects == 1 ? "" : "s", sum.object_bytes);
done:
	store_free(store);
	state_close(st);
	workspace_free(ws);
	return rc;
}

int cmd_import(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct store *store = NULL;
	struct bundle_import_result res = { 0 };
	char *staging = NULL, ref[200];
	size_t fresh = 0, pruned = 0;
	struct err err;
	int c, rc = 0, gc_fd = -1;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			printf("usage: anneal import FILE.tar.zst\n\n"
			       "Imports a bundle written by 'anneal export'. Everything is verified\n"
			       "before anything is registered: entry names and types, each object's\n"
			       "bytes against its digest and size, each manifest against its digest,\n"
			       "and each lineage digest against the facts and parents it covers.\n"
			       "The artifacts are registered as 'imported' with their history\n"
			       "(artifacts already here with the same lineage digest are reused);\n"
			       "their files go into the store, nothing is checked out. See\n"
			       "docs/bundles.md.\n");
			return 0;
		default:
			return cli_usage("import: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_usage("import: expected one FILE (see 'anneal import --help')");
	rc = cli_find_or_init(cli, &ws, &err);
	if (!rc)
		rc = state_open(ws->db_path, &st, &err);
	if (!rc)
		rc = open_store(ws, &store, &err);
	if (!rc)
		rc = workspace_gc_lock(ws, 0, &gc_fd, &err);   /* store, then register */
	if (!rc) {
		staging = fs_join(ws->dir, "import");
		rc = bundle_import(st, store, staging, argv[optind], NULL, &res, &err);
	}
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	for (size_t i = 0; i < res.n; i++) {
		fresh += res.v[i].created;
		pruned += res.v[i].created && res.v[i].pruned;
	}
	ref_of(st, res.root, ref, sizeof(ref));
	printf("imported %s from %s: %zu artifact%s (%zu new, %zu already here, %zu without"
	       " bytes), %zu object%s, %" PRIu64 " bytes\n", ref, argv[optind], res.n,
	       res.n == 1 ? "" : "s", fresh, res.n - fresh, pruned, res.summary.objects,
	       res.summary.objects == 1 ? "" : "s", res.summary.object_bytes);
done:
	if (gc_fd >= 0)
		close(gc_fd);
	bundle_import_result_clear(&res);
	free(staging);
	store_free(store);
	state_close(st);
	workspace_free(ws);
	return rc;
}
