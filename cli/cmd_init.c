/* cli/cmd_init.c — anneal init [DIR] */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

int cmd_init(struct cli *cli, int argc, char **argv)
{
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct err err;
	const char *dir = cli->dir ? cli->dir : ".";
	int rc;

	err_clear(&err);
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: anneal init [DIR]\n\n"
		       "Creates DIR/.anneal/ (state.db, store/, runs/); DIR defaults to -C or here.\n"
		       "Running it again on a workspace is harmless.\n");
		return 0;
	}
	if (argc > 2)
		return cli_usage("init: too many arguments");
	if (argc == 2) {
		if (argv[1][0] == '-')
			return cli_usage("init: unknown option '%s'", argv[1]);
		dir = argv[1];
	}
	rc = workspace_init(dir, &ws, &err);
	if (!rc)
		rc = state_open(ws->db_path, &st, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	printf("initialised anneal workspace in %s\n", ws->dir);
done:
	state_close(st);
	workspace_free(ws);
	return rc;
}
