/* cli/cmd_gc.c — anneal gc [--dry-run] [--prune-intermediate] [--json]
 *
 * Removes the stored objects no artifact needs (artifacts/gc.h has the
 * rules) and says what went: objects, bytes, artifacts pruned, stale
 * checkouts. Catalog rows, lineage included, are never deleted. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>

#include "artifacts/gc.h"
#include "artifacts/store.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

static void human(uint64_t b, char *out, size_t size)
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

static const char *s_(uint64_t n)
{
	return n == 1 ? "" : "s";
}

static void print_json(const struct gc_report *r, int dry_run)
{
	struct buf b = BUF_INIT;

	buf_init(&b);
	buf_printf(&b, "{\"dry_run\": %s, \"objects\": %" PRIu64 ", \"bytes\": %" PRIu64
		   ", \"bytes_freed\": %" PRIu64 ", \"artifacts_pruned\": %" PRIu64
		   ", \"checkouts\": %" PRIu64 ", \"objects_kept\": %" PRIu64
		   ", \"bytes_kept\": %" PRIu64 ", \"objects_young\": %" PRIu64
		   ", \"artifacts\": %" PRIu64 ", \"artifacts_kept\": %" PRIu64 "}\n",
		   dry_run ? "true" : "false", r->objects, r->bytes, r->bytes_freed, r->pruned,
		   r->checkouts, r->objects_kept, r->bytes_kept, r->young, r->artifacts,
		   r->kept);
	fwrite(b.ptr, 1, b.len, stdout);
	buf_free(&b);
}

static void print_text(const struct gc_report *r, int dry_run)
{
	char bytes[32], freed[32], kept[32];

	human(r->bytes, bytes, sizeof(bytes));
	human(r->bytes_freed, freed, sizeof(freed));
	human(r->bytes_kept, kept, sizeof(kept));
	printf("%s %" PRIu64 " object%s (%s; %s freed on disk), %s %" PRIu64
	       " artifact%s pruned, %s %" PRIu64 " stale checkout%s\n",
	       dry_run ? "would remove" : "removed", r->objects, s_(r->objects), bytes, freed,
	       dry_run ? "mark" : "marked", r->pruned, s_(r->pruned),
	       dry_run ? "remove" : "removed", r->checkouts, s_(r->checkouts));
	printf("kept %" PRIu64 " object%s (%s) for %" PRIu64 " of %" PRIu64 " artifact%s",
	       r->objects_kept, s_(r->objects_kept), kept, r->kept, r->artifacts,
	       s_(r->artifacts));
	if (r->young)
		printf("; %" PRIu64 " newer than this gc left alone", r->young);
	printf("\n");
}

int cmd_gc(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "prune-intermediate", no_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct gc_opts o = { 0 };
	struct gc_report r;
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct store *store = NULL;
	char *root = NULL, *checkouts = NULL;
	struct err err;
	int c, rc = 0, json = 0, gc_fd = -1;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': o.dry_run = 1; break;
		case 'p': o.prune_intermediate = 1; break;
		case 'j': json = 1; break;
		case 'h':
			printf("usage: anneal gc [--dry-run] [--prune-intermediate] [--json]\n\n"
			       "Removes stored objects that no artifact needs. Kept: the latest version\n"
			       "of each name, tagged artifacts, everything a running or interrupted run\n"
			       "made or uses, the latest checkpoint of each step of a failed or cancelled\n"
			       "run (what 'anneal resume' continues from), and every ancestor of those.\n"
			       "Artifacts that lose bytes are marked pruned; no catalog row is deleted,\n"
			       "so lineage stays whole. Checkouts of pruned artifacts are removed too.\n"
			       "Safe while a run writes: objects newer than the gc are left alone.\n\n"
			       "  --dry-run             report what would go; change nothing\n"
			       "  --prune-intermediate  also drop the bytes of intra-step checkpoints of\n"
			       "                        finished runs that are only kept as ancestors\n"
			       "  --json                the report as a JSON object\n");
			return 0;
		default:
			return cli_usage("gc: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return cli_usage("gc: unexpected argument '%s'", argv[optind]);
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc) {
		root = fs_join(ws->dir, "store");
		checkouts = fs_join(root, "checkouts");
		rc = store_open(&store, root, &err);
	}
	/* Alone with the store: no one stores objects it has not registered
	 * yet while gc decides (runs, add and import hold it shared). */
	if (!rc)
		rc = workspace_gc_lock(ws, 1, &gc_fd, &err);
	if (!rc) {
		/* Before anything is read: objects changed from here on stay. */
		char *tmp = fs_join(root, "tmp");
		rc = gc_fs_now(tmp, &o.start, &err);
		free(tmp);
	}
	if (!rc)
		rc = gc_run(st, store, checkouts, &o, &r, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	if (json)
		print_json(&r, o.dry_run);
	else
		print_text(&r, o.dry_run);
done:
	if (gc_fd >= 0)
		close(gc_fd);
	store_free(store);
	free(checkouts);
	free(root);
	state_close(st);
	workspace_free(ws);
	return rc;
}
