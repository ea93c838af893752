/* cli/cmd_add.c — anneal add PATH --name NAME [--type T] [--copy]
 *
 * Registers something made outside anneal (a downloaded base model, a
 * dataset) as a root artifact: its files go into the content store and it
 * gets the next version of NAME, with PATH recorded as its origin. Recipes
 * then take it as an input with "@NAME". */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/catalog.h"
#include "pipeline/json.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

int cmd_add(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "type", required_argument, NULL, 't' },
		{ "copy", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct store *store = NULL;
	struct manifest m = { 0 };
	enum artifact_type type = ART_DATASET;
	const char *name = NULL;
	char *abs = NULL, *root = NULL;
	char digest[DIGEST_HEX_LEN + 1];
	struct err err;
	int c, rc = 0, copy = 0, version = 0, created = 0, gc_fd = -1;
	int64_t id = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 't':
			if (artifact_type_parse(optarg, &type))
				return cli_usage("add: --type must be checkpoint, dataset or report, not '%s'",
						 optarg);
			break;
		case 'c': copy = 1; break;
		case 'h':
			printf("usage: anneal add PATH --name NAME [--type checkpoint|dataset|report] [--copy]\n\n"
			       "Registers PATH (a file or a directory made outside anneal) as the next\n"
			       "version of NAME, a root artifact recipes can take as \"@NAME\". Its files\n"
			       "are hard-linked into the store and made read-only (no copy on one\n"
			       "filesystem); --copy copies them instead and leaves PATH as it is.\n");
			return 0;
		default:
			return cli_usage("add: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_usage("add: expected one PATH (see 'anneal add --help')");
	if (!name)
		return cli_usage("add: --name NAME is required");
	if (!artifact_name_valid(name)) {
		char shown[JSON_SHOW_MAX];
		return cli_usage("add: invalid name '%s' (1 to 128 letters, digits, '_', '-' or '.'; no '@' or '/')",
				 json_show(name, shown, sizeof(shown)));
	}
	abs = fs_abspath(argv[optind]);
	if (!fs_exists(abs)) {
		rc = cli_usage("add: '%s': no such file or directory", argv[optind]);
		goto done;
	}
	rc = cli_find_or_init(cli, &ws, &err);
	if (!rc)
		rc = state_open(ws->db_path, &st, &err);
	if (!rc) {
		root = fs_join(ws->dir, "store");
		rc = store_open(&store, root, &err);
	}
	if (!rc)
		rc = workspace_gc_lock(ws, 0, &gc_fd, &err);
	if (!rc)
		rc = store_ingest_tree(store, abs, copy ? STORE_COPY : STORE_LINK, 0, &m, &err);
	if (!rc) {
		struct artifact_new a = {
			.kind = AK_ROOT, .name = name, .type = type,
			.digest = digest, .manifest = m.text, .bytes = m.bytes, .files = m.n,
			.engine_step = -1, .origin = abs, .path = abs,
		};
		digest_hex(&m.digest, digest);
		rc = catalog_register(st, &a, &id, &version, &created, &err);
	}
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	if (created)
		printf("added %s@%d: %s, %zu file%s, %" PRIu64 " bytes, digest %.12s (from %s)\n",
		       name, version, artifact_type_name(type), m.n, m.n == 1 ? "" : "s",
		       m.bytes, digest, abs);
	else
		printf("%s@%d already has this content (digest %.12s); nothing added\n", name,
		       version, digest);
done:
	if (gc_fd >= 0)
		close(gc_fd);
	manifest_free(&m);
	store_free(store);
	free(root);
	free(abs);
	state_close(st);
	workspace_free(ws);
	return rc;
}
